"""The blob store: packet content on disk, streamed in and out, never whole in memory.

A blob is written under a temporary name in `tmp/` and renamed into `objects/` only when complete
(and, by default, fsynced), so a crash never leaves a half-written blob visible. Disk writes and
SHA-256 run in a worker thread, in chunks, so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def publish(fh: BinaryIO, temp: Path, final: Path, *, fsync: bool) -> None:
    """Make a finished temporary file the blob `final`: flush it (fsync), rename it into place,
    then fsync the folder so the rename itself survives a power cut. Every blob writer ends here."""
    fh.flush()
    if fsync:
        os.fsync(fh.fileno())
    fh.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    if fsync:
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove(paths: Iterable[Path]) -> int:
    """Unlink these files (worker thread); one already gone is not an error. Returns how many went."""
    removed = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


class BlobStore:
    def __init__(self, root: Path, *, chunk_size: int = 1 << 20, fsync: bool = True) -> None:
        self.root = root
        self.chunk_size = chunk_size
        self.fsync = fsync
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def open(self) -> None:
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"bad blob key {key!r}")
        return self.objects / key[:2] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def all_objects(self, min_age_seconds: float = 0.0) -> list[Path]:
        """Every stored blob at least this old (for reconciliation against the store)."""
        limit = time.time() - min_age_seconds
        out = []
        for path in self.objects.glob("*/*"):
            try:
                if path.is_file() and path.stat().st_mtime <= limit:
                    out.append(path)
            except FileNotFoundError:
                continue
        return out

    def with_prefix(self, prefix: str) -> list[Path]:
        """The blobs whose key starts with `prefix` (a packet id: its uploads and variants)."""
        folder = self.path(prefix).parent
        return sorted(p for p in folder.glob(f"{prefix}*") if p.is_file()) if folder.is_dir() else []

    def writer(self, key: str) -> BlobWriter:
        return BlobWriter(self, key)

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(remove, [self.path(key)]) == 1

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix` (a packet id or an upload key)."""
        return await asyncio.to_thread(lambda: remove(self.with_prefix(prefix)))

    async def read_chunks(self, key: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a blob from `offset`, one chunk per worker-thread read."""
        fh: BinaryIO = await asyncio.to_thread(open, self.path(key), "rb")
        try:
            if offset:
                await asyncio.to_thread(fh.seek, offset)
            while True:
                chunk = await asyncio.to_thread(fh.read, self.chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    def sweep_tmp(self, older_than_seconds: float) -> int:
        """Remove abandoned temporary files (uploads cut off by a crash or a dropped client)."""
        removed = 0
        limit = time.time() - older_than_seconds
        for entry in self.tmp.glob("*.part"):
            try:
                if entry.stat().st_mtime < limit:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class BlobWriter:
    """Streams one blob to a temporary file, hashing on the way; `commit` makes it visible."""

    def __init__(self, store: BlobStore, key: str) -> None:
        self.store = store
        self.key = key
        self.final = store.path(key)
        self.temp = store.tmp / f"{key}.{secrets.token_hex(6)}.part"
        self.size = 0
        self._sha = hashlib.sha256()
        self._buf = bytearray()
        self._fh: BinaryIO | None = None
        self._closed = False

    async def __aenter__(self) -> BlobWriter:
        self._fh = await asyncio.to_thread(open, self.temp, "xb")
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if not self._closed:
            await self.abort()

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self._buf += data
        if len(self._buf) >= self.store.chunk_size:
            await self._flush()

    async def _flush(self) -> None:
        if self._buf:
            chunk = bytes(self._buf)
            self._buf.clear()
            await asyncio.to_thread(self._write_chunk, chunk)

    def _write_chunk(self, chunk: bytes) -> None:
        assert self._fh is not None
        self._sha.update(chunk)
        self._fh.write(chunk)

    async def finish(self) -> str:
        """Flush what is buffered; return the SHA-256 (hex) of everything written."""
        await self._flush()
        return self._sha.hexdigest()

    async def commit(self) -> None:
        await self._flush()
        await asyncio.to_thread(self._commit)
        self._closed = True

    def _commit(self) -> None:
        assert self._fh is not None
        publish(self._fh, self.temp, self.final, fsync=self.store.fsync)

    async def abort(self) -> None:
        self._closed = True
        self._buf.clear()
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()
