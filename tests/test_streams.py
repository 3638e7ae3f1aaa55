"""The event stream after it opened: a revoked key or a suspended unit ends it; a cut hello is resumed."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
import pytest

from lgsp.client import LgspError
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from .conftest import MakeActor, base_env


@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    env = base_env(tmp_path / "var") | {"LGSP_SECURITY_STREAM_RECHECK_SECONDS": "0.2"}
    return load_config(None, env=env)


async def read_all(stream: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Every message until the hub closes the stream (fails if it stays open past `timeout`)."""
    got: list[dict[str, Any]] = []

    async def run() -> None:
        async for message in stream:
            got.append(message)

    await asyncio.wait_for(run(), timeout)
    return got


@pytest.mark.parametrize("how", ["revoke the key", "suspend the unit"])
async def test_stream_ends_when_its_key_stops_being_valid(make_actor: MakeActor, hub: Hub, how: str) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    async with b.client.events() as stream:
        first = await asyncio.wait_for(anext(stream), 2.0)
        assert first["type"] == "hello"
        if how == "revoke the key":
            await hub.directory.revoke_key(b.key.access_key)
        else:
            await hub.directory.set_unit_status(b.unit, "suspended")
        rest = await read_all(stream)  # fails unless the hub closes the stream
    assert [m["type"] for m in rest] == ["stream.closed"]
    assert rest[0]["code"] == "auth.revoked_key"
    assert ("revoked" if how == "revoke the key" else "suspended") in rest[0]["detail"]
    await a.client.inbox()  # the other unit's stream and requests are untouched
    # and it cannot be reopened: the hub's own problem code reaches the client
    with pytest.raises(LgspError) as err:
        async with b.client.events():
            pass
    assert err.value.status == 401 and err.value.code == "auth.revoked_key"


async def test_unknown_key_on_the_stream_reports_the_hubs_code(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    await hub.directory.revoke_key(a.key.access_key)
    with pytest.raises(LgspError) as err:
        async with a.client.events():
            pass
    assert err.value.code == "auth.revoked_key"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(hub.url + "/v1/events")


async def test_a_cut_hello_is_resumed_by_the_next_stream(make_actor: MakeActor, hub: Hub,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """More changes than a hello holds: a live event must not move the saved position past the rest."""
    from lgsp.core.exchange import streams

    monkeypatch.setattr(streams, "HELLO_CHANGES", 3)
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    sent = [await a.client.send(f"p{i}".encode(), [b.unit], subject=f"p{i}") for i in range(4)]
    for pid in sent:  # each ack gives the source one change: packet.delivered
        data = await b.client.fetch_bytes(pid)
        await b.client.ack(pid, hashlib.sha256(data).hexdigest())
    seen: list[str] = []
    hellos: list[tuple[int, bool]] = []
    for _ in range(4):
        async with a.client.events() as stream:
            hello = await asyncio.wait_for(anext(stream), 2.0)
            hellos.append((len(hello["changes"]), hello["more"]))
            seen += [c["id"] for c in hello["changes"] if c["type"] == "packet.delivered"]
            if not hello["more"]:
                break
            # a live event arrives while the rest of the backlog is still unsent
            await b.client.send(b"live", [a.unit], subject="live")
            live = await asyncio.wait_for(anext(stream), 2.0)
            assert live["type"] == "packet.available"
    assert hellos[0] == (3, True), hellos  # the first hello really was cut
    assert sorted(set(seen)) == sorted(sent), (seen, sent)
