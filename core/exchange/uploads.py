"""Receiving a packet's content: one attempt at a time per packet on this node, stored under its
own key, checked (size, hash, inspection), then accepted by one conditional update.

Stalled uploads: `_uploading` keeps the attempt in progress per packet; a newer upload of the same
packet takes over at once from an attempt that has received nothing for `upload_stall_seconds`,
waits at most that long for one still receiving, and gets `conflict` if that one is still sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, cast, literal, null, select, union_all, update

from lgsp.core import audit
from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.content import Inspection
from lgsp.core.errors import Problem
from lgsp.core.exchange.base import AfterCommit, ExchangeBase, log
from lgsp.core.exchange.values import PacketInfo, upload_key
from lgsp.core.i18n import Text
from lgsp.core.store import deferred, inline_blobs
from lgsp.core.store.blobs import KeyOpener, PartialRemoved
from lgsp.core.store.params import MAX_PLAIN, in_list, in_values
from lgsp.core.store.tables import deliveries, packet_events, packets

# The acceptance, built once: a statement built per call is keyed again by SQLAlchemy at each execution.
_ACCEPT = (update(packets).where(and_(packets.c.id == bindparam("p_packet"), packets.c.state == "created"))
           .values(state="accepted", content_state="stored", blob_key=bindparam("blob_key"),
                   accepted_at=bindparam("accepted_at")))
_WAITING = sorted(dv.ALLOWED_FROM[dv.QUEUED])  # the deliveries an acceptance makes due


@functools.lru_cache(maxsize=MAX_PLAIN + 2)
def _one_statement(n_live: int) -> tuple[Any, Any]:
    """The acceptance of `UploadSteps._accept_in_one_statement`, for `n_live` destinations with a
    stream open, and its CTE `accepted` (the packet's move: the rows held for the statement are
    written only if it moved). Built once per `n_live`.

        WITH accepted AS (UPDATE packets … WHERE id = :p_packet AND state = 'created' RETURNING id),
             moved AS (UPDATE deliveries SET state = CASE WHEN pull AND streaming THEN 'notified'
                       ELSE 'queued' END … FROM accepted WHERE … state = 'waiting' RETURNING unit_id, mode),
             recorded AS (INSERT INTO packet_events … SELECT [accepted, from accepted]
                          UNION ALL [available, from moved where pull] ORDER BY … RETURNING id, type, unit)
        SELECT id, type, unit, NULL FROM recorded UNION ALL SELECT NULL, NULL, unit_id, mode FROM moved

    Every part runs whether the main SELECT reads it or not, on the snapshot the statement started
    with; the parts that follow the packet's move read its RETURNING, so nothing is written for a
    packet that was not awaiting its content. The events' ids are drawn in the ORDER BY's order:
    the acceptance, then the destinations by unit, as the transaction recorded them."""
    accepted = _ACCEPT.returning(packets.c.id).cte("accepted")
    d, e = deliveries.c, packet_events.c
    at = bindparam("accepted_at", type_=d.updated_at.type)
    state: Any = literal(dv.QUEUED)
    if n_live:
        state = case((and_(d.mode == dv.PULL, in_list(d.unit_id, "p_live", n_live)), literal(dv.NOTIFIED)),
                     else_=state)
    moved = (update(deliveries).where(and_(d.packet_id == accepted.c.id, in_list(d.state, "p_from", len(_WAITING))))
             .values(state=state, updated_at=at, queued_at=at).returning(d.unit_id, d.mode).cte("moved"))
    event_at = bindparam("accepted_at", type_=e.at.type)
    told = select(accepted.c.id.label("packet_id"), event_at.label("at"), literal(ev.PACKET_ACCEPTED).label("type"),
                  bindparam("p_source_unit", type_=e.unit.type).label("unit"),
                  cast(null(), e.audience.type).label("audience"), cast(null(), e.detail.type).label("detail"),
                  literal(0).label("k"), literal("").label("o"))
    available = select(bindparam("p_packet", type_=e.packet_id.type), event_at, literal(ev.PACKET_AVAILABLE),
                       moved.c.unit_id, moved.c.unit_id, bindparam("p_detail", type_=e.detail.type), literal(1),
                       moved.c.unit_id).where(moved.c.mode == dv.PULL)
    recorded = ev.recorded_cte((told, available), e.id, e.type, e.unit)
    main = union_all(select(recorded.c.id.label("seq"), recorded.c.type, recorded.c.unit, null().label("mode")),
                     select(null(), null(), moved.c.unit_id, moved.c.mode))
    return main, accepted


@dataclass(frozen=True)
class Received:
    """One upload attempt, stored and checked: its blob key, what inspection found, and, for a small
    upload kept in the store (`BlobStore.inlines`), its sealed bytes for the acceptance to write."""

    key: str
    inspection: Inspection | None
    sealed: bytes | None = None


@dataclass(eq=False)
class UploadAttempt:
    """One upload of a packet being received on this node: a newer one may take over once it stalls."""

    task: asyncio.Task[Any] | None
    last_activity: float  # event-loop time of the last chunk received
    receiving: bool = True  # False once every byte is in (size, hash and inspection checks follow)
    superseded: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def supersede(self) -> None:
        """A newer attempt takes over: this one is cancelled where it waits for data (its files are
        removed as it unwinds) and can no longer be accepted."""
        self.superseded = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class UploadSteps(ExchangeBase):
    """The steps `upload` and `submit` share."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Uploads being received on this node, by packet; an attempt that has received nothing for
        # `upload_stall_seconds` gives way to a newer one (the HTTP server cuts it after as long too).
        self._uploading: dict[str, UploadAttempt] = {}

    async def _take_turn(self, packet_id: str) -> UploadAttempt:
        """Register this task's upload of a packet, after the one in progress on this node (if any).

        An attempt in progress that has received nothing for `upload_stall_seconds` is superseded at
        once. One still receiving is waited for, at most that long: if it ends (cut, refused or
        accepted) this one goes ahead; if it is still sending then, this one gets `conflict`. So a
        source whose connection stalled can upload again without waiting for the server to notice.
        """
        loop = asyncio.get_running_loop()
        stall = self.upload_stall_seconds
        give_up = loop.time() + stall
        while (current := self._uploading.get(packet_id)) is not None:
            now = loop.time()
            if not current.receiving:
                raise Problem("conflict", Text("another upload of this packet has been received and is being checked"))
            if now - current.last_activity >= stall:
                log.info("upload of packet %s received nothing for %g s; a newer upload takes over", packet_id, stall)
                current.supersede()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(current.done.wait(), 30)
                if self._uploading.get(packet_id) is current:  # pragma: no cover - it did not unwind
                    del self._uploading[packet_id]
                continue
            if now >= give_up:
                raise Problem("conflict", Text("another upload of this packet is in progress and still sending"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current.done.wait(), min(give_up, current.last_activity + stall) - now)
        attempt = UploadAttempt(task=asyncio.current_task(), last_activity=loop.time())
        self._uploading[packet_id] = attempt
        return attempt

    def _end_turn(self, packet_id: str, attempt: UploadAttempt) -> None:
        if self._uploading.get(packet_id) is attempt:
            del self._uploading[packet_id]
        attempt.done.set()

    async def _receive(self, info: PacketInfo, content: AsyncIterable[bytes], attempt: UploadAttempt,
                       data_key: KeyOpener | None = None) -> Received:
        """Store one upload attempt under its own key (a file, or for a small upload its sealed bytes
        in memory until the acceptance keeps them); returns it with what inspection found.
        `data_key`: the packet's data key as loaded with it (unsealed by the writer; without it, or
        when the packet has none, the writer reads or makes it).

        Each attempt has its own blobs, so an attempt that loses a race (another node's upload of the
        same packet was accepted first) deletes only what it wrote itself.
        """
        key = upload_key(info.id)
        loop = asyncio.get_running_loop()
        try:
            # The declared size lets a small packet's blob go to disk in one worker-thread call.
            inline = self.blobs.inlines(info.size)
            async with self.blobs.writer(key, data_key, size=info.size, inline=inline) as writer:
                async for chunk in content:
                    attempt.last_activity = loop.time()
                    if writer.size + len(chunk) > info.size:
                        raise Problem("content.size_mismatch",
                                      Text("more than the declared {size} bytes were sent", size=info.size))
                    await writer.write(chunk)
                attempt.receiving = False
                if writer.size != info.size:
                    raise Problem("content.size_mismatch",
                                  Text("received {size} bytes, declared {size2}", size=writer.size, size2=info.size))
                digest = await writer.finish()
                if digest != info.sha256:
                    raise Problem("content.hash_mismatch", Text("the content's SHA-256 differs from the declared one"))
                await writer.commit()
            if attempt.superseded:  # pragma: no cover - superseded only while receiving, so cancelled there
                raise Problem("conflict", Text("a newer upload of this packet took over"))
            # Content-aware data types (edXML) are read before acceptance; a refusal deletes the upload.
            inspection = await self.content.inspect(info, self.blobs.path(key), key, data_key=data_key,
                                                    sealed=writer.sealed)
            return Received(key, inspection, writer.sealed)
        except PartialRemoved:
            # Another attempt (on another node) was accepted meanwhile and removed this one's files.
            await self.content.delete_blobs(key)
            raise Problem("conflict", Text("the packet is no longer awaiting its content")) from None

    async def _accept(self, info: PacketInfo, received: Received) -> PacketInfo:
        key, inspection = received.key, received.inspection
        now = self.clock()
        after = AfterCommit()
        fresh: PacketInfo | None = None
        if inspection is None and self.db.dialect == "postgresql":
            if await self._accept_in_one_statement(info, received, now, after):
                fresh = dataclasses.replace(info, state="accepted", content_state="stored", blob_key=key,
                                            accepted_at=now)
            return await self._accepted(info, key, fresh, after)
        async with self.db.write() as conn:
            result = await conn.execute(_ACCEPT, {"p_packet": info.id, "blob_key": key, "accepted_at": now})
            if result.rowcount == 1:
                if received.sealed is not None:  # a small upload: its content is kept with its acceptance
                    await inline_blobs.keep(conn, key, received.sealed)
                variant_of: dict[str, dict[str, Any]] = {}
                if inspection is not None:
                    # What the content inspection found (destinations, variants, metadata).
                    after.events.extend(await self.content.apply(conn, info, inspection, now, self._delivery_row))
                    info = await self._load(conn, info.id) or info
                    variant_of = await self.content.delivery_refs(conn, info.id)
                # The deliveries that became due (every one still waiting; one an operator cancelled
                # meanwhile stays as it is and is not announced), with their modes.
                queued = await dv.move_rows(conn, info.id, None, dv.QUEUED, now, values={"queued_at": now})
                pulled = sorted(r.unit_id for r in queued if r.mode == dv.PULL)
                after.push_units = sorted(r.unit_id for r in queued if r.mode == dv.PUSH)
                live = [u for u in pulled if self.bus.connected(u)]
                await dv.move(conn, info.id, live, dv.NOTIFIED, now)
                after.pending.append(ev.NewEvent(info.id, ev.PACKET_ACCEPTED, now, unit=info.source))
                await audit.append(conn, "packet.accepted", actor=info.source, target=info.id, unit=info.source,
                                   at=now, detail={"sha256": info.sha256, "size": info.size, "to": sorted(info.to)})
                after.pending.extend(ev.NewEvent(info.id, ev.PACKET_AVAILABLE, now, unit=unit, audience=unit,
                                                 detail=self._available_detail(info) | variant_of.get(unit, {}))
                                     for unit in pulled)
                await after.flush(conn)  # one INSERT for the accepted and the available events
                fresh = dataclasses.replace(info, state="accepted", content_state="stored", blob_key=key,
                                            accepted_at=now)
        return await self._accepted(info, key, fresh, after)

    async def _accepted(self, info: PacketInfo, key: str, fresh: PacketInfo | None, after: AfterCommit
                        ) -> PacketInfo:
        """After the acceptance's commit: the packet as accepted, or `conflict` if it was not."""
        if fresh is None:
            # Lost a race with another node's upload, or the packet expired meanwhile: drop this
            # attempt's blobs only (the winner's are under another key).
            await self.content.delete_blobs(key)
            raise Problem("conflict", Text("the packet is no longer awaiting its content"))
        # Every other copy of the content that is not this upload goes now: partial uploads left by a
        # cut connection or a crash, and attempts on other nodes (which can no longer be accepted).
        after.partials_of = info.id
        after.hooks.append(("lgsp_packet_accepted", {"packet": fresh}))
        await self._after_commit(after)
        return fresh

    async def _accept_in_one_statement(self, info: PacketInfo, received: Received, now: datetime,
                                       after: AfterCommit) -> bool:
        """PostgreSQL, content no inspector reads: the acceptance as one statement (`_one_statement`),
        sent in autocommit (`Database.write_one`), so one round trip instead of six (BEGIN, the
        packet's move, the deliveries' two moves, the events INSERT, COMMIT). Whether it accepted.

        What the transaction decided between its statements is decided before it: the pull
        destinations with a stream open on this node are told at once (waiting → notified, the path
        `told_on_acceptance` of core/states.py); the others are queued, as the transaction left them."""
        streaming = [unit for unit in info.to if self.bus.connected(unit)]
        statement, accepted = _one_statement(min(len(streaming), MAX_PLAIN + 1))  # more: one expanding list
        detail = self._available_detail(info)
        params = {"p_packet": info.id, "blob_key": received.key, "accepted_at": now, "p_source_unit": info.source,
                  "p_detail": detail, **in_values("p_from", _WAITING), **in_values("p_live", streaming)}
        async with self.db.write_one() as conn:
            if received.sealed is not None:  # held: written by the statement, only if it accepts
                await inline_blobs.keep(conn, received.key, received.sealed)
            await audit.append(conn, "packet.accepted", actor=info.source, target=info.id, unit=info.source,
                               at=now, detail={"sha256": info.sha256, "size": info.size, "to": sorted(info.to)})
            statement, params = deferred.with_held(statement, params, deferred.take(conn), guard=accepted)
            rows = (await conn.execute(statement, params)).all()
        written = sorted((r for r in rows if r.seq is not None), key=lambda r: r.seq)
        if not written:
            return False  # the packet was no longer awaiting its content: nothing was written
        after.events.extend(
            ev.Event(int(r.seq), r.type, info.id, now, r.unit, None if r.type == ev.PACKET_ACCEPTED else r.unit,
                     None if r.type == ev.PACKET_ACCEPTED else detail) for r in written)
        after.push_units = sorted(r.unit for r in rows if r.seq is None and r.mode == dv.PUSH)
        return True
