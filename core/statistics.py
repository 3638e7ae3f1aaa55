"""Statistics kept incrementally: what `core.reports.unit_report` reads instead of every raw row.

**What is kept.** For each source unit and Vietnam day (UTC+7) of packet creation — a *pair* —
the tables `stats_sent` (per data type: packets with a delivery, bytes, deliveries, deliveries with a
deadline, delivered, delivered on time), `stats_traffic` (per destination and data type: deliveries
and bytes), `stats_failures` (per reason, as the report labels it) and `stats_delivery_times` (a
histogram of acceptance-to-delivered times). A unit's received traffic is the `stats_traffic` rows
naming it as destination, so every fact belongs to exactly one pair.

**How it is kept, off the hot path.** The exchange writes nothing more: the roll-up (`rollup`) reads
the events recorded since its watermark (`packet_events.id`; every change to a packet or delivery
records one in its transaction), finds the pairs of the packets they name, and recomputes those pairs
whole from the raw rows. A pair's rows are replaced, never added to, and each chunk of pairs reads
the raw rows inside the very transaction that writes them, after locking the roll-up's state row, so
a round run twice, or on two nodes or processes at once, cannot double-count or write older numbers
over newer ones; the watermark moves in a transaction that checks it is still the one the round
started from. Event ids a concurrent transaction had taken but not yet committed (PostgreSQL) are
kept as *holes* and looked at again for `HOLE_SECONDS`. The first roll-ups on a hub (watermark NULL)
recompute every pair of every packet in the store, the backfill, `BACKFILL_STEP` pairs a
housekeeping round (its progress kept in the state row), then set the watermark a little before
the last event seen when it began (`BACKFILL_OVERLAP`).

It runs in the cluster's housekeeping round (the leader, `Hub.housekeeping_round`) and before each
report (`core.reports.unit_report`), so a report is exact and current; when the backlog is larger
than a report should fold (`REPORT_MAX_PAIRS`, e.g. a store never rolled up) the report is computed
from the raw rows instead (`unit_report_raw`).

**Delivery time.** Times fall in fixed log-spaced buckets: bucket 0 holds [0, 1 ms), bucket i ≥ 1
holds [1 ms·1.1^(i-1), 1 ms·1.1^i), the last one (about 30 days) also everything longer. A
quantile is read from the summed histograms as its bucket's geometric middle, so the median and
p95 are within 4.9 % (√1.1 − 1) of the exact values (then rounded to 1 ms), 1 ms for times under
1 ms; times over 30 days read as about 30 days.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, literal_column, select, update

from lgsp.core.reports import Counts
from lgsp.core.store.database import Database, conflict_insert
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

log = logging.getLogger(__name__)

VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")
FAILED_STATES = ("failed", "expired", "cancelled")
NAME = "statistics"

BUCKET_BASE = 0.001                      # seconds: the lower bound of bucket 1
BUCKET_RATIO = 1.1
LAST_BUCKET = 1 + math.ceil(math.log(30 * 86400 / BUCKET_BASE) / math.log(BUCKET_RATIO))
#: The largest relative error of a quantile read from the histogram (times of 1 ms and more).
RELATIVE_ERROR = math.sqrt(BUCKET_RATIO) - 1

EVENT_BATCH = 20_000                     # events read per step of a round
CHUNK_PAIRS = 64                         # pairs recomputed per transaction
HOLE_SECONDS = 600.0                     # how long an unseen event id below the watermark is awaited
MAX_HOLES = 10_000
BACKFILL_OVERLAP = 10_000                # events the first incremental round reads again after a backfill
REPORT_MAX_PAIRS = 2_000                 # the most pairs a report folds before answering
BACKFILL_STEP = 2_000                    # pairs back-filled per step (one step per housekeeping round)

Pair = tuple[str, dt.date]


_SEVEN_HOURS = dt.timedelta(hours=7)


def vn_day(moment: dt.datetime) -> dt.date:
    """The Vietnam (UTC+7, no daylight saving) date of an aware UTC instant."""
    return (moment + _SEVEN_HOURS + (moment.utcoffset() or dt.timedelta()) * -1).date()


def vn_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=VIETNAM).astimezone(dt.UTC)


def bucket_of(seconds: float) -> int:
    if seconds < BUCKET_BASE:
        return 0
    return min(LAST_BUCKET, math.floor(math.log(seconds / BUCKET_BASE) / math.log(BUCKET_RATIO)) + 1)


def bucket_value(bucket: int) -> float:
    """What a time in `bucket` reads as: the bucket's geometric middle (0 for bucket 0)."""
    if bucket <= 0:
        return 0.0
    return float(BUCKET_BASE * BUCKET_RATIO ** (bucket - 0.5))


