"""Packet and unit events: recorded in the store with the state change, then pushed to live streams.

Every event is written in the same transaction as the state change it describes (so the timeline
never lies) and published to subscribers only after that transaction commits (so nobody hears of
a change that might roll back). Streams are at-least-once: a client that reconnects gets what it
missed in its `hello`, and `seq` lets it drop a repeat. Most events belong to one packet; a few
(e.g. `destination.offline`, which lists many packets) belong to no single packet and carry
`packet_id` None.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import deliveries, states
from lgsp.core.store import deferred
from lgsp.core.store.database import Database
from lgsp.core.store.params import MAX_ROWS
from lgsp.core.store.tables import packet_events

log = logging.getLogger(__name__)

# -- the event types, each defined once -----------------------------------------------------------
#: Who hears an event on its unit's stream; an event with no audience is history only (packet
#: timelines, `lgsp packet status`, the console).
SOURCE = "source"
DESTINATION = "destination"
EVERY_UNIT = "every unit"
APPLICANT = "applicant"


@dataclass(frozen=True, slots=True)
class EventType:
    audience: frozenset[str]
    description: str


def _type(description: str, *audience: str) -> EventType:
    return EventType(frozenset(audience), description)


#: The event types by name: code records these constants, never a string it spells itself.
PACKET_CREATED: Final = "packet.created"
PACKET_ACCEPTED: Final = "packet.accepted"
PACKET_AVAILABLE: Final = "packet.available"
PACKET_FETCHED: Final = "packet.fetched"
PACKET_DELIVERED: Final = "packet.delivered"
PACKET_FAILED: Final = "packet.failed"
PACKET_EXPIRED: Final = "packet.expired"
PACKET_COMPLETED: Final = "packet.completed"
PACKET_CANCELLED: Final = "packet.cancelled"
PACKET_REROUTED: Final = "packet.rerouted"
PACKET_FORWARDED: Final = "packet.forwarded"
DELIVERY_RETRYING: Final = "delivery.retrying"
DELIVERY_RETRIED: Final = "delivery.retried"
UPLOAD_EXPIRED: Final = "upload.expired"
UPLOAD_FAILED: Final = "upload.failed"
CONTENT_REJECTED: Final = "content.rejected"
CONTENT_PURGED: Final = "content.purged"
DOCUMENT_STATUS: Final = "document.status"
DOCUMENT_SENT: Final = "document.sent"
DOCUMENT_REVOKED: Final = "document.revoked"
DOCUMENT_UPDATED: Final = "document.updated"
DOCUMENT_REPLACED: Final = "document.replaced"
DESTINATION_OFFLINE: Final = "destination.offline"
HUB_NOTICE: Final = "hub.notice"
REGISTRATION_SUBMITTED: Final = "registration.submitted"
REGISTRATION_REFUSED: Final = "registration.refused"
REGISTRATION_APPROVED: Final = "registration.approved"
REGISTRATION_HANDED_OVER: Final = "registration.handed_over"

#: Every event type the hub records. `record` refuses any other; tests/test_event_types.py ties
#: this table to the OpenAPI document's `/v1/events`, to the names in cli/timeline.py and to the
#: types the code records.
EVENT_TYPES: dict[str, EventType] = {
    PACKET_CREATED: _type("a unit created the packet; its content is not uploaded yet"),
    PACKET_ACCEPTED: _type("the content is stored and checked and the deliveries planned"),
    PACKET_AVAILABLE: _type("a destination may fetch the packet (or it was pushed there)", DESTINATION),
    PACKET_FETCHED: _type("a destination downloaded the content"),
    PACKET_DELIVERED: _type("a destination acknowledged the content with the right hash", SOURCE),
    PACKET_FAILED: _type("a delivery ended without success", SOURCE),
    PACKET_EXPIRED: _type("a delivery was not acknowledged in time", SOURCE),
    PACKET_COMPLETED: _type("every delivery of the packet ended"),
    PACKET_CANCELLED: _type("a delivery was cancelled (the destination hears it if it was told)",
                              SOURCE, DESTINATION),
    PACKET_REROUTED: _type("an operator sent a delivery to another unit", SOURCE),
    PACKET_FORWARDED: _type("the packet was handed to another exchange (national axis, peer hub)", SOURCE),
    DELIVERY_RETRYING: _type("a push attempt failed; another is scheduled"),
    DELIVERY_RETRIED: _type("an operator put a delivery back in the queue", SOURCE),
    UPLOAD_EXPIRED: _type("the content was not uploaded in time", SOURCE),
    UPLOAD_FAILED: _type("the upload could not be stored"),
    CONTENT_REJECTED: _type("an inspector refused the content (e.g. invalid edXML)", SOURCE),
    CONTENT_PURGED: _type("the content and its data key were destroyed"),
    DOCUMENT_STATUS: _type("a destination reported the processing status of an edXML document"),
    DOCUMENT_SENT: _type("a later edXML packet linked to the document as a new one"),
    DOCUMENT_REVOKED: _type("a later edXML packet revoked the document"),
    DOCUMENT_UPDATED: _type("a later edXML packet updated the document"),
    DOCUMENT_REPLACED: _type("a later edXML packet replaced the document"),
    DESTINATION_OFFLINE: _type("a destination stayed offline with packets waiting for it", SOURCE),
    HUB_NOTICE: _type("a maintenance notice", EVERY_UNIT),
    REGISTRATION_SUBMITTED: _type("a unit's registration request was submitted", APPLICANT),
    REGISTRATION_REFUSED: _type("a registration request was refused", APPLICANT),
    REGISTRATION_APPROVED: _type("a registration request was approved", APPLICANT),
    REGISTRATION_HANDED_OVER: _type("the access details of a registration were handed over", APPLICANT),
}

#: The event recorded when a delivery ends in each terminal state but `cancelled` (which has its own).
DELIVERY_END: dict[str, str] = {states.DELIVERED: PACKET_DELIVERED, states.FAILED: PACKET_FAILED,
                                states.EXPIRED: PACKET_EXPIRED}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    packet_id: str | None
    at: datetime
    unit: str | None = None
    audience: str | None = None
    detail: dict[str, Any] | None = None

    def message(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "at": iso(self.at), "seq": self.seq}
        if self.packet_id is not None:
            out["id"] = self.packet_id
        if self.unit:
            out["unit"] = self.unit
        if self.detail:
            out.update({k: v for k, v in self.detail.items() if k not in out})
        return out


# Built once: on the hot path SQLAlchemy would otherwise rebuild and re-key it on every call.
_INSERT_EVENT = packet_events.insert().returning(packet_events.c.id)
# More events than `params.MAX_ROWS` in one statement: SQLAlchemy's "insertmanyvalues" sends one
# multi-row INSERT ... VALUES (...), (...) RETURNING id. Fewer go as `deferred.rows_statement`'s
# INSERT ... SELECT, one statement object per row count, which the store runs at the driver. Either
# way RETURNING may list the rows in any order, but the ids are drawn row after row in the order
# given (SQLite's rowid and PostgreSQL's sequence each give the next larger value to each row it
# inserts), so the sorted ids are the seqs of the events in the order given.
# (`sort_by_parameter_order` would make SQLAlchemy send one INSERT per row on SQLite.)
_INSERT_EVENTS = packet_events.insert().returning(packet_events.c.id)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to record (with `record_all`) in the transaction of the change it describes."""

    packet_id: str | None
    type: str
    at: datetime
    unit: str | None = None
    audience: str | None = None
    detail: dict[str, Any] | None = None


