"""Idempotent submissions across nodes: the first copy of a request creates the packet, the others
get its id.

An adapter that creates packets on a caller's behalf from requests that may arrive twice (the VXP
`sendEdoc` re-sent by an SDK client, a peer hub retrying a push after a lost answer) names each
request by (scope, key). A process lock cannot stop two nodes from both creating a packet when the
copies arrive at the same instant; a row keyed by (scope, key), inserted with ON CONFLICT DO
NOTHING, can: the node whose insert lands creates the packet and writes its id on the row, a node
whose insert finds the row waits for that id (or takes the row over when the first attempt failed,
died, or the row's window has passed).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Protocol

from sqlalchemy import and_, delete, select, update

from lgsp.core.store.database import conflict_insert
from lgsp.core.store.tables import packets, submit_claims

if TYPE_CHECKING:
    from lgsp.core.store.database import Database

#: A claim without a packet id this old belongs to an attempt that died: another copy takes it over.
STALE_SECONDS: Final = 600.0
#: Claims are deleted this long after their window ended.
KEEP_AFTER_EXPIRY: Final = timedelta(days=1)
_LIVE_STATES: Final = ("accepted", "completed")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class ClaimBusy(Exception):
    """Another copy of the request is still being received after `wait` seconds."""


class SubmitClaims:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    async def once(self, scope: str, key: str, window: timedelta, create: Callable[[], Awaitable[_HasId]], *,
                   wait: float = 60.0, poll: float = 0.05) -> tuple[str, bool]:
        """(packet id, created here): `create()` runs only if no copy of (scope, key) created a live
        packet within `window`. Raises ClaimBusy when a copy is still in progress after `wait` seconds;
        `create`'s own exceptions propagate (and free the claim for the next copy)."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        token = str(uuid.uuid4())
        deadline = time.monotonic() + wait
        while True:
            found = await self._claim(scope[:200], digest, token, window)
            if found is None:
                break
            if time.monotonic() > deadline:
                raise ClaimBusy(f"another copy of this request is still being received ({scope})")
            if found:
                return found, False
            await asyncio.sleep(poll)
            poll = min(poll * 2, 1.0)
        try:
            made = await create()
        except BaseException:
            async with self.db.write() as conn:
                await conn.execute(delete(submit_claims).where(and_(
                    submit_claims.c.scope == scope[:200], submit_claims.c.key == digest,
                    submit_claims.c.token == token)))
            raise
        async with self.db.write() as conn:
            await conn.execute(update(submit_claims).where(and_(
                submit_claims.c.scope == scope[:200], submit_claims.c.key == digest,
                submit_claims.c.token == token)).values(packet_id=made.id))
        return made.id, True

    async def _claim(self, scope: str, key: str, token: str, window: timedelta) -> str | None:
        """None: the claim is ours. A packet id: a copy made it. "": a copy is in progress."""
        now = self.clock()
        row_values = {"token": token, "packet_id": None, "claimed_at": now, "expires_at": now + window}
        async with self.db.write() as conn:
            inserted = await conn.execute(conflict_insert(conn, submit_claims)
                                          .values(scope=scope, key=key, **row_values)
                                          .on_conflict_do_nothing())
            if inserted.rowcount:
                await conn.execute(delete(submit_claims).where(submit_claims.c.expires_at < now - KEEP_AFTER_EXPIRY))
                return None
            row = (await conn.execute(select(submit_claims, packets.c.state)
                                      .outerjoin(packets, packets.c.id == submit_claims.c.packet_id)
                                      .where(and_(submit_claims.c.scope == scope, submit_claims.c.key == key)))
                   ).first()
            if row is None:
                return ""  # deleted meanwhile (a failed copy): try again
            if row.packet_id is not None and row.state in _LIVE_STATES and row.expires_at > now:
                return str(row.packet_id)
            in_progress = row.packet_id is None and row.claimed_at > now - timedelta(seconds=STALE_SECONDS)
            if in_progress and row.expires_at > now:
                return ""
            # Outside its window, its packet refused or gone, or its attempt died: take it over.
            taken = await conn.execute(update(submit_claims).where(and_(
                submit_claims.c.scope == scope, submit_claims.c.key == key,
                submit_claims.c.token == row.token)).values(**row_values))
            return None if taken.rowcount else ""
