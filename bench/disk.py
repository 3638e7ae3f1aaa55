"""The disk-and-hash ceiling for large packets: the same bytes copied through SHA-256 to a file.

It is what the hub's upload does at the least (read the stream, hash it, write it, fsync it), with
no network, no HTTP and no database, so the hub's MB/s is reported as a share of it. The source
file is read through the page cache, as the hub's client reads it.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def copy_through_sha256(source: Path, dest: Path, chunk: int = CHUNK) -> str:
    sha = hashlib.sha256()
    with source.open("rb") as src, dest.open("wb") as out:
        while block := src.read(chunk):
            sha.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return sha.hexdigest()


def ceiling(source: Path, copies: int, workdir: Path) -> dict[str, Any]:
    """`copies` copies at once (as many packets go through the hub at once); MB/s over all bytes."""
    size = source.stat().st_size
    dests = [workdir / f"ceiling-{i}.bin" for i in range(copies)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=copies) as pool:
        digests = list(pool.map(lambda d: copy_through_sha256(source, d), dests))
    seconds = time.perf_counter() - t0
    for dest in dests:
        dest.unlink(missing_ok=True)
    if len(set(digests)) != 1:
        raise RuntimeError("copies of one file hashed differently")
    return {"value": size * copies / seconds / 1e6, "bytes": size * copies, "seconds": seconds}
