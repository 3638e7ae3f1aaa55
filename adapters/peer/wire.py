"""The peer protocol on the wire: ordinary LGSP1 signed requests between two hubs.

* `POST /v1/peer/packets?lgsp_meta=<digest>`: the body is the packet's content (its SHA-256 in the
  signed `X-LGSP-Content-SHA256`), `X-LGSP-Peer-Envelope` the packet's metadata as Base64url JSON
  (the original source, the destinations in the receiver's zone, subject, priority, data type,
  deadline, the sender's packet id), covered by the signed `lgsp_meta` query parameter. The answer
  is `201 {"id": ...}` (`200` when that packet was already taken) with the content hash echoed.
* `GET /v1/peer/packets/{id}`: the deliveries of a packet the caller handed over, by unit.
* `GET /v1/peer/hello`: who the receiving hub is and which zone it puts the caller in (the probe).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from lgsp.core.api import MAX_DESTINATION, META_PARAM, Problem, Text, check_text, load_json, metadata_digest

H_ENVELOPE: Final = "X-LGSP-Peer-Envelope"
PACKETS: Final = "/v1/peer/packets"
HELLO: Final = "/v1/peer/hello"
#: Header values stay well under aiohttp's 8 KiB field limit; a longer list of destinations is cut
#: to the one unit of the delivery (the receiver takes the others from an edXML's To).
MAX_ENVELOPE: Final = 6000


@dataclass(frozen=True)
class Envelope:
    packet: str  # the sender hub's packet id: with the caller, the idempotency key
    source: str
    to: tuple[str, ...]
    subject: str
    priority: int
    data_type: str
    deadline: datetime | None = None
    hub: str = ""  # the sending hub's own identifier (informational)

    def encode(self) -> str:
        body = {"packet": self.packet, "source": self.source, "to": list(self.to), "subject": self.subject,
                "priority": self.priority, "data_type": self.data_type,
                "deadline": self.deadline.isoformat() if self.deadline else None, "hub": self.hub}
        raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Envelope:
        """The envelope as sent, every field checked as text a store can hold (`request.invalid`
        naming the header otherwise). The packet it describes is then checked as any new packet is
        (receiver.py)."""
        if not value:
            raise envelope_problem(Text("required"))
        if len(value) > MAX_ENVELOPE * 2:
            raise envelope_problem(Text("too long"))
        if not _BASE64URL.fullmatch(value):
            raise envelope_problem(Text("not Base64url JSON"))
        try:
            raw: Any = load_json(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except ValueError:
            raise envelope_problem(Text("not Base64url JSON")) from None
        except Problem as exc:  # deeper than the JSON bound, NaN, a NUL or a lone surrogate in a string, ...
            raise envelope_problem(exc.detail) from None
        if not isinstance(raw, dict):
            raise envelope_problem(Text("must be a JSON object"))
        for key in ("packet", "source", "data_type"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise envelope_problem(Text("{key} must be a non-empty string", key=key))
        packet = _text(raw["packet"], "packet", 200)
        source = _text(raw["source"], "source", MAX_DESTINATION)
        to = raw.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(u, str) and u for u in to) or len(to) > 1000:
            raise envelope_problem(Text("to must be a non-empty list of unit identifiers"))
        subject, hub = raw.get("subject"), raw.get("hub")
        if not isinstance(subject, str | None) or not isinstance(hub, str | None):
            raise envelope_problem(Text("subject and hub must be strings"))
        priority = raw.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise envelope_problem(Text("priority must be an integer"))
        deadline = None
        if raw.get("deadline") is not None:
            try:
                deadline = datetime.fromisoformat(str(raw["deadline"]))
            except ValueError:
                raise envelope_problem(Text("deadline must be an ISO 8601 time")) from None
            if deadline.tzinfo is None:
                raise envelope_problem(Text("deadline must carry its offset"))
            try:  # the calendar's edges (9999-12-31T23:59:59-01:00) overflow in UTC
                deadline = deadline.astimezone(UTC)
            except OverflowError:
                raise envelope_problem(Text("deadline must be an ISO 8601 time")) from None
        return cls(packet=packet, source=source, to=tuple(to), subject=_text((subject or "")[:500], "subject", 500,
                                                                              multiline=True),
                   priority=priority, data_type=str(raw["data_type"]), deadline=deadline,
                   hub=_text((hub or "")[:200], "hub", 200))


#: Base64url as `encode` writes it (padding tolerated); also keeps a header that is not ASCII from
#: reaching the digest of `envelope_query`.
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def envelope_problem(why: str) -> Problem:
    """The envelope header's problem; `why` is a `Text` (or a problem's detail), so it is read in the
    reader's language with the rest."""
    return Problem("request.invalid", Text("{H_ENVELOPE}: {why}", H_ENVELOPE=H_ENVELOPE, why=why), field=H_ENVELOPE)


def _text(value: str, field: str, max_length: int, *, multiline: bool = False) -> str:
    """Text the store can hold (no NUL, lone surrogate or control character), or the envelope's problem."""
    try:
        return check_text(value, field, max_length=max_length, min_length=0, multiline=multiline)
    except Problem as exc:
        raise envelope_problem(exc.detail) from None


def envelope_query(encoded: str) -> str:
    """The signed query that binds the envelope header to the request's signature."""
    return f"{META_PARAM}={metadata_digest({H_ENVELOPE: encoded}, (H_ENVELOPE,))}"
