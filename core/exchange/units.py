"""The use cases a unit calls (through any adapter): create, upload, submit, inbox, fetch,
acknowledge, refuse, cancel, view.

A source creates a packet and uploads its content; the hub accepts it and tells the destinations;
each destination fetches and acknowledges (delivered) or refuses (failed). Push deliveries are
ended by the engine through `end_delivery` instead.
"""

from __future__ import annotations

import dataclasses
import hmac
import uuid
from collections.abc import AsyncIterable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select, update

from lgsp.core import audit
from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.auth import Principal
from lgsp.core.content import ContentRef
from lgsp.core.contentkeys import ContentKeys
from lgsp.core.errors import Problem
from lgsp.core.events import record
from lgsp.core.exchange.base import AfterCommit, modes_of
from lgsp.core.exchange.uploads import UploadSteps
from lgsp.core.exchange.values import (
    MAX_REASON,
    InboxPosition,
    NewPacket,
    PacketInfo,
    Transfer,
    parse_new_packet,
    uuid_like,
)
from lgsp.core.exchange.views import (
    Cancelled,
    DeliveryView,
    InboxItem,
    InboxPage,
    PacketView,
    Readable,
    StoredVariant,
    TimelineEntry,
)
from lgsp.core.i18n import Text
from lgsp.core.signing import SHA256_RE
from lgsp.core.store import deferred
from lgsp.core.store.blobs import KeyOpener
from lgsp.core.store.params import constants
from lgsp.core.store.tables import deliveries, packet_events, packets, units
from lgsp.core.text import text_problem

_INSERT_PACKET = packets.insert()


