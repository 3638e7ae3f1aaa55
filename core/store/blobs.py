"""The blob store: packet content on disk, streamed in and out, never whole in memory.

A blob is written under a temporary name and renamed into `objects/` only when complete (and, by
default, fsynced), so a crash never leaves a half-written blob visible. Disk writes and SHA-256 run
in a worker thread, in chunks, so the event loop keeps serving other requests.

Temporary files hold the start of a packet's content too, so they must not outlive their writer.
Each hub process writes them in a folder of its own, `tmp/<host>-<pid>-<random>/`, next to an
owner file `tmp/<same name>.owner` that the process keeps locked (flock) while it lives and touches
every housekeeping round. Nodes sharing the blob folder can then tell a dead writer's files from a
live one's: a folder whose owner file can be locked *and* whose owner is known dead (same kernel,
process gone) or silent for `owner_stale_seconds` (another host) belongs to a crashed process and
is removed whole, at start-up and periodically. Both conditions are needed, so a filesystem whose
locks are not shared between hosts (an NFS mount with `nolock`) never gets a live writer's files
removed. Partial uploads of one packet are found by name (`<packet id>…`) in every folder.

With a data-key source (`keys`) and `encrypt` on, every file, temporary ones included, is written
in the chunked AES-256-GCM format of `blobcrypt.py` with its packet's data key; sizes and SHA-256
are those of the plaintext. Readers go through `open()`/`open_path()`, which also read the plain
files written before encryption at rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from lgsp.core.store.blobcrypt import BlobCorrupt, ChunkSealer, open_blob, plain_size

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, so liveness rests on the heartbeat alone
    fcntl = None  # type: ignore[assignment]

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_HOST_RE = re.compile(r"[^A-Za-z0-9.-]+")
OWNER_SUFFIX = ".owner"


def _boot_id() -> str:
    """Identifies this kernel's boot: process ids are only comparable under the same one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return socket.gethostname()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    return True


class DataKeys(Protocol):
    """Where data keys come from (core/contentkeys.py: sealed in the store)."""

    async def get(self, key_id: str) -> bytes | None: ...

    async def get_or_create(self, key_id: str) -> bytes: ...


def key_id_of(blob_key: str) -> str:
    """The data key a blob uses: its packet's (blob keys start with the 36-character packet id)."""
    return blob_key[:36]


class PartialRemoved(FileNotFoundError):
    """A writer's temporary file was deleted under it: its packet no longer awaits this content."""


def publish(fh: BinaryIO, temp: str | os.PathLike[str], final: str | os.PathLike[str], *, fsync: bool) -> None:
    """Make a finished temporary file the blob `final`: flush it (fsync), rename it into place,
    then fsync the folder so the rename itself survives a power cut. Every blob writer ends here.

    The shard folder is made only when the rename finds it missing (one `mkdir` per new shard, not
    one per blob); a rename that fails because the temporary file is gone raises PartialRemoved."""
    fh.flush()
    if fsync:
        os.fsync(fh.fileno())
    fh.close()
    try:
        os.replace(temp, final)
    except FileNotFoundError as exc:
        if not os.path.exists(temp):
            raise PartialRemoved(f"{os.path.basename(temp)} was removed while it was written") from exc
        os.makedirs(os.path.dirname(final), exist_ok=True)  # a new shard
        try:
            os.replace(temp, final)
        except FileNotFoundError as again:
            raise PartialRemoved(f"{os.path.basename(temp)} was removed while it was written") from again
    if fsync:
        dir_fd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove_tree(folder: Path) -> int:
    """Delete a folder and the files in it; how many files went."""
    count = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
    shutil.rmtree(folder, ignore_errors=True)
    return count


