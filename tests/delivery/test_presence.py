"""Presence (streams, requests, push probes) and `destination.offline` reports, against a real hub."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select

from lgsp.core.clock import ManualClock
from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import presence_log, units

from .helpers import UNITS, add_units, hub_verifier, receiver_server, wait_for, with_delivery

S1, S2, S3, DST, LIVE, PUSHED = UNITS


def offline_cfg(cfg: Config, after: float = 1.0, repeat: float = 2.0) -> Config:
    return cfg.replace(presence={"sweep_interval_seconds": 0.2, "offline_report_after_seconds": after,
                                 "offline_report_repeat_seconds": repeat, "online_window_seconds": 1})


@contextlib.asynccontextmanager
async def collect(client: Any, into: list[dict[str, Any]]):
    """Keep a unit's event stream open, appending every message (hello changes included)."""
    async def run() -> None:
        async with client.events() as stream:
            async for message in stream:
                if message["type"] == "hello":
                    into.extend(message["changes"])
                else:
                    into.append(message | {"_t": time.monotonic()})
    task = asyncio.create_task(run())
    await asyncio.sleep(0.2)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def reports(messages: list[dict[str, Any]], about: str = DST) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "destination.offline" and m["unit"] == about]


async def test_offline_destination_reported_once_per_interval_to_each_affected_source(cfg: Config) -> None:
    """Time moves on the hub's clock (core/clock.py), not by sleeping: each step is one exact interval."""
    repeat = 2.0
    clock = ManualClock()
    # The test runs the rounds itself, right after each step (no housekeeping loop in between).
    cfg = offline_cfg(cfg, after=1.0, repeat=repeat).replace(presence={"sweep_interval_seconds": 3600})
    async with Hub(cfg, clock=clock) as hub:
        creds = await add_units(hub, [S1, S2, S3, DST, LIVE])
        clock.catch_up()  # the units' created_at (the offline spell's start) is not in the clock's future
        got1: list[dict[str, Any]] = []
        got2: list[dict[str, Any]] = []
        got3: list[dict[str, Any]] = []
        async with creds[S1].client(hub.url) as c1, creds[S2].client(hub.url) as c2, \
                creds[S3].client(hub.url) as c3, creds[LIVE].client(hub.url) as live:
            live_msgs: list[dict[str, Any]] = []
            async with collect(live, live_msgs), collect(c1, got1), collect(c3, got3):
                p1 = [await c1.send(f"a{i}".encode(), [DST], subject="a") for i in range(2)]
                p2 = await c2.send(b"b", [DST, LIVE], subject="b")
                await c3.send(b"c", [LIVE], subject="c")  # its destination is online: nothing to report

                async def step(seconds: float, expected: int) -> None:
                    """Advance the clock, run the round; `expected` reports to S1 so far."""
                    due = expected > len(reports(got1))
                    clock.advance(seconds)
                    hub.presence.sweep()
                    await hub.presence.flush()
                    sent = await hub.offline.run()  # one per source told: S1 and S2, or none
                    assert sent == (2 if due else 0), (seconds, expected, sent)
                    await wait_for(lambda: len(reports(got1)) >= expected, timeout=5,
                                   what=f"{expected} report(s) to S1")
                    assert len(reports(got1)) == expected, reports(got1)

                await step(0.5, 0)  # not offline for `after` yet
                await step(1.0, 1)  # offline for longer than `after`: the first report
                await step(repeat - 0.1, 1)  # the interval has not passed
                await step(0.1, 2)  # it has: one more
                await step(repeat, 3)
                # S2 was not listening: its reports wait in the store for its next stream
                async with collect(c2, got2):
                    await wait_for(lambda: len(reports(got2)) >= 3, timeout=5, what="S2's reports in its hello")
                    # the destination comes online: no more reports
                    async with creds[DST].client(hub.url) as dst, dst.events() as _:
                        await wait_for(lambda: hub.presence.is_online(DST), what="DST online")
                        await step(repeat + 0.6, 3)
                        await step(repeat, 3)
                        presence = await c1.call("GET", f"/v1/units/{DST}/presence")
                        assert presence["online"] is True
                        assert presence["transitions"][0]["cause"] == "stream_open"
        r1 = reports(got1)
        # one report per interval: the first after the threshold, then one each `repeat` seconds
        times = [datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in r1]
        assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [repeat, repeat]
        assert all(sorted(r["packets"]) == sorted(p1) and r["count"] == 2 for r in r1)
        assert r1[0]["offline_since"]
        assert "id" not in r1[0]
        # S2 got the same reports, listing only its own packet, in its hello
        r2 = reports(got2)
        assert len(r2) == len(r1)
        assert all(r["packets"] == [p2] for r in r2)
        # nobody is told about an online destination; S3 has nothing waiting for DST
        assert reports(got3) == []
        assert reports(got1, LIVE) == []
        assert reports(got2, LIVE) == []
        # the report times are in the store: a restarted hub does not repeat them early
    async with Hub(cfg, clock=clock) as hub:
        await hub.offline.run()
        async with hub.db.read() as conn:
            from sqlalchemy import func, select

            from lgsp.core.store.tables import packet_events
            total = await conn.scalar(select(func.count()).select_from(packet_events).where(
                packet_events.c.type == "destination.offline", packet_events.c.audience == S1))
        assert total == len(r1)


