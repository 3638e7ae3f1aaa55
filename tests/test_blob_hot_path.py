"""The blob store on the exchange's hot path: worker-thread calls counted, purges by name, and the
edge cases of the cheaper paths (a new shard folder, a temporary folder removed under the process,
a small last piece hashed on the loop, a small blob written in one call, removals batched).

The hand-off count is pinned like the statements of tests/test_statements.py: a change that adds a
worker-thread call per exchange fails here (measure it with docs/performance.md's commands first).

The hubs here keep every upload in a file (`blobs.inline_bytes: 0`): this is the file path's
test. Small uploads kept in the store instead have theirs in tests/test_inline_blobs.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub
from lgsp.core.store.blobcrypt import MAGIC, BlobCorrupt
from lgsp.core.store.blobs import BlobStore, PartialRemoved, publish
from tests.blob_support import upload_counting_hand_offs

from .conftest import base_env
from .test_statements import _pairs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package

from bench.blobpath import MemoryKeys as _Keys  # noqa: E402
from bench.statements import StatementCounter, count_exchanges, counting_hand_offs  # noqa: E402


@pytest.fixture
def hub_config(tmp_path: Path) -> Config:
    return load_config(None, env=base_env(tmp_path / "var", LGSP_BLOBS_INLINE_BYTES="0"))


BLOB_MODULES = ("lgsp.core.store.blobs", "lgsp.core.store.blobcrypt", "lgsp.core.downloads", "io:")
#: Per exchange, at most: the upload's blob created, written and published (one call), the download
#: opened and read (one), the partial uploads of other attempts looked for after the acceptance and
#: the purge (one each, fewer when concurrent exchanges' removals share a call). Ten before blob
#: operations were folded into one call each, five before a small blob was made in one call and
#: removals were batched.
BLOB_HAND_OFFS = 4


async def test_an_exchange_hands_blob_work_to_a_thread_at_most_four_times_and_leaves_nothing(hub: Hub) -> None:
    pairs = await _pairs(hub, 3)
    with counting_hand_offs() as seen:
        counter = StatementCounter()
        _, n = await count_exchanges(hub, pairs, per_pair=4, counter=counter)
    blob = {k: v for k, v in seen.items() if k.startswith(BLOB_MODULES)}
    # The warm-up exchange of each pair is counted too (the counter only narrows statements).
    exchanges = n + len(pairs)
    per = sum(blob.values()) / exchanges
    assert per <= BLOB_HAND_OFFS + 0.25, blob
    # The upload's file is made in the call that writes and publishes it, not on its own.
    assert blob.get("lgsp.core.store.blobs:BlobWriter._commit") == exchanges, blob
    assert "lgsp.core.store.blobs:BlobWriter._open" not in blob, blob
    assert blob.get("lgsp.core.store.blobs:BlobStore._remove_batch", 0) <= 2 * exchanges, blob
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


@contextmanager
def counting_fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every fsync (the real one still runs), as the kind of what was flushed: `file` or `folder`."""
    real, seen = os.fsync, []

    def fsync(fd: int) -> None:
        import stat

        seen.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield seen


