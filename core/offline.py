"""Offline reports: tell each source when a destination its packets wait for has gone quiet.

A destination counts as offline once the store shows it offline (presence, flushed by every
node) for longer than `presence.offline_report_after_seconds`, with packets still waiting for it
(queued, notified, fetched, sending or retrying). Each affected source then gets one
`destination.offline` event naming its own waiting packets, and at most one more per
`presence.offline_report_repeat_seconds` while the destination stays offline; a new offline
spell starts the count again. The report's time is written in the same transaction as the event,
with a conditional update, so neither a restart nor a second node can send it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.events import EventBus, iso, record
from lgsp.core.store.database import Database, conflict_insert
from lgsp.core.store.tables import deliveries, offline_reports, packets, units

EVENT = ev.DESTINATION_OFFLINE


class OfflineReporter:
    def __init__(self, db: Database, bus: EventBus, *, after_seconds: float, repeat_seconds: float,
                 max_packets: int, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.bus = bus
        self.after = timedelta(seconds=after_seconds)
        self.repeat = timedelta(seconds=repeat_seconds)
        self.max_packets = max_packets
        self.clock = clock

    async def run(self) -> int:
        """One round: send every report that is due; returns how many were sent.

        Reads one row per (destination, source) pair, and the packet ids of due pairs only (at most
        `max_packets` each): a unit offline for weeks with thousands of waiting packets costs a
        grouped count per round, not its whole backlog.
        """
        now = self.clock()
        since_col = func.coalesce(units.c.offline_since, units.c.created_at)
        waiting = and_(deliveries.c.state.in_(dv.AWAITING_DESTINATION), units.c.online.is_(False),
                       since_col <= now - self.after)
        async with self.db.read() as conn:
            pairs = (await conn.execute(
                select(deliveries.c.unit_id, packets.c.source_unit, func.count().label("count"),
                       func.min(since_col).label("since"), func.max(units.c.last_seen_at).label("last_seen_at"))
                .join(packets, packets.c.id == deliveries.c.packet_id)
                .join(units, units.c.id == deliveries.c.unit_id)
                .where(waiting).group_by(deliveries.c.unit_id, packets.c.source_unit))).all()
            if not pairs:
                return 0
            reported = {(r.unit_id, r.source_unit): r.reported_at for r in (await conn.execute(
                select(offline_reports).where(offline_reports.c.unit_id.in_({r.unit_id for r in pairs})))).all()}
        sent = 0
        for pair in pairs:
            dest, source, since = pair.unit_id, pair.source_unit, _aware(pair.since)
            last = reported.get((dest, source))
            if last is not None and last >= since and now - last < self.repeat:
                continue
            async with self.db.write() as conn:
                if not await _claim(conn, dest, source, last, now):
                    continue  # another node (or round) sent it
                ids = list((await conn.execute(
                    select(deliveries.c.packet_id).join(packets, packets.c.id == deliveries.c.packet_id)
                    .join(units, units.c.id == deliveries.c.unit_id)
                    .where(and_(waiting, deliveries.c.unit_id == dest, packets.c.source_unit == source))
                    .order_by(deliveries.c.priority.desc(), deliveries.c.packet_created_at, deliveries.c.packet_id)
                    .limit(self.max_packets))).scalars())
                seen = _aware(pair.last_seen_at) if pair.last_seen_at else None
                detail = {"packets": ids, "count": pair.count, "offline_since": iso(since),
                          "last_seen_at": iso(seen) if seen else None}
                event = await record(conn, None, EVENT, now, unit=dest, audience=source, detail=detail)
            self.bus.publish([event])
            sent += 1
        return sent


async def _claim(conn: AsyncConnection, dest: str, source: str, last: datetime | None, now: datetime) -> bool:
    if last is None:  # first report of this pair: whoever inserts it (of two nodes) sends it
        result = await conn.execute(conflict_insert(conn, offline_reports).values(
            unit_id=dest, source_unit=source, reported_at=now).on_conflict_do_nothing())
        return bool(result.rowcount)
    result = await conn.execute(update(offline_reports).where(and_(
        offline_reports.c.unit_id == dest, offline_reports.c.source_unit == source,
        offline_reports.c.reported_at == last)).values(reported_at=now))
    return bool(result.rowcount)


def _aware(moment: datetime) -> datetime:
    # COALESCE loses the column type on SQLite, so the value may come back naive (it is UTC).
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
