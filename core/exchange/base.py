"""What every part of the exchange shares: its state, reading packets, ending a delivery, and the
one after-commit step.

Commit, then act: each use case changes state and records its events in one transaction, then
hands an `AfterCommit` to `_after_commit`, which deletes content recorded as purged, removes
partial uploads, publishes the events to streams, wakes push queues and calls plugins, always in
that order. A crash between the commit and these actions leaves a state the hub finishes
(`reconcile_blobs` deletes files the commit said were gone).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, cast, delete, literal, null, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import audit
from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.auth import Principal
from lgsp.core.content import ContentService
from lgsp.core.contentkeys import ContentKeys
from lgsp.core.directory import Directory
from lgsp.core.errors import Problem
from lgsp.core.events import Event, EventBus
from lgsp.core.exchange.tokens import TransferTokens
from lgsp.core.exchange.values import InboxPosition, PacketInfo, packet_from_row, uuid_like
from lgsp.core.exchange.views import InboxItem, InboxPage
from lgsp.core.i18n import Text
from lgsp.core.policy import Policy
from lgsp.core.store import deferred
from lgsp.core.store.blobs import BlobStore, KeyOpener
from lgsp.core.store.database import Database
from lgsp.core.store.params import constants, in_list, in_values
from lgsp.core.store.tables import content_keys, deliveries, packet_events, packets, units

log = logging.getLogger("lgsp.core.exchange")

HookCaller = Callable[..., Awaitable[None]]

# Every request about a packet loads it with its deliveries: one statement (the packet's columns
# repeated on each delivery row; one row with NULL delivery columns for a packet without any),
# built once (SQLAlchemy then skips construction and keying).
_PACKET_WITH_DELIVERIES = (
    select(packets, deliveries.c.unit_id.label("d_unit"), deliveries.c.state.label("d_state"),
           deliveries.c.mode.label("d_mode"), deliveries.c.protocol.label("d_protocol"),
           deliveries.c.variant.label("d_variant"))
    .select_from(packets.outerjoin(deliveries, deliveries.c.packet_id == packets.c.id))
    .where(packets.c.id == bindparam("packet_id")).order_by(deliveries.c.unit_id))
# The upload and the download also read the packet's sealed data key (by primary key; NULL without
# one) in that statement: no statement of their own for it, and the key is the one of the packet
# state they check (one statement, one snapshot). Other requests do not need it and keep the first.
_PACKET_WITH_DELIVERIES_AND_KEY = (
    _PACKET_WITH_DELIVERIES.add_columns(content_keys.c.sealed.label("k_sealed"))
    .outerjoin(content_keys, content_keys.c.key_id == packets.c.id))


class DeliveryBrief(NamedTuple):
    """What a request about a packet needs of one of its deliveries (loaded with the packet)."""

    unit_id: str
    state: str
    mode: str
    protocol: str | None
    variant: str | None


class Loaded(NamedTuple):
    """A packet as a request loaded it: its deliveries by unit and, when asked for, its data key."""

    info: PacketInfo
    deliveries: dict[str, DeliveryBrief]
    #: The packet's data key, still sealed, unsealed by the read or write that calls it (None: not
    #: asked for, or no `ContentKeys` source; calling it gives None when the packet has no key).
    data_key: KeyOpener | None = None


_MODES_OF = select(deliveries.c.unit_id, deliveries.c.mode).where(deliveries.c.packet_id == bindparam("packet_id"))
# Completes the packet only if no delivery is still open: one statement decides (see _complete_if_done),
# and records stored content as purged in the same UPDATE. Content is only ever purged here, when
# its packet completes, so a packet this statement completes had its content stored or none: the
# content_state it returns says "purged" exactly when this statement purged it.
_STORED = packets.c.content_state == "stored"


def open_deliveries(packet_id: Any) -> Any:
    """SQL: the packet (an id or a column) still has a delivery that has not ended."""
    return select(deliveries.c.unit_id).where(and_(deliveries.c.packet_id == packet_id,
                                                   deliveries.c.state.not_in(constants(dv.TERMINAL)))).exists()


_COMPLETE_IF_DONE = (
    update(packets)
    .where(and_(packets.c.id == bindparam("p_packet"), packets.c.state.not_in(constants(("completed", "expired"))),
                ~open_deliveries(bindparam("p_packet"))))
    .values(state="completed", completed_at=bindparam("p_now", type_=packets.c.completed_at.type),
            content_state=case((_STORED, "purged"), else_=packets.c.content_state),
            purged_at=case((_STORED, bindparam("p_now", type_=packets.c.purged_at.type)), else_=packets.c.purged_at))
    .returning(packets.c.content_state, packets.c.blob_key, packets.c.data_type))


_LOCK_PACKET = select(packets.c.id).where(packets.c.id == bindparam("p_packet")).with_for_update()


@functools.lru_cache(maxsize=32)
def _completion_statement(n_pending: int) -> Any:
    """`_COMPLETE_IF_DONE` with what follows from it, for `n_pending` events of the caller, as one
    PostgreSQL statement (`ExchangeBase._complete_in_one_statement`):

        WITH done AS (UPDATE packets … WHERE … no open delivery RETURNING content_state, blob_key, data_type),
             gone AS (DELETE FROM content_keys WHERE key_id = :key_id_0 AND EXISTS (SELECT FROM done)),
             recorded AS (INSERT INTO packet_events … SELECT [the pending events] UNION ALL
                          [completed, from done] UNION ALL [purged, from done where purged]
                          ORDER BY … RETURNING id)
        SELECT id, NULL, NULL, NULL FROM recorded UNION ALL SELECT NULL, content_state, … FROM done

    The events' ids are drawn in the ORDER BY's order: the caller's events in the order given, then
    the completion's, as `after.flush` recorded them."""
    done = _COMPLETE_IF_DONE.cte("done")
    gone = (delete(content_keys).where(and_(in_list(content_keys.c.key_id, "key_id", 1),
                                            select(literal(1)).select_from(done).exists()))
            .returning(content_keys.c.key_id).cte("gone"))
    e = packet_events.c
    arms: list[Any] = [select(*(bindparam(f"e{i}_{c}", type_=e[c].type).label(c) for c in ev.EVENT_COLUMNS),
                              literal(i).label("k")) for i in range(n_pending)]
    packet, at = bindparam("p_packet", type_=e.packet_id.type), bindparam("p_now", type_=e.at.type)
    for k, (type_, when) in enumerate(((ev.PACKET_COMPLETED, None), (ev.CONTENT_PURGED, done.c.content_state))):
        arm = select(packet.label("packet_id"), at.label("at"), literal(type_).label("type"),
                     *(cast(null(), e[c].type).label(c) for c in ("unit", "audience", "detail")),
                     literal(n_pending + k).label("k")).select_from(done)
        arms.append(arm if when is None else arm.where(when == "purged"))
    recorded = ev.recorded_cte(arms, e.id)
    return union_all(
        select(recorded.c.id.label("seq"), null().label("content_state"), null().label("blob_key"),
               null().label("data_type")),
        select(null(), done.c.content_state, done.c.blob_key, done.c.data_type)).add_cte(gone)