def failure_label(state: str, reason: str | None) -> str:
    return f"{state}: {(reason or '').strip()[:80]}".rstrip(": ")


def quantiles(histogram: dict[int, int]) -> tuple[float | None, float | None]:
    """(median, p95) of the times the histogram counts, ranked as `core.reports` ranks exact times."""
    n = sum(histogram.values())
    if not n:
        return None, None
    ordered = sorted((b, c) for b, c in histogram.items() if c)

    def at(rank: int) -> float:
        seen = 0
        for bucket, count in ordered:
            seen += count
            if rank < seen:
                return bucket_value(bucket)
        return bucket_value(ordered[-1][0])

    median = at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2
    p95 = at(min(n - 1, max(0, round(0.95 * n) - 1)))
    return round(median, 3), round(p95, 3)


@dataclass
class Fold:
    """Aggregate rows folded from raw packet × delivery rows."""

    sent: dict[tuple[str, dt.date, str], list[int]] = field(default_factory=dict)
    traffic: dict[tuple[str, dt.date, str, str], list[int]] = field(default_factory=dict)
    failures: dict[tuple[str, dt.date, str], int] = field(default_factory=dict)
    times: dict[tuple[str, dt.date, int], int] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)

    def add(self, r: Any, day: dt.date | None = None) -> None:
        day = day or vn_day(r.created_at)
        s = self.sent.setdefault((r.source_unit, day, r.data_type), [0, 0, 0, 0, 0, 0])
        if r.id not in self._seen:
            self._seen.add(r.id)
            s[0] += 1
            s[1] += r.size
        s[2] += 1
        if r.deadline is not None:
            s[3] += 1
        if r.state == "delivered":
            s[4] += 1
            if r.deadline is not None and r.updated_at <= r.deadline:
                s[5] += 1
            if r.accepted_at is not None:
                seconds = max(0.0, (r.updated_at - r.accepted_at).total_seconds())
                key = (r.source_unit, day, bucket_of(seconds))
                self.times[key] = self.times.get(key, 0) + 1
        t_ = self.traffic.setdefault((r.source_unit, day, r.unit_id, r.data_type), [0, 0])
        t_[0] += 1
        t_[1] += r.size
        if r.state in FAILED_STATES:
            fkey = (r.source_unit, day, failure_label(r.state, r.reason))
            self.failures[fkey] = self.failures.get(fkey, 0) + 1


RAW_COLUMNS = (packets.c.id, packets.c.source_unit, packets.c.created_at, packets.c.size, packets.c.data_type,
               packets.c.deadline, packets.c.accepted_at, deliveries.c.unit_id, deliveries.c.state,
               deliveries.c.updated_at, deliveries.c.reason)


def raw_rows(*where: Any) -> Any:
    return select(*RAW_COLUMNS).join(deliveries, deliveries.c.packet_id == packets.c.id).where(*where)


# -- the roll-up ----------------------------------------------------------------------------------

_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


async def rollup(db: Database, *, max_pairs: int | None = None, backfill_steps: int | None = None) -> bool:
    """Fold what changed since the last round into the aggregate tables; True when they are now current.

    False when more than `max_pairs` pairs would need recomputing (nothing was done: what a report
    passes), or when the backfill is not finished after `backfill_steps` steps of `BACKFILL_STEP`
    unit-days (what the housekeeping round passes, so a hub with years of history back-fills a
    step per round instead of holding up its other work; the next round goes on from there)."""
    lock = _locks.setdefault(db, asyncio.Lock())
    async with lock:
        steps = [0]
        while True:
            done = await _round(db, max_pairs)
            if done is not None:
                return done
            if (await watermark(db)) is None:   # a backfill step went by
                steps[0] += 1
                if backfill_steps is not None and steps[0] >= backfill_steps:
                    return False


