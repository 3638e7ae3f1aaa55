"""The blob store's share of one pull exchange, measured alone:

    python -m bench.blobpath                  # 32 workers × 30 exchanges of 10 KiB, encrypted, fsync on
    python -m bench.blobpath --per 100 --size 65536

Each "exchange" does what the hub's blob layer does for one packet: the upload written (file
created, content, final chunk sealed, fsync, rename, folder fsync), the partial uploads of other
attempts looked for after the acceptance, the whole content read back as a download would, and
the purge. 32 run at once on the default thread pool, as the hub's requests do (so concurrent
removals share their worker-thread calls, as in the hub). Printed: the
process's CPU (all threads, getrusage) per exchange, user and system, and context switches. The
rest of the hub (HTTP, SQL) is not in it, so on a shared machine this moves far less than
`bench.cell`; docs/performance.md (saving 7) compares it before and after.

It also runs against the code from before `BlobStore.purge` (through `PYTHONPATH`, as
docs/performance.md describes), doing the same operations with the calls that code had.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import os
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lgsp.core.store.blobs import BlobStore

CURRENT = hasattr(BlobStore, "purge")
#: The writer takes the declared size (a small blob in one worker-thread call, saving 11).
SIZED = "size" in inspect.signature(BlobStore.writer).parameters
#: Small blobs just written are held sealed in memory for their downloads (`SealedCache`).
HELD = hasattr(BlobStore, "open_cached")


class MemoryKeys:
    """Data keys held in memory (the hub's are sealed in its store)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def get(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    async def get_or_create(self, key_id: str) -> bytes:
        return self.keys.setdefault(key_id, os.urandom(32))


async def exchange(store: BlobStore, data: bytes, sha: str) -> None:
    packet_id = str(uuid.uuid4())
    key = f"{packet_id}-{os.urandom(4).hex()}"
    async with (store.writer(key, size=len(data)) if SIZED else store.writer(key)) as writer:
        await writer.write(data)
        if await writer.finish() != sha:
            raise AssertionError("digest differs")
        await writer.commit()
    await store.delete_partials(packet_id)  # after the acceptance
    path, want = store.path(key), min(64 * 1024, len(data))
    if CURRENT:
        from lgsp.core.downloads import _open_first

        data_key = await store.data_key(key)
        held = store.open_cached(path, data_key, size=len(data)) if HELD else None
        if held is not None:  # the sealed bytes this process holds (`blob_response` does the same)
            with held:
                block = held.read(want)
        else:
            fh, block = await asyncio.to_thread(_open_first, store, path, data_key, len(data), 0, want, len(data))
            if fh is not None:
                await asyncio.to_thread(fh.close)
        await store.purge(packet_id, key)
    else:  # the calls of the code before (one worker-thread call each)
        reader: Any = await store.open_path(path, size=len(data))
        block = await asyncio.to_thread(reader.read, want)
        await asyncio.to_thread(reader.close)
        await store.delete_prefix(packet_id)
        await store.delete_partials(packet_id)
    if block != data[:want]:
        raise AssertionError("read back differs")


async def run(workers: int, per: int, size: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="lgsp-bench-blobpath-"))
    store = BlobStore(root, keys=MemoryKeys(), fsync=True, **({"cache_bytes": 8 << 20} if HELD else {}))
    store.open()
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    try:
        await asyncio.gather(*(exchange(store, data, sha) for _ in range(workers)))  # warm-up
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()

        async def worker() -> None:
            for _ in range(per):
                await exchange(store, data, sha)

        await asyncio.gather(*(worker() for _ in range(workers)))
        after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
    n = workers * per
    user, system = (after.ru_utime - before.ru_utime) / n * 1e3, (after.ru_stime - before.ru_stime) / n * 1e3
    return {"cpu_ms": user + system, "user_ms": user, "system_ms": system, "per_s": n / elapsed,
            "voluntary_switches": (after.ru_nvcsw - before.ru_nvcsw) / n,
            "involuntary_switches": (after.ru_nivcsw - before.ru_nivcsw) / n}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.blobpath", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--per", type=int, default=30, help="exchanges per worker after the warm-up")
    parser.add_argument("--size", type=int, default=10 * 1024)
    args = parser.parse_args(argv)
    r = asyncio.run(run(args.workers, args.per, args.size))
    print(f"{'current' if CURRENT else 'before purge()'}: {r['cpu_ms']:.3f} ms CPU per exchange "
          f"(user {r['user_ms']:.3f}, system {r['system_ms']:.3f}), {r['per_s']:.0f}/s, "
          f"context switches {r['voluntary_switches']:.1f} voluntary, {r['involuntary_switches']:.1f} involuntary")


if __name__ == "__main__":
    main()
