"""Content encrypted at rest: the chunked AES-256-GCM format of blob files.

Every blob (an upload, a variant, a partial upload being written) is sealed with its packet's
*data key* (32 random bytes, itself sealed under the master key in table `content_keys`). Purging
a packet deletes its files and its data key, so a copy of the disk taken earlier cannot be read.

The content is cut into fixed-size chunks, each sealed on its own, so a blob is written as it
streams in and any byte range is read by opening only the chunks that hold it.

File layout (integers big-endian)::

    header   magic "LGSPBLB1" (8) | chunk size C (4) | file id (16, random per file)
             | key id length (1) | key id (the packet id whose data key seals the file)
             | name length (1) | name (the blob key the file was written as)
    chunks   chunk i = AES-256-GCM(file key, nonce(i), plaintext i, aad = header), ciphertext + tag (16)

    file key = HKDF-SHA256(data key, salt = file id, info = "lgsp/blob-v1|" + header)
    nonce(i) = i as 8 bytes | 00 00 00 | 01 if chunk i is the last chunk, else 00

Every chunk but the last holds exactly C plaintext bytes; the last holds 1..C (0 only when the whole
content is empty, which is then one empty final chunk). So the plaintext size follows from the file
size alone, and Range requests know where each chunk starts.

What this protects, and how:

- *Nonce reuse.* A packet's data key seals several files (upload attempts, variants); each file has
  its own key derived from a fresh random 128-bit file id, and within a file each nonce is used once.
- *Reordering or duplicating chunks* inside a file: the chunk index is in the nonce.
- *Swapping chunks between blobs*, or a header from one on the chunks of another: another file key,
  and the whole header is the associated data of every chunk.
- *Truncation and extension*: the last chunk carries the final flag in its nonce. A file cut at a
  chunk boundary ends with a chunk sealed as not final; one with chunks appended has its real final
  chunk in a non-final position. Both fail authentication. Readers also compare the size found with
  the size recorded for the blob in the store before serving a byte.
- *Renaming one blob file onto another's name*: the header names the blob; readers check the name.

Files without the magic were written before encryption at rest (or with `blobs.encrypt: false`) and
are read as they are, so existing content stays readable after an upgrade.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"LGSPBLB1"
CHUNK_SIZE = 64 * 1024
TAG = 16
_FIXED = struct.Struct(">8sI16s")
_MAX_HEADER = _FIXED.size + 2 + 2 * 255


class BlobCorrupt(Exception):
    """The blob file was altered, truncated, extended or belongs elsewhere."""


class BlobKeyGone(Exception):
    """The data key of this blob is destroyed (its packet was purged): the file cannot be read."""


def _header(chunk_size: int, file_id: bytes, key_id: str, name: str) -> bytes:
    kid, nm = key_id.encode("ascii"), name.encode("ascii")
    if len(kid) > 255 or len(nm) > 255:
        raise ValueError("key id and blob name must be at most 255 characters")
    return _FIXED.pack(MAGIC, chunk_size, file_id) + bytes([len(kid)]) + kid + bytes([len(nm)]) + nm


def _file_key(data_key: bytes, header: bytes, file_id: bytes) -> AESGCM:
    if len(data_key) != 32:
        raise ValueError("a data key is 32 bytes")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=file_id,
               info=b"lgsp/blob-v1|" + header).derive(data_key)
    return AESGCM(key)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(8, "big") + (b"\x00\x00\x00\x01" if final else b"\x00\x00\x00\x00")


def new_data_key() -> bytes:
    return os.urandom(32)


class ChunkSealer:
    """Seals plaintext written to it into `fh` (already open for writing, at offset 0).

    Call `write` with any amount; `finish` seals the final chunk. Runs in a worker thread: the
    callers (`BlobWriter`, `SyncBlobWriter`) never call it on the event loop.
    """

    def __init__(self, fh: BinaryIO, data_key: bytes, key_id: str, name: str,
                 chunk_size: int = CHUNK_SIZE) -> None:
        self._fh = fh
        self.chunk_size = chunk_size
        file_id = os.urandom(16)
        self.header = _header(chunk_size, file_id, key_id, name)
        self._aead = _file_key(data_key, self.header, file_id)
        self._buf = bytearray()
        self._index = 0
        self.finished = False
        fh.write(self.header)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        c = self.chunk_size
        if len(self._buf) <= c:
            return
        # Keep at least one byte back: only `finish` knows which chunk is the last.
        usable = ((len(self._buf) - 1) // c) * c
        view = memoryview(self._buf)
        try:
            for start in range(0, usable, c):
                self._seal(view[start:start + c], final=False)
        finally:
            view.release()
        del self._buf[:usable]

    def _seal(self, plain: bytes | memoryview, *, final: bool) -> None:
        self._fh.write(self._aead.encrypt(_nonce(self._index, final), plain, self.header))
        self._index += 1

    def finish(self) -> None:
        if not self.finished:
            self._seal(bytes(self._buf), final=True)
            self._buf.clear()
            self.finished = True


def read_header(fh: BinaryIO) -> tuple[bytes, int, bytes, str, str] | None:
    """(header, chunk size, file id, key id, name) of an encrypted blob; None for a plain file."""
    fh.seek(0)
    head = fh.read(_MAX_HEADER)
    if len(head) < _FIXED.size + 2 or not head.startswith(MAGIC):
        return None
    _, chunk_size, file_id = _FIXED.unpack_from(head)
    pos = _FIXED.size
    kid_len = head[pos]
    key_id = head[pos + 1:pos + 1 + kid_len]
    pos += 1 + kid_len
    if pos >= len(head):
        raise BlobCorrupt("blob header is cut short")
    name_len = head[pos]
    name = head[pos + 1:pos + 1 + name_len]
    pos += 1 + name_len
    if len(key_id) != kid_len or len(name) != name_len or pos > len(head) or not 1 <= chunk_size <= 1 << 24:
        raise BlobCorrupt("blob header is damaged")
    try:
        return head[:pos], chunk_size, file_id, key_id.decode("ascii"), name.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BlobCorrupt("blob header is damaged") from exc


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable view of an encrypted blob's plaintext (one chunk decrypted at a time).

    Every chunk is authenticated before any of its bytes is returned; a chunk that fails raises
    BlobCorrupt. Blocking: use it from a worker thread.
    """

    def __init__(self, fh: BinaryIO, data_key: bytes, header: bytes, chunk_size: int, file_id: bytes,
                 file_size: int) -> None:
        super().__init__()
        self._fh = fh
        self._header = header
        self._aead = _file_key(data_key, header, file_id)
        self._c = chunk_size
        body = file_size - len(header)
        stride = chunk_size + TAG
        self._chunks = max(1, -(-body // stride))
        last = body - (self._chunks - 1) * stride
        if body < TAG or last < TAG or (self._chunks > 1 and last == TAG):
            raise BlobCorrupt("blob file is truncated")
        self.size = body - TAG * self._chunks
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        stride = self._c + TAG
        self._fh.seek(len(self._header) + index * stride)
        sealed = self._fh.read(stride)
        try:
            plain = self._aead.decrypt(_nonce(index, index == self._chunks - 1), sealed, self._header)
        except InvalidTag:
            raise BlobCorrupt(f"chunk {index} of the blob does not authenticate (altered, moved or truncated)") \
                from None
        self._cached = (index, plain)
        return plain

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed file")
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if self._pos >= end:
            if self.size == 0 and self._pos == 0:
                self._chunk(0)  # an empty blob is still authenticated
            return b""
        parts: list[bytes] = []
        pos = self._pos
        while pos < end:
            index, within = divmod(pos, self._c)
            plain = self._chunk(index)
            take = min(len(plain) - within, end - pos)
            parts.append(plain[within:within + take] if within or take != len(plain) else plain)
            pos += take
        self._pos = pos
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
            self._cached = None
        super().close()


KeyLookup = Callable[[str], bytes | None]


def open_blob(path: Path, data_key: KeyLookup | bytes | None, *, expect_name: str | None = None) -> BinaryIO:
    """Open a blob for reading its plaintext: decrypted if it is encrypted, as is if it is a plain
    file from before encryption at rest. `data_key` is the key, or a function from key id to key
    (None when destroyed). Blocking: call from a worker thread."""
    fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - owned by the reader returned
    try:
        return _reader(fh, os.fstat(fh.fileno()).st_size, data_key, expect_name, path.name)
    except BaseException:
        fh.close()
        raise


def open_sealed(sealed: bytes, data_key: KeyLookup | bytes | None, *, expect_name: str) -> BinaryIO:
    """`open_blob` over a blob file's bytes held in memory (`BlobStore`'s cache of small blobs it
    wrote): the same header checks and authentication, no I/O, so it may run on the event loop."""
    fh = io.BytesIO(sealed)
    reader = _reader(fh, len(sealed), data_key, expect_name, expect_name)
    if reader is fh:
        raise BlobCorrupt(f"the bytes held for {expect_name} are not a sealed blob")
    return reader


def _reader(fh: BinaryIO, file_size: int, data_key: KeyLookup | bytes | None, expect_name: str | None,
            label: str) -> BinaryIO:
    found = read_header(fh)
    if found is None:
        fh.seek(0)
        return fh
    header, chunk_size, file_id, key_id, name = found
    if expect_name is not None and name != expect_name:
        raise BlobCorrupt(f"the file {label} holds blob {name}, not {expect_name}")
    key = data_key(key_id) if callable(data_key) else data_key
    if key is None:
        raise BlobKeyGone(f"the data key of {label} is destroyed; the content cannot be read")
    return DecryptingReader(fh, key, header, chunk_size, file_id, file_size)  # type: ignore[return-value]


def plain_size(path: Path) -> int:
    """The plaintext size of a blob file, from its size (no key needed)."""
    with open(path, "rb") as fh:
        return _plain_size(fh, os.fstat(fh.fileno()).st_size)


def sealed_size(sealed: bytes) -> int:
    """`plain_size` of a blob's bytes held in memory (a small upload kept in the store)."""
    return _plain_size(io.BytesIO(sealed), len(sealed))


def _plain_size(fh: BinaryIO, size: int) -> int:
    found = read_header(fh)
    if found is None:
        return size
    header, chunk_size = found[0], found[1]
    body = size - len(header)
    chunks = max(1, -(-body // (chunk_size + TAG)))
    return body - TAG * chunks


class SealedSpool:
    """A temporary file of content that belongs to no packet yet (a SOAP or VXP request body spooled
    to learn its size and SHA-256 before the packet exists), sealed like a blob under a random key
    held only by this object: the bytes on disk are unreadable even while the request runs, and
    forever once the object is gone. Blocking methods: call them from a worker thread."""

    KEY_ID = "spool"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = new_data_key()
        self._fh: BinaryIO = open(path, "xb")  # noqa: SIM115 - closed in close()
        try:
            self._sealer = ChunkSealer(self._fh, self._key, self.KEY_ID, path.name)
        except BaseException:
            self._fh.close()
            raise

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._sealer.write(data)
        return len(data)

    def close(self) -> None:
        """Seal the last chunk and close the file (it can then be read with `open`)."""
        if not self._fh.closed:
            self._sealer.finish()
            self._fh.close()

    def open(self) -> BinaryIO:
        """The plaintext written, decrypted as it is read."""
        return open_blob(self.path, self._key, expect_name=self.path.name)
