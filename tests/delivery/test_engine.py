"""The engine across restarts, priorities and age limits (real hub, real receivers, real store)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
from datetime import timedelta

from lgsp.core.clock import ManualClock
from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.scheduler import job_id

from .helpers import (
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

SRC, DST, PULL = UNITS[0], UNITS[1], UNITS[3]


def push_cfg(cfg: Config, url: str, **target: object) -> Config:
    return with_delivery(cfg, targets={DST: {"protocol": "rest", "url": url, **target}}, probe_interval_seconds=0)


async def test_flash_and_very_urgent_overtake_a_normal_backlog(cfg: Config) -> None:
    async with receiver_server() as rr:
        rr.script.hold = asyncio.Event()
        cfg = push_cfg(cfg, rr.url, concurrency=1)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST, PULL])
            async with creds[SRC].client(hub.url) as src, creds[PULL].client(hub.url) as pull:
                first = await src.send(b"n0", [DST, PULL], subject="n0", priority=0)
                await wait_for(lambda: has_state(hub, first, DST, "sending"), what="the first push in flight")
                normals = [await src.send(f"n{i}".encode(), [DST, PULL], subject=f"n{i}", priority=0)
                           for i in range(1, 5)]
                urgent = await src.send(b"u", [DST, PULL], subject="u", priority=1)
                very = [await src.send(f"v{i}".encode(), [DST, PULL], subject=f"v{i}", priority=2) for i in range(2)]
                flash = [await src.send(f"f{i}".encode(), [DST, PULL], subject=f"f{i}", priority=3) for i in range(2)]
                inbox = [i["id"] for i in await pull.inbox()]
                rr.script.hold.set()
                await wait_for(lambda: len(rr.receiver.stored) == 10, what="all pushes")
            order = [r.packet_id for r in rr.receiver.receptions if not r.duplicate]
            assert order == [first, *flash, *very, urgent, *normals]
            # the pull destination's inbox orders the same backlog the same way
            assert inbox == [*flash, *very, urgent, first, *normals]


async def test_retry_job_survives_a_restart_and_fires_from_the_job_store(cfg: Config) -> None:
    async with receiver_server() as rr:
        rr.script.steps = [status(503)]
        cfg = fast_retries(push_cfg(cfg, rr.url), base=3.0, cap=3.0, jitter=0.0, poll=600)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"survive", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "retrying"), what="a scheduled retry")
            due = (await delivery_state(hub, pid, DST)).next_attempt_at
        # the hub is down; the job is in the job store file, due at the planned time
        with sqlite3.connect(cfg.data_dir / "scheduler.db") as db:
            rows = db.execute("SELECT id, next_run_time FROM scheduler_jobs").fetchall()
        assert rows == [(job_id(pid, DST), due.timestamp())]
        async with Hub(cfg) as hub:
            assert job_id(pid, DST) in await hub.engine.scheduler.jobs()  # type: ignore[union-attr]
            await wait_for(lambda: has_state(hub, pid, DST, "delivered"), timeout=10, what="delivery after restart")
            hits = [t for t, _, s in rr.script.hits if s == 200]
            assert hits[0] >= due.timestamp() - 0.01  # not before it was due
            assert hits[0] <= due.timestamp() + 2.0  # and not left for the 600 s queue poll
        with sqlite3.connect(cfg.data_dir / "scheduler.db") as db:
            assert db.execute("SELECT count(*) FROM scheduler_jobs").fetchone() == (0,)


async def test_attempt_cut_by_a_stop_is_retried_with_the_same_idempotency_key(cfg: Config) -> None:
    async with receiver_server() as rr:
        rr.script.hold = asyncio.Event()
        # the stop waits this long for the attempt in flight, then cuts it
        cfg = fast_retries(push_cfg(cfg, rr.url), base=0.2).replace(server={"shutdown_timeout_seconds": 0.5})
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"cut", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "sending"), what="an attempt in flight")
        rr.script.hold.set()  # the cut request now finds its connection gone
        async with Hub(cfg) as hub:
            await wait_for(lambda: has_state(hub, pid, DST, "delivered"), what="delivery after restart")
            row = await delivery_state(hub, pid, DST)
            async with hub.db.read() as conn:
                from sqlalchemy import select

                from lgsp.core.store.tables import packet_events
                retry = (await conn.execute(select(packet_events.c.type).where(
                    packet_events.c.packet_id == pid, packet_events.c.type == "delivery.retrying"))).all()
        assert row.attempts == 2
        assert row.last_error is None
        assert len(rr.receiver.stored) == 1
        assert {r.key for r in rr.receiver.receptions} == {f"{pid}:{DST}"}
        assert retry == []  # the interrupted attempt went straight back to the queue on start-up


async def test_max_age_expires_a_push_and_tells_the_source(cfg: Config) -> None:
    """Retries and the age limit follow the hub's clock: the test advances it instead of waiting."""
    clock = ManualClock()
    async with receiver_server() as rr:
        rr.script.steps = [status(503)] * 100
        # A fast queue poll: the retry is due on the hub's clock, which the retry scheduler's real timer
        # does not follow.
        cfg = fast_retries(push_cfg(cfg, rr.url), base=0.2, cap=0.3, attempts=1000, poll=0.05)
        pr = cfg.delivery.priorities
        cfg = with_delivery(cfg, priorities=dataclasses.replace(
            pr, flash=dataclasses.replace(pr.flash, max_age_seconds=1.5)))
        cfg = cfg.replace(presence={"sweep_interval_seconds": 3600})  # the test runs the rounds
        async with Hub(cfg, clock=clock) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"old", [DST], subject="s", priority=3)
                normal = await src.send(b"young", [DST], subject="s", priority=0)

                async def attempts(packet: str, at_least: int) -> bool:
                    row = await delivery_state(hub, packet, DST)
                    return row is not None and row.state == "retrying" and row.attempts >= at_least

                await wait_for(lambda: attempts(pid, 1), what="the first attempt failed")
                await hub.housekeeping_round()
                assert await has_state(hub, pid, DST, "retrying")  # not due yet on the hub's clock
                clock.advance(0.4)  # past the backoff (at most 0.3 s): the queue poll tries again
                await wait_for(lambda: attempts(pid, 2), what="the second attempt")
                clock.advance(1.5)  # now older than the flash limit

                async def expired() -> bool:
                    await hub.housekeeping_round()
                    return await has_state(hub, pid, DST, "expired")

                await wait_for(expired, timeout=8, what="expiry")

                async def purged() -> bool:  # the purge follows the committed expiry
                    return (await src.status(pid))["content"] == "purged"

                await wait_for(purged, timeout=5, what="purge after expiry")
                view = await src.status(pid)
            ev = [e for e in view["events"] if e["type"] == "packet.expired"]
            assert ev
            assert "not delivered within 1.5 seconds" in ev[0]["reason"]
            assert ev[0]["attempts"] >= 2
            assert view["content"] == "purged"
            # the normal packet (30 days) is still being retried
            assert (await delivery_state(hub, normal, DST)).state in ("retrying", "sending")


