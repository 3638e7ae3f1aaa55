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
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from lgsp.core.api import META_PARAM, Problem, Text, metadata_digest

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
        def bad(why: str) -> Problem:
            return Problem("request.invalid", Text("{H_ENVELOPE}: {why}", H_ENVELOPE=H_ENVELOPE, why=why),
                           field=H_ENVELOPE)

        if not value:
            raise bad("required")
        if len(value) > MAX_ENVELOPE * 2:
            raise bad("too long")
        try:
            raw: Any = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except ValueError:
            raise bad("not Base64url JSON") from None
        if not isinstance(raw, dict):
            raise bad("must be a JSON object")
        text = {k: raw.get(k) for k in ("packet", "source", "subject", "data_type", "hub")}
        for key in ("packet", "source", "data_type"):
            value = text[key]
            if not isinstance(value, str) or not value or len(value) > 200:
                raise bad(f"{key} must be a non-empty string")
        to = raw.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(u, str) and u for u in to) or len(to) > 1000:
            raise bad("to must be a non-empty list of unit identifiers")
        priority = raw.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise bad("priority must be an integer")
        deadline = None
        if raw.get("deadline") is not None:
            try:
                deadline = datetime.fromisoformat(str(raw["deadline"]))
            except ValueError:
                raise bad("deadline must be an ISO 8601 time") from None
            if deadline.tzinfo is None:
                raise bad("deadline must carry its offset")
        return cls(packet=str(text["packet"]), source=str(text["source"]), to=tuple(to),
                   subject=str(text["subject"] or "")[:500], priority=priority, data_type=str(text["data_type"]),
                   deadline=deadline, hub=str(text["hub"] or "")[:200])


def envelope_query(encoded: str) -> str:
    """The signed query that binds the envelope header to the request's signature."""
    return f"{META_PARAM}={metadata_digest({H_ENVELOPE: encoded}, (H_ENVELOPE,))}"
