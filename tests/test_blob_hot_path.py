"""The blob store on the exchange's hot path: worker-thread calls counted, purges by name, and the
edge cases of the cheaper paths (a new shard folder, a temporary folder removed under the process,
a small last piece hashed on the loop).

The hand-off count is pinned like the statements of tests/test_statements.py: a change that adds a
worker-thread call per exchange fails here (measure it with docs/performance.md's commands first).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import functools
import hashlib
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.hub import Hub
from lgsp.core.store.blobcrypt import MAGIC
from lgsp.core.store.blobs import BlobStore, PartialRemoved, publish

from .test_statements import _pairs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package

from bench.blobpath import MemoryKeys as _Keys  # noqa: E402
from bench.statements import StatementCounter, count_exchanges  # noqa: E402

BLOB_MODULES = ("lgsp.core.store.blobs", "lgsp.core.store.blobcrypt", "lgsp.core.downloads", "io:")
#: Per exchange: the upload's file created (one call) and committed (one), the partial uploads
#: of other attempts looked for after the acceptance (one), the download opened and read (one),
#: the purge (one). Ten before blob operations were folded into one call each.
BLOB_HAND_OFFS = 5


@contextmanager
def counting_hand_offs() -> Iterator[Counter[str]]:
    """Every function handed to a worker thread (`run_in_executor`, so `asyncio.to_thread` too)."""
    seen: Counter[str] = Counter()
    real = asyncio.base_events.BaseEventLoop.run_in_executor

    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        f = func.args[0] if isinstance(func, functools.partial) and func.args else func  # to_thread's ctx.run
        while isinstance(f, functools.partial):
            f = f.func
        f = getattr(f, "__func__", f)
        seen[f"{getattr(f, '__module__', '?')}:{getattr(f, '__qualname__', repr(f))}"] += 1
        return real(self, executor, func, *args)

    asyncio.base_events.BaseEventLoop.run_in_executor = run_in_executor  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        asyncio.base_events.BaseEventLoop.run_in_executor = real  # type: ignore[method-assign]


async def test_an_exchange_hands_blob_work_to_a_thread_five_times_and_leaves_nothing(hub: Hub) -> None:
    pairs = await _pairs(hub, 3)
    with counting_hand_offs() as seen:
        counter = StatementCounter()
        _, n = await count_exchanges(hub, pairs, per_pair=4, counter=counter)
    blob = {k: v for k, v in seen.items() if k.startswith(BLOB_MODULES)}
    # The warm-up exchange of each pair is counted too (the counter only narrows statements).
    per = sum(blob.values()) / (n + len(pairs))
    assert per <= BLOB_HAND_OFFS + 0.25, blob
    assert not any("delete_prefix" in k for k in blob), blob  # a completed packet's blob: by name
    # Every exchange completed: nothing of any packet is left, neither blobs nor partial uploads.
    await asyncio.sleep(0.1)
    assert [p for p in hub.blobs.objects.rglob("*") if p.is_file()] == []
    assert [p for p in hub.blobs.tmp_root.rglob("*.part")] == []


PACKET = "0f0e0d0c-0000-4000-8000-000000000001"
OTHER = "0f0e0d0c-0000-4000-8000-000000000002"  # same shard folder


@pytest.mark.parametrize("size", [0, 1, 10_240, 64 * 1024, 64 * 1024 + 1, 200_000, 300_001])
async def test_written_content_and_its_hash_whatever_is_left_for_the_commit(tmp_path: Path, size: int) -> None:
    """The last piece is hashed on the loop when small and flushed to the thread when not; either
    way the digest and the stored plaintext are the content's."""
    store = BlobStore(tmp_path / "blobs", chunk_size=100_000, keys=_Keys())
    store.open()
    data = os.urandom(size)
    key = f"{PACKET}-0badc0de"
    async with store.writer(key) as w:
        for i in range(0, size, 30_000):
            await w.write(data[i:i + 30_000])
        assert await w.finish() == hashlib.sha256(data).hexdigest()
        await w.commit()
    assert store.path(key).read_bytes().startswith(MAGIC)
    with await store.open_blob(key, size=size) as fh:
        assert fh.read() == data
    assert list(store.tmp.iterdir()) == []