async def test_presence_endpoint_inbox_and_status_show_online_state(cfg: Config) -> None:
    cfg = offline_cfg(cfg)
    clock = ManualClock()
    async with Hub(cfg, clock=clock) as hub:
        creds = await add_units(hub, [S1, DST])
        async with creds[S1].client(hub.url) as src, creds[DST].client(hub.url) as dst:
            before = await src.call("GET", f"/v1/units/{DST}/presence")
            assert before["online"] is False
            assert before["last_seen_at"] is None
            assert before["mode"] == "pull"
            assert before["offline_since"]
            pid = await src.send(b"x", [DST], subject="s")
            inbox = await dst.inbox()
            assert inbox[0]["from_online"] is True
            assert inbox[0]["from_last_seen_at"]
            view = await src.status(pid)
            d = view["deliveries"][0]
            assert d["online"] is True
            assert d["last_seen_at"]
            await hub.presence.flush()  # the store says online (as the periodic flush would, at any moment)
            clock.advance(1.6)  # online window (1 s) passes without requests from dst
            after = await src.call("GET", f"/v1/units/{DST}/presence")
            assert after["online"] is False  # at once: the view follows the clock, not the store
            await hub.housekeeping_round()  # the sweep records the transition
            after = await src.call("GET", f"/v1/units/{DST}/presence")
            causes = [t["cause"] for t in after["transitions"]]
            assert causes[:2] == ["timeout", "request"]
            missing = await _problem(src.call("GET", "/v1/units/000.00.99.H23/presence"))
            assert missing == "not_found"


async def test_push_unit_presence_follows_its_health_probe(cfg: Config) -> None:
    """The live view follows the prober at once; each transition it shows is stored by the next flush.

    Nothing here depends on how fast the machine is: the waits are for what the prober sees (its
    own pace, every 0.2 s), with deadlines far beyond it, and the stored transitions are read after a
    flush the test runs itself, not after the periodic one (every second, and later under load).
    """
    async with receiver_server() as rr:
        cfg = with_delivery(offline_cfg(cfg), targets={PUSHED: {"protocol": "rest", "url": rr.url,
                                                                 "probe_interval_seconds": 0.2}})
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [S1, PUSHED])
            async with creds[S1].client(hub.url) as src:
                async def online() -> bool:
                    return (await src.call("GET", f"/v1/units/{PUSHED}/presence"))["online"]

                async def latest() -> tuple[str, bool]:
                    """The latest stored transition, once what the view has shown is stored."""
                    await hub.presence.flush()   # returns once every observation made before it is stored
                    view = await src.call("GET", f"/v1/units/{PUSHED}/presence")
                    assert view["transitions"], view
                    return view["transitions"][0]["cause"], view["transitions"][0]["online"]

                await wait_for(online, timeout=PROBE_DEADLINE, what="probe up")
                view = await src.call("GET", f"/v1/units/{PUSHED}/presence")
                assert view["mode"] == "push"
                assert view["protocol"] == "rest"
                await rr.stop()
                await wait_for(lambda: _not(online), timeout=PROBE_DEADLINE, what="probe down")
                # The failed probe that turned the view offline logged its transition in the same step.
                assert await latest() == ("probe_failed", False)
                await rr.start()
                await wait_for(online, timeout=PROBE_DEADLINE, what="probe up again")
                assert await latest() == ("probe_ok", True)


#: How long a test waits for the prober (every 0.2 s, each probe at most 1 s) to see a change: ample
#: for a loaded machine, and a real failure still ends the test.
PROBE_DEADLINE = 30.0


async def _not(fn: Any) -> bool:
    return not await fn()


async def _problem(coro: Any) -> str:
    from lgsp.client import LgspError

    try:
        await coro
    except LgspError as exc:
        return exc.code
    return "no error"


