"""Clock-offset history: how far each unit's clock was from the hub's, over time.

Every signed request measures the offset (`core/auth.py`: the request's `X-LGSP-Date` minus the
hub's time). Recording each one would add a row per request; instead `OffsetSampler` keeps, per
unit, the observations since its last sample in memory (the latest offset, the lowest, the
highest and how many: O(1) per request, no I/O), and the presence flush that already runs every
second (`core/presence.py`) writes a sample into `clock_offsets`, in its own transaction, when:

- the unit has none written yet by this node (a unit seen for the first time shows at once),
- any observation moved by more than `presence.clock_offset_jump_seconds` from the last written
  offset (a clock stepped or reset: recorded within a second of the first request that shows it),
- or `presence.clock_offset_sample_seconds` passed since the last written sample.

So a unit sending all day writes one row per interval (288 a day at the default 5 minutes), a unit
that stops has its last observations written when the interval ends, and an idle unit writes
nothing. Each node samples the requests it served: with N nodes a unit has up to N rows per
interval. A sample's `at` is its latest observation and `offset_seconds` that observation's
offset; `min_seconds` / `max_seconds` / `requests` cover every observation since the previous one.

The leader deletes samples older than `presence.clock_offset_retention_days` (`prune`, from the
housekeeping round, at most every ten minutes, in bounded batches). `history` reads a period for
reports: the samples themselves, or, when there are more than `MAX_POINTS`, the mean, lowest and
highest per equal slice of the period, computed by the database.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, cast, delete, func, literal, select

from lgsp.core.store.database import Database
from lgsp.core.store.tables import UTCDateTime, clock_offsets

#: Most points `history` returns for a period; more samples are summarised per slice.
MAX_POINTS = 1000
#: Rows deleted per transaction when pruning (a long backlog does not hold the writer for long).
PRUNE_BATCH = 5000


@dataclass
class Sample:
    """Observations of one unit since its previous sample: the latest (`at`, `last`), the range, the count."""

    unit: str
    at: datetime
    last: float
    low: float
    high: float
    count: int

    def row(self) -> dict[str, object]:
        return {"unit_id": self.unit, "at": self.at, "offset_seconds": self.last, "min_seconds": self.low,
                "max_seconds": self.high, "requests": self.count}


class OffsetSampler:
    """Per-unit offset observations since the last sample, and which samples are due (in memory).

    `due` costs what is due, not what is pending: a unit's interval is queued (a heap by due time)
    when its first observation after a sample arrives, and a jump or a first sample is marked
    urgent by `observe` itself."""

    def __init__(self, interval_seconds: float, jump_seconds: float) -> None:
        self.interval = timedelta(seconds=interval_seconds)
        self.jump = jump_seconds
        self._pending: dict[str, Sample] = {}
        self._written: dict[str, tuple[datetime, float]] = {}  # unit -> (at, offset) of this node's last sample
        self._urgent: set[str] = set()
        self._queue: list[tuple[datetime, str]] = []   # heap of (due at, unit)
        self._due_at: dict[str, datetime] = {}         # the queued entry that counts, per unit
        self._drain = False

    def observe(self, unit: str, at: datetime, offset: float) -> None:
        """One signed request's offset (the hot path: memory only)."""
        written = self._written.get(unit)
        if written is None or abs(offset - written[1]) > self.jump:
            self._urgent.add(unit)
        p = self._pending.get(unit)
        if p is None:
            self._pending[unit] = Sample(unit, at, offset, offset, offset, 1)
            if written is not None and unit not in self._due_at:
                due_at = self._due_at[unit] = written[0] + self.interval
                heapq.heappush(self._queue, (due_at, unit))
            return
        p.at, p.last, p.count = max(p.at, at), offset, p.count + 1
        p.low, p.high = min(p.low, offset), max(p.high, offset)

    def drain(self) -> None:
        """Make every pending observation due at the next `due` (the hub is stopping)."""
        self._drain = True

    def due(self, now: datetime) -> list[Sample]:
        """The samples to write now (taken out of memory; `restore` them if the write fails)."""
        ready, self._urgent = self._urgent, set()
        while self._queue and self._queue[0][0] <= now:
            due_at, unit = heapq.heappop(self._queue)
            if self._due_at.get(unit) == due_at:       # else written meanwhile (a jump) and queued again
                ready.add(unit)
        if self._drain:
            ready.update(self._pending)
        samples: list[Sample] = []
        for unit in sorted(ready):
            p = self._pending.pop(unit, None)
            if p is None:
                continue
            self._due_at.pop(unit, None)
            self._written[unit] = (p.at, p.last)
            samples.append(p)
        return samples

    def restore(self, samples: Iterable[Sample]) -> None:
        """Samples whose write failed: merged back with what was observed since, written next time."""
        for old in samples:
            self._written.pop(old.unit, None)
            self._urgent.add(old.unit)
            newer = self._pending.get(old.unit)
            if newer is None:
                self._pending[old.unit] = old
            else:
                newer.low, newer.high = min(newer.low, old.low), max(newer.high, old.high)
                newer.count += old.count


