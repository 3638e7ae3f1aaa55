"""Nodes sharing PostgreSQL: heartbeats, presence held by any live node, and claims with owners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, func, select, update

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import deliveries, nodes, packet_events, presence_log, stream_holders, units

from .conftest import base_env, wait_for
from .test_exchange import next_message

SRC, DST = "000.00.00.H23", "000.00.01.H23"


def _env(tmp_path: Path, pg_url: str, **extra: str) -> dict[str, str]:
    return base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url, LGSP_CLUSTER_HEARTBEAT_INTERVAL_SECONDS="0.3",
                    LGSP_CLUSTER_NODE_TIMEOUT_SECONDS="1.5", LGSP_PRESENCE_SWEEP_INTERVAL_SECONDS="0.3", **extra)


@contextlib.asynccontextmanager
async def _nodes(env: dict[str, str], count: int) -> AsyncIterator[list[Hub]]:
    hubs = [Hub(load_config(None, env=env)) for _ in range(count)]
    try:
        for hub in hubs:  # one after the other: the first started leads
            await hub.start()
        yield hubs
    finally:
        await asyncio.gather(*(h.stop() for h in hubs), return_exceptions=True)


async def _credentials(hub: Hub, unit: str) -> Credentials:
    await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    app = await hub.directory.add_application(unit, "vbql")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    return Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)


def _on(hub: Hub, creds: Credentials) -> LgspClient:
    return LgspClient(Credentials(hub.url, creds.access_key, creds.algorithm, secret=creds.secret))


async def _scalar(hub: Hub, stmt: Any) -> Any:
    async with hub.db.read() as conn:
        return await conn.scalar(stmt)


def _kill(hub: Hub) -> None:
    """As a node killed at once looks to the others: no more heartbeats (its row stays)."""
    for task in hub._tasks:
        if task.get_name() == "lgsp-heartbeat":
            task.cancel()


async def _age(hub: Hub, node: str, seconds: float) -> None:
    async with hub.db.write() as conn:
        await conn.execute(update(nodes).where(nodes.c.id == node).values(
            heartbeat_at=hub.clock() - timedelta(seconds=seconds)))


async def test_nodes_beat_and_a_clean_stop_leaves_at_once(pg_url: str, tmp_path: Path) -> None:
    async with _nodes(_env(tmp_path, pg_url), 2) as (a, b):
        assert sorted(await a.nodes.live_nodes()) == sorted([a.node, b.node])
        beats = a.nodes.beats
        await wait_for(lambda: a.nodes.beats >= beats + 2, timeout=5, what="two heartbeats")
        await a.stop()
        assert await b.nodes.live_nodes() == [b.node]
        _kill(b)
        await asyncio.sleep(2.0)  # past the timeout without a heartbeat: dead, though its row stays
        assert await b.nodes.live_nodes() == []
        assert await _scalar(b, select(func.count()).select_from(nodes)) == 1


async def test_a_live_nodes_claim_survives_another_start_and_a_dead_nodes_is_taken_back(
        pg_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, pg_url)
    async with _nodes(env, 1) as (a,):
        creds = await _credentials(a, SRC)
        await _credentials(a, DST)
        async with _on(a, creds) as src:
            live = await src.send(b"live", [DST], subject="Nút A đang gửi")
            dead = await src.send(b"dead", [DST], subject="Nút đã chết đang gửi")
        async with a.db.write() as conn:  # both in flight as pushes: one claimed by A, one by a dead node
            await conn.execute(nodes.insert().values(id="dead-node", host="h", pid=1, started_at=a.clock(),
                                                     heartbeat_at=a.clock() - timedelta(hours=1)))
            for pid, node in ((live, a.node), (dead, "dead-node")):
                await conn.execute(update(deliveries).where(deliveries.c.packet_id == pid).values(
                    state="sending", mode="push", protocol="rest", claimed_by=node, last_attempt_at=a.clock()))
        async with _nodes(env, 1) as (b,):  # start-up recovery on node B
            async with b.db.read() as conn:
                states = {r.packet_id: r.state for r in (await conn.execute(
                    select(deliveries.c.packet_id, deliveries.c.state))).all()}
            assert states[live] == "sending"  # node A is alive: its attempt is its own
            assert states[dead] in ("retrying", "queued")  # retried (DST pulls here: queued for it)
            assert await a.engine.release_stale() == 0 and await b.engine.release_stale() == 0
            _kill(a)
            await _age(b, a.node, 60)
            assert await b.engine.release_stale() == 1  # A died: its claim is taken back
            assert await _scalar(b, select(deliveries.c.state).where(deliveries.c.packet_id == live)) == "retrying"


async def _online(hub: Hub, unit: str) -> bool:
    return bool(await _scalar(hub, select(units.c.online).where(units.c.id == unit)))


async def _causes(hub: Hub, unit: str) -> list[tuple[bool, str]]:
    async with hub.db.read() as conn:
        rows = (await conn.execute(select(presence_log.c.online, presence_log.c.cause)
                                   .where(presence_log.c.unit_id == unit).order_by(presence_log.c.id))).all()
    return [(r.online, r.cause) for r in rows]


@pytest.mark.parametrize("end", ["killed", "stopped"])
async def test_a_unit_stays_online_while_any_live_node_holds_its_stream(pg_url: str, tmp_path: Path,
                                                                        end: str) -> None:
    """The stream on node A keeps the unit online though node B's window for it passes; when A dies
    (no heartbeat for the timeout) or stops, the unit goes offline once, and its sources are told."""
    env = _env(tmp_path, pg_url, LGSP_PRESENCE_ONLINE_WINDOW_SECONDS="1",
               LGSP_PRESENCE_OFFLINE_REPORT_AFTER_SECONDS="0.5")
    async with _nodes(env, 2) as (b, a):  # B started first: B leads
        assert b.leadership.leader
        src_creds = await _credentials(b, SRC)
        dst_creds = await _credentials(b, DST)
        async with (_on(a, dst_creds) as dst_a, _on(b, dst_creds) as dst_b, _on(b, src_creds) as src,
                    dst_a.events() as stream):
            assert (await next_message(stream))["type"] == "hello"
            await wait_for(lambda: _scalar(b, select(stream_holders.c.streams).where(
                and_(stream_holders.c.node_id == a.node, stream_holders.c.unit_id == DST))), what="holder row")
            await dst_b.inbox()  # a signed request on B too: B's own window starts
            assert await _online(b, DST)
            await asyncio.sleep(2.5)  # B's window passed, B's sweep ran several times
            assert await _online(b, DST)
            assert (False, "timeout") not in await _causes(b, DST)
            await src.send(b"x", [DST], subject="Chờ đơn vị nhận")
            if end == "killed":
                _kill(a)
                await wait_for(lambda: _not(_online(b, DST)), timeout=8, what="offline after node A died")
            else:
                await a.stop()
                await wait_for(lambda: _not(_online(b, DST)), timeout=3, what="offline after node A stopped")
        causes = await _causes(b, DST)
        flips, online = [], False
        for now_online, cause in causes:
            if online and not now_online:
                flips.append(cause)
            online = now_online
        # Offline once (not once per node), by the leader's sweep or by A's last stream closing.
        assert flips == (["timeout"] if end == "killed" else ["stream_close"]), causes
        await wait_for(lambda: _scalar(b, select(func.count()).select_from(packet_events).where(
            packet_events.c.type == "destination.offline", packet_events.c.audience == SRC)),
            timeout=5, what="the source told its destination is offline")


async def _not(value: Any) -> bool:
    return not await value


async def test_a_node_starting_leaves_units_another_node_holds_online(pg_url: str, tmp_path: Path) -> None:
    """Start-up clean-up of stale presence (`reset_stale`) skips units whose stream a live node holds,
    and a request seen by one node keeps the unit online when its stream on another node closes."""
    env = _env(tmp_path, pg_url, LGSP_PRESENCE_ONLINE_WINDOW_SECONDS="4")
    async with _nodes(env, 1) as (a,), contextlib.AsyncExitStack() as later:
        dst_creds = await _credentials(a, DST)
        async with _on(a, dst_creds) as dst_a, dst_a.events() as stream:
            assert (await next_message(stream))["type"] == "hello"
            await wait_for(lambda: _scalar(a, select(stream_holders.c.streams).where(
                stream_holders.c.unit_id == DST)), what="holder row")
            await asyncio.sleep(4.5)  # the last signed request is older than the window
            (b,) = await later.enter_async_context(_nodes(env, 1))
            assert await _online(b, DST)  # node B's start did not take it offline
            assert (False, "timeout") not in await _causes(b, DST)
            dst_b = await later.enter_async_context(_on(b, dst_creds))
            await dst_b.inbox()  # seen by node B within the window
            await asyncio.sleep(1.2)  # node B flushed it
        await asyncio.sleep(1.2)  # the stream on node A closed and A flushed: B's request keeps it online
        assert await _online(a, DST), await _causes(a, DST)
        assert await _causes(a, DST) == [(True, "request"), (True, "stream_open"), (True, "stream_close")]
        await wait_for(lambda: _not(_online(a, DST)), timeout=10, what="offline once B's window passed")