@dataclass
class AfterCommit:
    """What a use case does once its transaction is committed (see `ExchangeBase._after_commit`)."""

    events: list[Event] = field(default_factory=list)
    #: Events to record before the commit, all in one statement (`flush`); they join `events` then.
    pending: list[ev.NewEvent] = field(default_factory=list)
    #: Packet whose content the transaction recorded as purged: every file of it goes.
    purge: str | None = None
    #: Its accepted upload, when it can have no other file (no variants): deleted by name, no scan.
    purge_key: str | None = None
    #: Packet whose partial uploads go (an accepted upload keeps its own blob).
    partials_of: str | None = None
    #: Push units with deliveries that just became due.
    push_units: list[str] = field(default_factory=list)
    #: Plugin hooks to call in the background: (hook name, keyword arguments).
    hooks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def flush(self, conn: AsyncConnection) -> None:
        """Record the pending events in the transaction (one INSERT for all of them); every use case
        that appends to `pending` flushes before its transaction ends."""
        if self.pending:
            self.events.extend(await ev.record_all(conn, self.pending))
            self.pending.clear()

    def failed(self, info: PacketInfo, units: Sequence[str], state: str, reason: str) -> None:
        """Tell plugins these deliveries ended without delivery (`lgsp_packet_failed`)."""
        self.hooks.extend(("lgsp_packet_failed", {"packet": info, "unit": unit, "state": state, "reason": reason})
                          for unit in units)


async def modes_of(conn: AsyncConnection, packet_id: str) -> dict[str, str]:
    rows = (await conn.execute(_MODES_OF, {"packet_id": packet_id})).all()
    return {r.unit_id: r.mode for r in rows}


