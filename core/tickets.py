"""Single-use tickets that open the event stream where no header can be set (a browser's WebSocket).

A browser's `new WebSocket(url)` sends no custom headers, so it cannot sign the upgrade request.
The unit's own server, which holds the key, asks for a ticket with a signed request and hands it
to the page; the page opens `GET /v1/events?ticket=...` once. A ticket is as strong as the signed
request that obtained it: 256 random bits, stored only as a hash, bound to the key and its unit,
usable once (a conditional delete, so two nodes cannot both accept it), dead after
`security.stream_ticket_seconds`, and refused if the key was revoked or the unit suspended
meanwhile. The stream it opens is then re-checked like any other (adapters/rest/events.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete

from lgsp.core.auth import Authenticator, Principal
from lgsp.core.errors import Problem
from lgsp.core.events import iso
from lgsp.core.i18n import Text
from lgsp.core.store.database import Database
from lgsp.core.store.tables import stream_tickets

TICKET_PREFIX = "ET"
TICKET_RE = re.compile(r"ET[A-Za-z0-9_-]{43}")  # the prefix and 32 random bytes, base64url


@dataclass(frozen=True)
class StreamTicket:
    ticket: str
    expires_at: datetime
    unit: str

    def public(self, stream_url: str) -> dict[str, Any]:
        return {"ticket": self.ticket, "expires_at": iso(self.expires_at), "unit": self.unit,
                "url": f"{stream_url}?ticket={self.ticket}"}


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("ascii")).hexdigest()


class StreamTickets:
    def __init__(self, db: Database, auth: Authenticator, *, ttl_seconds: int) -> None:
        self.db = db
        self.auth = auth  # its clock and its fresh key checks: one notion of "now" and of "revoked"
        self.ttl = timedelta(seconds=ttl_seconds)

    async def issue(self, principal: Principal) -> StreamTicket:
        """A new ticket for the key and unit of a signed request; expired ones are swept meanwhile."""
        ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
        now = self.auth.clock()
        expires = now + self.ttl
        async with self.db.write() as conn:
            await conn.execute(delete(stream_tickets).where(stream_tickets.c.expires_at < now))
            await conn.execute(stream_tickets.insert().values(
                ticket_hash=_hash(ticket), access_key=principal.access_key, unit_id=principal.unit_id,
                created_at=now, expires_at=expires))
        return StreamTicket(ticket, expires, principal.unit_id)

    async def redeem(self, ticket: str) -> Principal:
        """The principal a ticket stands for, spending it; `auth.bad_ticket` (unknown, used, expired)
        or the key's own refusal (`auth.revoked_key`, `auth.unknown_key`) otherwise."""
        if not TICKET_RE.fullmatch(ticket):
            raise Problem("auth.bad_ticket", Text("not a stream ticket (ask POST /v1/events/tickets for one)"))
        now = self.auth.clock()
        async with self.db.write() as conn:  # spent whatever follows: a ticket opens at most one stream
            row = (await conn.execute(delete(stream_tickets).where(stream_tickets.c.ticket_hash == _hash(ticket))
                                      .returning(stream_tickets.c.access_key, stream_tickets.c.unit_id,
                                                 stream_tickets.c.expires_at))).first()
        if row is None:
            raise Problem("auth.bad_ticket", Text("unknown or already used stream ticket"))
        if row.expires_at <= now:
            raise Problem("auth.bad_ticket", Text("stream ticket expired at {iso}", iso=iso(row.expires_at)))
        key = await self.auth.usable_key(row.access_key)  # revoked since, or its unit suspended: refused
        if not secrets.compare_digest(key.unit_id, row.unit_id):
            raise Problem("auth.bad_ticket", Text("stream ticket was issued to another unit"))
        return Principal(key.unit_id, key.application_id, key.access_key, key.algorithm)
