"""Access keys kept in memory per process, so a signed request does not read its key from the store.

Every signed request needs its key (`Directory.key_material`: the key row joined with its unit).
Reading it costs a statement per request, about five per exchange; keys change rarely. So
`Authenticator.verify` keeps the keys it has read here, and a revocation still holds on the very
next request, on this node and on every other node sharing the store:

- The store keeps a *key generation* (table `key_generation`, one row). Triggers (migration 0019)
  bump it in the transaction of any change to what decides whether a key authenticates: the key's
  row (revocation, its secret or public key, its algorithm, its owner) and its unit's status and
  pinned client certificates; whoever makes the change (this node, another node, the CLI in
  another process, an operator's SQL).
- A key read from the store carries the generation read in the same statement; its entry here is
  tagged with it.
- Every accepted signed request writes its nonce (`NonceBook`), and that INSERT reads the current
  generation back in its RETURNING clause: no extra statement. If it differs from the entry's,
  something changed since the entry was read (perhaps another key: the counter is global), so
  the key is read again and the request checked again before it is served; the entry is replaced.
- A change committed before the request's nonce write is therefore always seen: nothing is
  served on a stale entry, whatever the node or process that made the change. The cost of a
  change is one extra key read per cached key, at its next request.
- Refusals are never decided on a cached entry: a request the cached key refuses is checked again
  with the key read fresh, so the answer is the one the store gives.

As a safety net (a change made with the triggers absent, a store restored under a running hub),
an entry is also dropped `security.key_cache_seconds` after it was read (30 s by default; 0 turns
the cache off). Unknown keys are never cached, so guessing keys cannot fill it. Keys that are only
checked, not used for a signed request (event streams re-checking their key, /vxp, stream
tickets), keep reading the store (`Authenticator.usable_key`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from lgsp.core.directory import KeyMaterial

#: Most keys kept; the least recently used one goes first.
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Cached:
    #: The key as read, with the store's key generation of that statement (`key.generation`).
    key: KeyMaterial
    #: Monotonic time after which the entry is not used.
    expires: float


class KeyCache:
    """A bounded LRU of access keys with a time limit; see the module's text for the invalidation."""

    def __init__(self, *, ttl_seconds: float = 30.0, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        #: Counters, for tests and metrics: served from memory, read from the store, read again
        #: because the generation moved.
        self.hits = 0
        self.misses = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, access_key: str) -> Cached | None:
        entry = self._entries.get(access_key)
        if entry is None:
            self.misses += 1
            return None
        if self.clock() >= entry.expires:
            del self._entries[access_key]
            self.misses += 1
            return None
        self._entries.move_to_end(access_key)
        self.hits += 1
        return entry

    def put(self, key: KeyMaterial) -> None:
        """Keep `key` (tagged with the generation it was read at); nothing when the cache is off."""
        if self.ttl <= 0 or key.generation is None:
            return
        self._entries[key.access_key] = Cached(key, self.clock() + self.ttl)
        self._entries.move_to_end(key.access_key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, access_key: str) -> None:
        self._entries.pop(access_key, None)

    def clear(self) -> None:
        self._entries.clear()
