"""Serving stored content over HTTP, whole or one Range, from encrypted blobs.

`web.FileResponse` (sendfile) serves only the plain files written before encryption at rest (or
with `blobs.encrypt: false`). An encrypted blob is decrypted chunk by chunk in a worker thread and
streamed; a Range opens only the chunks holding it (core/store/blobcrypt.py). The Range header has
been checked by `core.web.check_range` before this is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.store.blobcrypt import BlobCorrupt, BlobKeyGone, DecryptingReader
from lgsp.core.store.blobs import BlobStore, KeyOpener
from lgsp.core.web import _RANGE_RE, hub_of

log = logging.getLogger(__name__)


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of the requested range, clamped; None for the whole content (also for a
    Range a caller did not check with `check_range` and that cannot be served: RFC 9110 allows it)."""
    match = _RANGE_RE.match(header.strip()) if header is not None and size else None
    if match is None:
        return None
    start, end = match.groups()
    if not start:
        return (max(0, size - int(end)), size - 1) if end and int(end) > 0 else None
    if int(start) >= size or (end and int(end) < int(start)):
        return None
    return int(start), min(size - 1, int(end)) if end else size - 1


async def content_response(request: web.Request, path: Path, size: int, headers: Mapping[str, str], *,
                           data_key: KeyOpener | None = None) -> web.StreamResponse:
    """What adapters serve stored content with: `blob_response` over the hub's blob store and its
    configured I/O chunk size (`path` comes from `Exchange.open_download` or `ContentService.part`;
    `data_key` from `Exchange.open_content`, see `blob_response`)."""
    hub = hub_of(request)
    return await blob_response(request, hub.blobs, path, size, headers, hub.config.limits.io_chunk_size,
                               data_key=data_key)


async def blob_response(request: web.Request, blobs: BlobStore, path: Path, size: int,
                        headers: Mapping[str, str], chunk_size: int, *,
                        data_key: KeyOpener | None = None) -> web.StreamResponse:
    """The response for a download of the stored blob `path` whose plaintext is `size` bytes.

    `data_key` unseals the packet's data key read with the packet (`ContentKeys.opener`; None
    from it: the key is gone); without it the key is read from the blob store's key source.

    One worker-thread call opens the blob and reads (decrypts) the first block; when that block is
    the whole answer (a small packet) the file is closed in the same call, so a small download
    costs one hand-off. A small blob this process wrote and still holds sealed in memory
    (`BlobStore.open_cached`) is decrypted on the loop instead: no file, no hand-off."""
    # A validator-less response: an If-Range cannot match it, so the whole content is sent (RFC 9110).
    wanted = None if "If-Range" in request.headers else _range(request.headers.get("Range"), size)
    first, last = wanted if wanted is not None else (0, size - 1)
    whole = last - first + 1
    key = await data_key() if data_key is not None else await blobs.data_key(path.name)
    fh: BinaryIO | None
    block: bytes | None
    try:
        held = blobs.open_cached(path, key, size=size)  # a small blob this process just wrote
        if held is not None:
            fh, block = _first_block(held, first, min(chunk_size, whole), whole)
        else:
            fh, block = await asyncio.to_thread(_open_first, blobs, path, key, size, first,
                                                min(chunk_size, whole), whole)
    except FileNotFoundError:
        raise Problem("content.gone", Text("the content of this packet is no longer held by the hub")) from None
    except BlobKeyGone:
        raise Problem("content.gone", Text("the content of this packet is no longer held by the hub")) from None
    except BlobCorrupt as exc:
        log.error("stored content %s failed its integrity check: %s", path.name, exc)
        raise Problem("internal", Text("the stored content failed its integrity check")) from None
    if block is None:  # a plain file (closed): sendfile as before
        return web.FileResponse(path, chunk_size=chunk_size, headers=dict(headers))
    try:
        return await _stream(request, fh, block, wanted, size, headers, chunk_size)
    finally:
        if fh is not None:
            await asyncio.to_thread(fh.close)


def _open_first(blobs: BlobStore, path: Path, data_key: bytes | None, size: int, first: int,
                want: int, whole: int) -> tuple[BinaryIO | None, bytes | None]:
    """Open a blob and read its first `want` bytes from `first` (worker thread): see `_first_block`;
    (None, None) for a plain file, closed, which is served with sendfile."""
    fh = blobs.open_sync(path, data_key, size=size)
    if not isinstance(fh, DecryptingReader):
        fh.close()
        return None, None
    return _first_block(fh, first, want, whole)


def _first_block(fh: BinaryIO, first: int, want: int, whole: int) -> tuple[BinaryIO | None, bytes]:
    """Read the first `want` bytes from `first` of an opened blob. Returns (reader, block), the
    reader None when the block is all of the `whole` bytes to send (closed here)."""
    try:
        if first:
            fh.seek(first)
        block = fh.read(want) if want > 0 else b""
        if len(block) >= whole or len(block) < want:
            fh.close()
            return None, block
        return fh, block
    except BaseException:
        fh.close()
        raise


async def _stream(request: web.Request, fh: BinaryIO | None, block: bytes,
                  wanted: tuple[int, int] | None, size: int, headers: Mapping[str, str],
                  chunk_size: int) -> web.StreamResponse:
    """Send `block` (already read from `first`), then the rest of the range from `fh` (None: the
    block was all of it)."""
    first, last = wanted if wanted is not None else (0, size - 1)
    response = web.StreamResponse(status=206 if wanted is not None else 200, headers=dict(headers))
    response.content_length = last - first + 1
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    # The first block was read before the headers go, so a damaged start is still a clean 500.
    left = last - first + 1
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    while block:
        left -= len(block)
        # The next block is read and decrypted (worker thread) while this one goes to the socket.
        ahead = asyncio.ensure_future(_read(fh, min(chunk_size, left))) if left > 0 and fh is not None else None
        try:
            await response.write(block)
        except BaseException:
            if ahead is not None:  # let the thread finish before the file is closed under it
                await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()  # retrieved: the write's failure is the one that matters
            raise
        if ahead is None:
            break
        try:
            block = await ahead
        except Problem:
            # The headers are gone: the only honest signal left is a cut connection (short body).
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


async def _read(fh: BinaryIO, n: int) -> bytes:
    try:
        return await asyncio.to_thread(fh.read, n)
    except BlobCorrupt as exc:
        log.error("stored content failed its integrity check while being sent: %s", exc)
        raise Problem("internal", Text("the stored content failed its integrity check")) from None
