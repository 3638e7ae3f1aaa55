"""What the exchange takes and returns: packets, new packets, transfers, inbox positions.

Also the validation of a create request (`parse_new_packet`), which inbound adapters reuse for the
packets they build from files and SOAP calls, so every way in applies the same rules.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lgsp.core.auth import Principal
from lgsp.core.errors import Problem
from lgsp.core.i18n import N_, Text
from lgsp.core.signing import SHA256_RE
from lgsp.core.text import text_problem

PRIORITIES = {0: "normal", 1: "urgent", 2: "very_urgent", 3: "flash"}
DATA_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,63}$")
PROTOCOL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MAX_SUBJECT = 2000
MAX_REASON = 2000
MAX_DESTINATION = 64  # longest destination accepted in `to` (unit identifiers have at most 35)
#: Deadlines are refused from this instant on: far beyond any use, and far from datetime's year 9999.
LATEST_DEADLINE = datetime(9000, 1, 1, tzinfo=UTC)


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


@dataclass(frozen=True)
class UnitStatus:
    """A unit as an operator's overview lists it."""

    id: str
    name: str
    online: bool
    last_seen_at: datetime | None


@dataclass(frozen=True)
class Attention:
    """What needs an operator's attention: units, stuck deliveries by state, and per unit the
    deliveries waiting longer than asked (see `OperatorCommands.attention`)."""

    units: list[UnitStatus]
    stuck: dict[str, int]
    waiting: dict[str, int]


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
            return Problem("request.invalid", Text("cursor: not a cursor this hub issued (use `next` as returned)"),
                           field="cursor")

        if len(cursor) > MAX_CURSOR or not cursor.isascii() or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
            raise bad()
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            raise bad() from None
        match = _CURSOR_RE.fullmatch(raw)
        if match is None or not uuid_like(match.group(3)):
            raise bad()
        # At most 17 digits: some time before the year 5200, never an overflow.
        return cls(int(match.group(1)), _EPOCH + int(match.group(2)) * _MICROSECOND, match.group(3))


def packet_from_row(row: Any, to: tuple[str, ...]) -> PacketInfo:
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
    content (edXML `To`), so `to` may be empty.
    """
    if not isinstance(body, dict):
        raise Problem("request.invalid", Text("body must be a JSON object"))
    known = {"to", "subject", "priority", "data_type", "protocol", "size", "sha256", "deadline", "policy"}
    extra = sorted(set(body) - known)
    if extra:
        raise Problem("request.invalid", Text("unknown field(s): {extra}", extra=', '.join(extra)), field=extra[0])

    def bad(name: str, msg: str) -> Problem:
        return Problem("request.invalid", Text("{name}: {msg}", name=name, msg=msg), field=name)

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
        raise Problem("content.too_large", Text("size {size} exceeds the limit of {max_size} bytes", size=size,
                                                max_size=max_size),
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
        return Problem("request.invalid", Text("deadline: {msg}", msg=msg), field="deadline")

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


def upload_key(packet_id: str) -> str:
    """A fresh blob key for one upload attempt: the packet id, a dash, 8 random hex digits."""
    return f"{packet_id}-{secrets.token_hex(4)}"


def system_principal(unit: str) -> Principal:
    """The unit itself, for reads the hub makes on its behalf (a stream's hello)."""
    return Principal(unit_id=unit, application_id="", access_key="", algorithm="")


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def uuid_like(value: str) -> bool:
    """Packet ids are lowercase UUIDs; anything else is unknown without asking the store."""
    return bool(_UUID_RE.fullmatch(value))


def too_old_reason(seconds: float) -> Text:
    """Why a delivery expired by its priority's maximum age, with the age in words of the reader's
    language (the unit is part of the message, so a stored reason reads back translated)."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return Text("not delivered within {days} days (maximum age of its priority)", days=int(seconds // 86400))
    if seconds >= 3600 and seconds % 3600 == 0:
        return Text("not delivered within {hours} hours (maximum age of its priority)", hours=int(seconds // 3600))
    return Text("not delivered within {seconds} seconds (maximum age of its priority)", seconds=format(seconds, "g"))


#: Reasons stored by earlier versions, still read back translated (the age as "3 d", "6 h", "90 s").
STORED_BEFORE = (N_("not delivered within {duration} (maximum age of its priority)"),)
