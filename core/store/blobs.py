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
import io
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from lgsp.core.store.blobcrypt import BlobCorrupt, ChunkSealer, open_blob, open_sealed, plain_size, sealed_size

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


#: A packet's data key read with the packet, still sealed: awaiting a call unseals it (None: the
#: packet has no key, never made or destroyed). Called at the moment of the one read or write that
#: uses it (core/contentkeys.py makes them: `ContentKeys.opener`).
KeyOpener = Callable[[], Awaitable[bytes | None]]


def key_id_of(blob_key: str) -> str:
    """The data key a blob uses: its packet's (blob keys start with the 36-character packet id)."""
    return blob_key[:36]


class InlineSource(Protocol):
    """Where small uploads kept in the store are read back (core/store/inline_blobs.py)."""

    async def sealed(self, key: str) -> bytes | None: ...


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


@dataclass(eq=False)
class Removal:
    """One caller's removal: a packet's partial uploads (every file named `<prefix>….part` in the
    temporary folders) and, with `blobs`, its blob `key` (by name) or every blob named after it."""

    prefix: str
    key: str | None
    blobs: bool
    future: asyncio.Future[int] = field(repr=False)


class Removals:
    """Removals after commits, many callers to one worker-thread call (group removal).

    Each completion purges its packet and each acceptance removes its partial uploads before the
    request is answered; one thread hand-off and one read of the temporary folders each made them a
    large share of the blob layer's cost. A caller joins the batch being gathered while the previous
    one runs and waits for its own result, so its files are still gone before it returns; the first
    caller after a quiet spell starts a batch at once (no added wait)."""

    def __init__(self, run: Callable[[Sequence[Removal]], list[int | OSError]]) -> None:
        self._run = run
        self._pending: list[Removal] = []
        self._flusher: asyncio.Task[None] | None = None

    async def remove(self, prefix: str, key: str | None, *, blobs: bool) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(Removal(prefix, key, blobs, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        batch: list[Removal] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await asyncio.to_thread(self._run, batch)
                except Exception as exc:  # the scan itself failed: every caller of the batch learns it
                    for r in batch:
                        if not r.future.done():
                            r.future.set_exception(exc)
                    continue
                for r, result in zip(batch, results, strict=True):
                    if r.future.done():
                        continue  # its caller was cancelled: the files went all the same
                    if isinstance(result, OSError):
                        r.future.set_exception(result)
                    else:
                        r.future.set_result(result)
        finally:
            self._flusher = None
            for r in [*batch, *self._pending]:  # only when cancelled (loop shutting down)
                if not r.future.done():
                    r.future.cancel()
            self._pending.clear()


class SealedCache:
    """The sealed (encrypted) bytes of the small blobs this process just wrote, so that their first
    downloads read no file: a download of a small packet was a worker-thread call of its own (open,
    read, close), and it usually follows its upload within seconds. Only bytes as written to disk
    are held, never plaintext; at most `limit` bytes, the oldest dropped first; a blob's entry goes
    when its packet is purged or the blob deleted through this store. A download still reads the
    packet's state from the store first, so an entry of content another node purged is never
    served (and its data key is destroyed with the purge). Used on the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._packets: OrderedDict[str, dict[str, bytes]] = OrderedDict()  # packet id -> blob key -> bytes

    def put(self, key: str, sealed: bytes) -> None:
        if len(sealed) > self.limit:
            return
        entries = self._packets.setdefault(key_id_of(key), {})
        self._packets.move_to_end(key_id_of(key))
        self.held += len(sealed) - len(entries.get(key, b""))
        entries[key] = sealed
        while self.held > self.limit:
            _, dropped = self._packets.popitem(last=False)
            self.held -= sum(map(len, dropped.values()))

    def get(self, key: str) -> bytes | None:
        entries = self._packets.get(key_id_of(key))
        return entries.get(key) if entries is not None else None

    def evict(self, prefix: str) -> None:
        """Forget every blob whose key starts with `prefix` (a packet id, or one blob's key)."""
        packet_id = key_id_of(prefix)
        entries = self._packets.get(packet_id)
        if entries is None:
            return
        for key in [k for k in entries if k.startswith(prefix)]:
            self.held -= len(entries.pop(key))
        if not entries:
            del self._packets[packet_id]

    def clear(self) -> None:
        self._packets.clear()
        self.held = 0


class BlobStore:
    def __init__(self, root: Path, *, chunk_size: int = 1 << 20, fsync: bool = True,
                 owner_stale_seconds: float = 300.0, keys: DataKeys | None = None,
                 encrypt: bool = True, cache_bytes: int = 0, inline_bytes: int = 0) -> None:
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
        self._removals = Removals(self._remove_batch)
        #: Sealed bytes of small blobs just written, for their downloads (`blobs.cache_bytes`; 0: none).
        self.cache = SealedCache(cache_bytes)
        #: Uploads of at most this many bytes are kept in the store, not in a file (`keep_inline`).
        self.inline_bytes = inline_bytes
        self._inline: InlineSource | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    def keep_inline(self, source: InlineSource) -> None:
        """Keep small sealed uploads in the store (`inlines`), read back through `source`. Call on the
        event loop: readers in worker threads reach `source` through it."""
        self._inline = source
        self._loop = asyncio.get_running_loop()

    def inlines(self, size: int | None) -> bool:
        """Whether an upload of `size` bytes is kept in the store rather than in a file: only sealed
        (encrypted) content, at most `inline_bytes` and one chunk, with a store to keep it in. Its
        writer then seals it in memory (`BlobWriter.sealed`) and its acceptance writes the row."""
        return (self._inline is not None and self.encrypt and size is not None
                and size <= min(self.inline_bytes, self.chunk_size))

    async def sealed_inline(self, key: str) -> bytes | None:
        """The sealed bytes of blob `key` when it is kept in the store (from memory when this process
        holds them); None when it is not (a file, or purged)."""
        held = self.cache.get(key)
        if held is not None or self._inline is None:
            return held
        return await self._inline.sealed(key)

    def _sealed_inline_sync(self, path: Path) -> bytes | None:
        """`sealed_inline` for a reader in a worker thread, through the event loop; None for a path
        outside the blob store, or when called on the loop itself (it must not wait on itself)."""
        if self._inline is None or self._loop is None or not self._is_stored(path):
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run_coroutine_threadsafe(self.sealed_inline(path.name), self._loop).result(timeout=60)
        return None

    def _is_stored(self, path: Path) -> bool:
        """Whether `path` is where blob `path.name` lives (not a file elsewhere with a blob's name)."""
        try:
            return path == self.path(path.name)
        except ValueError:
            return False

    async def holds(self, path: Path) -> bool:
        """Whether the blob at `path` is there to read: in memory, in its file, or kept in the store."""
        stored = self._is_stored(path)
        if stored and self.cache.get(path.name) is not None:
            return True
        if await asyncio.to_thread(path.is_file):
            return True
        return stored and await self.sealed_inline(path.name) is not None

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
        self.cache.clear()
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
        return [path for path, mtime in self.all_objects_with_times() if mtime <= limit]

    def all_objects_with_times(self) -> list[tuple[Path, float]]:
        """Every stored blob with its modification time (seconds since the epoch)."""
        out = []
        for path in self.objects.glob("*/*"):
            try:
                if path.is_file():
                    out.append((path, path.stat().st_mtime))
            except FileNotFoundError:
                continue
        return out

    def with_prefix(self, prefix: str) -> list[Path]:
        """The blobs whose key starts with `prefix` (a packet id: its uploads and variants)."""
        return sorted(map(Path, self._with_prefix(prefix)))

    def _with_prefix(self, prefix: str) -> list[str]:
        folder = self.path(prefix).parent
        return _names_with_prefix(os.fspath(folder), prefix)

    def writer(self, key: str, data_key: KeyOpener | None = None, *,
               size: int | None = None, inline: bool = False) -> BlobWriter:
        """A writer of blob `key`. `data_key` unseals the packet's data key read with the packet
        (`ContentKeys.opener`), awaited when the file is made: the writer then reads no key itself;
        without it, or when it gives None, the key is read (made if missing) from the key source.
        `size`, the content's declared size when known, lets a small blob (at most `chunk_size`) be
        created, written, sealed and published in one worker-thread call. `inline` (only where
        `inlines(size)`): no file at all, the blob is sealed in memory for its acceptance to keep."""
        if inline and not self.inlines(size):
            raise ValueError(f"an upload of {size} bytes is not kept in the store")
        return BlobWriter(self, key, data_key, size=size, inline=inline)

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
        self.cache.evict(key)
        return await asyncio.to_thread(remove, [self.path(key)]) == 1

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix` (a packet id or an upload key)."""
        self.cache.evict(prefix)
        return await asyncio.to_thread(lambda: remove(self._with_prefix(prefix)))

    async def purge(self, packet_id: str, key: str | None = None) -> int:
        """Delete a packet's content and its partial uploads; returns how many files went.

        With `key` (the packet's accepted upload, when the caller knows it has no variants) that one
        file is unlinked by name; without, every blob named after the packet goes (a read of its
        shard folder). Partial uploads are looked for in every process's temporary folder either
        way: another node's writer names its file, so only a directory read finds it.

        Concurrent calls (and `delete_partials`) share one worker-thread call and one read of the
        temporary folders (`Removals`); each caller returns once its own files are gone."""
        if key is not None and not key.startswith(packet_id):
            raise ValueError(f"blob {key!r} is not of packet {packet_id!r}")
        self.path(key if key is not None else packet_id)  # a bad key is refused here, not in the batch
        self.cache.evict(packet_id)  # before any await: nothing reads the content from memory after this
        return await self._removals.remove(packet_id, key, blobs=True)

    async def data_key(self, key: str) -> bytes | None:
        """The data key of blob `key` (None without a key source, or when destroyed)."""
        return await self.keys.get(key_id_of(key)) if self.keys is not None else None

    def open_sync(self, path: Path, data_key: bytes | None, *, size: int | None = None) -> BinaryIO:
        """Open a blob file for reading its plaintext (worker thread). With `size`, a file whose
        plaintext size differs (truncated, extended, replaced) is refused before any byte is read."""
        key_id = key_id_of(path.name)
        try:
            fh = open_blob(path, lambda kid: data_key if kid == key_id else None, expect_name=path.name)
        except FileNotFoundError:
            sealed = self._sealed_inline_sync(path)  # no file: a small upload kept in the store?
            if sealed is None:
                raise
            fh = open_sealed(sealed, data_key, expect_name=path.name)
        if size is not None:
            found = fh.size if hasattr(fh, "size") else os.fstat(fh.fileno()).st_size
            if found != size:
                fh.close()
                raise BlobCorrupt(f"{path.name} holds {found} bytes, the store says {size}")
        return fh

    def open_cached(self, path: Path, data_key: bytes | None, *, size: int) -> BinaryIO | None:
        """`open_sync` from the sealed bytes this process holds for blob `path` (no I/O: on the
        event loop); None when it holds none, or without the packet's data key (a key that is gone
        is reported by the file's reader, as for any other download)."""
        sealed = self.cache.get(path.name) if data_key is not None else None
        if sealed is None or path != self.path(path.name):  # held under that name, but not this file
            return None
        fh = open_sealed(sealed, data_key, expect_name=path.name)
        if getattr(fh, "size", None) != size:
            fh.close()
            raise BlobCorrupt(f"{path.name} holds {getattr(fh, 'size', None)} bytes, the store says {size}")
        return fh

    async def open_path(self, path: Path, *, size: int | None = None) -> BinaryIO:
        """Open a stored blob (by its file) for reading its plaintext."""
        data_key = await self.data_key(path.name)
        return await asyncio.to_thread(self.open_sync, path, data_key, size=size)

    async def open_blob(self, key: str, *, size: int | None = None) -> BinaryIO:
        return await self.open_path(self.path(key), size=size)

    async def size_of(self, key: str) -> int:
        """The plaintext size of a stored blob."""
        try:
            return await asyncio.to_thread(plain_size, self.path(key))
        except FileNotFoundError:
            sealed = await self.sealed_inline(key)
            if sealed is None:
                raise
            return sealed_size(sealed)

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
        attempt of it can succeed (a live writer elsewhere finds its file gone and gives up).
        Batched with concurrent purges (`Removals`)."""
        return await self._removals.remove(prefix, None, blobs=False)

    def _partials_of_all(self, prefixes: Collection[str]) -> dict[str, list[str]]:
        """`_partials` for several prefixes at once: one read of `tmp/` and one of each process
        folder, whatever their number. A file matching several prefixes is listed under each."""
        wanted = tuple(p for p in dict.fromkeys(prefixes) if _KEY_RE.match(p))
        found: dict[str, list[str]] = {p: [] for p in prefixes}
        if not wanted:
            return found

        def take(name: str, path: str) -> None:
            if name.endswith(".part") and name.startswith(wanted):
                for p in wanted:
                    if name.startswith(p):
                        found[p].append(path)

        try:
            with os.scandir(self.tmp_root) as entries:
                folders = []
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    else:
                        take(entry.name, entry.path)
        except (FileNotFoundError, NotADirectoryError):
            return found
        for folder in folders:
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_file(follow_symlinks=False):
                            take(entry.name, entry.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def _remove_batch(self, batch: Sequence[Removal]) -> list[int | OSError]:
        """Carry out a batch of removals (worker thread): the partial uploads of every packet named
        found with one scan, then each removal's files; an OSError belongs to its removal only."""
        partials = self._partials_of_all([r.prefix for r in batch])
        done: set[str] = set()  # a file two removals name is counted once
        out: list[int | OSError] = []
        for r in batch:
            try:
                if not r.blobs:
                    names: list[str] = []
                elif r.key is not None:
                    names = [os.fspath(self.path(r.key))]
                else:
                    names = self._with_prefix(r.prefix)
                names = [n for n in names + partials[r.prefix] if n not in done]
                out.append(remove(names))
                done.update(names)
            except OSError as exc:
                out.append(exc)
        return out


class BlobWriter:
    """Streams one blob to a temporary file, hashing on the way; `commit` makes it visible.

    Worker-thread calls: one to create the file (and seal its header), one per `chunk_size` of
    content, one to commit (the rest of the content, the final chunk, fsync, rename). The last
    piece, when small, is hashed on the loop by `finish`, and written by `commit`.

    A writer told its content's `size` when that fits in one chunk (a small blob) creates its file
    (and unseals its data key) only when it first writes: in `commit`'s call for a blob of at most
    `INLINE_HASH_BYTES`, so the whole blob costs one hand-off. Until then it has no partial file
    (nothing for another node's acceptance to remove: this attempt then loses at its own
    acceptance, as one that finished first does), and an abort has nothing to delete. Larger or
    unsized blobs create the file on entry, so a long upload shows its partial file from the start.

    An `inline` writer (a small upload kept in the store, `BlobStore.inlines`) makes no file and
    hands nothing to a worker thread: `commit` seals the content on the loop into `sealed`, which
    the acceptance writes to the store in its own transaction (core/store/inline_blobs.py)."""

    #: At most this much buffered content is hashed on the event loop by `finish` (tens of µs).
    INLINE_HASH_BYTES = 64 * 1024

    def __init__(self, store: BlobStore, key: str,
                 data_key: KeyOpener | None = None, *,
                 size: int | None = None, inline: bool = False) -> None:
        self.store = store
        self.key = key
        self._data_key = data_key
        self.final = store.path(key)
        self.temp: Path | None = None  # made in this process's temporary folder (see `_open`)
        self.size = 0
        self._sha = hashlib.sha256()
        self._buf = bytearray()
        self._hashed = 0  # how much of `_buf` is already in `_sha`
        self._fh: BinaryIO | None = None
        self._sealer: ChunkSealer | None = None
        self._closed = False
        #: Make the file in the worker-thread call that first writes to it, not on entry.
        self._deferred = size is not None and size <= store.chunk_size
        self.inline = inline
        #: An inline writer's blob, sealed by `commit` (the bytes a file would have held).
        self.sealed: bytes | None = None

    async def __aenter__(self) -> BlobWriter:
        if not self._deferred:
            await asyncio.to_thread(self._open, await self._key())
        return self

    async def _key(self) -> bytes | None:
        """The data key to seal the file with (None: a plain file), unsealed when the file is made."""
        if not self.store.encrypt:
            return None
        assert self.store.keys is not None
        data_key = await self._data_key() if self._data_key is not None else None
        if data_key is None:
            data_key = await self.store.keys.get_or_create(key_id_of(self.key))
        return data_key

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
        if len(self._buf) >= self.store.chunk_size and not self.inline:
            await self._flush()

    async def _flush(self) -> None:
        if self._buf:
            chunk, hashed = bytes(self._buf), self._hashed
            self._buf.clear()
            self._hashed = 0
            data_key = await self._key() if self._fh is None else None  # a deferred file: made in this call
            await asyncio.to_thread(self._write_chunk, chunk, hashed, data_key)

    def _write_chunk(self, chunk: bytes, hashed: int = 0, data_key: bytes | None = None) -> None:
        if self._fh is None:  # a deferred file, sealed with `data_key`
            self._open(data_key)
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
        if len(self._buf) - self._hashed <= self.INLINE_HASH_BYTES or self.inline:
            self._sha.update(memoryview(self._buf)[self._hashed:])
            self._hashed = len(self._buf)
        else:
            await self._flush()
        return self._sha.hexdigest()

    async def commit(self) -> None:
        chunk, hashed = bytes(self._buf), self._hashed
        self._buf.clear()
        self._hashed = 0
        data_key = await self._key() if self._fh is None else None  # a deferred file: made in this call
        if self.inline:  # no file: sealed here, kept by the acceptance (at most `inline_bytes`, tens of µs)
            if hashed < len(chunk):
                self._sha.update(memoryview(chunk)[hashed:])
            assert data_key is not None  # `BlobStore.inlines`: sealed content only
            self.sealed = self._seal(chunk, data_key)
            self.store.cache.put(self.key, self.sealed)
            self._closed = True
            return
        sealed = await asyncio.to_thread(self._commit, chunk, hashed, data_key)
        if sealed is not None:
            self.store.cache.put(self.key, sealed)  # for its download (`SealedCache`)
        self._closed = True

    def _commit(self, chunk: bytes = b"", hashed: int = 0, data_key: bytes | None = None) -> bytes | None:
        """The rest of the content, the final chunk, fsync, rename, folder fsync (worker thread). A
        deferred file (none made yet: `chunk` is the whole blob) is sealed in memory with
        `data_key` and written at once: the whole small blob in one call. Returns the file's bytes
        when sealed in memory (else None)."""
        sealed = None
        if self._fh is None:
            if hashed < len(chunk):
                self._sha.update(memoryview(chunk)[hashed:])
            if data_key is not None:
                sealed = self._seal(chunk, data_key)
            self.temp, self._fh = self.store.create_temp(self.key)
            self._fh.write(sealed if sealed is not None else chunk)
        else:
            if chunk:
                self._write_chunk(chunk, hashed)
            if self._sealer is not None:
                self._sealer.finish()
        assert self.temp is not None
        publish(self._fh, self.temp, self.final, fsync=self.store.fsync)
        return sealed

    def _seal(self, content: bytes, data_key: bytes) -> bytes:
        """The whole blob sealed in memory: the bytes its file holds."""
        sink = io.BytesIO()
        sealer = ChunkSealer(sink, data_key, key_id_of(self.key), self.key)
        sealer.write(content)
        sealer.finish()
        return sink.getvalue()

    async def abort(self) -> None:
        self._closed = True
        self._buf.clear()
        self._hashed = 0
        if self._fh is not None or self.temp is not None:  # a deferred file never made: nothing to delete
            await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