class UnitCases(UploadSteps):
    """Unit-facing use cases: each checks who asks, commits, then acts."""

    # -- create -------------------------------------------------------------------------------
    async def create(self, principal: Principal, body: Any) -> tuple[PacketInfo, Transfer]:
        now = self.clock()
        # Content-aware data types (edXML) may leave to/subject/priority to the content.
        body, implicit = self.content.prepare_create(body)
        new = parse_new_packet(body, max_size=self.max_packet_size, max_recipients=self.max_recipients, now=now,
                               destinations_from_content="to" in implicit)
        if implicit:
            new = dataclasses.replace(new, meta={**new.meta, "implicit": implicit})
        return await self.create_packet(principal.unit_id, new, now=now,
                                        application=principal.application_id or None)

    async def create_packet(self, source: str, new: NewPacket, *, now: datetime | None = None,
                            application: str | None = None) -> tuple[PacketInfo, Transfer]:
        info, _ = await self._create_packet(source, new, now=now, application=application)
        return info, self.upload_transfer(info, source)

    async def _create_packet(self, source: str, new: NewPacket, *, now: datetime | None = None,
                             application: str | None = None) -> tuple[PacketInfo, KeyOpener | None]:
        """Create the packet; with it, its data key as made in that transaction (still sealed)."""
        now = now or self.clock()
        await self.check_destinations(new.to)
        self.check_carriers(new.to, new.data_type)
        if self.policy is not None:  # after the directory's answer, so a refusal tells nothing more
            await self.policy.check_packet(source, application, new.to, new.data_type)
        packet_id = str(uuid.uuid4())
        expires = now + self.transfer_ttl
        async with self.db.write_one() as conn:
            # Nothing here is read back in the transaction: on PostgreSQL the packet, its deliveries,
            # its data key and the audit entry travel with the event's INSERT, one statement sent in
            # autocommit (core/store/deferred.py, `Database.write_one`).
            await deferred.insert(conn, packets, dict(
                id=packet_id, source_unit=source, subject=new.subject, priority=new.priority,
                data_type=new.data_type, protocol=new.protocol, size=new.size, sha256=new.sha256,
                deadline=new.deadline, policy=new.policy, meta=new.meta or None, state="created",
                content_state="none", created_at=now, upload_expires_at=expires, source_application=application),
                _INSERT_PACKET)
            if new.to:  # none yet when the content names them
                await deferred.insert(conn, deliveries, [self._delivery_row(packet_id, u, new.priority, now)
                                                         for u in new.to])
            data_key: KeyOpener | None = None
            if self.blobs.encrypt and isinstance(self.blobs.keys, ContentKeys):
                # The content's data key, durable with the packet.
                data_key = self.blobs.keys.opener(packet_id, await self.blobs.keys.create_in(conn, packet_id))
            await audit.append(conn, "packet.created", actor=source, target=packet_id, unit=source, at=now, detail={
                "application": application, "to": list(new.to), "data_type": new.data_type, "size": new.size,
                "sha256": new.sha256})
            created = await record(conn, packet_id, ev.PACKET_CREATED, now, unit=source)
        self.bus.publish([created])  # history only: no stream gets it (metrics count it)
        info = PacketInfo(id=packet_id, source=source, to=tuple(sorted(new.to)), subject=new.subject,
                          priority=new.priority, data_type=new.data_type, protocol=new.protocol, size=new.size,
                          sha256=new.sha256, deadline=new.deadline, policy=new.policy, meta=new.meta or None,
                          state="created", content_state="none", created_at=now, upload_expires_at=expires)
        return info, data_key

    def upload_transfer(self, info: PacketInfo, unit: str) -> Transfer:
        query = self.tokens.make("upload", info.id, unit, info.upload_expires_at)
        return Transfer("PUT", f"/v1/packets/{info.id}/content?{query}", info.upload_expires_at)

    async def submit(self, source: str, new: NewPacket, content: AsyncIterable[bytes], *,
                     application: str | None = None) -> PacketInfo:
        """Create and fill a packet in one step, for inbound adapters that already hold the content.

        If the content fails its checks the packet is closed as expired at once (nothing is delivered)
        and the Problem propagates to the adapter.
        """
        info, data_key = await self._create_packet(source, new, application=application)
        attempt = await self._take_turn(info.id)
        try:
            received = await self._receive(info, content, attempt, data_key)
        except BaseException as exc:
            reason = exc.detail if isinstance(exc, Problem) else type(exc).__name__
            await self._abandon(info, Text("content rejected: {reason}", reason=reason))
            raise
        finally:
            self._end_turn(info.id, attempt)
        return await self._accept(info, received)

    async def find_submitted(self, source: str, sha256: str, since: datetime, meta_key: str,
                             value: str) -> PacketInfo | None:
        """The accepted packet `source` created since `since` with this hash and `meta[meta_key] ==
        value`: how an adapter submitting on a unit's behalf learns, after a crash, that it already did."""
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(packets.c.id, packets.c.state, packets.c.meta).where(and_(
                    packets.c.source_unit == source, packets.c.created_at >= since, packets.c.sha256 == sha256,
                    packets.c.state.in_(constants(("accepted", "completed"))))))).all()
            for row in rows:
                if isinstance(row.meta, dict) and row.meta.get(meta_key) == value:
                    return await self._load(conn, row.id)
        return None

    async def _abandon(self, info: PacketInfo, reason: str) -> None:
        now = self.clock()
        async with self.db.write() as conn:
            result = await conn.execute(update(packets).where(
                and_(packets.c.id == info.id, packets.c.state == "created")).values(state="expired", completed_at=now))
            if result.rowcount:
                await dv.move(conn, info.id, None, dv.EXPIRED, now, reason=reason)
                await record(conn, info.id, ev.UPLOAD_FAILED, now, unit=info.source, detail={"reason": reason})
                await ContentKeys.destroy(conn, [info.id])  # nothing of this packet is ever readable again
        await self._after_commit(AfterCommit(partials_of=info.id))

    # -- upload -------------------------------------------------------------------------------
    async def upload(self, principal: Principal, packet_id: str, declared_sha256: str,
                     content: AsyncIterable[bytes], *, expires: str | None = None,
                     token: str | None = None) -> PacketInfo:
        """Stream the content in, check size and hash, then accept the packet and tell destinations."""
        now = self.clock()
        async with self.db.read() as conn:  # with its data key (sealed): the writer reads none itself
            loaded = await self._load_with_deliveries(conn, packet_id, with_key=True) if uuid_like(packet_id) \
                else None
        if loaded is None or loaded.info.source != principal.unit_id:
            raise Problem("not_found", Text("no such packet"))
        info = loaded.info
        self.tokens.check("upload", packet_id, principal.unit_id, expires, token, now)
        if info.state != "created":
            raise Problem("conflict", Text("content was already uploaded (packet is {state})", state=info.state),
                          state=info.state)
        if info.upload_expires_at <= now:
            raise Problem("transfer.expired", Text("the upload window of this packet has closed"))
        if declared_sha256 != info.sha256:
            raise Problem("content.hash_mismatch",
                          Text("X-LGSP-Content-SHA256 differs from the sha256 declared when the packet was created"))
        waited = packet_id in self._uploading
        attempt = await self._take_turn(packet_id)
        try:
            if waited:  # the attempt it waited for may have been accepted meanwhile
                async with self.db.read() as conn:
                    state = await conn.scalar(select(packets.c.state).where(packets.c.id == packet_id))
                if state != "created":
                    raise Problem("conflict", Text("content was already uploaded (packet is {state})", state=state),
                                  state=state)
            received = await self._receive(info, content, attempt, loaded.data_key)
        finally:
            self._end_turn(packet_id, attempt)
        return await self._accept(info, received)

    # -- destination side ---------------------------------------------------------------------
    async def inbox(self, principal: Principal, limit: int = 100) -> tuple[InboxItem, ...]:
        """The first `limit` pending pull deliveries (see `inbox_page`)."""
        return (await self.inbox_page(principal, limit)).items

    async def inbox_page(self, principal: Principal, limit: int = 100, after: InboxPosition | None = None
                         ) -> InboxPage:
        """Pending pull deliveries, flash first, then oldest (then by id); with the source's presence.

        Starts strictly after `after`; the page holds the items and the position to continue from
        (None when no more remain). Keyset, not offset: rows leaving or arriving meanwhile shift nothing.
        """
        return await self._inbox_page(principal.unit_id, limit, after)

    async def offer(self, principal: Principal, packet_id: str) -> ContentRef:
        """What a destination may fetch now (its variant: size, hash, data type), without fetching it.

        `not_found` for anyone but a destination of the accepted packet; `conflict` for a push
        delivery; `content.gone` once the delivery has ended.
        """
        async with self.db.read() as conn:
            info, own = await self._visible_row(conn, principal, packet_id)
            self._require_pull(own)
            if own is None:
                raise Problem("not_found", Text("no such packet"))
            self._require_pending(own.state)
            return await self.content.ref_for(conn, info, principal.unit_id, variant=own.variant)

    async def ready(self, principal: Principal, packet_id: str) -> Transfer:
        async with self.db.read() as conn:
            _, own = await self._visible_row(conn, principal, packet_id)
        self._require_pull(own)
        state = own.state if own is not None else None
        if state is None:
            raise Problem("not_found", Text("no such packet"))
        self._require_pending(state)
        expires = self.clock() + self.transfer_ttl
        query = self.tokens.make("download", packet_id, principal.unit_id, expires)
        return Transfer("GET", f"/v1/packets/{packet_id}/content?{query}", expires)

    @staticmethod
    def _require_pull(row: Any) -> None:
        if row is not None and row.mode == dv.PUSH:
            raise Problem("conflict",
                          Text("this packet is delivered to you by push ({protocol}); it cannot also be "
                               "fetched, acknowledged or refused here", protocol=row.protocol), mode=dv.PUSH)

    @staticmethod
    def _require_pending(state: str) -> None:
        if state == dv.WAITING:
            raise Problem("not_found", Text("no such packet"))
        if state in dv.TERMINAL:
            raise Problem("content.gone", Text("this delivery is {state}; its content is no longer offered",
                                               state=state),
                          state=state)

    async def open_download(self, principal: Principal, packet_id: str, *, expires: str | None = None,
                            token: str | None = None) -> tuple[PacketInfo, Path]:
        """Check the caller may read the content now (`peek_download`); mark the delivery fetched;
        return the file."""
        found = await self.open_content(principal, packet_id, expires=expires, token=token)
        return found.info, found.path

    async def peek_download(self, principal: Principal, packet_id: str, *, expires: str | None = None,
                            token: str | None = None) -> tuple[PacketInfo, Path]:
        """What `open_download` would answer, changing nothing: a HEAD asks the size of a download
        without the source seeing the packet as fetched."""
        found = await self.open_content(principal, packet_id, expires=expires, token=token, peek=True)
        return found.info, found.path

    async def open_content(self, principal: Principal, packet_id: str, *, expires: str | None = None,
                           token: str | None = None, peek: bool = False,
                           admit: Callable[[PacketInfo], None] | None = None) -> Readable:
        """`open_download` (or with `peek`, `peek_download`), with the packet's data key as loaded
        with the packet: the adapter passes it to the read, which then reads no key itself.

        `admit` sees what would be read before the delivery is marked fetched, and may refuse it by
        raising (a byte range the content does not have): a refused request is no download."""
        found, state = await self._readable(principal, packet_id, expires, token)
        if admit is not None:
            admit(found.info)
        if not peek and state in (dv.QUEUED, dv.NOTIFIED):
            await ev.move_and_record(self.db, packet_id, principal.unit_id, dv.FETCHED, self.clock(), ev.PACKET_FETCHED)
        return found

    async def _readable(self, principal: Principal, packet_id: str, expires: str | None,
                        token: str | None) -> tuple[Readable, str | None]:
        """THE checks of a download: (the caller's variant, its file and the packet's data key; the
        caller's delivery state).

        The caller is authenticated (a signed request), which suffices; a transfer URL's `expires`
        and `token`, when given (either one), must still be the hub's and unexpired.
        """
        now = self.clock()
        async with self.db.read() as conn:
            info, own, data_key = await self._visible_loaded(conn, principal, packet_id, with_key=True)
            ref = await self.content.ref_for(conn, info, principal.unit_id,  # this unit's variant
                                             variant=own.variant if own is not None else None)
        self._require_pull(own)
        state = own.state if own is not None else None
        if expires is not None or token is not None:
            self.tokens.check("download", packet_id, principal.unit_id, expires, token, now)
        if state is not None:
            self._require_pending(state)
        if info.content_state != "stored":
            raise Problem("content.gone", Text("the content of this packet is no longer held by the hub"))
        return Readable(dataclasses.replace(info, size=ref.size, sha256=ref.sha256), self.blobs.path(ref.blob_key),
                        data_key), state

    async def ack(self, principal: Principal, packet_id: str, sha256: Any) -> str:
        if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
            raise Problem("request.invalid", Text("sha256: must be 64 lowercase hex digits"), field="sha256")
        async with self.db.read() as conn:
            info, own = await self._visible_row(conn, principal, packet_id)
            ref = await self.content.ref_for(conn, info, principal.unit_id,  # this unit's variant
                                             variant=own.variant if own is not None else None)
        if not self._may_end(own, dv.DELIVERED):
            return dv.DELIVERED
        if not hmac.compare_digest(sha256, ref.sha256):
            raise Problem("content.hash_mismatch",
                          Text("the acknowledged SHA-256 is not the packet's; the delivery stays pending"))
        return await self._finish(info, principal.unit_id, dv.DELIVERED, None, variant=own.variant if own else None)

    async def fail(self, principal: Principal, packet_id: str, reason: Any) -> str:
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            raise Problem("request.invalid", Text("reason: must be 1 to {MAX_REASON} characters",
                                                  MAX_REASON=MAX_REASON), field="reason")
        if (why := text_problem(reason, multiline=True)) is not None:
            raise Problem("request.invalid", Text("reason: {why}", why=why), field="reason")
        async with self.db.read() as conn:
            info, own = await self._visible_row(conn, principal, packet_id)
        if not self._may_end(own, dv.FAILED):
            return dv.FAILED
        return await self._finish(info, principal.unit_id, dv.FAILED, reason.strip(),
                                  variant=own.variant if own else None)

    def _may_end(self, own: Any, ending: str) -> bool:
        """Whether this unit's pull delivery can still end as `ending`: False for a repeat (it already
        did, and the caller answers the same); not found before it is offered; conflict once it
        ended otherwise."""
        self._require_pull(own)
        state = own.state if own is not None else None
        if state is None or state == dv.WAITING:
            raise Problem("not_found", Text("no such packet"))
        if state == ending:
            return False
        if state in dv.TERMINAL:
            raise Problem("conflict", Text("this delivery is already {state}", state=state), state=state)
        return True

    # -- source side --------------------------------------------------------------------------
    async def cancel(self, principal: Principal, packet_id: str) -> Cancelled:
        async with self.db.read() as conn:
            info, _ = await self._visible(conn, principal, packet_id)
        if info.source != principal.unit_id:
            raise Problem("forbidden", Text("only the source may cancel a packet"))
        now = self.clock()
        after = AfterCommit()
        async with self.db.write() as conn:
            before = await dv.states_of(conn, packet_id)
            modes = await modes_of(conn, packet_id)
            moved = await dv.move(conn, packet_id, None, dv.CANCELLED, now, reason=Text("cancelled by the source"))
            for unit in moved:
                told = before.get(unit) in dv.PENDING and modes.get(unit) == dv.PULL
                after.events.append(await record(conn, packet_id, ev.PACKET_CANCELLED, now, unit=unit,
                                                 audience=unit if told else None))
            if moved:
                await self._complete_if_done(conn, packet_id, now, after)
            fresh = await self._load(conn, packet_id)
        after.failed(info, moved, dv.CANCELLED, "cancelled by the source")
        await self._after_commit(after)
        assert fresh is not None
        return Cancelled(packet_id, tuple(sorted(moved)), fresh.state)

    async def view(self, principal: Principal, packet_id: str) -> PacketView:
        """The packet as the caller may see it: all deliveries for the source, its own otherwise."""
        async with self.db.read() as conn:
            info, _ = await self._visible(conn, principal, packet_id)
            is_source = info.source == principal.unit_id
            d_stmt = (select(deliveries, units.c.online, units.c.last_seen_at)
                      .join(units, units.c.id == deliveries.c.unit_id)
                      .where(deliveries.c.packet_id == packet_id).order_by(deliveries.c.unit_id))
            e_stmt = select(packet_events).where(packet_events.c.packet_id == packet_id).order_by(packet_events.c.id)
            if not is_source:
                d_stmt = d_stmt.where(deliveries.c.unit_id == principal.unit_id)
                e_stmt = e_stmt.where((packet_events.c.unit == principal.unit_id)
                                      | (packet_events.c.unit.is_(None)))
            d_rows = (await conn.execute(d_stmt)).all()
            e_rows = (await conn.execute(e_stmt)).all()
            ref, stored, described = await self.content.view_parts(conn, info, principal.unit_id, is_source)
        return PacketView(
            id=info.id, source=info.source, subject=info.subject, priority=info.priority,
            data_type=ref.data_type if ref else info.data_type, size=ref.size if ref else info.size,
            sha256=ref.sha256 if ref else info.sha256, created_at=info.created_at, state=info.state,
            content_state=info.content_state, protocol=info.protocol, deadline=info.deadline,
            deliveries=tuple(_delivery_view(d, self.presence_overlay(d.unit_id, bool(d.online), d.last_seen_at))
                             for d in d_rows),
            events=tuple(_timeline_entry(e) for e in e_rows),
            to=info.to if is_source else None,
            upload_expires_at=info.upload_expires_at if is_source and info.state == "created" else None,
            metadata=info.meta or None, variant=ref.variant if ref else None,
            variants=None if stored is None else tuple(
                StoredVariant(r.variant, r.size, r.sha256, r.media_type, r.data_type or None) for r in stored),
            described=described)


def _delivery_view(d: Any, presence: tuple[bool, datetime | None]) -> DeliveryView:
    online, seen = presence
    push = d.mode == dv.PUSH
    return DeliveryView(unit=d.unit_id, state=d.state, updated_at=d.updated_at, mode=d.mode, online=online,
                        last_seen_at=seen, reason=d.reason or None, protocol=d.protocol if push else None,
                        attempts=d.attempts if push else 0,
                        next_attempt_at=d.next_attempt_at if push and d.state == dv.RETRYING else None,
                        last_error=d.last_error if push else None)


def _timeline_entry(e: Any) -> TimelineEntry:
    detail = e.detail or {}
    return TimelineEntry(at=e.at, type=e.type, unit=e.unit, reason=detail.get("reason") or None,
                         attempts=detail.get("attempts") or None)
