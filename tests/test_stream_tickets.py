"""Opening the event stream without headers, as a browser must: a single-use ticket in the URL.

The WebSocket clients here send no X-LGSP-* header at all, exactly like `new WebSocket(url)`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from lgsp.client import LgspError
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from .conftest import Actor, MakeActor, base_env, raw_request
from .test_auth import assert_problem


@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    env = base_env(tmp_path / "var") | {"LGSP_SECURITY_STREAM_RECHECK_SECONDS": "0.2"}
    return load_config(None, env=env)


async def ticket_for(actor: Actor, body: bytes | None = None) -> dict[str, Any]:
    status, headers, answer = await actor.raw("POST", "/v1/events/tickets", body)
    assert status == 201, answer
    assert headers["Content-Type"].startswith("application/json")
    return answer


def handshake_headers() -> dict[str, str]:
    """What a browser's WebSocket sends: an upgrade request and nothing of ours."""
    return {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Origin": "https://vbql.example"}


async def refused_handshake(url: str) -> tuple[int, dict[str, str], Any]:
    """An upgrade request answered with a problem (a browser sees only the failed handshake)."""
    async with aiohttp.ClientSession() as http, http.get(url, headers=handshake_headers()) as resp:
        return resp.status, dict(resp.headers), json.loads(await resp.read())


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_a_ticket_opens_the_stream_once(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    answer = await ticket_for(b)
    assert set(answer) == {"ticket", "expires_at", "unit", "url"} and answer["unit"] == b.unit
    assert answer["url"] == f"{hub.url.replace('http:', 'ws:')}/v1/events?ticket={answer['ticket']}"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(answer["url"], headers={"Origin": "https://vbql.example"}) as ws:
            hello = await next_json(ws)
            assert hello["type"] == "hello" and hello["unit"] == b.unit
            packet_id = await a.client.send(b"cong van", [b.unit], subject="Công văn")
            available = await next_json(ws)
            assert available["type"] == "packet.available" and available["id"] == packet_id
        # The same ticket again: refused, whatever the first stream did since.
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(answer["url"])
        assert err.value.status == 401
    status, h, body = await refused_handshake(answer["url"])
    problem = assert_problem(status, h, body, 401, "auth.bad_ticket")
    assert "đã dùng" in problem["detail"]


async def test_the_python_client_hands_out_tickets(make_actor: MakeActor, hub: Hub) -> None:
    """What a unit's Python web server does for its pages: ask, pass `url` on."""
    b = await make_actor("000.00.01.H23")
    answer = await b.client.stream_ticket()
    assert answer["unit"] == b.unit and answer["url"].endswith(answer["ticket"])
    async with aiohttp.ClientSession() as http, http.ws_connect(answer["url"]) as ws:
        assert (await next_json(ws))["type"] == "hello"
    await hub.directory.revoke_key(b.key.access_key)
    with pytest.raises(LgspError) as err:
        await b.client.stream_ticket()
    assert err.value.status == 401 and err.value.code == "auth.revoked_key"


async def test_two_handshakes_racing_with_one_ticket_open_one_stream(make_actor: MakeActor) -> None:
    b = await make_actor("000.00.01.H23")
    url = (await ticket_for(b))["url"]
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(http.ws_connect(url) for _ in range(5)), return_exceptions=True)
        opened = [r for r in results if isinstance(r, aiohttp.ClientWebSocketResponse)]
        refused = [r for r in results if isinstance(r, aiohttp.WSServerHandshakeError)]
        assert len(opened) == 1 and len(refused) == 4, results
        assert {r.status for r in refused} == {401}
        assert (await next_json(opened[0]))["type"] == "hello"
        await opened[0].close()


async def test_an_expired_ticket_is_refused(make_actor: MakeActor, hub: Hub) -> None:
    b = await make_actor("000.00.01.H23")
    url = (await ticket_for(b))["url"]
    real_clock = hub.auth.clock
    hub.auth.clock = lambda: real_clock() + timedelta(seconds=31)  # the default lifetime is 30 s
    status, h, body = await refused_handshake(url)
    problem = assert_problem(status, h, body, 401, "auth.bad_ticket")
    assert "hết hạn" in problem["detail"]
    hub.auth.clock = real_clock
    status, h, body = await refused_handshake(url)  # and it is gone, not just late
    detail = assert_problem(status, h, body, 401, "auth.bad_ticket")["detail"]
    assert detail.startswith("vé mở luồng không tồn tại hoặc đã dùng")


@pytest.mark.parametrize("how", ["revoke the key", "suspend the unit"])
async def test_a_ticket_dies_with_its_key(make_actor: MakeActor, hub: Hub, how: str) -> None:
    b = await make_actor("000.00.01.H23")
    url = (await ticket_for(b))["url"]
    if how == "revoke the key":
        await hub.directory.revoke_key(b.key.access_key)
    else:
        await hub.directory.set_unit_status(b.unit, "suspended")
    status, h, body = await refused_handshake(url)
    assert_problem(status, h, body, 401, "auth.revoked_key")


async def test_a_ticket_is_bound_to_the_key_that_asked(make_actor: MakeActor, hub: Hub) -> None:
    """Another key of the same unit being revoked does not matter; the stream watches its own key."""
    b = await make_actor("000.00.01.H23")
    other = await make_actor("000.00.01.H23", existing=True)
    url = (await ticket_for(b))["url"]
    await hub.directory.revoke_key(other.key.access_key)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await next_json(ws))["unit"] == b.unit
        await hub.directory.revoke_key(b.key.access_key)  # the open stream ends within the re-check
        closed = await next_json(ws)
        assert closed == {"type": "stream.closed", "code": "auth.revoked_key",
                          "detail": f"access key {b.key.access_key} has been revoked"}
        final = await asyncio.wait_for(ws.receive(), 2.0)
        assert final.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