async def test_commit_without_finish_still_writes_everything(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", chunk_size=4096)
    store.open()
    async with store.writer("abc") as w:
        await w.write(b"x" * 5000)
        await w.write(b"tail")
        await w.commit()
    assert store.path("abc").read_bytes() == b"x" * 5000 + b"tail"


async def test_a_new_shard_folder_is_made_at_the_rename(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.open()
    for key in ("aa-1", "aa-2", "bb-1"):
        async with store.writer(key) as w:
            await w.write(key.encode())
            await w.commit()
    shutil.rmtree(store.objects / "aa")  # a shard removed by hand: made again
    async with store.writer("aa-3") as w:
        await w.write(b"again")
        await w.commit()
    assert store.path("aa-3").read_bytes() == b"again" and store.path("bb-1").read_bytes() == b"bb-1"


def test_publish_of_a_removed_partial_is_refused_even_for_a_new_shard(tmp_path: Path) -> None:
    temp, final = tmp_path / "x.part", tmp_path / "objects" / "zz" / "zz-1"
    fh = open(temp, "xb")  # noqa: SIM115 - publish closes it
    fh.write(b"half")
    temp.unlink()  # another node accepted an upload of the packet meanwhile
    with pytest.raises(PartialRemoved):
        publish(fh, temp, final, fsync=True)
    assert fh.closed and not final.exists() and not final.parent.exists()


async def test_a_writer_makes_a_new_temporary_folder_when_its_own_was_removed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.open()
    first = store.tmp
    shutil.rmtree(first)  # e.g. an operator emptied tmp/ under a running hub
    async with store.writer("abc") as w:
        assert w.temp is not None and w.temp.parent != first and w.temp.exists()
        await w.write(b"content")
        await w.commit()
    assert store.path("abc").read_bytes() == b"content"
    assert not (store.tmp_root / (first.name + ".owner")).exists()  # the old owner file went too
    store.close()


async def test_purge_by_name_and_by_packet(tmp_path: Path) -> None:
    """`purge(packet, key)` unlinks that blob by name, `purge(packet)` every blob of the packet; both
    remove the packet's partial uploads in every process folder and leave other packets alone."""
    store = BlobStore(tmp_path / "blobs")
    store.open()
    other_node = BlobStore(store.root)  # another process writing into the same blob folder
    other_node.open()

    def files(*names: str) -> list[Path]:
        paths = [store.path(n) for n in names]
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"c")
        return paths

    upload, variant = files(f"{PACKET}-0badc0de", f"{PACKET}-0badc0de-edxml")
    (bystander,) = files(f"{OTHER}-1badc0de")
    partials = [other_node.tmp / f"{PACKET}-2badc0de.1.part", store.tmp / f"{PACKET}-3badc0de.1.part",
                store.tmp_root / f"{PACKET}-4badc0de.1.part"]  # the last: an older version's layout
    kept_partial = other_node.tmp / f"{OTHER}-5badc0de.1.part"
    for p in [*partials, kept_partial]:
        p.write_bytes(b"p")

    assert await store.purge(PACKET, upload.name) == 1 + len(partials)
    assert not upload.exists() and variant.exists() and not any(p.exists() for p in partials)
    assert await store.purge(PACKET) == 1
    assert not variant.exists() and bystander.exists() and kept_partial.exists()
    assert await store.purge(PACKET) == 0  # nothing left: not an error
    with pytest.raises(ValueError, match="not of packet"):
        await store.purge(PACKET, bystander.name)
    assert bystander.exists()
    other_node.close()
    store.close()
