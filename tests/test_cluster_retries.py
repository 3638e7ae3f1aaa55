"""The retry scheduler on two nodes sharing PostgreSQL (its jobs in the shared `scheduler_jobs` table).

Every node's APScheduler processes the shared table: a retry falling due may fire on both, which
only wakes each node's push lane; the delivery is claimed by one (`FOR UPDATE SKIP LOCKED`, a
conditional UPDATE), so it is attempted once. A node that dies leaves its jobs in the table, and a
survivor fires them when due. The queue poll is set to a minute here, so only the scheduler can
bring a retry back in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .conftest import base_env
from .delivery.helpers import (
    UNITS,
    add_units,
    delivery_state,
    fast_retries,
    has_state,
    hub_verifier,
    receiver_server,
    status,
    wait_for,
    with_delivery,
)

SRC, DST = UNITS[0], UNITS[1]


@contextlib.asynccontextmanager
async def _two_nodes(tmp_path: Path, pg_url: str, receiver_url: str, delay: float) -> AsyncIterator[list[Hub]]:
    env = base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url, LGSP_CLUSTER_HEARTBEAT_INTERVAL_SECONDS="0.5",
                   LGSP_CLUSTER_NODE_TIMEOUT_SECONDS="2", LGSP_PRESENCE_SWEEP_INTERVAL_SECONDS="0.5",
                   LGSP_SERVER_DRAIN_SECONDS="0")
    hubs = []
    for _ in range(2):
        cfg = fast_retries(load_config(None, env=env), base=delay, cap=delay, jitter=0.0, poll=60.0)
        cfg = with_delivery(cfg, targets={DST: {"protocol": "rest", "url": receiver_url}}, probe_interval_seconds=0)
        hubs.append(Hub(cfg))
    try:
        for hub in hubs:
            await hub.start()
        yield hubs
    finally:
        await asyncio.gather(*(h.stop() for h in hubs), return_exceptions=True)


def _scheduler_alive(hub: Hub) -> bool:
    scheduler = hub.engine.scheduler
    thread = scheduler._scheduler._thread if scheduler is not None and scheduler._scheduler is not None else None
    return thread is not None and thread.is_alive()


async def test_a_retry_due_on_two_nodes_is_attempted_once(pg_url: str, tmp_path: Path) -> None:
    """Packets whose first push fails: each retry falls due while both nodes run, both schedulers see
    it, and the delivery is attempted exactly once more. Both schedulers keep running (a job the
    other node already ran and removed is no error)."""
    async with receiver_server() as rr, _two_nodes(tmp_path, pg_url, rr.url, delay=1.0) as (a, b):
        rr.receiver.verify = await hub_verifier(a)
        creds = await add_units(a, [SRC, DST])
        packets = []
        async with creds[SRC].client(a.url) as src:
            for n in range(4):
                rr.script.steps.append(status(503))
                pid = await src.send(f"lần {n}".encode(), [DST], subject="Thử lại trên hai nút")
                await wait_for(lambda pid=pid: has_state(a, pid, DST, "delivered"), timeout=15,
                               what="the retry to be delivered")
                packets.append(pid)
        for pid in packets:
            row = await delivery_state(a, pid, DST)
            assert row.attempts == 2, (pid, row.attempts)
            assert [h[2] for h in rr.script.hits if h[1].startswith(pid)] == [503, 200]
        assert _scheduler_alive(a) and _scheduler_alive(b)
        await asyncio.sleep(1.5)  # every node has seen every job fall due by now
        assert _scheduler_alive(a) and _scheduler_alive(b)
        assert await a.engine.scheduler.jobs() == {}  # type: ignore[union-attr]


async def test_a_survivor_fires_the_retry_of_a_node_that_died(pg_url: str, tmp_path: Path) -> None:
    """The first push fails on one node, which stores the retry for 3 s later and stops. The other
    node fires it when due (not a minute later at its queue poll)."""
    async with receiver_server() as rr, _two_nodes(tmp_path, pg_url, rr.url, delay=3.0) as hubs:
        a = hubs[0]
        rr.receiver.verify = await hub_verifier(a)
        creds = await add_units(a, [SRC, DST])
        rr.script.steps.append(status(503))
        async with creds[SRC].client(a.url) as src:
            pid = await src.send(b"cong van", [DST], subject="Nút chết trước giờ thử lại")
        await wait_for(lambda: has_state(a, pid, DST, "retrying"), what="the failed first attempt")
        row = await delivery_state(a, pid, DST)
        due = row.next_attempt_at
        first = next(h for h in hubs if h.node == row.claimed_by)
        survivor = next(h for h in hubs if h is not first)
        await first.stop()  # its retry job stays in the shared table
        started = time.monotonic()
        await wait_for(lambda: has_state(survivor, pid, DST, "delivered"), timeout=20,
                       what="the survivor to fire the retry")
        took = time.monotonic() - started
        row = await delivery_state(survivor, pid, DST)
    assert row.claimed_by == survivor.node and row.attempts == 2
    assert row.updated_at >= due
    assert took < 10, took  # due 3 s after the failure: fired by the scheduler, not the minute's poll
    assert [h[2] for h in rr.script.hits] == [503, 200]