def check_type(type_: str) -> None:
    """Refuse an event type `EVENT_TYPES` does not define."""
    if type_ not in EVENT_TYPES:  # a new event type goes in EVENT_TYPES (and the OpenAPI document) first
        raise ValueError(f"unknown event type {type_!r}")


async def record(conn: AsyncConnection, packet_id: str | None, type_: str, at: datetime, *, unit: str | None = None,
                 audience: str | None = None, detail: dict[str, Any] | None = None) -> Event:
    check_type(type_)
    row = {"packet_id": packet_id, "at": at, "type": type_, "unit": unit, "audience": audience, "detail": detail}
    seqs = await _insert_with_held(conn, [row])
    seq = seqs[0] if seqs is not None else await conn.scalar(_INSERT_EVENT, row)
    return Event(int(seq or 0), type_, packet_id, at, unit, audience, detail)


async def move_and_record(db: Database, packet_id: str, unit: str, target: str, at: datetime,
                          type_: str) -> bool:
    """Move `unit`'s delivery of `packet_id` to `target` (where allowed) and record event `type_` for
    it if it moved, as a transaction of its own; whether it moved.

    On PostgreSQL this is one statement, `WITH moved AS (UPDATE … RETURNING) INSERT INTO
    packet_events … SELECT … FROM moved`, sent in autocommit (`Database.write_statement`): the
    server runs it atomically, and the transaction costs one round trip instead of four (BEGIN,
    UPDATE, INSERT, COMMIT). Elsewhere the UPDATE, then the INSERT, in one transaction."""
    check_type(type_)
    if db.dialect != "postgresql":
        async with db.write() as conn:
            if not await deliveries.move(conn, packet_id, [unit], target, at):
                return False
            await record(conn, packet_id, type_, at, unit=unit)
            return True
    params = {**deliveries.move_params(packet_id, unit, target, at), "e_packet": packet_id, "e_at": at, "e_type": type_}
    return bool(await db.write_statement(_moved_event_statement(target), params))


