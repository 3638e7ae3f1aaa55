"""The packet lifecycle: create, upload, notify, fetch, acknowledge, fail, cancel, purge.

One place for the exchange's rules, whatever the adapter that carries the calls. Each step commits
its state change and its events together, then acts (publish to streams, delete content, call
plugins), so a crash at any point leaves a state the hub can resume from.

Packet states: created → accepted → completed (every delivery ended); created → expired (the
upload never finished in time). Content states: none → stored → purged (the files go right after
the commit that records it; `reconcile_blobs` removes any a crash left behind).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import deliveries as dv
from lgsp.core.auth import Principal
from lgsp.core.content import ContentService, Inspection
from lgsp.core.directory import Directory
from lgsp.core.errors import Problem
from lgsp.core.events import Event, EventBus, iso, record
from lgsp.core.signing import SHA256_RE
from lgsp.core.store.blobs import BlobStore, PartialRemoved, remove
from lgsp.core.store.database import Database
from lgsp.core.store.tables import deliveries, packet_events, packets, units
from lgsp.core.text import text_problem

log = logging.getLogger(__name__)

PRIORITIES = {0: "normal", 1: "urgent", 2: "very_urgent", 3: "flash"}
DATA_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,63}$")
PROTOCOL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MAX_SUBJECT = 2000
MAX_REASON = 2000
MAX_DESTINATION = 64  # longest destination accepted in `to` (unit identifiers have at most 35)
#: Deadlines are refused from this instant on: far beyond any use, and far from datetime's year 9999.
LATEST_DEADLINE = datetime(9000, 1, 1, tzinfo=UTC)
#: A stream's hello carries at most this many changes (then `more: true`: reconnect for the rest)
#: and inbox items.
HELLO_CHANGES = 1000
HELLO_INBOX = 1000

HookCaller = Callable[..., Awaitable[None]]

# Every request about a packet loads it: built once (SQLAlchemy then skips construction and keying).
_PACKET_BY_ID = select(packets).where(packets.c.id == bindparam("packet_id"))
_DELIVERIES_OF = (select(deliveries.c.unit_id, deliveries.c.state, deliveries.c.mode, deliveries.c.protocol,
                         deliveries.c.variant)
                  .where(deliveries.c.packet_id == bindparam("packet_id")).order_by(deliveries.c.unit_id))
_MODES_OF = select(deliveries.c.unit_id, deliveries.c.mode).where(deliveries.c.packet_id == bindparam("packet_id"))
_INSERT_PACKET = packets.insert()
# Completes the packet only if no delivery is still open: one statement decides (see _complete_if_done).
_COMPLETE_IF_DONE = (
    update(packets)
    .where(and_(packets.c.id == bindparam("p_packet"), packets.c.state.not_in(("completed", "expired")),
                ~select(deliveries.c.unit_id).where(and_(deliveries.c.packet_id == bindparam("p_packet"),
                                                         deliveries.c.state.not_in(dv.TERMINAL))).exists()))
    .values(state="completed", completed_at=bindparam("completed_at"))
    .returning(packets.c.content_state))
_MARK_PURGED = (update(packets).where(packets.c.id == bindparam("p_packet"))
                .values(content_state="purged", purged_at=bindparam("purged_at")))


# -- values -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PacketInfo:
    id: str
    source: str
    to: tuple[str, ...]
    subject: str
    priority: int
    data_type: str
    protocol: str | None
    size: int
    sha256: str
    deadline: datetime | None
    policy: Any
    meta: Any
    state: str
    content_state: str
    created_at: datetime
    upload_expires_at: datetime
    accepted_at: datetime | None = None
    completed_at: datetime | None = None
    purged_at: datetime | None = None
    # The stored upload; every blob of the packet starts with its id (see `upload_key`).
    blob_key: str | None = None

    def summary(self) -> dict[str, Any]:
        """The fields an inbox item and a packet view share."""
        return {"id": self.id, "from": self.source, "subject": self.subject, "priority": self.priority,
                "data_type": self.data_type, "size": self.size, "sha256": self.sha256,
                "created_at": iso(self.created_at)}


@dataclass(frozen=True)
class NewPacket:
    to: tuple[str, ...]
    subject: str
    priority: int
    data_type: str
    protocol: str | None
    size: int
    sha256: str
    deadline: datetime | None
    policy: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transfer:
    """Where and until when content may be sent or fetched (the path includes its token)."""

    method: str
    path: str
    expires_at: datetime

    def public(self, base_url: str) -> dict[str, str]:
        return {"method": self.method, "url": base_url + self.path, "expires_at": iso(self.expires_at)}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CURSOR_RE = re.compile(r"1:([0-3]):([0-9]{1,17}):([0-9a-f-]{36})")
MAX_CURSOR = 128


@dataclass(frozen=True)
class InboxPosition:
    """Where an inbox page ended, in the inbox order (priority desc, created_at, id): a keyset cursor.

    The next page starts strictly after it, so an item taken (acknowledged, refused, cancelled) or
    one arriving behind it while a client pages shifts nothing; an item arriving ahead of it is
    not in the following pages (the event stream announces it). Clients see it as an opaque string.
    """

    priority: int
    created_at: datetime
    packet_id: str

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // _MICROSECOND
        raw = f"1:{self.priority}:{micros}:{self.packet_id}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> InboxPosition:
        """The position a cursor names; `request.invalid` (field `cursor`) for anything we did not issue."""
        def bad() -> Problem:
            return Problem("request.invalid", "cursor: not a cursor this hub issued (use `next` as returned)",
                           field="cursor")

        if len(cursor) > MAX_CURSOR or not cursor.isascii() or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
            raise bad()
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            raise bad() from None
        match = _CURSOR_RE.fullmatch(raw)
        if match is None or not _uuid_like(match.group(3)):
            raise bad()
        # At most 17 digits: some time before the year 5200, never an overflow.
        return cls(int(match.group(1)), _EPOCH + int(match.group(2)) * _MICROSECOND, match.group(3))


def _packet(row: Any, to: tuple[str, ...]) -> PacketInfo:
    return PacketInfo(id=row.id, source=row.source_unit, to=to, subject=row.subject, priority=row.priority,
                      data_type=row.data_type, protocol=row.protocol, size=row.size, sha256=row.sha256,
                      deadline=row.deadline, policy=row.policy, meta=row.meta, state=row.state,
                      content_state=row.content_state, created_at=row.created_at,
                      upload_expires_at=row.upload_expires_at, accepted_at=row.accepted_at,
                      completed_at=row.completed_at, purged_at=row.purged_at, blob_key=row.blob_key)


def parse_new_packet(body: Any, *, max_size: int, max_recipients: int, now: datetime,
                     destinations_from_content: bool = False) -> NewPacket:
    """Validate a create request; every error names the field.

    `destinations_from_content`: the data type's inspector takes the destinations from the
    content (edXML `To`), so `to` may be empty (issue 3).
    """
    if not isinstance(body, dict):
        raise Problem("request.invalid", "body must be a JSON object")
    known = {"to", "subject", "priority", "data_type", "protocol", "size", "sha256", "deadline", "policy"}
    extra = sorted(set(body) - known)
    if extra:
        raise Problem("request.invalid", f"unknown field(s): {', '.join(extra)}", field=extra[0])

    def bad(name: str, msg: str) -> Problem:
        return Problem("request.invalid", f"{name}: {msg}", field=name)

    to = body.get("to")
    if not isinstance(to, list) or (not to and not destinations_from_content) \
            or not all(isinstance(t, str) and t for t in to):
        raise bad("to", "must be a non-empty list of unit identifiers")
    to_unique = tuple(dict.fromkeys(to))
    if len(to_unique) > max_recipients:
        raise bad("to", f"at most {max_recipients} destinations")
    for unit in to_unique:
        why = text_problem(unit) if len(unit) <= MAX_DESTINATION else \
            f"an identifier has at most {MAX_DESTINATION} characters"
        if why is not None:
            raise bad("to", why)
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT:
        raise bad("subject", f"must be a non-empty string of at most {MAX_SUBJECT} characters")
    if (why := text_problem(subject, multiline=True)) is not None:
        raise bad("subject", why)
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or priority not in PRIORITIES:
        raise bad("priority", "must be 0 (normal), 1 (urgent), 2 (very urgent) or 3 (flash)")
    data_type = body.get("data_type")
    if not isinstance(data_type, str) or not DATA_TYPE_RE.fullmatch(data_type):
        raise bad("data_type", "must be a short lowercase name such as edxml, json or binary")
    protocol = body.get("protocol")
    if protocol is not None and (not isinstance(protocol, str) or not PROTOCOL_RE.fullmatch(protocol)):
        raise bad("protocol", "must be a short lowercase protocol name")
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad("size", "must be the content length in bytes")
    if size > max_size:
        raise Problem("content.too_large", f"size {size} exceeds the limit of {max_size} bytes",
                      limit=max_size)
    sha = body.get("sha256")
    if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
        raise bad("sha256", "must be 64 lowercase hex digits")
    deadline = None
    if body.get("deadline") is not None:
        deadline = parse_deadline(body["deadline"], now)
    policy = body.get("policy")
    if policy is not None and not isinstance(policy, dict):
        raise bad("policy", "must be a JSON object")
    return NewPacket(to=to_unique, subject=subject, priority=priority, data_type=data_type, protocol=protocol,
                     size=size, sha256=sha, deadline=deadline, policy=policy)


def parse_deadline(raw: Any, now: datetime) -> datetime:
    """A client's deadline: an ISO 8601 time with a zone, in the future and before LATEST_DEADLINE.

    The calendar's edges (`0001-01-01T00:00:00+01:00` is before year 1 in UTC) overflow when moved
    to UTC; they, like any time past the bound, are `request.invalid`, never an OverflowError.
    """
    def bad(msg: str) -> Problem:
        return Problem("request.invalid", f"deadline: {msg}", field="deadline")

    if not isinstance(raw, str) or len(raw) > 64:
        raise bad("must be an ISO 8601 time such as 2026-12-01T17:00:00Z")
    try:
        deadline = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad("must be an ISO 8601 time such as 2026-12-01T17:00:00Z") from None
    if deadline.tzinfo is None:
        raise bad("must carry a time zone (e.g. Z)")
    try:
        deadline = deadline.astimezone(UTC)
    except OverflowError:
        raise bad(f"must be before {LATEST_DEADLINE.year}") from None
    if deadline >= LATEST_DEADLINE:
        raise bad(f"must be before {LATEST_DEADLINE.year}")
    if deadline <= now:
        raise bad("is already past")
    return deadline


_EXPIRES_RE = re.compile(r"^[0-9]{1,12}$")  # Unix seconds; `str.isdigit` also takes "²", which int() refuses


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


class TransferTokens:
    """Short-lived tokens in upload/download URLs, so `expires_at` is enforced, not advisory."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, action: str, packet_id: str, unit: str, expires: int) -> str:
        msg = f"{action}\n{packet_id}\n{unit}\n{expires}".encode()
        return base64.urlsafe_b64encode(hmac.new(self._key, msg, hashlib.sha256).digest()[:18]).decode()

    def make(self, action: str, packet_id: str, unit: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        return f"expires={expires}&token={self._mac(action, packet_id, unit, expires)}"

    def check(self, action: str, packet_id: str, unit: str, expires: str | None, token: str | None,
              now: datetime) -> None:
        if not expires or not token or not _EXPIRES_RE.fullmatch(expires) or not token.isascii():
            raise Problem("forbidden", "this URL needs the expires and token parameters the hub issued")
        expected = self._mac(action, packet_id, unit, int(expires))
        if not hmac.compare_digest(expected, token):
            raise Problem("forbidden", "transfer token does not match this packet and unit")
        if int(expires) < now.timestamp():
            raise Problem("transfer.expired", "this URL has expired; ask for a new one")


# -- the use cases ----------------------------------------------------------------------------

class Exchange:
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
        # Uploads being received on this node, by packet; an attempt that has received nothing for
        # `upload_stall_seconds` gives way to a newer one (the HTTP server cuts it after as long too).
        self._uploading: dict[str, UploadAttempt] = {}
        self.upload_stall_seconds = upload_stall_seconds
        self._background: set[asyncio.Task[None]] = set()
        # Units of the directory that never receive packets (the hub's own unit, which signs pushes).
        self.not_destinations: frozenset[str] = frozenset()
        # Content inspection and variants (issue 3); the hub installs one with the plugins' inspectors.
        self.use_content(ContentService(db, blobs, bus, clock=clock))

    def use_content(self, content: ContentService) -> None:
        """Take the hub's content service (built later, with the plugins' inspectors)."""
        self.content = content

    # -- reading ------------------------------------------------------------------------------
    async def _load(self, conn: AsyncConnection, packet_id: str) -> PacketInfo | None:
        loaded = await self._load_with_deliveries(conn, packet_id)
        return loaded[0] if loaded else None

    async def _load_with_deliveries(self, conn: AsyncConnection, packet_id: str
                                    ) -> tuple[PacketInfo, dict[str, Any]] | None:
        """The packet and its delivery rows (state, mode, protocol, variant) by unit: two statements."""
        row = (await conn.execute(_PACKET_BY_ID, {"packet_id": packet_id})).first()
        if row is None:
            return None
        rows = (await conn.execute(_DELIVERIES_OF, {"packet_id": packet_id})).all()
        return _packet(row, tuple(r.unit_id for r in rows)), {r.unit_id: r for r in rows}

    async def packet(self, packet_id: str) -> PacketInfo | None:
        async with self.db.read() as conn:
            return await self._load(conn, packet_id)

    async def find_submitted(self, source: str, sha256: str, since: datetime, meta_key: str,
                             value: str) -> PacketInfo | None:
        """The accepted packet `source` created since `since` with this hash and `meta[meta_key] ==
        value`: how an adapter submitting on a unit's behalf learns, after a crash, that it already did."""
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(packets.c.id, packets.c.state, packets.c.meta).where(and_(
                    packets.c.source_unit == source, packets.c.created_at >= since, packets.c.sha256 == sha256,
                    packets.c.state.in_(("accepted", "completed")))))).all()
            for row in rows:
                if isinstance(row.meta, dict) and row.meta.get(meta_key) == value:
                    return await self._load(conn, row.id)
        return None

    async def _visible(self, conn: AsyncConnection, principal: Principal, packet_id: str
                       ) -> tuple[PacketInfo, str | None]:
        """The packet and the caller's own delivery state, or not_found for anyone else."""
        info, own = await self._visible_row(conn, principal, packet_id)
        return info, own.state if own is not None else None

    async def _visible_row(self, conn: AsyncConnection, principal: Principal, packet_id: str
                           ) -> tuple[PacketInfo, Any]:
        """The packet and the caller's own delivery row (None for a source that is not a destination)."""
        loaded = await self._load_with_deliveries(conn, packet_id) if _uuid_like(packet_id) else None
        if loaded is None:
            raise Problem("not_found", "no such packet")
        info, rows = loaded
        own = rows.get(principal.unit_id)
        if info.source == principal.unit_id or (own is not None and info.accepted_at is not None):
            return info, own
        raise Problem("not_found", "no such packet")

    # -- create -------------------------------------------------------------------------------
    async def check_destinations(self, units_: Sequence[str], *, where: str | None = None) -> None:
        """THE rule for who may receive a packet: an active unit of the directory, not the hub's own
        (it only signs). `where` names the place in the content the units came from (edXML)."""
        found = await self.directory.existing_units(list(units_))
        unknown = [u for u in units_ if found.get(u) != "active" or u in self.not_destinations]
        if unknown:
            raise Problem("route.unknown_destination",
                          f"{where + ': ' if where else ''}unknown, suspended or not addressable "
                          f"destination(s): {', '.join(unknown)}", unknown=unknown,
                          **({"path": where} if where else {}))

    async def create(self, principal: Principal, body: Any) -> tuple[PacketInfo, Transfer]:
        now = self.clock()
        # Content-aware data types (edXML, issue 3) may leave to/subject/priority to the content.
        body, implicit = self.content.prepare_create(body)
        new = parse_new_packet(body, max_size=self.max_packet_size, max_recipients=self.max_recipients, now=now,
                               destinations_from_content="to" in implicit)
        if implicit:
            new = dataclasses.replace(new, meta={**new.meta, "implicit": implicit})
        return await self.create_packet(principal.unit_id, new, now=now)

    async def create_packet(self, source: str, new: NewPacket, *, now: datetime | None = None
                            ) -> tuple[PacketInfo, Transfer]:
        now = now or self.clock()
        await self.check_destinations(new.to)
        packet_id = str(uuid.uuid4())
        expires = now + self.transfer_ttl
        async with self.db.write() as conn:
            await conn.execute(_INSERT_PACKET, dict(
                id=packet_id, source_unit=source, subject=new.subject, priority=new.priority,
                data_type=new.data_type, protocol=new.protocol, size=new.size, sha256=new.sha256,
                deadline=new.deadline, policy=new.policy, meta=new.meta or None, state="created",
                content_state="none", created_at=now, upload_expires_at=expires))
            if new.to:  # none yet when the content names them (issue 3)
                await conn.execute(deliveries.insert(), [self._delivery_row(packet_id, u, new.priority, now)
                                                         for u in new.to])
            await record(conn, packet_id, "packet.created", now, unit=source)
        info = PacketInfo(id=packet_id, source=source, to=tuple(sorted(new.to)), subject=new.subject,
                          priority=new.priority, data_type=new.data_type, protocol=new.protocol, size=new.size,
                          sha256=new.sha256, deadline=new.deadline, policy=new.policy, meta=new.meta or None,
                          state="created", content_state="none", created_at=now, upload_expires_at=expires)
        return info, self.upload_transfer(info, source)

    def _delivery_row(self, packet_id: str, unit: str, priority: int, created_at: datetime,
                      state: str = dv.WAITING, queued_at: datetime | None = None) -> dict[str, Any]:
        protocol = self.push_protocol(unit)
        return {"packet_id": packet_id, "unit_id": unit, "state": state, "priority": priority,
                "packet_created_at": created_at, "updated_at": queued_at or created_at, "attempts": 0,
                "mode": dv.PUSH if protocol else dv.PULL, "protocol": protocol, "queued_at": queued_at}

    def upload_transfer(self, info: PacketInfo, unit: str) -> Transfer:
        query = self.tokens.make("upload", info.id, unit, info.upload_expires_at)
        return Transfer("PUT", f"/v1/packets/{info.id}/content?{query}", info.upload_expires_at)

    async def submit(self, source: str, new: NewPacket, content: AsyncIterable[bytes]) -> PacketInfo:
        """Create and fill a packet in one step, for inbound adapters that already hold the content.

        If the content fails its checks the packet is closed as expired at once (nothing is delivered)
        and the Problem propagates to the adapter.
        """
        info, _ = await self.create_packet(source, new)
        attempt = await self._take_turn(info.id)
        try:
            received = await self._receive(info, content, attempt)
        except BaseException as exc:
            reason = exc.detail if isinstance(exc, Problem) else type(exc).__name__
            await self._abandon(info, f"content rejected: {reason}")
            raise
        finally:
            self._end_turn(info.id, attempt)
        return await self._accept(info, received)

    async def _abandon(self, info: PacketInfo, reason: str) -> None:
        now = self.clock()
        async with self.db.write() as conn:
            result = await conn.execute(update(packets).where(
                and_(packets.c.id == info.id, packets.c.state == "created")).values(state="expired", completed_at=now))
            if result.rowcount:
                await dv.move(conn, info.id, None, dv.EXPIRED, now, reason=reason)
                await record(conn, info.id, "upload.failed", now, unit=info.source, detail={"reason": reason})
        await self.blobs.delete_partials(info.id)

    # -- upload -------------------------------------------------------------------------------
    async def upload(self, principal: Principal, packet_id: str, declared_sha256: str,
                     content: AsyncIterable[bytes], *, expires: str | None = None,
                     token: str | None = None) -> PacketInfo:
        """Stream the content in, check size and hash, then accept the packet and tell destinations."""
        now = self.clock()
        async with self.db.read() as conn:
            info = await self._load(conn, packet_id) if _uuid_like(packet_id) else None
        if info is None or info.source != principal.unit_id:
            raise Problem("not_found", "no such packet")
        self.tokens.check("upload", packet_id, principal.unit_id, expires, token, now)
        if info.state != "created":
            raise Problem("conflict", f"content was already uploaded (packet is {info.state})", state=info.state)
        if info.upload_expires_at <= now:
            raise Problem("transfer.expired", "the upload window of this packet has closed")
        if declared_sha256 != info.sha256:
            raise Problem("content.hash_mismatch",
                          "X-LGSP-Content-SHA256 differs from the sha256 declared when the packet was created")
        waited = packet_id in self._uploading
        attempt = await self._take_turn(packet_id)
        try:
            if waited:  # the attempt it waited for may have been accepted meanwhile
                async with self.db.read() as conn:
                    state = await conn.scalar(select(packets.c.state).where(packets.c.id == packet_id))
                if state != "created":
                    raise Problem("conflict", f"content was already uploaded (packet is {state})", state=state)
            received = await self._receive(info, content, attempt)
        finally:
            self._end_turn(packet_id, attempt)
        return await self._accept(info, received)

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
                raise Problem("conflict", "another upload of this packet has been received and is being checked")
            if now - current.last_activity >= stall:
                log.info("upload of packet %s received nothing for %g s; a newer upload takes over", packet_id, stall)
                current.supersede()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(current.done.wait(), 30)
                if self._uploading.get(packet_id) is current:  # pragma: no cover - it did not unwind
                    del self._uploading[packet_id]
                continue
            if now >= give_up:
                raise Problem("conflict", "another upload of this packet is in progress and still sending")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current.done.wait(), min(give_up, current.last_activity + stall) - now)
        attempt = UploadAttempt(task=asyncio.current_task(), last_activity=loop.time())
        self._uploading[packet_id] = attempt
        return attempt

    def _end_turn(self, packet_id: str, attempt: UploadAttempt) -> None:
        if self._uploading.get(packet_id) is attempt:
            del self._uploading[packet_id]
        attempt.done.set()

    async def _receive(self, info: PacketInfo, content: AsyncIterable[bytes],
                       attempt: UploadAttempt) -> tuple[str, Inspection | None]:
        """Store one upload attempt under its own key; returns the key and what inspection found.

        Each attempt has its own blobs, so an attempt that loses a race (another node's upload of the
        same packet was accepted first) deletes only what it wrote itself.
        """
        key = upload_key(info.id)
        loop = asyncio.get_running_loop()
        try:
            async with self.blobs.writer(key) as writer:
                async for chunk in content:
                    attempt.last_activity = loop.time()
                    if writer.size + len(chunk) > info.size:
                        raise Problem("content.size_mismatch",
                                      f"more than the declared {info.size} bytes were sent")
                    await writer.write(chunk)
                attempt.receiving = False
                if writer.size != info.size:
                    raise Problem("content.size_mismatch",
                                  f"received {writer.size} bytes, declared {info.size}")
                digest = await writer.finish()
                if digest != info.sha256:
                    raise Problem("content.hash_mismatch", "the content's SHA-256 differs from the declared one")
                await writer.commit()
            if attempt.superseded:  # pragma: no cover - superseded only while receiving, so cancelled there
                raise Problem("conflict", "a newer upload of this packet took over")
            # Content-aware data types (edXML, issue 3) are read before acceptance; a refusal deletes the upload.
            return key, await self.content.inspect(info, self.blobs.path(key), key)
        except PartialRemoved:
            # Another attempt (on another node) was accepted meanwhile and removed this one's files.
            await self.content.delete_blobs(key)
            raise Problem("conflict", "the packet is no longer awaiting its content") from None

    async def _accept(self, info: PacketInfo, received: tuple[str, Inspection | None]) -> PacketInfo:
        key, inspection = received
        now = self.clock()
        events: list[Event] = []
        async with self.db.write() as conn:
            result = await conn.execute(update(packets).where(
                and_(packets.c.id == info.id, packets.c.state == "created")).values(
                state="accepted", content_state="stored", blob_key=key, accepted_at=now))
            if result.rowcount != 1:
                accepted = False
            else:
                accepted = True
                variant_of: dict[str, dict[str, Any]] = {}
                if inspection is not None:
                    # What the content inspection found (destinations, variants, metadata; issue 3).
                    events.extend(await self.content.apply(conn, info, inspection, now, self._delivery_row))
                    info = await self._load(conn, info.id) or info
                    variant_of = await self.content.delivery_refs(conn, info.id)
                await dv.move(conn, info.id, None, dv.QUEUED, now, values={"queued_at": now})
                modes = await _modes(conn, info.id)
                pulled = [u for u, m in modes.items() if m == dv.PULL]
                pushed = [u for u, m in modes.items() if m == dv.PUSH]
                live = [u for u in pulled if self.bus.connected(u)]
                await dv.move(conn, info.id, live, dv.NOTIFIED, now)
                events.append(await record(conn, info.id, "packet.accepted", now, unit=info.source))
                for unit in pulled:
                    events.append(await record(conn, info.id, "packet.available", now, unit=unit, audience=unit,
                                               detail=self._available_detail(info) | variant_of.get(unit, {})))
                fresh = dataclasses.replace(info, state="accepted", content_state="stored", blob_key=key,
                                            accepted_at=now)
        if not accepted:
            # Lost a race with another node's upload, or the packet expired meanwhile: drop this
            # attempt's blobs only (the winner's are under another key).
            await self.content.delete_blobs(key)
            raise Problem("conflict", "the packet is no longer awaiting its content")
        # Every other copy of the content that is not this upload goes now: partial uploads left by a
        # cut connection or a crash, and attempts on other nodes (which can no longer be accepted).
        await self.blobs.delete_partials(info.id)
        self.bus.publish(events)
        if pushed:
            self.on_push_queued(pushed)
        assert fresh is not None
        self._spawn(self.call_hook("lgsp_packet_accepted", packet=fresh))
        return fresh

    @staticmethod
    def _available_detail(info: PacketInfo) -> dict[str, Any]:
        return {"from": info.source, "subject": info.subject, "priority": info.priority,
                "data_type": info.data_type, "size": info.size, "sha256": info.sha256}

    # -- destination side ---------------------------------------------------------------------
    async def inbox(self, principal: Principal, limit: int = 100) -> list[dict[str, Any]]:
        """The first `limit` pending pull deliveries (see `inbox_page`)."""
        return (await self.inbox_page(principal, limit))[0]

    async def inbox_page(self, principal: Principal, limit: int = 100, after: InboxPosition | None = None
                         ) -> tuple[list[dict[str, Any]], InboxPosition | None]:
        """Pending pull deliveries, flash first, then oldest (then by id); with the source's presence.

        Starts strictly after `after`; returns the items and the position to continue from, or None
        when no more remain. Keyset, not offset: rows leaving or arriving meanwhile shift nothing.
        """
        d = deliveries.c
        stmt = (select(packets, units.c.online.label("from_online"), units.c.last_seen_at.label("from_last_seen"),
                       d.priority.label("at_priority"), d.packet_created_at.label("at_created"))
                .join(deliveries, d.packet_id == packets.c.id)
                .join(units, units.c.id == packets.c.source_unit)
                .where(and_(d.unit_id == principal.unit_id, d.mode == dv.PULL, d.state.in_(dv.PENDING)))
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
            items = []
            for r in rows:
                online, seen = self.presence_overlay(r.source_unit, bool(r.from_online), r.from_last_seen)
                items.append(_packet(r, ()).summary() | {"from_online": online,
                                                         "from_last_seen_at": iso(seen) if seen else None})
            await self.content.adjust_items(conn, principal.unit_id, items)  # this unit's content variants
        last = rows[-1] if more else None
        return items, InboxPosition(last.at_priority, last.at_created, last.id) if last is not None else None

    async def ready(self, principal: Principal, packet_id: str) -> Transfer:
        async with self.db.read() as conn:
            _, own = await self._visible_row(conn, principal, packet_id)
        self._require_pull(own)
        state = own.state if own is not None else None
        if state is None:
            raise Problem("not_found", "no such packet")
        self._require_pending(state)
        expires = self.clock() + self.transfer_ttl
        query = self.tokens.make("download", packet_id, principal.unit_id, expires)
        return Transfer("GET", f"/v1/packets/{packet_id}/content?{query}", expires)

    @staticmethod
    def _require_pull(row: Any) -> None:
        if row is not None and row.mode == dv.PUSH:
            raise Problem("conflict", f"this packet is delivered to you by push ({row.protocol}); "
                          "it cannot also be fetched, acknowledged or refused here", mode=dv.PUSH)

    @staticmethod
    def _require_pending(state: str) -> None:
        if state == dv.WAITING:
            raise Problem("not_found", "no such packet")
        if state in dv.TERMINAL:
            raise Problem("content.gone", f"this delivery is {state}; its content is no longer offered",
                          state=state)

    async def open_download(self, principal: Principal, packet_id: str, *, expires: str | None,
                            token: str | None) -> tuple[PacketInfo, Path]:
        """Check the caller may read the content now; mark the delivery fetched; return the file."""
        now = self.clock()
        async with self.db.read() as conn:
            info, own = await self._visible_row(conn, principal, packet_id)
            ref = await self.content.ref_for(conn, info, principal.unit_id,  # this unit's variant (issue 3)
                                             variant=own.variant if own is not None else None)
        self._require_pull(own)
        state = own.state if own is not None else None
        self.tokens.check("download", packet_id, principal.unit_id, expires, token, now)
        if state is not None:
            self._require_pending(state)
        if info.content_state != "stored":
            raise Problem("content.gone", "the content of this packet is no longer held by the hub")
        if state in (dv.QUEUED, dv.NOTIFIED):
            async with self.db.write() as conn:
                if await dv.move(conn, packet_id, [principal.unit_id], dv.FETCHED, now):
                    await record(conn, packet_id, "packet.fetched", now, unit=principal.unit_id)
        return dataclasses.replace(info, size=ref.size, sha256=ref.sha256), self.blobs.path(ref.blob_key)

    async def ack(self, principal: Principal, packet_id: str, sha256: Any) -> str:
        if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
            raise Problem("request.invalid", "sha256: must be 64 lowercase hex digits", field="sha256")
        async with self.db.read() as conn:
            info, own = await self._visible_row(conn, principal, packet_id)
            ref = await self.content.ref_for(conn, info, principal.unit_id,  # this unit's variant (issue 3)
                                             variant=own.variant if own is not None else None)
        self._require_pull(own)
        state = own.state if own is not None else None
        if state is None or state == dv.WAITING:
            raise Problem("not_found", "no such packet")
        if state == dv.DELIVERED:
            return dv.DELIVERED
        if state in dv.TERMINAL:
            raise Problem("conflict", f"this delivery is already {state}", state=state)
        if not hmac.compare_digest(sha256, ref.sha256):
            raise Problem("content.hash_mismatch", "the acknowledged SHA-256 is not the packet's; "
                          "the delivery stays pending")
        return await self._finish(info, principal.unit_id, dv.DELIVERED, None)

    async def fail(self, principal: Principal, packet_id: str, reason: Any) -> str:
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            raise Problem("request.invalid", f"reason: must be 1 to {MAX_REASON} characters", field="reason")
        if (why := text_problem(reason, multiline=True)) is not None:
            raise Problem("request.invalid", f"reason: {why}", field="reason")
        async with self.db.read() as conn:
            info, own = await self._visible_row(conn, principal, packet_id)
        self._require_pull(own)
        state = own.state if own is not None else None
        if state is None or state == dv.WAITING:
            raise Problem("not_found", "no such packet")
        if state == dv.FAILED:
            return dv.FAILED
        if state in dv.TERMINAL:
            raise Problem("conflict", f"this delivery is already {state}", state=state)
        return await self._finish(info, principal.unit_id, dv.FAILED, reason.strip())

    async def _finish(self, info: PacketInfo, unit: str, target: str, reason: str | None,
                      detail: dict[str, Any] | None = None, values: dict[str, Any] | None = None) -> str:
        """End one delivery (delivered, failed or expired), tell the source, purge if it was the last.

        Shared by the pull path (ack, fail) and the push engine; `detail` goes into the source's
        event (attempts, receipt), `values` into the delivery row (e.g. last_error).
        """
        now = self.clock()
        events: list[Event] = []
        async with self.db.write() as conn:
            moved = await dv.move(conn, info.id, [unit], target, now, reason=reason, values=values)
            if not moved:
                current = await dv.state_of(conn, info.id, unit)
                if current == target:
                    return target
                raise Problem("conflict", f"this delivery is already {current}", state=current)
            attempts = await dv.attempts_of(conn, info.id, unit)
            told: dict[str, Any] = {"reason": reason} if reason else {}
            if attempts:
                told["attempts"] = attempts
            told.update(detail or {})
            events.append(await record(conn, info.id, f"packet.{target}", now, unit=unit, audience=info.source,
                                       detail=told or None))
            purge = await self._complete_if_done(conn, info.id, now, events)
        if purge:
            await self._purge(info.id)
        self.bus.publish(events)
        if target == dv.DELIVERED:
            self._spawn(self.call_hook("lgsp_packet_delivered", packet=info, unit=unit))
        else:
            self._spawn(self.call_hook("lgsp_packet_failed", packet=info, unit=unit, state=target,
                                       reason=reason or ""))
        return target

    async def end_delivery(self, info: PacketInfo, unit: str, target: str, reason: str | None = None, *,
                           detail: dict[str, Any] | None = None, values: dict[str, Any] | None = None) -> bool:
        """For delivery engines: end a delivery; False if it had meanwhile changed (e.g. cancelled)."""
        try:
            await self._finish(info, unit, target, reason, detail, values)
        except Problem:
            return False
        return True

    async def _complete_if_done(self, conn: AsyncConnection, packet_id: str, now: datetime,
                                events: list[Event]) -> bool:
        """If every delivery has ended, complete the packet; True when its content must go.

        One conditional UPDATE decides it. The content is recorded as purged in the same transaction
        and its files are deleted right after the commit (`_purge`); if the hub dies in between,
        `reconcile_blobs` deletes them at the next start.
        """
        row = (await conn.execute(_COMPLETE_IF_DONE, {"p_packet": packet_id, "completed_at": now})).first()
        if row is None:
            return False
        events.append(await record(conn, packet_id, "packet.completed", now))
        if row.content_state != "stored":
            return False
        await conn.execute(_MARK_PURGED, {"p_packet": packet_id, "purged_at": now})
        events.append(await record(conn, packet_id, "content.purged", now))
        return True

    async def _purge(self, packet_id: str) -> None:
        """Delete the files of a packet recorded as purged (the upload and every variant).

        Runs after the commit: a failure here must not undo the answer the caller is owed, and
        `reconcile_blobs` deletes whatever is left on its next round.
        """
        try:
            await self.content.delete_blobs(packet_id)
            await self.blobs.delete_partials(packet_id)
        except OSError:
            log.exception("could not delete the content of packet %s now; reconciliation will", packet_id)

    async def reconcile_blobs(self, min_age_seconds: float = 60.0) -> int:
        """Delete files whose packet no longer needs them: purged or expired packets (a crash came
        between the commit and the deletion), and upload attempts that lost to another one."""
        files = await asyncio.to_thread(self.blobs.all_objects, min_age_seconds)
        by_packet: dict[str, list[Path]] = {}
        for path in files:
            by_packet.setdefault(path.name[:36], []).append(path)
        ids = [p for p in by_packet if _uuid_like(p)]
        doomed: list[Path] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            async with self.db.read() as conn:
                rows = {r.id: r for r in (await conn.execute(
                    select(packets.c.id, packets.c.state, packets.c.content_state, packets.c.blob_key)
                    .where(packets.c.id.in_(chunk)))).all()}
            for packet_id in chunk:
                row = rows.get(packet_id)
                if row is None or row.content_state == "purged" or row.state == "expired":
                    doomed.extend(by_packet[packet_id])
                elif row.state != "created" and row.blob_key:  # keep the accepted attempt and its variants
                    doomed.extend(p for p in by_packet[packet_id] if not p.name.startswith(row.blob_key))
        await asyncio.to_thread(remove, doomed)
        if doomed:
            log.info("removed %d blob files no packet needs any more", len(doomed))
        return len(doomed)

    # -- source side --------------------------------------------------------------------------
    async def cancel(self, principal: Principal, packet_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            info, _ = await self._visible(conn, principal, packet_id)
        if info.source != principal.unit_id:
            raise Problem("forbidden", "only the source may cancel a packet")
        now = self.clock()
        events: list[Event] = []
        async with self.db.write() as conn:
            before = await dv.states_of(conn, packet_id)
            modes = await _modes(conn, packet_id)
            moved = await dv.move(conn, packet_id, None, dv.CANCELLED, now, reason="cancelled by the source")
            for unit in moved:
                told = before.get(unit) in dv.PENDING and modes.get(unit) == dv.PULL
                events.append(await record(conn, packet_id, "packet.cancelled", now, unit=unit,
                                           audience=unit if told else None))
            purge = await self._complete_if_done(conn, packet_id, now, events) if moved else False
            fresh = await self._load(conn, packet_id)
        if purge:
            await self._purge(packet_id)
        self.bus.publish(events)
        for unit in moved:
            self._spawn(self.call_hook("lgsp_packet_failed", packet=info, unit=unit, state=dv.CANCELLED,
                                       reason="cancelled by the source"))
        assert fresh is not None
        return {"id": packet_id, "cancelled": sorted(moved), "state": fresh.state}

    async def view(self, principal: Principal, packet_id: str) -> dict[str, Any]:
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
            extra = await self.content.view_extra(conn, info, principal.unit_id, is_source)  # issue 3
        out = info.summary()
        out.update({
            "state": info.state,
            "content": info.content_state,
            "protocol": info.protocol,
            "deadline": iso(info.deadline) if info.deadline else None,
            "deliveries": [_delivery_view(d, self.presence_overlay(d.unit_id, bool(d.online), d.last_seen_at))
                           for d in d_rows],
            "events": [{"at": iso(e.at), "type": e.type, "unit": e.unit,
                        **({k: e.detail[k] for k in ("reason", "attempts") if e.detail.get(k)} if e.detail else {})}
                       for e in e_rows],
        })
        if is_source:
            out["to"] = list(info.to)
            if info.state == "created":
                out["upload_expires_at"] = iso(info.upload_expires_at)
        if info.meta:
            out["metadata"] = info.meta
        out.update(extra)
        return out

    # -- event stream support -----------------------------------------------------------------
    async def hello(self, unit: str) -> tuple[dict[str, Any], set[int], set[str]]:
        """The first message of a stream: pending inbox and sent-packet changes since last time.

        Also returns the event seqs and packet ids it covered, so the live feed can skip repeats.
        """
        async with self.db.read() as conn:
            cursor = await conn.scalar(select(units.c.stream_cursor).where(units.c.id == unit)) or 0
            rows = (await conn.execute(
                select(packet_events).outerjoin(packets, packets.c.id == packet_events.c.packet_id)
                .where(and_(packet_events.c.audience == unit, packet_events.c.id > cursor,
                            (packets.c.source_unit == unit) | packet_events.c.packet_id.is_(None)))
                .order_by(packet_events.c.id).limit(HELLO_CHANGES + 1))).all()
        inbox = await self.inbox(_system_principal(unit), limit=HELLO_INBOX)
        more = len(rows) > HELLO_CHANGES
        changes = [Event(r.id, r.type, r.packet_id, r.at, r.unit, r.audience, r.detail) for r in rows[:HELLO_CHANGES]]
        message = {"type": "hello", "at": iso(self.clock()), "unit": unit, "inbox": inbox,
                   "changes": [c.message() for c in changes], "more": more}
        return message, {c.seq for c in changes}, {i["id"] for i in inbox}

    async def save_cursor(self, unit: str, seq: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(units).where(and_(units.c.id == unit, units.c.stream_cursor < seq))
                               .values(stream_cursor=seq))

    async def mark_told(self, unit: str, packet_ids: list[str]) -> None:
        """A hello listed these packets to their destination: queued → notified."""
        if not packet_ids:
            return
        now = self.clock()
        async with self.db.write() as conn:
            for packet_id in packet_ids:
                await dv.move(conn, packet_id, [unit], dv.NOTIFIED, now)

    # -- housekeeping -------------------------------------------------------------------------
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
            old = []
            if self.max_age is not None:
                old = (await conn.execute(
                    select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.priority)
                    .where(and_(deliveries.c.state.in_(judged - {dv.WAITING}), self.too_old(now)))
                    .limit(500))).all()
        for packet_id in stale:
            events: list[Event] = []
            async with self.db.write() as conn:
                result = await conn.execute(update(packets).where(
                    and_(packets.c.id == packet_id, packets.c.state == "created")).values(
                    state="expired", completed_at=now))
                if not result.rowcount:
                    continue
                await dv.move(conn, packet_id, None, dv.EXPIRED, now, reason="content was never uploaded")
                source = await conn.scalar(select(packets.c.source_unit).where(packets.c.id == packet_id))
                events.append(await record(conn, packet_id, "upload.expired", now, unit=source, audience=source))
            await self.content.delete_blobs(packet_id)  # a blob renamed in just before a crash
            await self.blobs.delete_partials(packet_id)  # and partial uploads (cut off, or of a crash)
            self.bus.publish(events)
            counts["uploads_expired"] += 1
        by_packet: dict[tuple[str, str], list[str]] = {}
        for row in late:
            by_packet.setdefault((row.packet_id, "deadline passed"), []).append(row.unit_id)
        for row in old:
            assert self.max_age is not None
            reason = f"not delivered within {_duration(self.max_age(row.priority))} (maximum age of its priority)"
            if row.unit_id not in by_packet.get((row.packet_id, "deadline passed"), ()):
                by_packet.setdefault((row.packet_id, reason), []).append(row.unit_id)
        for (packet_id, reason), late_units in by_packet.items():
            info = await self.packet(packet_id)
            if info is None:
                continue
            events = []
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
                    events.append(await record(conn, packet_id, "packet.expired", now, unit=unit,
                                               audience=info.source, detail=detail))
                purge = await self._complete_if_done(conn, packet_id, now, events) if moved else False
            if purge:
                await self._purge(packet_id)
            self.bus.publish(events)
            for unit in moved:
                self._spawn(self.call_hook("lgsp_packet_failed", packet=info, unit=unit, state=dv.EXPIRED,
                                           reason=reason))
            counts["deadlines_expired"] += len(moved)
        return counts

    def too_old(self, now: datetime) -> Any:
        """SQL condition: the delivery has been queued longer than its priority's max age."""
        assert self.max_age is not None
        return or_(*(and_(deliveries.c.priority == p, deliveries.c.queued_at.is_not(None),
                          deliveries.c.queued_at <= now - timedelta(seconds=self.max_age(p)))
                     for p in PRIORITIES))

    # -- operators (lgsp deliveries ...) ------------------------------------------------------
    async def list_deliveries(self, *, states: list[str] | None = None, unit: str | None = None,
                              packet_id: str | None = None, older_than: float | None = None,
                              limit: int = 100) -> list[dict[str, Any]]:
        """Deliveries an operator may need to act on; by default everything not yet delivered."""
        wanted = states or sorted(dv.ACTIVE - {dv.WAITING} | {dv.FAILED, dv.EXPIRED})
        bad = sorted(set(wanted) - set(dv.STATES))
        if bad:
            raise Problem("request.invalid", f"unknown state(s): {', '.join(bad)} (one of {', '.join(dv.STATES)})")
        cond = [deliveries.c.state.in_(wanted)]
        if unit:
            cond.append(deliveries.c.unit_id == unit)
        if packet_id:
            cond.append(deliveries.c.packet_id == packet_id)
        if older_than is not None:
            cond.append(deliveries.c.updated_at <= self.clock() - timedelta(seconds=older_than))
        stmt = (select(deliveries, packets.c.source_unit, packets.c.subject, packets.c.content_state)
                .join(packets, packets.c.id == deliveries.c.packet_id).where(and_(*cond))
                .order_by(deliveries.c.updated_at, deliveries.c.packet_id, deliveries.c.unit_id).limit(limit))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{"packet": r.packet_id, "unit": r.unit_id, "from": r.source_unit, "subject": r.subject,
                 "mode": r.mode, "protocol": r.protocol, "state": r.state, "priority": r.priority,
                 "attempts": r.attempts, "updated_at": iso(r.updated_at),
                 "next_attempt_at": iso(r.next_attempt_at) if r.next_attempt_at and r.state == dv.RETRYING else None,
                 "reason": r.reason, "last_error": r.last_error, "content": r.content_state} for r in rows]

    async def _held(self, packet_id: str) -> PacketInfo:
        info = await self.packet(packet_id) if _uuid_like(packet_id) else None
        if info is None:
            raise Problem("not_found", f"no packet {packet_id}")
        if info.state != "accepted" or info.content_state != "stored":
            raise Problem("content.gone", f"packet {packet_id} is {info.state} and its content is "
                          f"{info.content_state}; the source must send it again")
        return info

    async def operator_retry(self, packet_id: str, unit: str) -> str:
        """Put a stuck or ended delivery back in the queue now, with a fresh attempt budget and age."""
        if not _uuid_like(packet_id):
            raise Problem("not_found", f"no packet {packet_id}")
        async with self.db.read() as conn:
            row = await dv.row_of(conn, packet_id, unit)
        if row is None:
            raise Problem("not_found", f"packet {packet_id} has no delivery to {unit}")
        if row.state not in dv.OPERATOR_RETRY_FROM:
            raise Problem("conflict", f"the delivery to {unit} is {row.state}; only "
                          f"{', '.join(sorted(dv.OPERATOR_RETRY_FROM))} deliveries can be retried", state=row.state)
        info = await self._held(packet_id)
        now = self.clock()
        events: list[Event] = []
        async with self.db.write() as conn:
            row = await dv.row_of(conn, packet_id, unit)
            if row is None or row.state not in dv.OPERATOR_RETRY_FROM:
                raise Problem("conflict", f"the delivery to {unit} changed meanwhile; try again")
            await dv.move(conn, packet_id, [unit], dv.QUEUED, now, allowed_from=dv.OPERATOR_RETRY_FROM, values={
                "queued_at": now, "attempts": 0, "next_attempt_at": None, "last_error": None, "reason": None})
            events.append(await record(conn, packet_id, "delivery.retried", now, unit=unit, audience=info.source,
                                       detail={"reason": f"retried by an operator (was {row.state})"}))
            if row.mode == dv.PULL:
                events.append(await record(conn, packet_id, "packet.available", now, unit=unit, audience=unit,
                                           detail=self._available_detail(info)))
        self.bus.publish(events)
        if row.mode == dv.PUSH:
            self.on_push_queued([unit])
        return dv.QUEUED

    async def operator_cancel(self, packet_id: str, unit: str | None, reason: str = "cancelled by an operator"
                              ) -> list[str]:
        """Cancel one (or every) unfinished delivery of a packet; the source is told."""
        info = await self.packet(packet_id) if _uuid_like(packet_id) else None
        if info is None:
            raise Problem("not_found", f"no packet {packet_id}")
        now = self.clock()
        events: list[Event] = []
        async with self.db.write() as conn:
            before = await dv.states_of(conn, packet_id)
            if unit is not None and unit not in before:
                raise Problem("not_found", f"packet {packet_id} has no delivery to {unit}")
            modes = await _modes(conn, packet_id)
            moved = await dv.move(conn, packet_id, None if unit is None else [unit], dv.CANCELLED, now, reason=reason)
            if unit is not None and not moved:
                raise Problem("conflict", f"the delivery to {unit} is already {before[unit]}", state=before[unit])
            for u in moved:
                events.append(await record(conn, packet_id, "packet.cancelled", now, unit=u, audience=info.source,
                                           detail={"reason": reason}))
                if before.get(u) in dv.PENDING and modes.get(u) == dv.PULL:
                    events.append(await record(conn, packet_id, "packet.cancelled", now, unit=u, audience=u,
                                               detail={"reason": reason}))
            purge = await self._complete_if_done(conn, packet_id, now, events) if moved else False
        if purge:
            await self._purge(packet_id)
        self.bus.publish(events)
        for u in moved:
            self._spawn(self.call_hook("lgsp_packet_failed", packet=info, unit=u, state=dv.CANCELLED, reason=reason))
        return moved

    async def operator_reroute(self, packet_id: str, unit: str, to: str) -> dict[str, Any]:
        """Send a packet that did not reach `unit` to `to` instead (same content, new delivery)."""
        info = await self._held(packet_id)
        await self.check_destinations([to])
        now = self.clock()
        reason = f"re-routed to {to} by an operator"
        events: list[Event] = []
        async with self.db.write() as conn:
            states = await dv.states_of(conn, packet_id)
            if unit not in states:
                raise Problem("not_found", f"packet {packet_id} has no delivery to {unit}")
            if to in states:
                raise Problem("conflict", f"{to} is already a destination of packet {packet_id}")
            if states[unit] == dv.DELIVERED:
                raise Problem("conflict", f"packet {packet_id} was already delivered to {unit}", state=dv.DELIVERED)
            moved = await dv.move(conn, packet_id, [unit], dv.CANCELLED, now, reason=reason)
            row = self._delivery_row(packet_id, to, info.priority, info.created_at, state=dv.QUEUED, queued_at=now)
            await conn.execute(deliveries.insert().values(**row))
            events.append(await record(conn, packet_id, "packet.rerouted", now, unit=unit, audience=info.source,
                                       detail={"reason": reason, "to": to}))
            if row["mode"] == dv.PULL:
                events.append(await record(conn, packet_id, "packet.available", now, unit=to, audience=to,
                                           detail=self._available_detail(info)))
        self.bus.publish(events)
        if moved:
            self._spawn(self.call_hook("lgsp_packet_failed", packet=info, unit=unit, state=dv.CANCELLED,
                                       reason=reason))
        if row["mode"] == dv.PUSH:
            self.on_push_queued([to])
        return {"packet": packet_id, "from_unit": unit, "to": to, "mode": row["mode"], "state": dv.QUEUED}

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for plugin calls still running (on shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


async def _modes(conn: AsyncConnection, packet_id: str) -> dict[str, str]:
    rows = (await conn.execute(_MODES_OF, {"packet_id": packet_id})).all()
    return {r.unit_id: r.mode for r in rows}


def _delivery_view(d: Any, presence: tuple[bool, datetime | None]) -> dict[str, Any]:
    online, seen = presence
    out: dict[str, Any] = {"unit": d.unit_id, "state": d.state, "updated_at": iso(d.updated_at), "mode": d.mode,
                           "online": online, "last_seen_at": iso(seen) if seen else None}
    if d.reason:
        out["reason"] = d.reason
    if d.mode == dv.PUSH:
        out["protocol"] = d.protocol
        out["attempts"] = d.attempts
        if d.next_attempt_at is not None and d.state == dv.RETRYING:
            out["next_attempt_at"] = iso(d.next_attempt_at)
        if d.last_error:
            out["last_error"] = d.last_error
    return out


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"


def upload_key(packet_id: str) -> str:
    """A fresh blob key for one upload attempt: the packet id, a dash, 8 random hex digits."""
    return f"{packet_id}-{secrets.token_hex(4)}"


def _system_principal(unit: str) -> Principal:
    return Principal(unit_id=unit, application_id="", access_key="", algorithm="")


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _uuid_like(value: str) -> bool:
    return bool(_UUID_RE.fullmatch(value))
