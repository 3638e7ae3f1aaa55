"""Statistics kept incrementally (core/statistics.py) say what the raw rows say.

A generated history (several units, partners, data types, every end state, deadlines, failure
reasons, days) on real SQLite and PostgreSQL: the report read from the aggregates equals
`unit_report_raw` for every unit and for day, month, quarter and year periods and for periods
that start and end in the middle of a day; median and p95 within the stated bound. Changes after
a roll-up (old deliveries ending, a retry, new packets) are folded by the next round; a round run
twice, or two at once, counts nothing twice; an event id committed late is not lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import random
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from yarl import URL

from lgsp.core import statistics as st
from lgsp.core.reports import Counts, Report, period_bounds, unit_report, unit_report_raw
from lgsp.core.store.database import Database
from lgsp.core.store.tables import (
    deliveries,
    packet_events,
    packets,
    stats_delivery_times,
    stats_failures,
    stats_rollup,
    stats_sent,
    stats_traffic,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package

from bench.report_bench import fill, unit_id  # noqa: E402

from .conftest import PG_ADMIN_URL, pg_skip_reason  # noqa: E402

START = dt.date(2026, 3, 25)   # the history spans a month and a quarter boundary
DAYS = 10
UNITS = 6


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
        await database.upgrade()
        try:
            yield database
        finally:
            await database.close()
        return
    reason = await pg_skip_reason()
    if reason:
        pytest.skip(reason)
    import asyncpg

    name = f"lgsp_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database = Database(str(URL(PG_ADMIN_URL).with_scheme("postgresql+asyncpg").with_path("/" + name)))
    await database.upgrade()
    try:
        yield database
    finally:
        await database.close()
        admin = await asyncpg.connect(PG_ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _within(estimate: float | None, exact: float | None) -> bool:
    if exact is None or estimate is None:
        return estimate is exact
    return abs(estimate - exact) <= st.RELATIVE_ERROR * exact + 0.0015


def assert_same(agg: Report, raw: Report, *, live: bool = False) -> None:
    """Equal but for the quantiles (within the bound) and, for a period that includes now (`live`),
    the online ratio, whose end is the moment each report was computed."""
    a, r = agg.as_dict(), raw.as_dict()
    for d in (a, r):
        d["delivery_seconds"].pop("median")
        d["delivery_seconds"].pop("p95")
        if live:
            d.pop("online_ratio")
    assert a == r
    assert _within(agg.delivery_seconds_median, raw.delivery_seconds_median), (agg.delivery_seconds_median,
                                                                                 raw.delivery_seconds_median)
    assert _within(agg.delivery_seconds_p95, raw.delivery_seconds_p95), (agg.delivery_seconds_p95,
                                                                           raw.delivery_seconds_p95)


def periods() -> list[tuple[dt.datetime, dt.datetime]]:
    out = [period_bounds(p, START + dt.timedelta(days=d)) for p in ("day", "month", "quarter", "year")
           for d in (0, 3, 7)]
    vn = dt.timezone(dt.timedelta(hours=7))
    mid = dt.datetime.combine(START + dt.timedelta(days=2), dt.time(13, 17), tzinfo=vn)
    out += [(mid, mid + dt.timedelta(days=3, hours=5)),       # starts and ends mid-day
            (mid, mid + dt.timedelta(hours=4)),               # inside one day
            (mid - dt.timedelta(hours=20), mid)]              # across one midnight
    return out


async def check_all(db: Database) -> None:
    for since, until in periods():
        for i in range(UNITS):
            unit = unit_id(i)
            assert_same(await unit_report(db, unit, since, until), await unit_report_raw(db, unit, since, until))


async def _table_rows(db: Database) -> dict[str, list[Any]]:
    out = {}
    async with db.read() as conn:
        for table in (stats_sent, stats_traffic, stats_failures, stats_delivery_times):
            out[table.name] = sorted(tuple(r) for r in (await conn.execute(select(table))).all())
    return out


async def test_aggregates_equal_the_raw_computation(db: Database) -> None:
    counts = await fill(db, units=UNITS, days=DAYS, packets=600, start=START, events=True, seed=7)
    assert counts["deliveries"] > 600
    assert await st.watermark(db) is None          # never rolled up: the first round is the backfill
    assert await st.rollup(db)
    assert await st.watermark(db) is not None
    before = await _table_rows(db)
    assert before["stats_failures"] and before["stats_delivery_times"]
    await check_all(db)
    # A round with nothing new, and a second roller on another connection pool: nothing changes.
    assert await st.rollup(db)
    other = Database(db.url)
    try:
        assert await other.upgrade() is None
        assert await st.rollup(other)
    finally:
        await other.close()
    assert await _table_rows(db) == before


async def test_the_statistics_sum_into_the_report_s_own_counts(db: Database) -> None:
    """One definition of what a report counts: the aggregates are summed into the report's `Counts`
    in place, so no field list is kept twice (and copied between the two)."""
    assert issubclass(Report, Counts)
    assert [f.name for f in dataclasses.fields(st.Totals)] == ["counts", "histogram"]
    await fill(db, units=UNITS, days=DAYS, packets=200, start=START, events=True, seed=17)
    assert await st.rollup(db)
    since, until = period_bounds("month", START)
    report = Report(unit_id(0), since, until)
    async with db.read() as conn:
        got = await st.totals(conn, unit_id(0), since, until, counts=report)
    assert got.counts is report and report.sent_packets and report.by_partner and got.histogram
    expected = await unit_report(db, unit_id(0), since, until)
    assert {f.name: getattr(report, f.name) for f in dataclasses.fields(Counts)} == {
        f.name: getattr(expected, f.name) for f in dataclasses.fields(Counts)}


async def _change_history(db: Database, rng: random.Random) -> None:
    """What the exchange does later to packets of past days: waiting deliveries end (by moves the state
    tables allow), failed ones are retried, a packet of a past day appears; each change records its
    event, as the exchange does in its transaction."""
    async with db.read() as conn:
        open_ = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.updated_at)
                                    .where(deliveries.c.state.in_(("queued", "notified"))))).all()
        failed = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.updated_at)
                                     .where(deliveries.c.state == "failed").limit(3))).all()
    assert open_ and failed
    async with db.write() as conn:
        for r in open_[: len(open_) // 2]:
            end = rng.choice(("delivered", "failed"))
            at = r.updated_at + dt.timedelta(seconds=rng.uniform(1, 5000))
            await conn.execute(update(deliveries).where(deliveries.c.packet_id == r.packet_id,
                                                        deliveries.c.unit_id == r.unit_id)
                               .values(state=end, updated_at=at, reason="late" if end == "failed" else None))
            await conn.execute(packet_events.insert().values(packet_id=r.packet_id, at=at, type="packet." + end,
                                                             unit=r.unit_id))
        for r in failed:  # an operator's retry: back in the queue, no longer a failure
            await conn.execute(update(deliveries).where(deliveries.c.packet_id == r.packet_id,
                                                        deliveries.c.unit_id == r.unit_id)
                               .values(state="queued", reason=None))
            await conn.execute(packet_events.insert().values(packet_id=r.packet_id, at=r.updated_at,
                                                             type="delivery.retried", unit=r.unit_id))
        # A new packet of a past day (as if its creation committed late), to a unit and to itself.
        created = st.vn_midnight(START + dt.timedelta(days=1)) + dt.timedelta(hours=9)
        await conn.execute(packets.insert().values(
            id="00000000-0000-4000-8000-000000000001", source_unit=unit_id(0), subject="Mới", priority=1,
            data_type="new-type", size=1234, sha256="0" * 64, state="accepted", content_state="stored",
            created_at=created, upload_expires_at=created, accepted_at=created))
        await conn.execute(deliveries.insert(), [
            {"packet_id": "00000000-0000-4000-8000-000000000001", "unit_id": u, "state": "delivered", "priority": 1,
             "packet_created_at": created, "updated_at": created + dt.timedelta(seconds=3), "attempts": 1,
             "mode": "pull"} for u in (unit_id(0), unit_id(1))])
        await conn.execute(packet_events.insert().values(packet_id="00000000-0000-4000-8000-000000000001",
                                                         at=created, type="packet.created", unit=unit_id(0)))


async def test_later_changes_are_folded_by_the_next_round(db: Database) -> None:
    await fill(db, units=UNITS, days=DAYS, packets=300, start=START, events=True, seed=3)
    assert await st.rollup(db)
    await _change_history(db, random.Random(5))
    assert await st.rollup(db)
    await check_all(db)


async def test_two_rounds_at_once_count_nothing_twice(db: Database) -> None:
    await fill(db, units=UNITS, days=DAYS, packets=300, start=START, events=True, seed=11)
    others = [Database(db.url) for _ in range(2)]
    try:
        # Two processes (their own pools and locks) back-fill at once, then fold changes at once.
        assert all(await asyncio.gather(*(st.rollup(o) for o in others)))
        await _change_history(db, random.Random(9))
        assert all(await asyncio.gather(*(st.rollup(o) for o in others)))
    finally:
        for o in others:
            await o.close()
    rows = await _table_rows(db)
    assert await st.rollup(db)
    assert await _table_rows(db) == rows
    await check_all(db)


async def test_a_report_needing_too_much_folding_reads_the_raw_rows(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    try:
        await fill(db, units=UNITS, days=DAYS, packets=200, start=START, seed=2)
        since, until = period_bounds("year", START)
        assert not await st.rollup(db, max_pairs=1)   # a backlog larger than allowed: nothing done
        assert await st.watermark(db) is None
        monkeypatch.setattr(st, "REPORT_MAX_PAIRS", 1)  # a report folds at most one unit-day
        report = await unit_report(db, unit_id(0), since, until)
        assert await st.watermark(db) is None
        # The raw computation answered: the exact median, not the histogram's.
        assert report.as_dict() == (await unit_report_raw(db, unit_id(0), since, until)).as_dict()
        monkeypatch.undo()
        assert_same(await unit_report(db, unit_id(0), since, until), report)   # and now from the aggregates
        assert await st.watermark(db) is not None
    finally:
        await db.close()


async def test_an_event_committed_after_a_later_one_is_not_lost(pg_url: str) -> None:
    """PostgreSQL hands out event ids at insert: a transaction may commit after one holding a later
    id. The roll-up keeps the unseen id as a hole and folds it when it appears."""
    db = Database(pg_url)
    await db.upgrade()
    try:
        await fill(db, units=UNITS, days=DAYS, packets=100, start=START, events=True, seed=4)
        assert await st.rollup(db)
        async with db.read() as conn:
            victim = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.updated_at)
                                         .where(deliveries.c.state.in_(("queued", "notified")))
                                         .limit(1))).first()
            other = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id)
                                        .where(deliveries.c.state == "delivered").limit(1))).first()
        assert victim is not None and other is not None
        slow = await db.writer.connect()
        trans = await slow.begin()
        at = victim.updated_at + dt.timedelta(seconds=7)
        await slow.execute(update(deliveries).where(deliveries.c.packet_id == victim.packet_id,
                                                    deliveries.c.unit_id == victim.unit_id)
                           .values(state="delivered", updated_at=at))
        await slow.execute(packet_events.insert().values(packet_id=victim.packet_id, at=at, type="packet.delivered",
                                                         unit=victim.unit_id))
        async with db.write() as conn:   # a later id, committed first
            await conn.execute(packet_events.insert().values(packet_id=other.packet_id, at=at, type="packet.fetched",
                                                             unit=other.unit_id))
        assert await st.rollup(db)
        async with db.read() as conn:
            holes = await conn.scalar(select(stats_rollup.c.holes))
        assert holes and len(holes) == 1
        await trans.commit()
        await slow.close()
        assert await st.rollup(db)
        async with db.read() as conn:
            assert not await conn.scalar(select(stats_rollup.c.holes))
        await check_all(db)
    finally:
        await db.close()


def test_quantiles_from_the_histogram_are_within_the_bound() -> None:
    import statistics

    rng = random.Random(1)
    for n in (1, 2, 3, 10, 101, 5000):
        times = [rng.choice((0.0, 0.0004, rng.lognormvariate(1, 3))) for _ in range(n)]
        histogram: dict[int, int] = {}
        for value in times:
            histogram[st.bucket_of(value)] = histogram.get(st.bucket_of(value), 0) + 1
        median, p95 = st.quantiles(histogram)
        ordered = sorted(times)
        exact_p95 = ordered[min(n - 1, max(0, round(0.95 * n) - 1))]
        assert _within(median, statistics.median(times)) and _within(p95, exact_p95)
    for seconds in (0.001, 0.0011, 1.0, 59.9, 3600.0, 86400 * 29.0):
        assert abs(st.bucket_value(st.bucket_of(seconds)) - seconds) <= st.RELATIVE_ERROR * seconds + 1e-12
    assert st.bucket_of(86400 * 400.0) == st.LAST_BUCKET
    assert st.quantiles({}) == (None, None)


async def test_a_hub_s_own_exchanges_are_in_the_statistics(hub: Any, make_actor: Any) -> None:
    """Through the real exchange over HTTP: delivered, failed (with its reason), cancelled, with a
    deadline; the leader's housekeeping round rolls up, and a report folds what came after it."""
    a, b, c = [await make_actor(u) for u in ("000.00.00.H23", "000.00.01.H23", "000.00.02.H23")]
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = await a.client.send(b"hello", [b.unit, c.unit], subject="Một", data_type="edoc", deadline=deadline)
    body = await b.client.fetch_bytes(first)
    await b.client.ack(first, hashlib.sha256(body).hexdigest())
    await c.client.fail(first, "không đọc được")
    second = await a.client.send(b"12345678", [b.unit], subject="Hai")
    await a.client.cancel(second)
    assert await hub.housekeeping_round()          # the leader: its round rolls up
    mark = await st.watermark(hub.db)
    assert mark is not None
    await a.client.send(b"abc", [c.unit], subject="Ba", data_type="edoc")   # after the round
    since, until = period_bounds("year", dt.datetime.now(st.VIETNAM).date())
    for actor in (a, b, c):
        assert_same(await unit_report(hub.db, actor.unit, since, until),
                    await unit_report_raw(hub.db, actor.unit, since, until), live=True)
    report = await unit_report(hub.db, a.unit, since, until)
    assert (report.sent_packets, report.sent_bytes, report.delivered, report.with_deadline) == (3, 16, 1, 2)
    assert report.by_partner == {b.unit: {"sent": 2}, c.unit: {"sent": 2}}
    assert report.failures == {"failed: không đọc được": 1, "cancelled: cancelled by the source": 1}
    assert report.delivered_before_deadline == 1 and report.delivery_seconds_median is not None
    assert (await unit_report(hub.db, c.unit, since, until)).by_data_type == {"edoc": {"received": 2}}
    assert (await st.watermark(hub.db) or 0) > mark


async def test_the_backfill_goes_a_step_per_housekeeping_round(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub with long history back-fills a bounded step per round; a report meanwhile reads the raw
    rows; two rollers stepping at once count nothing twice."""
    await fill(db, units=UNITS, days=DAYS, packets=300, start=START, events=True, seed=13)
    monkeypatch.setattr(st, "BACKFILL_STEP", 7)
    monkeypatch.setattr(st, "REPORT_MAX_PAIRS", 5)
    steps = 0
    other = Database(db.url)
    try:
        while not all(await asyncio.gather(st.rollup(db, backfill_steps=1), st.rollup(other, backfill_steps=1))):
            steps += 1
            assert steps < 100
            if steps == 2:
                async with db.read() as conn:
                    progress = await conn.scalar(select(stats_rollup.c.holes))
                assert await st.watermark(db) is None and progress["after"]
                since, until = period_bounds("month", START)
                raw = await unit_report_raw(db, unit_id(1), since, until)
                assert (await unit_report(db, unit_id(1), since, until)).as_dict() == raw.as_dict()
    finally:
        await other.close()
    assert steps >= 3
    monkeypatch.undo()
    await check_all(db)
