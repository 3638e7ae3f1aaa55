"""The signed scan of a registration form (PDF, PNG or JPEG), stored in the hub's blob store.

The console streams an upload here; its type is decided by its first bytes (never by the name or
the browser's word), its size is bounded, and it is written through the blob store, so it is
encrypted at rest under its own data key like packet content. A scan's blob key starts with
`scan-` rather than a packet id, so the packet housekeeping never takes it for an orphan. One scan
per form of a request (its letter 01–07); a new upload replaces the previous one, whose file goes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from lgsp.core.clock import SYSTEM_CLOCK
from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.store.blobs import BlobStore
from lgsp.core.store.database import Database
from lgsp.core.store.tables import registration_scans

MAX_SCAN_BYTES = 10 * 1024 * 1024
MAGIC = ((b"%PDF-", "application/pdf", "pdf"), (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
         (b"\xff\xd8\xff", "image/jpeg", "jpg"))


@dataclass(frozen=True)
class Scan:
    request_id: str
    form: str
    blob_key: str
    content_type: str
    extension: str
    size: int
    sha256: str
    uploaded_by: str | None
    uploaded_at: datetime


def sniff(head: bytes) -> tuple[str, str] | None:
    """(content type, extension) of a PDF, PNG or JPEG by its first bytes; None for anything else."""
    for magic, content_type, extension in MAGIC:
        if head.startswith(magic):
            return content_type, extension
    return None


class Scans:
    def __init__(self, db: Database, blobs: BlobStore, *, max_bytes: int = MAX_SCAN_BYTES,
                 clock: Callable[[], datetime] = SYSTEM_CLOCK) -> None:
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.clock = clock   # the hub's (core/clock.py): an upload's time is read like the request's

    async def store(self, request_id: str, form: str, chunks: AsyncIterator[bytes], *,
                    uploaded_by: str | None) -> Scan:
        """Write the upload, check it, then link it to the request's form (replacing an older one)."""
        key = "scan-" + secrets.token_hex(16)[:31]
        head = b""
        kind: tuple[str, str] | None = None
        async with self.blobs.writer(key) as writer:
            async for chunk in chunks:
                if writer.size + len(chunk) > self.max_bytes:
                    raise Problem("request.invalid", Text("a scan is at most {mb} MB",
                                                          mb=self.max_bytes // (1024 * 1024)),
                                  field="scan")
                if kind is None:
                    head += chunk[:16]
                    if len(head) >= 8 or not chunk:
                        kind = sniff(head)
                        if kind is None:
                            raise Problem("request.invalid", Text("a scan is a PDF, PNG or JPEG file"), field="scan")
                await writer.write(chunk)
            if kind is None:
                kind = sniff(head)
            if kind is None or writer.size == 0:
                raise Problem("request.invalid", Text("a scan is a PDF, PNG or JPEG file"), field="scan")
            sha256 = await writer.finish()
            await writer.commit()
        now = self.clock()
        async with self.db.write() as conn:
            old = await conn.scalar(select(registration_scans.c.blob_key).where(
                registration_scans.c.request_id == request_id, registration_scans.c.form == form))
            await conn.execute(delete(registration_scans).where(
                registration_scans.c.request_id == request_id, registration_scans.c.form == form))
            await conn.execute(registration_scans.insert().values(
                request_id=request_id, form=form, blob_key=key, content_type=kind[0], size=writer.size,
                sha256=sha256, uploaded_by=uploaded_by, uploaded_at=now))
        if old:
            await self.blobs.delete(old)
        found = await self.get(request_id, form)
        assert found is not None
        return found

    async def get(self, request_id: str, form: str) -> Scan | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(registration_scans).where(
                registration_scans.c.request_id == request_id, registration_scans.c.form == form))).first()
        return _scan(row) if row else None

    async def of_request(self, request_id: str) -> dict[str, Scan]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(registration_scans).where(
                registration_scans.c.request_id == request_id))).all()
        return {r.form: _scan(r) for r in rows}

    def path(self, scan: Scan) -> Path:
        return self.blobs.path(scan.blob_key)

    @classmethod
    def of(cls, hub: Any) -> Scans:
        """The scans of a hub (its store, blob store and clock), for adapters that see only the public API."""
        return cls(hub.db, hub.blobs, clock=hub.clock)


def _scan(r: Any) -> Scan:
    extension = next((e for _, t, e in MAGIC if t == r.content_type), "bin")
    return Scan(r.request_id, r.form, r.blob_key, r.content_type, extension, r.size, r.sha256, r.uploaded_by,
                r.uploaded_at)