class OffsetPruner:
    """Deletes samples older than the retention period, at most once per `every` (the leader's job)."""

    def __init__(self, db: Database, retention_days: float, every: timedelta = timedelta(minutes=10)) -> None:
        self.db = db
        self.retention = timedelta(days=retention_days)
        self.every = every
        self._next: datetime | None = None

    async def run(self, now: datetime) -> int:
        if self._next is not None and now < self._next:
            return 0
        self._next = now + self.every
        return await prune(self.db, now - self.retention)


async def prune(db: Database, before: datetime) -> int:
    """Delete samples taken before `before`, in batches; returns how many."""
    total = 0
    while True:
        async with db.write() as conn:
            oldest = (select(clock_offsets.c.id).where(clock_offsets.c.at < before)
                      .order_by(clock_offsets.c.at).limit(PRUNE_BATCH))
            result = await conn.execute(delete(clock_offsets).where(clock_offsets.c.id.in_(oldest.scalar_subquery())))
        total += result.rowcount or 0
        if (result.rowcount or 0) < PRUNE_BATCH:
            return total


def _slice_of(dialect: str, since: datetime, width: int) -> Any:
    """The index of the `width`-second slice of the period starting at `since` a sample falls in."""
    if dialect == "sqlite":  # UTCDateTime is naive text there; julianday reads it
        seconds = (func.julianday(clock_offsets.c.at) - func.julianday(literal(since, UTCDateTime))) * 86400.0
        return cast(seconds / width, Integer)  # truncates; never negative here
    seconds = func.extract("epoch", clock_offsets.c.at - literal(since, UTCDateTime))
    return cast(func.floor(seconds / width), Integer)


async def history(db: Database, unit_id: str, since: datetime,
                  until: datetime) -> tuple[list[dict[str, Any]], int | None]:
    """The unit's offset samples in [since, until), oldest first, and None; or, when there are more
    than MAX_POINTS, one point per slice of the period (its first sample's time, the mean offset,
    the lowest and highest, the requests) and the slice's length in seconds."""
    in_period = (clock_offsets.c.unit_id == unit_id, clock_offsets.c.at >= since, clock_offsets.c.at < until)
    async with db.read() as conn:
        count = await conn.scalar(select(func.count()).select_from(clock_offsets).where(*in_period)) or 0
        if count <= MAX_POINTS:
            rows = (await conn.execute(select(clock_offsets.c.at, clock_offsets.c.offset_seconds,
                                              clock_offsets.c.min_seconds, clock_offsets.c.max_seconds,
                                              clock_offsets.c.requests)
                                       .where(*in_period).order_by(clock_offsets.c.at, clock_offsets.c.id))).all()
            return [{"at": r.at, "offset_seconds": r.offset_seconds, "min_seconds": r.min_seconds,
                     "max_seconds": r.max_seconds, "requests": r.requests} for r in rows], None
        width = max(1, math.ceil((until - since).total_seconds() / MAX_POINTS))
        part = _slice_of(conn.dialect.name, since, width).label("part")
        grouped = (select(part, func.min(clock_offsets.c.at).label("at"),
                          cast(func.avg(clock_offsets.c.offset_seconds), Float).label("mean"),
                          func.min(clock_offsets.c.min_seconds).label("low"),
                          func.max(clock_offsets.c.max_seconds).label("high"),
                          func.sum(clock_offsets.c.requests).label("requests"))
                   .where(*in_period).group_by(part).order_by(part))
        parts = (await conn.execute(grouped)).all()
    return [{"at": r.at, "offset_seconds": round(float(r.mean), 3), "min_seconds": r.low, "max_seconds": r.high,
             "requests": int(r.requests)} for r in parts], width