async def _ensure_state(db: Database) -> Any:
    async with db.read() as conn:
        row = (await conn.execute(select(stats_rollup).where(stats_rollup.c.name == NAME))).first()
    if row is None:
        async with db.write() as conn:
            await conn.execute(conflict_insert(conn, stats_rollup).values(name=NAME, watermark=None, holes=None)
                               .on_conflict_do_nothing())
        async with db.read() as conn:
            row = (await conn.execute(select(stats_rollup).where(stats_rollup.c.name == NAME))).first()
    return row


async def _round(db: Database, max_pairs: int | None) -> bool | None:
    """One step: True/False as `rollup` returns, None to step again (more events, or another roller
    moved the watermark meanwhile)."""
    state = await _ensure_state(db)
    if state.watermark is None:
        return await _backfill(db, max_pairs, state.holes)
    watermark = int(state.watermark)
    holes: dict[int, float] = {int(k): float(v) for k, v in (state.holes or {}).items()}
    cols = (packet_events.c.id, packets.c.source_unit, packets.c.created_at)
    joined = packet_events.outerjoin(packets, packets.c.id == packet_events.c.packet_id)
    async with db.read() as conn:
        rows = (await conn.execute(select(*cols).select_from(joined).where(packet_events.c.id > watermark)
                                   .order_by(packet_events.c.id).limit(EVENT_BATCH))).all()
        found: list[Any] = []
        if holes:
            wanted = sorted(holes)
            for i in range(0, len(wanted), 500):
                found += (await conn.execute(select(*cols).select_from(joined)
                                             .where(packet_events.c.id.in_(wanted[i:i + 500])))).all()
    pairs = {(r.source_unit, vn_day(r.created_at)) for r in (*rows, *found) if r.source_unit is not None}
    if max_pairs is not None and len(pairs) > max_pairs:
        return False
    now = time.time()
    new_watermark = rows[-1].id if rows else watermark
    for r in found:
        holes.pop(int(r.id), None)
    seen = {int(r.id) for r in rows}
    if new_watermark - watermark - len(seen) <= MAX_HOLES:
        for missing in range(watermark + 1, new_watermark):
            if missing not in seen:
                holes[missing] = now
    holes = {k: v for k, v in holes.items() if now - v < HOLE_SECONDS}
    if len(holes) > MAX_HOLES:
        holes = dict(sorted(holes.items())[-MAX_HOLES:])
    if not pairs and new_watermark == watermark and holes == {int(k): float(v) for k, v in
                                                              (state.holes or {}).items()}:
        return True
    if not await recompute(db, pairs, expect=watermark):
        return None
    async with db.write() as conn:
        current = (await conn.execute(select(stats_rollup.c.watermark).where(stats_rollup.c.name == NAME)
                                      .with_for_update())).scalar()
        if current != watermark:
            return None
        await conn.execute(update(stats_rollup).where(stats_rollup.c.name == NAME).values(
            watermark=new_watermark, holes={str(k): v for k, v in holes.items()} or None,
            updated_at=dt.datetime.now(dt.UTC)))
    return True if len(rows) < EVENT_BATCH else None


def _day_expression(dialect: str) -> Any:
    if dialect == "postgresql":
        return literal_column("((packets.created_at AT TIME ZONE 'UTC') + interval '7 hours')::date")
    return func.date(packets.c.created_at, "+7 hours")


async def _backfill(db: Database, max_pairs: int | None, progress: Any) -> bool | None:
    """The first rounds: every pair of every packet in the store, `BACKFILL_STEP` pairs at a time in
    (unit, day) order; how far it got is kept in the state row (`holes` while `watermark` is NULL)."""
    top = progress.get("top") if isinstance(progress, dict) else None
    after = progress.get("after") if isinstance(progress, dict) else None
    async with db.read() as conn:
        if top is None:
            top = int(await conn.scalar(select(func.coalesce(func.max(packet_events.c.id), 0))) or 0)
        day = _day_expression(db.dialect)
        found = (await conn.execute(select(packets.c.source_unit, day).distinct())).all()
    pairs = sorted((r[0], r[1] if isinstance(r[1], dt.date) else dt.date.fromisoformat(str(r[1]))) for r in found)
    if after is not None:
        mark = (str(after[0]), dt.date.fromisoformat(str(after[1])))
        pairs = [p for p in pairs if p > mark]
    if max_pairs is not None and len(pairs) > max_pairs:
        return False
    step = pairs if max_pairs is not None else pairs[:BACKFILL_STEP]
    if not await recompute(db, step, expect=None):
        return None
    finished = len(step) == len(pairs)
    async with db.write() as conn:
        current = (await conn.execute(select(stats_rollup.c.watermark, stats_rollup.c.holes)
                                      .where(stats_rollup.c.name == NAME).with_for_update())).first()
        if current is None or current.watermark is not None or current.holes != progress:
            return None   # another roller went on meanwhile
        if finished:
            values: dict[str, Any] = {"watermark": max(0, top - BACKFILL_OVERLAP), "holes": None}
        else:
            values = {"holes": {"top": top, "after": [step[-1][0], step[-1][1].isoformat()]}}
        await conn.execute(update(stats_rollup).where(stats_rollup.c.name == NAME).values(
            updated_at=dt.datetime.now(dt.UTC), **values))
    if finished:
        log.info("statistics: folded the history of the store")
    return None  # the overlap is read again at once, or the next step follows