@functools.cache
def _moved_event_statement(target: str) -> Any:
    moved = deliveries.moved_rows_cte(target)
    c = packet_events.c
    row = select(bindparam("e_packet", type_=c.packet_id.type), bindparam("e_at", type_=c.at.type),
                 bindparam("e_type", type_=c.type.type), moved.c.unit_id)
    return (insert(packet_events).from_select(["packet_id", "at", "type", "unit"], row)
            .returning(packet_events.c.id))


#: The columns an event row is written with (its id, the seq, is drawn by the store).
EVENT_COLUMNS = ("packet_id", "at", "type", "unit", "audience", "detail")


def recorded_cte(arms: Sequence[Any], *returning: Any) -> Any:
    """`recorded AS (INSERT INTO packet_events … SELECT … ORDER BY … RETURNING …)`: the events that
    `arms` select, for a statement that writes them with the change they describe (a PostgreSQL
    data-modifying CTE). Each arm selects `EVENT_COLUMNS`, labelled in the first, then its ordering
    keys; the ids are drawn in the order of those keys, so the seqs follow it."""
    rows = union_all(*arms).subquery("r")
    keys = [column for column in rows.c if column.name not in EVENT_COLUMNS]
    return (insert(packet_events).from_select(list(EVENT_COLUMNS), select(*(rows.c[c] for c in EVENT_COLUMNS))
                                              .order_by(*keys))
            .returning(*returning).cte("recorded"))


async def _insert_with_held(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int] | None:
    """On PostgreSQL, the events INSERT that also writes the rows the transaction holds
    (core/store/deferred.py): their seqs in the order given; None when nothing is held."""
    held = deferred.take(conn)
    if not held:
        return None
    main, params = deferred.rows_statement(packet_events, rows, "e", returning="id")
    stmt, params = deferred.with_held(main, params, held)
    return sorted(int(seq) for seq in (await conn.execute(stmt, params)).scalars().all())


async def record_all(conn: AsyncConnection, new: Sequence[NewEvent]) -> list[Event]:
    """Record several events with one statement; their seqs follow the order given, as if each had
    been recorded by `record` in turn. The transaction is the caller's, as for `record`."""
    for e in new:
        check_type(e.type)
    if len(new) <= 1:
        return [await record(conn, e.packet_id, e.type, e.at, unit=e.unit, audience=e.audience, detail=e.detail)
                for e in new]
    rows = [{"packet_id": e.packet_id, "at": e.at, "type": e.type, "unit": e.unit, "audience": e.audience,
             "detail": e.detail} for e in new]
    seqs = await _insert_with_held(conn, rows)
    if seqs is None:
        stmt, params = (deferred.rows_statement(packet_events, rows, "e", returning="id") if len(rows) <= MAX_ROWS
                        else (_INSERT_EVENTS, rows))
        seqs = sorted(int(seq) for seq in (await conn.execute(stmt, params)).scalars().all())
    return [Event(int(seq), e.type, e.packet_id, e.at, e.unit, e.audience, e.detail) for seq, e in zip(seqs, new,
                                                                                                     strict=True)]


@dataclass(eq=False)
class Subscription:
    unit: str
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(maxsize=10_000))
    overflowed: bool = False


class EventBus:
    """In-process fan-out of committed events to the units' open streams on this node."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        #: Called with every committed batch, streamed or history-only (metrics count them).
        self.observers: list[Callable[[Sequence[Event]], None]] = []

    def open_streams(self) -> int:
        return sum(len(subs) for subs in self._subs.values())

    def subscribe(self, unit: str) -> Subscription:
        sub = Subscription(unit)
        self._subs[unit].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.unit)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.unit]

    def connected(self, unit: str) -> bool:
        return bool(self._subs.get(unit))

    def publish(self, events: Iterable[Event]) -> None:
        """This node committed these events: tell the observers (metrics, the other nodes), then
        this node's open streams."""
        events = tuple(events)
        for observer in self.observers:
            try:
                observer(events)
            except Exception:
                log.exception("an event observer failed")
        self.deliver(events)

    def deliver(self, events: Iterable[Event]) -> None:
        """Hand events to the open streams of their audiences on this node (observers not told:
        events another node committed were observed there)."""
        for event in events:
            if event.audience is None:
                continue
            for sub in tuple(self._subs.get(event.audience, ())):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    # A consumer this far behind is better reconnected: its hello will catch it up.
                    sub.overflowed = True
                    log.warning("event stream of %s overflowed; closing it", sub.unit)
                    self.close(sub)

    def close(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        while True:
            try:
                sub.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                sub.queue.get_nowait()

    def close_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                self.close(sub)
