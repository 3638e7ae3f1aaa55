"""Secrets shown once after a POST (post/redirect/get): a new key's secret, a temporary password.

The POST that makes a secret keeps it here and answers 303 to a page that takes it out once. The
value lives in the store, sealed with the master key (bound to its row) and kept for the session that
made it and the page that may show it, so a restart or another node behind the same store still shows it;
it is deleted when shown, and an entry not shown within the TTL is never shown (and purged on the
next put). Only the SHA-256 of the URL's id and of the session token are stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from lgsp.core.masterkey import MasterKey
from lgsp.core.store.database import Database
from lgsp.core.store.tables import one_time_secrets

TTL_SECONDS = 300          # five minutes between the POST and the page that shows the secret
MAX_PER_SESSION = 50       # a bound on what one session can leave waiting


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class OneTimeSecrets:
    """Secrets waiting to be shown once to the session that made them, on the page named."""

    def __init__(self, db: Database, master_key: MasterKey, *, ttl: float = TTL_SECONDS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.master_key = master_key
        self.ttl = ttl
        self._clock = clock

    @staticmethod
    def context(ident_hash: str) -> str:
        """What a value is sealed to: its row (a master-key rotation re-seals it the same way)."""
        return f"console-once:{ident_hash}"

    async def put(self, session_token: str, where: str, value: Any) -> str:
        """Keep `value` (JSON: text, numbers, lists, dicts) for this session and page; the returned id
        goes in the redirect's query."""
        now = self._clock()
        ident = secrets.token_urlsafe(18)
        ident_hash, session_hash = _digest(ident), _digest(session_token)
        sealed = self.master_key.encrypt(json.dumps(value, ensure_ascii=False),
                                         self.context(ident_hash))
        async with self.db.write() as conn:
            await conn.execute(delete(one_time_secrets).where(one_time_secrets.c.expires_at <= now))
            waiting = await conn.scalar(select(func.count()).select_from(one_time_secrets)
                                        .where(one_time_secrets.c.session_hash == session_hash))
            if waiting and waiting >= MAX_PER_SESSION:       # oldest first
                oldest = select(one_time_secrets.c.id).where(one_time_secrets.c.session_hash == session_hash) \
                    .order_by(one_time_secrets.c.expires_at).limit(waiting - MAX_PER_SESSION + 1)
                await conn.execute(delete(one_time_secrets).where(one_time_secrets.c.id.in_(oldest.scalar_subquery())))
            await conn.execute(one_time_secrets.insert().values(
                id=ident_hash, session_hash=session_hash, page=where[:300], sealed=sealed,
                expires_at=now + timedelta(seconds=self.ttl)))
        return ident

    async def take(self, session_token: str, where: str, ident: str | None) -> Any:
        """The value once, for the session and page that made it and before its TTL; else None.

        Another session's request, or another page, neither sees nor consumes the entry; of two
        requests racing for it, only the one whose delete removed the row gets the value."""
        if not ident or len(ident) > 64:
            return None
        ident_hash, session_hash = _digest(ident), _digest(session_token)
        mine = ((one_time_secrets.c.id == ident_hash) & (one_time_secrets.c.session_hash == session_hash)
                & (one_time_secrets.c.page == where[:300]))
        async with self.db.write() as conn:
            row = (await conn.execute(select(one_time_secrets.c.sealed, one_time_secrets.c.expires_at)
                                      .where(mine))).first()
            if row is None:
                return None
            deleted = await conn.execute(delete(one_time_secrets).where(mine))
        if not deleted.rowcount or row.expires_at <= self._clock():
            return None
        return json.loads(self.master_key.decrypt(bytes(row.sealed), self.context(ident_hash)))

    async def waiting(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(one_time_secrets)) or 0)
