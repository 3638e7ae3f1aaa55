"""Data keys of packet content: one random AES-256 key per packet, sealed under the master key.

Each blob file of a packet (its upload attempts, partial uploads, variants) is encrypted with a
key derived from the packet's data key (core/store/blobcrypt.py). The data key is stored only
sealed (table `content_keys`, bound to its key id) and is deleted when the content is purged or
the packet expires: from then on no copy of the files, nor a backup taken earlier, can be read,
even with the master key. Unsealed keys live only in memory, for the duration of one read or write.

The upload and the download read the sealed key in the statement that loads their packet (so the
key is consistent with the packet state they checked) and carry it sealed, as a `KeyOpener` from
`opener`, to the moment of the write or read, which unseals it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.masterkey import MasterKey, MasterKeyError
from lgsp.core.store import deferred
from lgsp.core.store.blobcrypt import new_data_key
from lgsp.core.store.blobs import KeyOpener
from lgsp.core.store.database import Database, conflict_insert
from lgsp.core.store.params import MAX_PLAIN, in_list, in_values
from lgsp.core.store.tables import content_keys, packets

_INSERT_KEY = content_keys.insert()
# Read by every upload and download, deleted with every packet that completes: built once, and the
# ids as plain parameters (core/store/params.py), so SQLAlchemy compiles each once.
_SEALED = select(content_keys.c.sealed).where(content_keys.c.key_id == bindparam("key_id"))


@functools.cache
def _destroy_statement(n: int) -> Any:
    return delete(content_keys).where(in_list(content_keys.c.key_id, "key_id", n))


class ContentKeys:
    def __init__(self, db: Database, master_key: MasterKey) -> None:
        self.db = db
        self.master_key = master_key

    @staticmethod
    def context(key_id: str) -> str:
        return f"content-key:{key_id}"

    async def get(self, key_id: str) -> bytes | None:
        """The data key, or None when it was never made or has been destroyed."""
        async with self.db.read() as conn:
            sealed = await conn.scalar(_SEALED, {"key_id": key_id})
        return self.unseal(key_id, sealed)

    def unseal(self, key_id: str, sealed: bytes | None) -> bytes | None:
        """The data key from its sealed form as stored (None stays None: no key)."""
        return None if sealed is None else self.master_key.unseal(bytes(sealed), self.context(key_id))

    def opener(self, key_id: str, sealed: bytes | None) -> KeyOpener:
        """The sealed key read with its packet (`content_keys.c.sealed` joined to the packet row),
        unsealed only when the read or write that uses it calls the result."""
        return functools.partial(self._open, key_id, None if sealed is None else bytes(sealed))

    async def _open(self, key_id: str, sealed: bytes | None) -> bytes | None:
        try:
            return self.unseal(key_id, sealed)
        except MasterKeyError:
            # Sealed under a master key retired since it was read (a rotation re-sealed it in the
            # meantime): the stored value is read again (a damaged one fails the same way again).
            return await self.get(key_id)

    async def create_in(self, conn: AsyncConnection, key_id: str) -> bytes:
        """Make the data key of a new packet inside the transaction that creates it: the key is
        durable with the packet, before any blob is encrypted with it, and the upload only reads it
        (no write transaction of its own). Returns it sealed, as stored (see `opener`)."""
        sealed = self.master_key.seal(new_data_key(), self.context(key_id))
        await deferred.insert(conn, content_keys, {"key_id": key_id, "sealed": sealed, "created_at": datetime.now(UTC)},
                              _INSERT_KEY)
        return sealed

    async def get_or_create(self, key_id: str) -> bytes:
        """The data key, made on first use. Two writers racing (two nodes) end with the same key.

        One read in the usual case (the packet's creation made the key, see `create_in`); a packet
        without one (created before keys were made at creation) gets it here: the insert, and only
        in a race the key is read back."""
        found = await self.get(key_id)
        if found is not None:
            return found
        fresh = new_data_key()
        async with self.db.write() as conn:
            result = await conn.execute(conflict_insert(conn, content_keys).values(
                key_id=key_id, sealed=self.master_key.seal(fresh, self.context(key_id)),
                created_at=datetime.now(UTC)).on_conflict_do_nothing())
        if result.rowcount == 1:
            return fresh
        found = await self.get(key_id)
        if found is None:  # destroyed in between: the packet ended while this upload started
            raise Problem("conflict", Text("the packet is no longer awaiting its content"))
        return found

    @staticmethod
    async def destroy(conn: AsyncConnection, key_ids: Iterable[str]) -> None:
        """Delete data keys inside the caller's transaction (the one recording the purge)."""
        ids = list(key_ids)
        if ids:
            await conn.execute(_destroy_statement(min(len(ids), MAX_PLAIN + 1)), in_values("key_id", ids))

    @staticmethod
    async def sweep(db: Database) -> None:
        """Delete the keys of packets whose content is purged or never came (expired)."""
        # Walks the few live keys and probes packets by primary key, not the whole packets table.
        ended = select(packets.c.id).where(and_(
            packets.c.id == content_keys.c.key_id,
            or_(packets.c.content_state == "purged", packets.c.state == "expired"))).exists()
        async with db.write() as conn:
            await conn.execute(delete(content_keys).where(ended))