async def test_unit_online_when_the_hub_stopped_times_out_after_a_restart(cfg: Config) -> None:
    """The store says online; the restarted hub has not seen the unit: the window still applies."""
    cfg = offline_cfg(cfg)
    clock = ManualClock()
    async with Hub(cfg, clock=clock) as hub:
        creds = await add_units(hub, [S1, DST])
        async with creds[DST].client(hub.url) as dst:
            await dst.inbox()  # a signed request: online
        await hub.presence.flush()
    async with Hub(cfg, clock=clock) as hub, creds[S1].client(hub.url) as src:
        assert (await src.call("GET", f"/v1/units/{DST}/presence"))["online"] is True  # within the window
        clock.advance(1.5)  # the window (1 s) passes
        await hub.housekeeping_round()
        assert (await src.call("GET", f"/v1/units/{DST}/presence"))["online"] is False
        transitions = (await src.call("GET", f"/v1/units/{DST}/presence"))["transitions"]
        assert [t["cause"] for t in transitions[:2]] == ["timeout", "request"]


async def test_a_unit_seen_before_it_is_registered_does_not_block_presence(cfg: Config) -> None:
    """A push target probed before `lgsp unit add` must not fail every flush for every unit: the others'
    observations are stored at once, and its own state once it exists."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from lgsp.core.store.tables import presence_log, units

    async with Hub(cfg) as hub:
        await add_units(hub, [S1])
        now = datetime.now(UTC)
        hub.presence.probe_result(PUSHED, True, now)  # not in the directory yet
        hub.presence.request_seen(S1, now, 0.0)
        await hub.presence.flush()
        async with hub.db.read() as conn:
            logged = (await conn.execute(select(presence_log.c.unit_id))).scalars().all()
            s1 = (await conn.execute(select(units.c.online).where(units.c.id == S1))).scalar_one()
        assert set(logged) == {S1} and s1 is True
        await add_units(hub, [PUSHED])
        await hub.presence.flush()
        async with hub.db.read() as conn:
            pushed = (await conn.execute(select(units.c.online, units.c.last_seen_at)
                                         .where(units.c.id == PUSHED))).one()
        assert pushed.online is True and pushed.last_seen_at is not None


async def test_a_transition_observed_during_a_flush_is_recorded_by_the_next(cfg: Config) -> None:
    """A flush stores the state its batch of transitions describes. A probe that fails while a flush is
    writing is stored, with its transition, by the next flush: not written early by the running one,
    which would leave the next nothing to record (a push unit offline with no `probe_failed` in its log)."""
    async with Hub(cfg) as hub:
        await add_units(hub, [PUSHED])
        presence = hub.presence
        presence.probe_result(PUSHED, True)
        await presence.flush()
        presence.probe_result(PUSHED, True)   # an observation: the unit is in the next flush's batch
        async with hub.db.write():   # the store is busy: the next flush takes its batch, then waits for it
            flushing = asyncio.create_task(presence.flush())
            await wait_for(lambda: not presence._units[PUSHED].dirty, what="a flush took its batch")
            presence.probe_result(PUSHED, False)   # meanwhile the probe fails
        await flushing
        await presence.flush()
        async with hub.db.read() as conn:
            stored = await conn.scalar(select(units.c.online).where(units.c.id == PUSHED))
            log = (await conn.execute(select(presence_log.c.cause, presence_log.c.online)
                                      .where(presence_log.c.unit_id == PUSHED).order_by(presence_log.c.id))).all()
        assert stored is False
        assert [tuple(row) for row in log] == [("probe_ok", True), ("probe_failed", False)]


async def test_a_failed_probe_is_offline_at_once_whatever_the_store_last_saw(cfg: Config) -> None:
    """The live view agrees with the flush: the probe's failure outranks the unit's last-seen time
    (its own earlier probe) within the online window, whether or not that time was stored yet."""
    clock = ManualClock()
    async with Hub(cfg, clock=clock) as hub:
        await add_units(hub, [PUSHED])
        clock.catch_up()
        presence = hub.presence
        presence.probe_result(PUSHED, True)
        await presence.flush()   # the store's last-seen time is now this probe's, inside the window
        clock.advance(1)
        presence.probe_result(PUSHED, False)
        view = await presence.view(PUSHED)
        assert view is not None and view["online"] is False
        await presence.flush()
        view = await presence.view(PUSHED)
        assert view is not None and view["online"] is False
        assert [(t["cause"], t["online"]) for t in view["transitions"]][:1] == [("probe_failed", False)]