async def recompute(db: Database, pairs: Iterable[Pair], *, expect: int | None) -> bool:
    """Replace the aggregate rows of `pairs` with what the raw rows say now; False (stopping) when the
    watermark is no longer `expect`: another roller went on from there."""
    ordered = sorted(set(pairs))
    for i in range(0, len(ordered), CHUNK_PAIRS):
        chunk = ordered[i:i + CHUNK_PAIRS]
        async with db.write() as conn:
            current = (await conn.execute(select(stats_rollup.c.watermark).where(stats_rollup.c.name == NAME)
                                          .with_for_update())).first()
            if current is None or current.watermark != expect:
                return False
            by_source: dict[str, set[dt.date]] = {}
            for source, day in chunk:
                by_source.setdefault(source, set()).add(day)
            fold = Fold()
            for source, days in by_source.items():
                for first, last in _runs(days):   # one range per run of consecutive days, none between
                    start, end = vn_midnight(first), vn_midnight(last + dt.timedelta(days=1))
                    for r in (await conn.execute(raw_rows(packets.c.source_unit == source,
                                                          packets.c.created_at >= start,
                                                          packets.c.created_at < end))).all():
                        fold.add(r)
                for table in (stats_sent, stats_traffic, stats_failures, stats_delivery_times):
                    await conn.execute(delete(table).where(table.c.source_unit == source,
                                                           table.c.day.in_(sorted(days))))
            await _insert(conn, fold)
    return True


