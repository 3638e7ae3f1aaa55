"""Two nodes sharing PostgreSQL: an event committed on one reaches the streams open on the other."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.cluster import CHANNEL
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .conftest import base_env, wait_for
from .test_exchange import next_message


@pytest.fixture
async def two_nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, Hub]]:
    env = base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url)
    a, b = Hub(load_config(None, env=env)), Hub(load_config(None, env=env))
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop(), return_exceptions=True)


async def _client(hub: Hub, unit: str) -> LgspClient:
    await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    app = await hub.directory.add_application(unit, "vbql")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    return LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))


async def test_an_upload_on_one_node_reaches_a_stream_on_the_other(two_nodes: tuple[Hub, Hub]) -> None:
    a, b = two_nodes
    assert a.node != b.node
    src = await _client(a, "000.00.00.H23")
    dst = await _client(a, "000.00.01.H23")
    dst_on_b = LgspClient(Credentials(b.url, dst.credentials.access_key, "HMAC-SHA256",
                                      secret=dst.credentials.secret))
    src_on_b = LgspClient(Credentials(b.url, src.credentials.access_key, "HMAC-SHA256",
                                      secret=src.credentials.secret))
    try:
        async with dst_on_b.events() as dst_stream, src_on_b.events() as src_stream:
            assert (await next_message(dst_stream))["type"] == "hello"
            assert (await next_message(src_stream))["type"] == "hello"
            content = os.urandom(10_000)
            pid = await src.send(content, ["000.00.01.H23"], subject="Qua nút A")
            available = await next_message(dst_stream, timeout=2.0)  # "within a second", with margin for CI
            assert available["type"] == "packet.available" and available["id"] == pid
            data = await dst.fetch_bytes(pid)
            await dst.ack(pid, hashlib.sha256(data).hexdigest())  # acknowledged on node A as well
            delivered = await next_message(src_stream, timeout=2.0, skip=("packet.accepted",))
            assert delivered["type"] == "packet.delivered" and delivered["id"] == pid
    finally:
        await asyncio.gather(src.close(), dst.close(), dst_on_b.close(), src_on_b.close())


async def test_a_lost_notification_is_caught_up_from_the_store(two_nodes: tuple[Hub, Hub]) -> None:
    a, b = two_nodes
    assert a.cluster is not None
    src = await _client(a, "000.00.00.H23")
    dst = await _client(a, "000.00.01.H23")
    dst_on_b = LgspClient(Credentials(b.url, dst.credentials.access_key, "HMAC-SHA256",
                                      secret=dst.credentials.secret))
    try:
        async with dst_on_b.events() as stream:
            assert (await next_message(stream))["type"] == "hello"
            a.bus.observers.remove(a.cluster._outgoing)  # node A no longer notifies: as if lost
            pid = await src.send(b"x" * 100, ["000.00.01.H23"], subject="Thông báo bị mất")
            available = await next_message(stream, timeout=8.0)  # within the catch-up period
            assert available["type"] == "packet.available" and available["id"] == pid
    finally:
        await asyncio.gather(src.close(), dst.close(), dst_on_b.close())


async def test_foreign_and_malformed_notifications_are_ignored(two_nodes: tuple[Hub, Hub]) -> None:
    import asyncpg

    a, _ = two_nodes
    conn = await asyncpg.connect(a.db.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for payload in ("", "nodeonly", "other 1,x,3", "other " + "9" * 30):
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        await asyncio.sleep(0.5)
        assert a.started and a.cluster is not None and a.cluster._tasks and not any(t.done() for t in a.cluster._tasks)
    finally:
        await conn.close()


async def test_one_node_leads_and_another_takes_over_when_it_stops(pg_url: str, tmp_path: Path) -> None:
    """Singleton work (expiry, offline reports, clean-up) runs on the node holding the lock only."""
    env = base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url, LGSP_PRESENCE_SWEEP_INTERVAL_SECONDS="0.2")
    a, b = Hub(load_config(None, env=env)), Hub(load_config(None, env=env))
    swept = {"a": 0, "b": 0}
    await a.start()
    await b.start()
    try:
        for name, hub in (("a", a), ("b", b)):
            original = hub.exchange.sweep

            async def counted(*args: object, _name: str = name, _orig: object = original, **kw: object) -> object:
                swept[_name] += 1
                return await _orig(*args, **kw)  # type: ignore[operator]

            hub.exchange.sweep = counted  # type: ignore[method-assign]
        assert a.leadership.leader and not b.leadership.leader  # the first node started leads
        await asyncio.sleep(1.0)
        assert swept["a"] >= 2 and swept["b"] == 0
        await a.stop()
        await wait_for(lambda: b.leadership.leader, timeout=10.0, what="node B to take the lead")
        before = swept["b"]
        await wait_for(lambda: swept["b"] > before, timeout=5.0, what="node B to run the singleton work")
    finally:
        await asyncio.gather(a.stop(), b.stop(), return_exceptions=True)


async def test_sqlite_has_one_node_which_leads(hub: Hub) -> None:
    assert hub.leadership.leader and await hub.leadership.try_lead()


async def test_events_committed_meanwhile_share_one_notification(two_nodes: tuple[Hub, Hub]) -> None:
    """Batches of events published while the node's sender waits go out as one NOTIFY (one round
    trip for them all), still split under PostgreSQL's payload limit."""
    from datetime import UTC, datetime

    import asyncpg

    from lgsp.core.cluster import MAX_PAYLOAD
    from lgsp.core.events import Event

    a, _ = two_nodes
    assert a.cluster is not None
    heard: list[str] = []
    conn = await asyncpg.connect(a.db.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.add_listener(CHANNEL, lambda *args: heard.append(args[-1]))
        base = 10**9
        for i in range(5):  # five commits' batches, no await between them
            a.cluster._outgoing([Event(seq=base + i, type="packet.available", packet_id="p", at=datetime.now(UTC),
                                       unit="u", audience="u")])
        await wait_for(lambda: bool(heard), timeout=5.0, what="the notification")
        await asyncio.sleep(0.3)
        assert heard == [f"{a.node} " + ",".join(str(base + i) for i in range(5))]
    finally:
        await conn.close()
    many = a.cluster.payloads(list(range(base, base + 2000)))
    assert len(many) > 1 and all(len(p) < MAX_PAYLOAD for p in many)
    assert [int(s) for p in many for s in p.partition(" ")[2].split(",")] == list(range(base, base + 2000))