class ExchangeBase:
    """State and shared steps of `Exchange`; the use cases live in the sibling modules by concern."""

    def __init__(self, db: Database, blobs: BlobStore, directory: Directory, bus: EventBus, *,
                 tokens: TransferTokens, max_packet_size: int, max_recipients: int, transfer_ttl_seconds: int,
                 call_hook: HookCaller, upload_stall_seconds: float = 60.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 push_protocol: Callable[[str], str | None] = lambda unit: None,
                 max_age: Callable[[int], float] | None = None) -> None:
        self.db = db
        self.blobs = blobs
        self.directory = directory
        self.bus = bus
        self.tokens = tokens
        self.max_packet_size = max_packet_size
        self.max_recipients = max_recipients
        self.transfer_ttl = timedelta(seconds=transfer_ttl_seconds)
        self.call_hook = call_hook
        self.clock = clock
        # Which units are reached by push, and through which protocol (None: pull).
        self.push_protocol = push_protocol
        # Max age (seconds) of a queued delivery per priority; None: no age limit.
        self.max_age = max_age
        # Stored presence (unit, online, last_seen) → brought up to date with this node's observations.
        self.presence_overlay: Callable[[str, bool, datetime | None], tuple[bool, datetime | None]] = \
            lambda unit, online, seen: (online, seen)
        # Called (on the event loop) with push units whose deliveries just became due.
        self.on_push_queued: Callable[[list[str]], None] = lambda units: None
        self.upload_stall_seconds = upload_stall_seconds
        self._background: set[asyncio.Task[None]] = set()
        # Units of the directory that never receive packets (the hub's own unit, which signs pushes).
        self.not_destinations: frozenset[str] = frozenset()
        # The data types the route to a unit can carry (None: any); the hub asks the delivery engine.
        self.carried_types: Callable[[str], frozenset[str] | None] = lambda unit: None
        # The communication policy (core/policy.py); the hub installs it.
        self.policy: Policy | None = None
        # Identifiers the directory does not know, offered to the routes of other zones (core/routing.py).
        self.route_unknown: Callable[[list[str]], Awaitable[list[str]]] | None = None
        # Content inspection and variants; the hub installs one with the plugins' inspectors.
        self.use_content(ContentService(db, blobs, bus, clock=clock))

    def use_content(self, content: ContentService) -> None:
        """Take the hub's content service (built later, with the plugins' inspectors)."""
        self.content = content

    # -- reading ------------------------------------------------------------------------------
    async def _load(self, conn: AsyncConnection, packet_id: str) -> PacketInfo | None:
        loaded = await self._load_with_deliveries(conn, packet_id)
        return loaded[0] if loaded else None

    async def _load_with_deliveries(self, conn: AsyncConnection, packet_id: str, *, with_key: bool = False
                                    ) -> Loaded | None:
        """The packet and its deliveries (state, mode, protocol, variant) by unit: one statement.
        `with_key` (an upload or a download): the packet's sealed data key too, in that statement."""
        keys = self.blobs.keys if with_key and isinstance(self.blobs.keys, ContentKeys) else None
        rows = (await conn.execute(_PACKET_WITH_DELIVERIES_AND_KEY if keys is not None else _PACKET_WITH_DELIVERIES,
                                   {"packet_id": packet_id})).all()
        if not rows:
            return None
        own = {r.d_unit: DeliveryBrief(r.d_unit, r.d_state, r.d_mode, r.d_protocol, r.d_variant)
               for r in rows if r.d_unit is not None}
        first = rows[0]
        data_key = keys.opener(first.id, first.k_sealed) if keys is not None else None
        return Loaded(packet_from_row(first, tuple(own)), own, data_key)

    async def packet(self, packet_id: str) -> PacketInfo | None:
        async with self.db.read() as conn:
            return await self._load(conn, packet_id)

    async def _visible(self, conn: AsyncConnection, principal: Principal, packet_id: str
                       ) -> tuple[PacketInfo, str | None]:
        """The packet and the caller's own delivery state, or not_found for anyone else."""
        info, own = await self._visible_row(conn, principal, packet_id)
        return info, own.state if own is not None else None

    async def _visible_row(self, conn: AsyncConnection, principal: Principal, packet_id: str
                           ) -> tuple[PacketInfo, DeliveryBrief | None]:
        """The packet and the caller's own delivery row (None for a source that is not a destination)."""
        info, own, _ = await self._visible_loaded(conn, principal, packet_id)
        return info, own

    async def _visible_loaded(self, conn: AsyncConnection, principal: Principal, packet_id: str, *,
                              with_key: bool = False
                              ) -> tuple[PacketInfo, DeliveryBrief | None, KeyOpener | None]:
        """`_visible_row`, and with `with_key` the packet's data key read with it (see `Loaded`)."""
        loaded = await self._load_with_deliveries(conn, packet_id, with_key=with_key) \
            if uuid_like(packet_id) else None
        if loaded is None:
            raise Problem("not_found", Text("no such packet"))
        info, rows, data_key = loaded
        own = rows.get(principal.unit_id)
        if info.source == principal.unit_id or (own is not None and info.accepted_at is not None):
            return info, own, data_key
        raise Problem("not_found", Text("no such packet"))

    async def _inbox_page(self, unit: str, limit: int, after: InboxPosition | None) -> InboxPage:
        """Pending pull deliveries of `unit`, flash first, then oldest (then by id); with the source's
        presence. Shared by the inbox and a stream's hello."""
        d = deliveries.c
        stmt = (select(packets, units.c.online.label("from_online"), units.c.last_seen_at.label("from_last_seen"),
                       d.priority.label("at_priority"), d.packet_created_at.label("at_created"))
                .join(deliveries, d.packet_id == packets.c.id)
                .join(units, units.c.id == packets.c.source_unit)
                .where(and_(d.unit_id == unit, d.mode == dv.PULL, d.state.in_(constants(dv.PENDING))))
                .order_by(d.priority.desc(), d.packet_created_at, d.packet_id)
                .limit(limit + 1))
        if after is not None:
            stmt = stmt.where(or_(
                d.priority < after.priority,
                and_(d.priority == after.priority,
                     or_(d.packet_created_at > after.created_at,
                         and_(d.packet_created_at == after.created_at, d.packet_id > after.packet_id)))))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            # This unit's content variants: the size, hash and data type it gets.
            variants = await self.content.variants_for(conn, unit, [r.id for r in rows])
            items = []
            for r in rows:
                online, seen = self.presence_overlay(r.source_unit, bool(r.from_online), r.from_last_seen)
                size, sha256, data_type = variants.get(r.id, (r.size, r.sha256, None))
                items.append(InboxItem(id=r.id, source=r.source_unit, subject=r.subject, priority=r.priority,
                                       data_type=data_type or r.data_type, size=size, sha256=sha256,
                                       created_at=r.created_at, source_online=online, source_last_seen_at=seen))
        last = rows[-1] if more else None
        return InboxPage(tuple(items),
                         InboxPosition(last.at_priority, last.at_created, last.id) if last is not None else None)

    # -- destinations and deliveries ----------------------------------------------------------
    async def check_destinations(self, units_: Sequence[str], *, where: str | None = None) -> None:
        """THE rule for who may receive a packet: an active unit of the directory, not the hub's own
        (it only signs). `where` names the place in the content the units came from (edXML)."""
        found = await self.directory.existing_units(list(units_))
        missing = [u for u in units_ if u not in found]
        if missing and self.route_unknown is not None and await self.route_unknown(missing):
            found = await self.directory.existing_units(list(units_))  # a zone's route took some of them
        unknown = [u for u in units_ if found.get(u) != "active" or u in self.not_destinations]
        if unknown:
            raise Problem("route.unknown_destination",
                          Text("{value}unknown, suspended or not addressable destination(s): {unknown}",
                               value=where + ': ' if where else '', unknown=', '.join(unknown)), unknown=unknown,
                          **({"path": where} if where else {}))

    def check_carriers(self, units_: Sequence[str], data_type: str) -> None:
        """Refuse a data type the route to a destination cannot carry (the national axis: edXML only)."""
        refused = [u for u in units_ if (kinds := self.carried_types(u)) is not None and data_type not in kinds]
        if refused:
            raise Problem("route.unsupported_data_type",
                          Text("data type {data_type} cannot be carried to {refused}", data_type=data_type,
                               refused=', '.join(refused)), units=refused)

    def _delivery_row(self, packet_id: str, unit: str, priority: int, created_at: datetime,
                      state: str = dv.WAITING, queued_at: datetime | None = None) -> dict[str, Any]:
        protocol = self.push_protocol(unit)
        return {"packet_id": packet_id, "unit_id": unit, "state": state, "priority": priority,
                "packet_created_at": created_at, "updated_at": queued_at or created_at, "attempts": 0,
                "mode": dv.PUSH if protocol else dv.PULL, "protocol": protocol, "queued_at": queued_at}

    @staticmethod
    def _available_detail(info: PacketInfo) -> dict[str, Any]:
        return {"from": info.source, "subject": info.subject, "priority": info.priority,
                "data_type": info.data_type, "size": info.size, "sha256": info.sha256}

    async def _finish(self, info: PacketInfo, unit: str, target: str, reason: str | None,
                      detail: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
                      claim: tuple[str, int] | None = None, *, variant: str | object | None = audit.UNKNOWN) -> str:
        """End one delivery (delivered, failed or expired), tell the source, purge if it was the last.

        Shared by the pull path (ack, fail) and the push engine; `detail` goes into the source's
        event (attempts, receipt), `values` into the delivery row (e.g. last_error). A caller that
        has read the delivery passes its `variant` (None: the upload as is), which spares the audit
        entry a look-up.
        """
        now = self.clock()
        after = AfterCommit()
        locks = self.db.dialect == "postgresql"  # the packet's lock rides the move (see _complete_if_done)
        async with self.db.write() as conn:
            moved = await dv.move_rows(conn, info.id, [unit], target, now, reason=reason, values=values, claim=claim,
                                       lock_packet=locks)
            if not moved:
                current = await dv.state_of(conn, info.id, unit)
                if current == target:
                    return target
                raise Problem("conflict", Text("this delivery is already {current}", current=current), state=current)
            attempts = moved[0].attempts  # as the move left it
            told: dict[str, Any] = {"reason": reason} if reason else {}
            if attempts:
                told["attempts"] = attempts
            told.update(detail or {})
            after.pending.append(ev.NewEvent(info.id, ev.DELIVERY_END[target], now, unit=unit, audience=info.source,
                                             detail=told or None))
            await audit.delivery_ended(conn, info, unit, target, now, reason, variant=variant)
            await self._complete_if_done(conn, info.id, now, after, locked=locks)  # records the pending events too
        if target == dv.DELIVERED:
            after.hooks.append(("lgsp_packet_delivered", {"packet": info, "unit": unit}))
        else:
            after.failed(info, [unit], target, reason or "")
        await self._after_commit(after)
        return target

    async def end_delivery(self, info: PacketInfo, unit: str, target: str, reason: str | None = None, *,
                           detail: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
                           claim: tuple[str, int] | None = None) -> bool:
        """For delivery engines: end a delivery; False if it had meanwhile changed (e.g. cancelled) or,
        with `claim` (node, attempt), if the attempt is no longer the delivery's (taken back and claimed
        again while this node was thought dead)."""
        try:
            await self._finish(info, unit, target, reason, detail, values, claim)
        except Problem:
            return False
        return True

    async def forwarded(self, protocol: str, limit: int, after: tuple[str, str] | None = None
                        ) -> list[tuple[str, str, str | None]]:
        """(packet, unit, remote id) of deliveries `protocol` handed on and that have not ended,
        in (packet, unit) order after `after`: what an adapter's tracker asks the other exchange about."""
        cond = and_(deliveries.c.protocol == protocol, deliveries.c.state == dv.FORWARDED)
        if after is not None:
            cond = and_(cond, or_(deliveries.c.packet_id > after[0],
                                  and_(deliveries.c.packet_id == after[0], deliveries.c.unit_id > after[1])))
        async with self.db.read() as conn:
            rows = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.remote_id)
                                       .where(cond).order_by(deliveries.c.packet_id, deliveries.c.unit_id)
                                       .limit(limit))).all()
        return [(r.packet_id, r.unit_id, r.remote_id) for r in rows]

    async def _complete_if_done(self, conn: AsyncConnection, packet_id: str, now: datetime,
                                after: AfterCommit, *, locked: bool = False) -> None:
        """If every delivery has ended, complete the packet; when its content must go, `after.purge`.
        Records `after.pending` (the caller's events, then these) before it returns.

        One conditional UPDATE decides it and records the content as purged; its files are deleted
        right after the commit; if the hub dies in between,
        `reconcile_blobs` deletes them at the next start.
        """
        if conn.dialect.name == "postgresql":
            # Two deliveries of one packet ending at once on PostgreSQL (READ COMMITTED): each
            # transaction's check would see the other's delivery still open, uncommitted, and neither
            # would complete the packet. The packet's row lock orders them: the second waits for the
            # first to commit, and its check, a later statement, sees the first's delivery ended.
            # (SQLite runs one write transaction at a time.) `locked`: the caller's move took it.
            if not locked:
                await conn.execute(_LOCK_PACKET, {"p_packet": packet_id})
            await self._complete_in_one_statement(conn, packet_id, now, after)
            return
        row = (await conn.execute(_COMPLETE_IF_DONE, {"p_packet": packet_id, "p_now": now})).first()
        if row is not None:
            after.pending.append(ev.NewEvent(packet_id, ev.PACKET_COMPLETED, now))
            # Purged (it was stored: this statement purged it): copies of the files taken earlier become
            # unreadable. None (no content was ever accepted): the key made at creation goes as well.
            await ContentKeys.destroy(conn, [packet_id])
            if row.content_state == "purged":
                after.pending.append(ev.NewEvent(packet_id, ev.CONTENT_PURGED, now))
                self._purge_after(after, packet_id, row)
        await after.flush(conn)  # the caller's pending events first, then these: one INSERT

    def _purge_after(self, after: AfterCommit, packet_id: str, row: Any) -> None:
        """The completion purged the packet's content (`row`: what its UPDATE returned): its files go
        after the commit, by name when it can have no other file."""
        after.purge = packet_id
        if row.blob_key and row.data_type not in self.content.inspectors:
            after.purge_key = row.blob_key

    async def _complete_in_one_statement(self, conn: AsyncConnection, packet_id: str, now: datetime,
                                         after: AfterCommit) -> None:
        """PostgreSQL: `_complete_if_done` after the packet's lock, as one statement
        (`_completion_statement`): the completion's UPDATE, the data key's DELETE, the caller's
        pending events and the completion's own (with the rows the transaction holds) in one round
        trip instead of three."""
        pending = after.pending
        for event in pending:
            ev.check_type(event.type)
        statement = _completion_statement(len(pending))
        params: dict[str, Any] = {"p_packet": packet_id, "p_now": now, **in_values("key_id", [packet_id])}
        for i, e in enumerate(pending):
            params.update({f"e{i}_packet_id": e.packet_id, f"e{i}_at": e.at, f"e{i}_type": e.type,
                           f"e{i}_unit": e.unit, f"e{i}_audience": e.audience, f"e{i}_detail": e.detail})
        statement, params = deferred.with_held(statement, params, deferred.take(conn))
        rows = (await conn.execute(statement, params)).all()
        done = next((r for r in rows if r.seq is None), None)
        written = sorted((r for r in rows if r.seq is not None), key=lambda r: r.seq)
        recorded = [*pending]
        if done is not None:
            recorded.append(ev.NewEvent(packet_id, ev.PACKET_COMPLETED, now))
            if done.content_state == "purged":
                recorded.append(ev.NewEvent(packet_id, ev.CONTENT_PURGED, now))
                self._purge_after(after, packet_id, done)
        after.events.extend(ev.Event(int(r.seq), e.type, e.packet_id, e.at, e.unit, e.audience, e.detail)
                            for r, e in zip(written, recorded, strict=True))
        after.pending.clear()

    # -- after the commit ---------------------------------------------------------------------
    async def _after_commit(self, after: AfterCommit) -> None:
        """THE step after every commit: delete content, publish, wake push queues, call plugins."""
        if after.purge is not None:
            await self._purge(after.purge, after.purge_key)
        if after.partials_of is not None:
            await self.blobs.delete_partials(after.partials_of)
        self.bus.publish(after.events)
        if after.push_units:
            self.on_push_queued(after.push_units)
        for hook, kwargs in after.hooks:
            self._spawn(self.call_hook(hook, **kwargs))

    async def _purge(self, packet_id: str, key: str | None = None) -> None:
        """Delete the files of a packet recorded as purged (the upload and every variant) and its
        partial uploads, in one worker-thread call. With `key` (an accepted upload of a data type no
        inspector reads, so without variants) the blob is deleted by name instead of looked for.

        Runs after the commit: a failure here must not undo the answer the caller is owed, and
        `reconcile_blobs` deletes whatever is left on its next round.
        """
        try:
            await self.blobs.purge(packet_id, key)
        except OSError:
            log.exception("could not delete the content of packet %s now; reconciliation will", packet_id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for plugin calls still running (on shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
