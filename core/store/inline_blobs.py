"""Small uploads kept in the store instead of a file (`blobs.inline_bytes`).

A file costs a small upload most of its blob work: create, write, fsync, rename, fsync of the
folder, and later an unlink, each a system call or a worker-thread hand-off, about a fifth of the
hub's CPU per 10 KiB exchange (docs/performance.md). An upload of at most `blobs.inline_bytes`
is sealed in memory instead (`BlobWriter` with `inline`) and its sealed bytes, exactly what the
file would have held, go into `inline_blobs` in the acceptance's own transaction: durable when the
acceptance is, never an acceptance without its content. On PostgreSQL the row rides the
acceptance's events INSERT (core/store/deferred.py), so it costs no round trip.

Readers do not change: they open the blob by its path (`BlobStore.open_sync`), and a path with no
file is looked up here, through the event loop from their worker thread; the node that took the
upload serves its downloads from memory (`SealedCache`). The row goes with its packet's data key:
the purge deletes the key, and the foreign key's ON DELETE CASCADE the row, in the same statement.
Only sealed (encrypted) content is kept so, never plaintext.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.store import deferred
from lgsp.core.store.blobs import key_id_of
from lgsp.core.store.database import Database
from lgsp.core.store.tables import inline_blobs

_SEALED = select(inline_blobs.c.content).where(and_(inline_blobs.c.key_id == bindparam("key_id"),
                                                  inline_blobs.c.blob_key == bindparam("blob_key")))


async def keep(conn: AsyncConnection, key: str, sealed: bytes) -> None:
    """Write blob `key`'s sealed bytes in the caller's transaction (the acceptance's); the packet's
    data key must exist (it sealed them)."""
    await deferred.insert(conn, inline_blobs, {"key_id": key_id_of(key), "blob_key": key, "content": sealed})


class InlineBlobs:
    """The blob store's `InlineSource`: reads a kept upload back."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def sealed(self, key: str) -> bytes | None:
        async with self.db.read() as conn:
            row: Any = (await conn.execute(_SEALED, {"key_id": key_id_of(key), "blob_key": key})).first()
        return None if row is None else bytes(row.content)
