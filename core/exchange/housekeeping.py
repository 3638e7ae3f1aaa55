"""Housekeeping: expire unfinished uploads and passed deadlines or ages; delete files no packet needs."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update

from lgsp.core import audit
from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.contentkeys import ContentKeys
from lgsp.core.events import record
from lgsp.core.exchange.base import AfterCommit, ExchangeBase, log, open_deliveries
from lgsp.core.exchange.values import PRIORITIES, too_old_reason, uuid_like
from lgsp.core.i18n import Text
from lgsp.core.store.blobs import remove
from lgsp.core.store.tables import deliveries, packets


class Housekeeping(ExchangeBase):
    async def sweep(self) -> dict[str, int]:
        """Expire unfinished uploads and passed deadlines; finish interrupted purges."""
        now = self.clock()
        counts = {"uploads_expired": 0, "deadlines_expired": 0}
        async with self.db.read() as conn:
            stale = [r.id for r in (await conn.execute(select(packets.c.id).where(and_(
                packets.c.state == "created", packets.c.upload_expires_at <= now)).limit(500))).all()]
            # An attempt in flight is judged when it ends (its receiver may be taking it right now).
            judged = dv.ACTIVE - {dv.SENDING}
            late = (await conn.execute(
                select(deliveries.c.packet_id, deliveries.c.unit_id)
                .join(packets, packets.c.id == deliveries.c.packet_id)
                .where(and_(packets.c.deadline.is_not(None), packets.c.deadline <= now,
                            packets.c.state == "accepted", deliveries.c.state.in_(judged)))
                .limit(500))).all()
            old: list[Any] = []
            if self.max_age is not None:
                old = list((await conn.execute(
                    select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.priority)
                    .where(and_(deliveries.c.state.in_(judged - {dv.WAITING}), self.too_old(now)))
                    .limit(500))).all())
        for packet_id in stale:
            after = AfterCommit()
            async with self.db.write() as conn:
                result = await conn.execute(update(packets).where(
                    and_(packets.c.id == packet_id, packets.c.state == "created")).values(
                    state="expired", completed_at=now))
                if not result.rowcount:
                    continue
                await dv.move(conn, packet_id, None, dv.EXPIRED, now, reason=Text("content was never uploaded"))
                source = await conn.scalar(select(packets.c.source_unit).where(packets.c.id == packet_id))
                after.events.append(await record(conn, packet_id, ev.UPLOAD_EXPIRED, now, unit=source,
                                                 audience=source))
                await ContentKeys.destroy(conn, [packet_id])
            # Every file of it goes: a blob renamed in just before a crash, and partial uploads.
            after.purge = packet_id
            await self._after_commit(after)
            counts["uploads_expired"] += 1
        by_packet: dict[tuple[str, str], list[str]] = {}  # reasons are `Text`: stored English, read translated
        for row in late:
            by_packet.setdefault((row.packet_id, Text("deadline passed")), []).append(row.unit_id)
        for row in old:
            assert self.max_age is not None
            too_old = too_old_reason(self.max_age(row.priority))
            if row.unit_id not in by_packet.get((row.packet_id, Text("deadline passed")), ()):
                by_packet.setdefault((row.packet_id, too_old), []).append(row.unit_id)
        for (packet_id, reason), late_units in by_packet.items():
            info = await self.packet(packet_id)
            if info is None:
                continue
            after = AfterCommit()
            async with self.db.write() as conn:
                attempts = {r.unit_id: r.attempts for r in (await conn.execute(
                    select(deliveries.c.unit_id, deliveries.c.attempts).where(and_(
                        deliveries.c.packet_id == packet_id, deliveries.c.unit_id.in_(late_units))))).all()}
                moved = await dv.move(conn, packet_id, late_units, dv.EXPIRED, now, reason=reason,
                                      allowed_from=judged)
                for unit in moved:
                    detail: dict[str, Any] = {"reason": reason}
                    if attempts.get(unit):
                        detail["attempts"] = attempts[unit]
                    after.events.append(await record(conn, packet_id, ev.PACKET_EXPIRED, now, unit=unit,
                                                     audience=info.source, detail=detail))
                    await audit.delivery_ended(conn, info, unit, dv.EXPIRED, now, reason)
                if moved:
                    await self._complete_if_done(conn, packet_id, now, after)
            after.failed(info, moved, dv.EXPIRED, reason)
            await self._after_commit(after)
            counts["deadlines_expired"] += len(moved)
        counts["completed_late"] = await self.complete_finished()
        return counts

    async def complete_finished(self, limit: int = 100) -> int:
        """Complete accepted packets whose every delivery has ended but that were left incomplete:
        a repair for hubs that ran a version in which two last deliveries ending together could both
        miss the completion on PostgreSQL (their content would otherwise stay stored for ever)."""
        now = self.clock()
        async with self.db.read() as conn:
            ids = [r.id for r in (await conn.execute(select(packets.c.id).where(and_(
                packets.c.state == "accepted", ~open_deliveries(packets.c.id))).limit(limit))).all()]
        done = 0
        for packet_id in ids:
            after = AfterCommit()
            async with self.db.write() as conn:
                await self._complete_if_done(conn, packet_id, now, after)
            if any(e.type == ev.PACKET_COMPLETED for e in after.events):
                log.warning("packet %s had every delivery ended but was not completed; completed now", packet_id)
                done += 1
            await self._after_commit(after)
        return done

    def too_old(self, now: datetime) -> Any:
        """SQL condition: the delivery has been queued longer than its priority's max age."""
        assert self.max_age is not None
        return or_(*(and_(deliveries.c.priority == p, deliveries.c.queued_at.is_not(None),
                          deliveries.c.queued_at <= now - timedelta(seconds=self.max_age(p)))
                     for p in PRIORITIES))

    async def reconcile_blobs(self, min_age_seconds: float = 60.0) -> int:
        """Delete files whose packet no longer needs them: purged or expired packets (a crash came
        between the commit and the deletion), and upload attempts that lost to another one.

        A purged or expired packet's files go whatever their age: the store says no one will read
        them again. `min_age_seconds` spares the other files a moment (an attempt's file, a file of
        no known packet), so that a node's work still under way is not judged by a glimpse of it."""
        limit = time.time() - min_age_seconds
        files = await asyncio.to_thread(self.blobs.all_objects_with_times)
        by_packet: dict[str, list[Path]] = {}
        old: set[Path] = set()
        for path, mtime in files:
            by_packet.setdefault(path.name[:36], []).append(path)
            if mtime <= limit:
                old.add(path)
        ids = [p for p in by_packet if uuid_like(p)]
        doomed: list[Path] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            async with self.db.read() as conn:
                rows = {r.id: r for r in (await conn.execute(
                    select(packets.c.id, packets.c.state, packets.c.content_state, packets.c.blob_key)
                    .where(packets.c.id.in_(chunk)))).all()}
            for packet_id in chunk:
                row = rows.get(packet_id)
                if row is not None and (row.content_state == "purged" or row.state == "expired"):
                    doomed.extend(by_packet[packet_id])
                elif row is None:
                    doomed.extend(p for p in by_packet[packet_id] if p in old)
                elif row.state != "created" and row.blob_key:  # keep the accepted attempt and its variants
                    doomed.extend(p for p in by_packet[packet_id] if not p.name.startswith(row.blob_key) and p in old)
        await asyncio.to_thread(remove, doomed)
        await ContentKeys.sweep(self.db)  # keys a racing upload made again after its packet ended
        if doomed:
            log.info("removed %d blob files no packet needs any more", len(doomed))
        return len(doomed)