def remove(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Unlink these files (worker thread); one already gone is not an error. Returns how many went."""
    removed = 0
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def _names_with_prefix(folder: str, prefix: str, suffix: str = "") -> list[str]:
    """Paths of the files in `folder` whose name starts with `prefix` (and ends with `suffix`): one
    directory read, no pattern matching, no Path objects. A missing folder holds nothing."""
    try:
        with os.scandir(folder) as entries:
            return [e.path for e in entries
                    if e.name.startswith(prefix) and e.name.endswith(suffix) and e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


class BlobStore:
    def __init__(self, root: Path, *, chunk_size: int = 1 << 20, fsync: bool = True,
                 owner_stale_seconds: float = 300.0, keys: DataKeys | None = None,
                 encrypt: bool = True) -> None:
        self.root = root
        self.keys = keys
        #: Write new blobs encrypted (needs `keys`); files are read either way.
        self.encrypt = encrypt and keys is not None
        self.chunk_size = chunk_size
        self.fsync = fsync
        self.objects = root / "objects"
        self.tmp_root = root / "tmp"
        # A process folder whose owner file has not been touched for this long is dead (with its lock free).
        self.owner_stale_seconds = owner_stale_seconds
        self._tmp: Path | None = None
        self._owner_fd: int | None = None
        self._tmp_lock = threading.Lock()  # writers are also made in worker threads

    def open(self) -> None:
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    # -- this process's temporary folder -------------------------------------------------------
    @property
    def tmp(self) -> Path:
        """This process's folder for temporary files, made (with its locked owner file) on first use."""
        with self._tmp_lock:
            if self._tmp is None or not self._tmp.is_dir():
                self._claim_tmp()
            assert self._tmp is not None
            return self._tmp

    def _claim_tmp(self) -> None:
        if self._tmp is not None:  # our folder was removed under us: start a new one, drop the old owner file
            with contextlib.suppress(FileNotFoundError):
                (self.tmp_root / (self._tmp.name + OWNER_SUFFIX)).unlink()
        self._release_owner()
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        while True:
            name = f"{_HOST_RE.sub('-', socket.gethostname())[:40]}-{os.getpid()}-{secrets.token_hex(4)}"
            owner = self.tmp_root / (name + OWNER_SUFFIX)
            fd = os.open(owner, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            # A sweeper may have judged the file (still empty, so not stale) in between: only ever
            # removed when stale, but make sure the path is still ours before building on it.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(owner))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.write(fd, json.dumps({"boot": _boot_id(), "host": socket.gethostname(),
                                     "pid": os.getpid()}).encode())
            folder = self.tmp_root / name
            folder.mkdir()
            self._tmp, self._owner_fd = folder, fd
            return

    def heartbeat(self) -> None:
        """Tell other nodes this process is alive (its owner file's time); called each housekeeping round."""
        if self._owner_fd is not None:
            with contextlib.suppress(OSError):
                os.utime(self._owner_fd)

    def close(self) -> None:
        """On shutdown: remove this process's temporary folder (no writer is left) and its owner file."""
        with self._tmp_lock:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    (self.tmp_root / (self._tmp.name + OWNER_SUFFIX)).unlink()
                self._tmp = None
            self._release_owner()

    def _release_owner(self) -> None:
        if self._owner_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._owner_fd)  # releases the lock
            self._owner_fd = None

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
        return sorted(map(Path, self._with_prefix(prefix)))

    def _with_prefix(self, prefix: str) -> list[str]:
        folder = self.path(prefix).parent
        return _names_with_prefix(os.fspath(folder), prefix)

    def writer(self, key: str, data_key: Callable[[], Awaitable[bytes | None]] | None = None) -> BlobWriter:
        """A writer of blob `key`. `data_key` unseals the packet's data key read with the packet
        (`ContentKeys.opener`), awaited when the file is made: the writer then reads no key itself;
        without it, or when it gives None, the key is read (made if missing) from the key source."""
        return BlobWriter(self, key, data_key)

    def create_temp(self, key: str) -> tuple[Path, BinaryIO]:
        """A new temporary file for blob `key` in this process's folder, open for writing (worker
        thread). The folder is made on first use, and again if it was removed under this process."""
        for attempt in (1, 2):
            folder = self._tmp
            if folder is None or attempt == 2:
                folder = self.tmp  # claims (or re-claims) the folder
            temp = folder / f"{key}.{secrets.token_hex(6)}.part"
            try:
                return temp, open(temp, "xb")
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(remove, [self.path(key)]) == 1

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix` (a packet id or an upload key)."""
        return await asyncio.to_thread(lambda: remove(self._with_prefix(prefix)))

    async def purge(self, packet_id: str, key: str | None = None) -> int:
        """Delete a packet's content and its partial uploads, in one worker-thread call.

        With `key` (the packet's accepted upload, when the caller knows it has no variants) that one
        file is unlinked by name; without, every blob named after the packet goes (a read of its
        shard folder). Partial uploads are looked for in every process's temporary folder either
        way: another node's writer names its file, so only a directory read finds it."""
        if key is not None and not key.startswith(packet_id):
            raise ValueError(f"blob {key!r} is not of packet {packet_id!r}")

        def run() -> int:
            blobs = [os.fspath(self.path(key))] if key is not None else self._with_prefix(packet_id)
            return remove(blobs) + remove(self._partials(packet_id))
        return await asyncio.to_thread(run)

    async def data_key(self, key: str) -> bytes | None:
        """The data key of blob `key` (None without a key source, or when destroyed)."""
        return await self.keys.get(key_id_of(key)) if self.keys is not None else None

    def open_sync(self, path: Path, data_key: bytes | None, *, size: int | None = None) -> BinaryIO:
        """Open a blob file for reading its plaintext (worker thread). With `size`, a file whose
        plaintext size differs (truncated, extended, replaced) is refused before any byte is read."""
        key_id = key_id_of(path.name)
        fh = open_blob(path, lambda kid: data_key if kid == key_id else None, expect_name=path.name)
        if size is not None:
            found = fh.size if hasattr(fh, "size") else os.fstat(fh.fileno()).st_size
            if found != size:
                fh.close()
                raise BlobCorrupt(f"{path.name} holds {found} bytes, the store says {size}")
        return fh

    async def open_path(self, path: Path, *, size: int | None = None) -> BinaryIO:
        """Open a stored blob (by its file) for reading its plaintext."""
        data_key = await self.data_key(path.name)
        return await asyncio.to_thread(self.open_sync, path, data_key, size=size)

    async def open_blob(self, key: str, *, size: int | None = None) -> BinaryIO:
        return await self.open_path(self.path(key), size=size)

    async def size_of(self, key: str) -> int:
        """The plaintext size of a stored blob."""
        return await asyncio.to_thread(plain_size, self.path(key))

    async def read_chunks(self, key: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a blob from `offset`, one chunk per worker-thread read."""
        fh = await self.open_blob(key)
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

    # -- temporary files of writers that are gone ----------------------------------------------
    def sweep_tmp(self, older_than_seconds: float) -> int:
        """Remove the temporary files of dead processes (whole folders, at once) and, in `tmp/` itself
        where versions before per-process folders wrote, files older than `older_than_seconds`.
        Returns how many files went."""
        removed = 0
        now = time.time()
        own = self._tmp.name if self._tmp is not None else None
        names = {p.name.removesuffix(OWNER_SUFFIX) for p in self.tmp_root.glob("*" + OWNER_SUFFIX)}
        names |= {p.name for p in self.tmp_root.iterdir() if p.is_dir()} if self.tmp_root.is_dir() else set()
        for name in sorted(names - {own}):
            removed += self._sweep_process_folder(name, now)
        for entry in self.tmp_root.glob("*.part"):
            try:
                if entry.stat().st_mtime < now - older_than_seconds:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _sweep_process_folder(self, name: str, now: float) -> int:
        """Remove another process's folder if that process is dead; how many files went."""
        folder, owner = self.tmp_root / name, self.tmp_root / (name + OWNER_SUFFIX)
        try:
            fd = os.open(owner, os.O_RDWR)
        except FileNotFoundError:
            # No owner file: a dead sweep's leftover (or a folder from outside): judged by its age.
            with contextlib.suppress(FileNotFoundError):
                if folder.stat().st_mtime < now - self.owner_stale_seconds:
                    return _remove_tree(folder)
            return 0
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return 0  # its owner holds the lock: alive
            if not self._owner_dead(fd, now):
                return 0
            removed = _remove_tree(folder)
            with contextlib.suppress(FileNotFoundError):
                owner.unlink()
            return removed
        finally:
            os.close(fd)

    def _owner_dead(self, fd: int, now: float) -> bool:
        stat = os.fstat(fd)
        if stat.st_mtime < now - self.owner_stale_seconds:
            return True  # silent for too long (another host's process, or one whose pid was reused)
        try:
            info: Any = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            return False  # being written right now (fresh and unreadable): alive
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return False
        return info.get("boot") == _boot_id() and not _running(info["pid"])

    def partials(self, prefix: str) -> list[Path]:
        """Temporary files (every process's) of blobs whose key starts with `prefix`: a packet id
        names its partial uploads and variants."""
        return sorted(map(Path, self._partials(prefix)))

    def _partials(self, prefix: str) -> list[str]:
        """`partials` as plain paths: one read of `tmp/` (process folders, and the files versions
        before per-process folders left there) and one of each process folder."""
        if not _KEY_RE.match(prefix):
            return []
        found: list[str] = []
        try:
            with os.scandir(self.tmp_root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        found += _names_with_prefix(entry.path, prefix, ".part")
                    elif entry.name.startswith(prefix) and entry.name.endswith(".part"):
                        found.append(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return found

    async def delete_partials(self, prefix: str) -> int:
        """Delete every partial copy of a packet's content: once it no longer awaits an upload, no
        attempt of it can succeed (a live writer elsewhere finds its file gone and gives up)."""
        return await asyncio.to_thread(lambda: remove(self._partials(prefix)))


class BlobWriter:
    """Streams one blob to a temporary file, hashing on the way; `commit` makes it visible.

    Worker-thread calls: one to create the file (and seal its header), one per `chunk_size` of
    content, one to commit (the rest of the content, the final chunk, fsync, rename). The last
    piece, when small, is hashed on the loop by `finish`, so a small blob costs two hand-offs."""

    #: At most this much buffered content is hashed on the event loop by `finish` (tens of µs).
    INLINE_HASH_BYTES = 64 * 1024

    def __init__(self, store: BlobStore, key: str,
                 data_key: Callable[[], Awaitable[bytes | None]] | None = None) -> None:
        self.store = store
        self.key = key
        self._data_key = data_key
        self.final = store.path(key)
        self.temp: Path | None = None  # made in `__aenter__`, in this process's temporary folder
        self.size = 0
        self._sha = hashlib.sha256()
        self._buf = bytearray()
        self._hashed = 0  # how much of `_buf` is already in `_sha`
        self._fh: BinaryIO | None = None
        self._sealer: ChunkSealer | None = None
        self._closed = False

    async def __aenter__(self) -> BlobWriter:
        data_key = None
        if self.store.encrypt:
            assert self.store.keys is not None
            data_key = await self._data_key() if self._data_key is not None else None
            if data_key is None:
                data_key = await self.store.keys.get_or_create(key_id_of(self.key))
        await asyncio.to_thread(self._open, data_key)
        return self

    def _open(self, data_key: bytes | None) -> None:
        """Create the temporary file and, encrypting, write its header (worker thread)."""
        self.temp, fh = self.store.create_temp(self.key)
        self._fh = fh
        if data_key is not None:
            try:
                self._sealer = ChunkSealer(fh, data_key, key_id_of(self.key), self.key)
            except BaseException:
                self._abort()
                raise

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
            chunk, hashed = bytes(self._buf), self._hashed
            self._buf.clear()
            self._hashed = 0
            await asyncio.to_thread(self._write_chunk, chunk, hashed)

    def _write_chunk(self, chunk: bytes, hashed: int = 0) -> None:
        assert self._fh is not None
        if hashed < len(chunk):
            self._sha.update(memoryview(chunk)[hashed:])
        if self._sealer is not None:
            self._sealer.write(chunk)
        else:
            self._fh.write(chunk)

    async def finish(self) -> str:
        """Flush what is buffered; return the SHA-256 (hex) of everything written. A small rest is
        hashed here and written by `commit` (one hand-off fewer)."""
        if len(self._buf) - self._hashed <= self.INLINE_HASH_BYTES:
            self._sha.update(memoryview(self._buf)[self._hashed:])
            self._hashed = len(self._buf)
        else:
            await self._flush()
        return self._sha.hexdigest()

    async def commit(self) -> None:
        chunk, hashed = bytes(self._buf), self._hashed
        self._buf.clear()
        self._hashed = 0
        await asyncio.to_thread(self._commit, chunk, hashed)
        self._closed = True

    def _commit(self, chunk: bytes = b"", hashed: int = 0) -> None:
        assert self._fh is not None and self.temp is not None
        if chunk:
            self._write_chunk(chunk, hashed)
        if self._sealer is not None:
            self._sealer.finish()
        publish(self._fh, self.temp, self.final, fsync=self.store.fsync)

    async def abort(self) -> None:
        self._closed = True
        self._buf.clear()
        self._hashed = 0
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