@pytest.mark.parametrize("size", [0, 1, 10_240, 64 * 1024])
async def test_a_small_blob_is_created_written_and_published_in_one_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Told its size, a writer of a small blob makes no file until its commit, which creates, writes,
    seals, fsyncs, renames and fsyncs the folder in one worker-thread call; the content reads back."""
    store = BlobStore(tmp_path / "blobs", chunk_size=100_000, keys=_Keys())
    store.open()
    data, key = os.urandom(size), f"{PACKET}-0badc0de"
    with counting_hand_offs() as seen, counting_fsyncs(monkeypatch) as fsyncs:
        async with store.writer(key, size=size) as w:
            await w.write(data)
            assert w.temp is None and store.partials(PACKET) == []  # nothing on disk yet
            assert await w.finish() == hashlib.sha256(data).hexdigest()
            await w.commit()
    assert dict(seen) == {"lgsp.core.store.blobs:BlobWriter._commit": 1}
    assert fsyncs == ["file", "folder"]  # durable before the commit returns, as before
    assert store.path(key).read_bytes().startswith(MAGIC) and store.partials(PACKET) == []
    with await store.open_blob(key, size=size) as fh:
        assert fh.read() == data


@pytest.mark.parametrize(("size", "calls"), [(64 * 1024 + 1, 2), (100_000, 2), (100_001, None), (None, None)])
async def test_a_larger_or_unsized_blob_keeps_its_file_from_the_start(
        tmp_path: Path, size: int | None, calls: int | None) -> None:
    """Above `INLINE_HASH_BYTES` the rest is flushed by `finish` (the file made in that call); above
    one chunk, or with no size given, the file is made on entry as before, so a long upload's
    partial file is there from its start (and another node's acceptance can remove it)."""
    store = BlobStore(tmp_path / "blobs", chunk_size=100_000, keys=_Keys())
    store.open()
    data, key = os.urandom(size or 150_000), f"{PACKET}-0badc0de"
    with counting_hand_offs() as seen:
        async with store.writer(key, size=size) as w:
            if calls is None:
                assert w.temp is not None and store.partials(PACKET) == [w.temp]
            else:
                assert w.temp is None
            for i in range(0, len(data), 30_000):
                await w.write(data[i:i + 30_000])
            assert await w.finish() == hashlib.sha256(data).hexdigest()
            await w.commit()
    if calls is not None:
        assert sum(seen.values()) == calls and "lgsp.core.store.blobs:BlobWriter._open" not in seen, seen
    else:
        assert seen["lgsp.core.store.blobs:BlobWriter._open"] == 1, seen
    with await store.open_blob(key, size=len(data)) as fh:
        assert fh.read() == data
    assert store.partials(PACKET) == []


async def test_an_aborted_small_writer_leaves_nothing_and_makes_no_call(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", keys=_Keys())
    store.open()
    key = f"{PACKET}-0badc0de"

    async def cut_off() -> None:
        async with store.writer(key, size=10) as w:
            await w.write(b"0123456789")
            raise RuntimeError("the client went away")

    with counting_hand_offs() as seen, pytest.raises(RuntimeError):
        await cut_off()
    assert not seen and not store.exists(key) and store.partials(PACKET) == []


async def test_a_small_upload_makes_its_blob_in_one_call_through_the_exchange(
        make_actor: Any, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload passes its declared size: a 10 KiB packet's blob costs one worker-thread call,
    which ends in `publish` (fsync with `blobs.fsync`, rename, folder fsync) before the upload is
    answered, and the content is the one sent. (The suite runs with `blobs.fsync: false`; the
    fsyncs themselves are counted in the store-level test above.)"""
    import lgsp.core.store.blobs as blobs_module

    published: list[tuple[str, bool]] = []
    real = blobs_module.publish

    def publish_spy(fh: Any, temp: Any, final: Any, *, fsync: bool) -> None:
        published.append((os.path.basename(final), fsync))
        real(fh, temp, final, fsync=fsync)

    monkeypatch.setattr(blobs_module, "publish", publish_spy)
    a, b = await make_actor("000.00.00.H23"), await make_actor("000.00.01.H23")
    content = os.urandom(10_240)
    created, seen = await upload_counting_hand_offs(a, b.unit, content)
    writes = {k: v for k, v in seen.items() if "BlobWriter" in k}
    assert writes == {"lgsp.core.store.blobs:BlobWriter._commit": 1}, seen
    (blob,) = hub.blobs.with_prefix(created["id"])
    assert published == [(blob.name, hub.blobs.fsync)]
    assert await b.client.fetch_bytes(created["id"]) == content


@pytest.mark.parametrize("held", [True, False])
async def test_a_small_download_is_one_call_or_none_and_a_range_of_it_is_right(
        make_actor: Any, hub: Hub, held: bool) -> None:
    """A small packet is opened, read and closed in one worker-thread call, whole, as a Range or as
    a HEAD, with the same bytes and headers a stream would send; while this process still holds the
    blob's sealed bytes (it wrote it), with none at all."""
    a, b = await make_actor("000.00.00.H23"), await make_actor("000.00.01.H23")
    content = os.urandom(10_240)
    packet_id = await a.client.send(content, [b.unit], subject="tải về")
    if not held:
        hub.blobs.cache.clear()  # e.g. written by another node, or pushed out of the cache
    path = f"/v1/packets/{packet_id}/content"
    for method, headers, status, body in [
            ("HEAD", {"Range": "bytes=100-199"}, 206, None),
            ("GET", {"Range": "bytes=100-199"}, 206, content[100:200]),
            ("GET", {"Range": "bytes=-10"}, 206, content[-10:]),
            ("GET", None, 200, content)]:
        with counting_hand_offs() as seen:
            got_status, got_headers, got = await b.raw(method, path, headers=headers)
        assert (got_status, got) == (status, body), (method, headers)
        expected = {} if held else {"lgsp.core.downloads:_open_first": 1}
        assert {k: v for k, v in seen.items() if k.startswith(BLOB_MODULES)} == expected
        if status == 206:
            first = 100 if headers == {"Range": "bytes=100-199"} else len(content) - 10
            last = 199 if first == 100 else len(content) - 1
            assert got_headers["Content-Range"] == f"bytes {first}-{last}/{len(content)}"
            assert got_headers["Content-Length"] == str(last - first + 1)


async def test_the_cache_holds_sealed_bytes_only_and_forgets_a_packet_when_it_is_purged(
        make_actor: Any, hub: Hub) -> None:
    """What the cache holds is the blob file's bytes as written (sealed, never the plaintext); the
    completion's purge drops it before the ack is answered, and the download then says the
    content is gone, as it does for a file."""
    a, b = await make_actor("000.00.00.H23"), await make_actor("000.00.01.H23")
    content = os.urandom(10_240)
    sha = hashlib.sha256(content).hexdigest()
    packet_id = await a.client.send(content, [b.unit], subject="bộ nhớ đệm")
    (blob,) = hub.blobs.with_prefix(packet_id)
    held = hub.blobs.cache.get(blob.name)
    assert held == blob.read_bytes() and held.startswith(MAGIC) and content[:64] not in held
    assert await b.client.fetch_bytes(packet_id) == content
    assert await b.client.ack(packet_id, sha) == "delivered"
    assert hub.blobs.cache.get(blob.name) is None and hub.blobs.cache.held == 0
    status, _, problem = await b.raw("GET", f"/v1/packets/{packet_id}/content")
    assert (status, problem["code"]) == (410, "content.gone"), problem


async def test_the_cache_is_bounded_drops_the_oldest_and_holds_only_small_sealed_blobs(tmp_path: Path) -> None:
    """At most `cache_bytes` are held, the oldest packet's blobs dropped first; blobs above 64 KiB
    (not sealed whole in their commit's call) and plain files are not held; deleting a losing
    attempt forgets it; a held blob reads back through `open_cached` with its size checked."""
    store = BlobStore(tmp_path / "blobs", chunk_size=1 << 20, keys=_Keys(), cache_bytes=25_000)
    store.open()
    ids = [f"0f0e0d0c-0000-4000-8000-00000000001{i}" for i in range(4)]

    async def write(key: str, data: bytes, into: BlobStore = store) -> None:
        async with into.writer(key, size=len(data)) as w:
            await w.write(data)
            await w.finish()
            await w.commit()

    data = [os.urandom(10_000) for _ in ids]
    for packet_id, d in zip(ids[:2], data[:2], strict=True):
        await write(f"{packet_id}-0badc0de", d)
    assert store.cache.held == sum(len(store.path(f"{p}-0badc0de").read_bytes()) for p in ids[:2])
    await write(f"{ids[2]}-0badc0de", data[2])  # a third one does not fit: the oldest goes
    assert store.cache.get(f"{ids[0]}-0badc0de") is None and store.cache.held <= 25_000
    fh = store.open_cached(store.path(f"{ids[2]}-0badc0de"), await store.data_key(f"{ids[2]}-0badc0de"),
                           size=10_000)
    assert fh is not None and fh.read() == data[2]
    with pytest.raises(BlobCorrupt):
        store.open_cached(store.path(f"{ids[2]}-0badc0de"), await store.data_key(f"{ids[2]}-0badc0de"), size=9)
    assert store.open_cached(tmp_path / "elsewhere" / f"{ids[2]}-0badc0de", b"k" * 32, size=10_000) is None
    await store.delete_prefix(f"{ids[2]}-0badc0de")  # an attempt that lost: its blob and entry go
    assert store.cache.get(f"{ids[2]}-0badc0de") is None
    await write(f"{ids[3]}-0badc0de", os.urandom(70_000))  # above 64 KiB: written in two calls
    assert store.cache.get(f"{ids[3]}-0badc0de") is None
    plain = BlobStore(tmp_path / "plain", keys=_Keys(), encrypt=False, cache_bytes=25_000)
    plain.open()
    await write(f"{ids[0]}-1badc0de", data[0], plain)
    assert plain.cache.held == 0  # a plain file is served by sendfile: nothing to hold
    off = BlobStore(tmp_path / "off", keys=_Keys(), cache_bytes=0)
    off.open()
    await write(f"{ids[0]}-2badc0de", data[0], off)
    assert off.cache.held == 0
    for s in (store, plain, off):
        s.close()


def _files(store: BlobStore, *names: str) -> list[Path]:
    paths = [store.path(n) for n in names]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"c")
    return paths


async def test_concurrent_purges_share_one_call_and_each_returns_with_its_files_gone(tmp_path: Path) -> None:
    """Two completions purging at once (and an acceptance removing partials): one worker-thread call
    and one read of the temporary folders; each caller returns only once its own files are gone."""
    store = BlobStore(tmp_path / "blobs")
    store.open()
    other_node = BlobStore(store.root)
    other_node.open()
    third = "0f0e0d0c-0000-4000-8000-000000000003"
    up1, up2 = _files(store, f"{PACKET}-0badc0de", f"{OTHER}-0badc0de")
    kept = _files(store, f"{third}-0badc0de")[0]
    parts = {pid: [other_node.tmp / f"{pid}-1badc0de.1.part", store.tmp / f"{pid}-2badc0de.1.part"]
             for pid in (PACKET, OTHER, third)}
    for p in [q for qs in parts.values() for q in qs]:
        p.write_bytes(b"p")

    async def purge(packet_id: str, key: str | None) -> int:
        removed = await store.purge(packet_id, key)
        # Gone by the time this caller goes on (what is answered after it, e.g. the ack).
        assert not any(p.exists() for p in parts[packet_id])
        assert key is None or not store.path(key).exists()
        return removed

    async def partials(packet_id: str) -> int:
        removed = await store.delete_partials(packet_id)
        assert not any(p.exists() for p in parts[packet_id])
        return removed

    with counting_hand_offs() as seen:
        got = await asyncio.gather(purge(PACKET, up1.name), purge(OTHER, up2.name), partials(third))
    assert got == [3, 3, 2]
    assert dict(seen) == {"lgsp.core.store.blobs:BlobStore._remove_batch": 1}
    assert kept.exists()  # an accepted packet's own blob stays
    # One after the other (no concurrency): each runs at once in a call of its own.
    with counting_hand_offs() as seen:
        assert await store.purge(third, kept.name) == 1
        assert await store.purge(third) == 0
    assert dict(seen) == {"lgsp.core.store.blobs:BlobStore._remove_batch": 2}
    other_node.close()
    store.close()


async def test_a_failing_removal_fails_its_own_caller_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.open()
    (ok,) = _files(store, f"{OTHER}-0badc0de")
    stuck = store.path(f"{PACKET}-0badc0de")
    (stuck / "inside").mkdir(parents=True)  # unlink of a folder: IsADirectoryError, an OSError
    results = await asyncio.gather(store.purge(PACKET, stuck.name), store.purge(OTHER, ok.name),
                                   return_exceptions=True)
    assert isinstance(results[0], IsADirectoryError) and results[1] == 1 and not ok.exists()
    with pytest.raises(ValueError, match="bad blob key"):
        await store.purge("../escape")
    store.close()


async def test_concurrent_completions_answer_after_their_blobs_are_gone_and_a_failure_is_only_logged(
        make_actor: Any, hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    """Two acks completing two packets at once (their purges may share a call: see the store-level
    test): each is answered after its blob is gone; a blob that cannot be deleted is logged
    (reconciliation deletes it later) and its ack is answered all the same."""
    a, b = await make_actor("000.00.00.H23"), await make_actor("000.00.01.H23")
    contents = [os.urandom(10_240), os.urandom(10_240), os.urandom(10_240)]
    ids = [await a.client.send(c, [b.unit], subject="xong") for c in contents]
    for packet_id, content in zip(ids, contents, strict=True):
        assert await b.client.fetch_bytes(packet_id) == content
    blobs = [hub.blobs.with_prefix(i) for i in ids]
    assert all(len(found) == 1 for found in blobs)

    async def ack(packet_id: str, content: bytes, blob: Path) -> None:
        assert await b.client.ack(packet_id, hashlib.sha256(content).hexdigest()) == "delivered"
        assert not blob.exists()

    await asyncio.gather(*(ack(i, c, found[0]) for i, c, found in zip(ids[:2], contents[:2], blobs[:2], strict=True)))

    stuck = blobs[2][0]
    stuck.unlink()
    (stuck / "inside").mkdir(parents=True)  # cannot be unlinked: IsADirectoryError
    with caplog.at_level("ERROR", logger="lgsp.core.exchange"):
        assert await b.client.ack(ids[2], hashlib.sha256(contents[2]).hexdigest()) == "delivered"
    assert f"could not delete the content of packet {ids[2]}" in caplog.text
    assert (await a.client.status(ids[2]))["state"] == "completed"