@pytest.mark.parametrize("ticket", ["", "x", "ET" + "A" * 42, "ET" + "A" * 44, "ET" + "A" * 40 + "%2F%2F",
                                    "ET" + "A" * 43])  # the last has the right shape but was never issued
async def test_bad_tickets_are_refused(make_actor: MakeActor, hub: Hub, ticket: str) -> None:
    await make_actor("000.00.01.H23")
    status, h, body = await refused_handshake(f"{hub.url}/v1/events?ticket={ticket}")
    assert_problem(status, h, body, 401, "auth.bad_ticket")


async def test_a_plain_get_does_not_spend_the_ticket(make_actor: MakeActor) -> None:
    b = await make_actor("000.00.01.H23")
    url = (await ticket_for(b))["url"].replace("ws:", "http:")
    status, h, body = await raw_request(url.split("/v1/")[0], "GET", "/v1/" + url.split("/v1/")[1])
    assert_problem(status, h, body, 400, "request.malformed")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await next_json(ws))["type"] == "hello"


async def test_a_ticket_and_a_signature_together_are_refused(make_actor: MakeActor, hub: Hub) -> None:
    b = await make_actor("000.00.01.H23")
    ticket = (await ticket_for(b))["ticket"]
    path = f"/v1/events?ticket={ticket}"
    signed = b.signer.headers("GET", "/v1/events", f"ticket={ticket}")
    status, h, body = await refused_handshake_with(hub.url + path, signed)
    assert_problem(status, h, body, 400, "request.malformed")


async def refused_handshake_with(url: str, extra: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=handshake_headers() | extra) as resp:
        return resp.status, dict(resp.headers), json.loads(await resp.read())


async def test_asking_for_a_ticket_is_a_signed_request_without_body(make_actor: MakeActor, hub: Hub) -> None:
    b = await make_actor("000.00.01.H23")
    assert (await ticket_for(b, b"{}"))["unit"] == b.unit
    status, h, body = await raw_request(hub.url, "POST", "/v1/events/tickets")
    assert_problem(status, h, body, 401, "auth.missing")
    for junk in (b'{"unit": "000.00.00.H23"}', b"[]"):
        status, h, body = await b.raw("POST", "/v1/events/tickets", junk)
        assert_problem(status, h, body, 422, "request.invalid")
    status, h, body = await b.raw("POST", "/v1/events/tickets", b"{",)
    assert_problem(status, h, body, 400, "request.malformed")
    status, h, body = await b.raw("POST", "/v1/events/tickets", b"", content_sha256=hashlib.sha256(b"x").hexdigest())
    assert_problem(status, h, body, 400, "content.hash_mismatch")


async def test_tickets_are_stored_hashed_and_swept(make_actor: MakeActor, hub: Hub) -> None:
    from sqlalchemy import select

    from lgsp.core.auth import Principal
    from lgsp.core.store.tables import stream_tickets

    b = await make_actor("000.00.01.H23")
    first = (await ticket_for(b))["ticket"]
    async with hub.db.read() as conn:
        stored = (await conn.execute(select(stream_tickets))).all()
    assert [r.ticket_hash for r in stored] == [hashlib.sha256(first.encode()).hexdigest()]
    assert first not in str(stored)
    real_clock = hub.auth.clock
    hub.auth.clock = lambda: real_clock() + timedelta(minutes=5)  # the first has expired by now
    key = await hub.auth.usable_key(b.key.access_key)
    second = await hub.tickets.issue(Principal(key.unit_id, key.application_id, key.access_key, key.algorithm))
    async with hub.db.read() as conn:
        stored = (await conn.execute(select(stream_tickets))).all()
    assert [r.ticket_hash for r in stored] == [hashlib.sha256(second.ticket.encode()).hexdigest()]