async def test_deadline_expires_a_pull_delivery(cfg: Config) -> None:
    clock = ManualClock()
    cfg = cfg.replace(presence={"sweep_interval_seconds": 3600})  # the test runs the round
    async with Hub(cfg, clock=clock) as hub:
        creds = await add_units(hub, [SRC, PULL])
        async with creds[SRC].client(hub.url) as src:
            deadline = (clock.now() + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            pid = await src.send(b"late", [PULL], subject="s", deadline=deadline)
            await hub.housekeeping_round()
            assert await has_state(hub, pid, PULL, "queued")  # not yet on the hub's clock
            clock.advance(2)
            await hub.housekeeping_round()
            assert await has_state(hub, pid, PULL, "expired")

            async def purged() -> bool:  # the purge follows the committed expiry
                return (await src.status(pid))["content"] == "purged"

            await wait_for(purged, timeout=5, what="purge after expiry")
            view = await src.status(pid)
        assert view["deliveries"][0]["reason"] == "deadline passed"


async def test_unit_removed_from_targets_pulls_what_was_queued_for_push(cfg: Config) -> None:
    async with receiver_server() as rr:
        rr.script.steps = [status(503)] * 10
        pushed = fast_retries(push_cfg(cfg, rr.url), base=30, cap=30)
        async with Hub(pushed) as hub:
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"switch", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "retrying"), what="retrying")
        async with Hub(cfg) as hub:  # DST is no longer a push target
            async with creds[DST].client(hub.url) as dst:
                inbox = await dst.inbox()
                assert [i["id"] for i in inbox] == [pid]
                data = await dst.fetch_bytes(pid)
                assert await dst.ack(pid, hashlib.sha256(data).hexdigest()) == "delivered"
            row = await delivery_state(hub, pid, DST)
            assert (row.mode, row.state) == ("pull", "delivered")
            assert await hub.engine.scheduler.jobs() == {}  # type: ignore[union-attr]