def _runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days as (first, last) runs."""
    out: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if out and day - out[-1][1] == dt.timedelta(days=1):
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


async def _insert(conn: Any, fold: Fold) -> None:
    if fold.sent:
        await conn.execute(stats_sent.insert(), [
            {"source_unit": s, "day": d, "data_type": t_, "packets": v[0], "bytes": v[1], "deliveries": v[2],
             "with_deadline": v[3], "delivered": v[4], "on_time": v[5]} for (s, d, t_), v in fold.sent.items()])
    if fold.traffic:
        await conn.execute(stats_traffic.insert(), [
            {"source_unit": s, "day": d, "dest_unit": u, "data_type": t_, "deliveries": v[0], "bytes": v[1]}
            for (s, d, u, t_), v in fold.traffic.items()])
    if fold.failures:
        await conn.execute(stats_failures.insert(), [
            {"source_unit": s, "day": d, "reason": reason, "deliveries": n}
            for (s, d, reason), n in fold.failures.items()])
    if fold.times:
        await conn.execute(stats_delivery_times.insert(), [
            {"source_unit": s, "day": d, "bucket": b, "deliveries": n} for (s, d, b), n in fold.times.items()])


# -- reading ---------------------------------------------------------------------------------------

@dataclass
class Totals:
    """A unit's statistics summed over aggregate rows (whole days) and raw rows (partial days): the
    report's own counts (`core.reports.Counts`, filled in place) and the delivery-time histogram its
    median and p95 are read from."""

    counts: Counts = field(default_factory=Counts)
    histogram: dict[int, int] = field(default_factory=dict)

    def timed(self, bucket: int, n: int) -> None:
        self.histogram[bucket] = self.histogram.get(bucket, 0) + n


Span = tuple[dt.datetime, dt.datetime]


def whole_days(since: dt.datetime, until: dt.datetime) -> tuple[dt.date, dt.date, list[Span]]:
    """[first, last) whole Vietnam days inside [since, until), and the partial spans left at its edges."""
    first = vn_day(since)
    if vn_midnight(first) < since:
        first += dt.timedelta(days=1)
    last = vn_day(until)
    if last <= first:
        return first, first, [(since, until)] if since < until else []
    edges = []
    if since < vn_midnight(first):
        edges.append((since, vn_midnight(first)))
    if vn_midnight(last) < until:
        edges.append((vn_midnight(last), until))
    return first, last, edges


async def totals(conn: Any, unit_id: str, since: dt.datetime, until: dt.datetime,
                 counts: Counts | None = None) -> Totals:
    """The unit's statistics over [since, until): aggregates for whole days, raw rows for the rest,
    summed into `counts` (a report's) when given."""
    out = Totals(counts if counts is not None else Counts())
    sums = out.counts
    first, last, edges = whole_days(since, until)
    if first < last:
        mine = and_(stats_sent.c.source_unit == unit_id, stats_sent.c.day >= first, stats_sent.c.day < last)
        for r in (await conn.execute(select(stats_sent.c.data_type, func.sum(stats_sent.c.packets),
                                            func.sum(stats_sent.c.bytes), func.sum(stats_sent.c.with_deadline),
                                            func.sum(stats_sent.c.delivered), func.sum(stats_sent.c.on_time))
                                     .where(mine).group_by(stats_sent.c.data_type))).all():
            sums.sent(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
        tr = stats_traffic.c
        for r in (await conn.execute(select(tr.dest_unit, func.sum(tr.deliveries)).where(
                tr.source_unit == unit_id, tr.day >= first, tr.day < last).group_by(tr.dest_unit))).all():
            sums.sent_to(r[0], int(r[1]))
        for r in (await conn.execute(select(tr.source_unit, tr.data_type, func.sum(tr.deliveries), func.sum(tr.bytes))
                                     .where(tr.dest_unit == unit_id, tr.day >= first, tr.day < last)
                                     .group_by(tr.source_unit, tr.data_type))).all():
            sums.received(r[0], r[1], int(r[2]), int(r[3]))
        fl = stats_failures.c
        for r in (await conn.execute(select(fl.reason, func.sum(fl.deliveries)).where(
                fl.source_unit == unit_id, fl.day >= first, fl.day < last).group_by(fl.reason))).all():
            sums.failed(r[0], int(r[1]))
        tm = stats_delivery_times.c
        for r in (await conn.execute(select(tm.bucket, func.sum(tm.deliveries)).where(
                tm.source_unit == unit_id, tm.day >= first, tm.day < last).group_by(tm.bucket))).all():
            out.timed(int(r[0]), int(r[1]))
    for start, end in edges:
        await _raw_span(conn, out, unit_id, start, end)
    return out


async def _raw_span(conn: Any, out: Totals, unit_id: str, start: dt.datetime, end: dt.datetime) -> None:
    sent = Fold()
    for r in (await conn.execute(raw_rows(packets.c.source_unit == unit_id, packets.c.created_at >= start,
                                          packets.c.created_at < end))).all():
        sent.add(r)
    received = Fold()
    for r in (await conn.execute(raw_rows(deliveries.c.unit_id == unit_id, deliveries.c.packet_created_at >= start,
                                          deliveries.c.packet_created_at < end))).all():
        received.add(r)
    fold_into(out, unit_id, sent, received)


def fold_into(out: Totals, unit_id: str, sent: Fold, received: Fold) -> None:
    """Add a unit's share of folded raw rows: `sent` folded from its own packets, `received` from
    the deliveries to it (only their traffic rows count: the rest belong to their sources)."""
    sums = out.counts
    for (_s, _d, data_type), v in sent.sent.items():
        sums.sent(data_type, v[0], v[1], v[3], v[4], v[5])
    for (_s, _d, dest, _t), v in sent.traffic.items():
        sums.sent_to(dest, v[0])
    for (_s, _d, reason), n in sent.failures.items():
        sums.failed(reason, n)
    for (_s, _d, bucket), n in sent.times.items():
        out.timed(bucket, n)
    for (source, _d, dest, data_type), v in received.traffic.items():
        if dest == unit_id:
            sums.received(source, data_type, v[0], v[1])


async def watermark(db: Database) -> int | None:
    async with db.read() as conn:
        value = await conn.scalar(select(stats_rollup.c.watermark).where(stats_rollup.c.name == NAME))
    return None if value is None else int(value)
