"""One-time secrets of the console (post/redirect/get): a new key's secret or a temporary password.

The POST that makes a secret keeps it here, in memory only, tied to the console session that made it,
and answers 303 to a page that takes it out once. Reloading that page (or the POST's redirect being
replayed) finds nothing and says the secret was already shown; it never issues anything again. An
entry not taken within the TTL is dropped; a hub restart forgets everything (the secret is lost, which
is the safe way round: revoke and issue again).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TTL_SECONDS = 300          # five minutes between the POST and the page that shows the secret
MAX_ENTRIES = 1000         # a bound on memory whatever a session does


@dataclass(frozen=True)
class _Entry:
    session: str           # SHA-256 of the session token that made it
    where: str             # the page (path) that may show it
    expires: float
    value: Any


class OneTimeSecrets:
    """Secrets waiting to be shown once to the session that made them."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, _Entry] = {}

    @staticmethod
    def _session(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def put(self, session_token: str, where: str, value: Any) -> str:
        """Keep `value` for this session and page; the returned id goes in the redirect's query."""
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self._max:          # oldest first (dicts keep insertion order)
            del self._entries[next(iter(self._entries))]
        ident = secrets.token_urlsafe(18)
        self._entries[ident] = _Entry(self._session(session_token), where, now + self.ttl, value)
        return ident

    def take(self, session_token: str, where: str, ident: str | None) -> Any:
        """The value once, for the session and page that made it and before its TTL; else None.

        Another session's request, or another page, neither sees nor consumes the entry."""
        if not ident:
            return None
        entry = self._entries.get(ident[:64])
        if entry is None or entry.where != where \
                or not hmac.compare_digest(entry.session, self._session(session_token)):
            return None
        del self._entries[ident[:64]]
        return entry.value if entry.expires > self._clock() else None

    def __len__(self) -> int:
        return len(self._entries)
