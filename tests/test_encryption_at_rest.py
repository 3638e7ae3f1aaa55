"""Content encrypted at rest: the chunked AES-256-GCM blob format and the hub's use of it.

The format tests attack the file the way someone with the disk would (flip, cut, extend, reorder,
swap, rename); the hub tests upload over real HTTP and look at what lands on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import delete, select
from yarl import URL

from lgsp.client.client import Credentials, LgspClient
from lgsp.core.auth import Principal
from lgsp.core.config import load_config
from lgsp.core.directory import IssuedKey
from lgsp.core.exchange.views import Readable
from lgsp.core.hub import Hub
from lgsp.core.keyrotation import reseal_all
from lgsp.core.store.blobcrypt import (
    CHUNK_SIZE,
    TAG,
    BlobCorrupt,
    BlobKeyGone,
    ChunkSealer,
    DecryptingReader,
    new_data_key,
    open_blob,
    plain_size,
    read_header,
)
from lgsp.core.store.tables import content_keys
from tests.blob_support import blob_of, stored_bytes
from tests.conftest import Actor, MakeActor, base_env
from tests.test_keycache import statements

C = 4096  # a small chunk size keeps the boundary cases cheap
PACKET = "3f2b8c1e-0000-4000-8000-00000000abcd"


def seal(path: Path, data: bytes, key: bytes, *, name: str | None = None, chunk: int = C,
         pieces: int = 7) -> None:
    """Write `data` sealed, handed to the sealer in uneven pieces (as a network stream would)."""
    with open(path, "wb") as fh:
        sealer = ChunkSealer(fh, key, PACKET, name or path.name, chunk)
        step = max(1, len(data) // pieces + 13)
        for start in range(0, len(data), step):
            sealer.write(data[start:start + step])
        sealer.finish()


def read_all(path: Path, key: bytes | None) -> bytes:
    with open_blob(path, key, expect_name=path.name) as fh:
        return fh.read()


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C, 3 * C + 17])
def test_round_trip_and_size_from_the_file(tmp_path: Path, size: int) -> None:
    key, data = new_data_key(), os.urandom(size)
    path = tmp_path / f"{PACKET}-aa"
    seal(path, data, key)
    assert read_all(path, key) == data
    assert plain_size(path) == size
    raw = path.read_bytes()
    assert raw.startswith(b"LGSPBLB1")
    if size >= 64:
        assert data[:64] not in raw  # no plaintext on disk
    chunks = max(1, -(-size // C))
    header = read_header(io.BytesIO(raw))
    assert header is not None and len(raw) == len(header[0]) + size + TAG * chunks


def test_range_reads_at_chunk_boundaries(tmp_path: Path) -> None:
    key, data = new_data_key(), os.urandom(5 * C + 100)
    path = tmp_path / f"{PACKET}-bb"
    seal(path, data, key)
    with open_blob(path, key) as fh:
        assert isinstance(fh, DecryptingReader)
        for start, length in [(0, 1), (C - 1, 2), (C, C), (2 * C - 1, C + 2), (5 * C, 100), (5 * C + 99, 10),
                              (3 * C + 5, 0), (len(data), 5)]:
            fh.seek(start)
            assert fh.read(length) == data[start:start + length], (start, length)
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == data[-10:]


def test_a_flipped_bit_is_detected_in_its_chunk(tmp_path: Path) -> None:
    key, data = new_data_key(), os.urandom(3 * C)
    path = tmp_path / f"{PACKET}-cc"
    seal(path, data, key)
    raw = bytearray(path.read_bytes())
    header_len = len(read_header(io.BytesIO(bytes(raw)))[0])  # type: ignore[index]
    raw[header_len + (C + TAG) + 10] ^= 1  # inside chunk 1
    path.write_bytes(bytes(raw))
    with open_blob(path, key) as fh:
        assert fh.read(C) == data[:C]  # chunk 0 is untouched and still served
        with pytest.raises(BlobCorrupt, match="chunk 1"):
            fh.read(1)


def test_a_tampered_header_fails_every_chunk(tmp_path: Path) -> None:
    key = new_data_key()
    path = tmp_path / f"{PACKET}-dd"
    seal(path, os.urandom(2 * C), key)
    raw = bytearray(path.read_bytes())
    raw[20] ^= 1  # the file id
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorrupt):
        read_all(path, key)


@pytest.mark.parametrize("cut", ["at a chunk boundary", "inside a chunk", "the whole final chunk"])
def test_truncated_file_is_detected(tmp_path: Path, cut: str) -> None:
    key, data = new_data_key(), os.urandom(3 * C + 500)
    path = tmp_path / f"{PACKET}-ee"
    seal(path, data, key)
    raw = path.read_bytes()
    header_len = len(read_header(io.BytesIO(raw))[0])  # type: ignore[index]
    keep = {"at a chunk boundary": header_len + 2 * (C + TAG),
            "inside a chunk": len(raw) - 100,
            "the whole final chunk": len(raw) - (500 + TAG)}[cut]
    path.write_bytes(raw[:keep])
    with pytest.raises(BlobCorrupt):
        read_all(path, key)


def test_appended_chunk_is_detected(tmp_path: Path) -> None:
    key, data = new_data_key(), os.urandom(2 * C)  # exactly two full chunks
    path = tmp_path / f"{PACKET}-ff"
    seal(path, data, key)
    raw = path.read_bytes()
    header_len = len(read_header(io.BytesIO(raw))[0])  # type: ignore[index]
    first_chunk = raw[header_len:header_len + C + TAG]
    path.write_bytes(raw + first_chunk)
    with pytest.raises(BlobCorrupt):
        read_all(path, key)


def test_reordered_chunks_are_detected(tmp_path: Path) -> None:
    key, data = new_data_key(), os.urandom(3 * C)
    path = tmp_path / f"{PACKET}-gg"
    seal(path, data, key)
    raw = path.read_bytes()
    h = len(read_header(io.BytesIO(raw))[0])  # type: ignore[index]
    s = C + TAG
    swapped = raw[:h] + raw[h + s:h + 2 * s] + raw[h:h + s] + raw[h + 2 * s:]
    path.write_bytes(swapped)
    with open_blob(path, key) as fh, pytest.raises(BlobCorrupt, match="chunk 0"):
        fh.read(1)


def test_chunks_swapped_between_blobs_of_one_packet_are_detected(tmp_path: Path) -> None:
    """Same data key (one packet), two files: each has its own file key, so chunks do not move."""
    key = new_data_key()
    a, b = tmp_path / f"{PACKET}-aa11", tmp_path / f"{PACKET}-bb22"
    seal(a, os.urandom(2 * C), key)
    seal(b, os.urandom(2 * C), key)
    ra, rb = a.read_bytes(), b.read_bytes()
    h = len(read_header(io.BytesIO(ra))[0])  # type: ignore[index]
    a.write_bytes(ra[:h] + rb[h:h + C + TAG] + ra[h + C + TAG:])
    with pytest.raises(BlobCorrupt):
        read_all(a, key)


def test_a_blob_renamed_onto_another_name_is_refused(tmp_path: Path) -> None:
    key = new_data_key()
    src = tmp_path / f"{PACKET}-aa11"
    seal(src, b"noi dung", key)
    moved = tmp_path / f"{PACKET}-bb22"
    shutil.copy(src, moved)
    with pytest.raises(BlobCorrupt, match="holds blob"):
        read_all(moved, key)


def test_wrong_or_destroyed_key(tmp_path: Path) -> None:
    path = tmp_path / f"{PACKET}-aa"
    seal(path, b"x" * 100, new_data_key())
    with pytest.raises(BlobCorrupt):
        read_all(path, new_data_key())
    with pytest.raises(BlobKeyGone):
        read_all(path, None)


def test_plain_files_from_before_are_read_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / f"{PACKET}-aa"
    path.write_bytes(b"written before encryption at rest")
    with open_blob(path, None) as fh:
        assert not isinstance(fh, DecryptingReader)
        assert fh.read() == b"written before encryption at rest"
    assert plain_size(path) == len(b"written before encryption at rest")


def test_the_hub_uses_the_fixed_chunk_size() -> None:
    assert CHUNK_SIZE == 64 * 1024


# -- the hub --------------------------------------------------------------------------------------

def stored_files(hub: Hub) -> list[Path]:
    return sorted(p for p in hub.blobs.objects.rglob("*") if p.is_file())


async def read_with_store(hub: Hub, path: Path) -> bytes:
    """Read a blob file the way the hub does: its data key from the store, unsealed with the master key."""
    fh = await hub.blobs.open_path(path)
    try:
        return await asyncio.to_thread(fh.read)
    finally:
        fh.close()


async def get(url: URL, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()



async def _read_stored(hub: Hub, readable: Readable, size: int) -> bytes:
    """The plaintext of a stored blob, opened with the data key read with its packet."""
    assert readable.data_key is not None
    fh = await hub.content.open_stored(readable.path, size=size, data_key=readable.data_key)
    try:
        return await asyncio.to_thread(fh.read)
    finally:
        fh.close()

async def test_blob_on_disk_holds_no_plaintext_and_range_downloads_work(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(200_000) + b"VAN BAN MAT " * 1000
    packet_id = await a.client.send(content, [b.unit], subject="Mật")
    (path,) = stored_files(hub)
    raw = path.read_bytes()
    assert raw.startswith(b"LGSPBLB1") and b"VAN BAN MAT" not in raw and content[:1000] not in raw
    url = URL((await b.client.ready(packet_id))["url"], encoded=True)
    ck = CHUNK_SIZE
    for rng, first, last in [("bytes=0-0", 0, 0), (f"bytes={ck - 1}-{ck}", ck - 1, ck),
                             (f"bytes={ck}-{2 * ck - 1}", ck, 2 * ck - 1), (f"bytes={3 * ck - 3}-", 3 * ck - 3,
                                                                             len(content) - 1),
                             ("bytes=-5", len(content) - 5, len(content) - 1),
                             (f"bytes=10-{10 * len(content)}", 10, len(content) - 1)]:
        headers = b.client.signed_headers("GET", url)
        headers["Range"] = rng
        status, got_headers, body = await get(url, headers)
        assert status == 206, rng
        assert got_headers["Content-Range"] == f"bytes {first}-{last}/{len(content)}"
        assert body == content[first:last + 1]
    status, got_headers, body = await get(url, b.client.signed_headers("GET", url))
    assert status == 200 and body == content
    assert got_headers["X-LGSP-Content-SHA256"] == hashlib.sha256(content).hexdigest()
    headers = b.client.signed_headers("GET", url)
    headers["Range"] = f"bytes={len(content)}-"
    status, _, body = await get(url, headers)
    assert status == 416


async def test_tampered_blob_is_never_served(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(3 * CHUNK_SIZE)
    packet_id = await a.client.send(content, [b.unit], subject="s")
    (path,) = stored_files(hub)
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0x40  # inside chunk 0
    path.write_bytes(bytes(raw))
    url = URL((await b.client.ready(packet_id))["url"], encoded=True)
    status, _, body = await get(url, b.client.signed_headers("GET", url))
    assert status == 500 and b"internal" in body
    # Truncated by a whole chunk: refused before a byte is sent (the size no longer matches).
    path.write_bytes(bytes(raw[:-(CHUNK_SIZE + TAG)]))
    h = b.client.signed_headers("GET", url)
    h["Range"] = "bytes=0-99"
    status, _, body = await get(url, h)
    assert status == 500 and "toàn vẹn".encode() in body  # "failed its integrity check", in the default language


async def test_resumed_upload_after_a_cut_connection(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(3 << 20)
    sha = hashlib.sha256(content).hexdigest()
    created = await a.client.create_packet([b.unit], subject="Bị ngắt", size=len(content), sha256=sha)
    url = URL(created["upload"]["url"], encoded=True)
    headers = a.client.signed_headers("PUT", url, sha)
    headers["Content-Length"] = str(len(content))
    _, writer = await asyncio.open_connection(url.host, url.port)
    head = f"PUT {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + content[:(2 << 20)])
    await writer.drain()
    # While it is cut off half-way, what sits in tmp/ is sealed too (a partial upload is content).
    for _ in range(200):
        parts = list(hub.blobs.tmp.glob("*.part"))
        if parts and parts[0].stat().st_size > (1 << 20):
            break
        await asyncio.sleep(0.02)
    assert parts and parts[0].read_bytes()[:8] == b"LGSPBLB1"
    assert content[(1 << 20):(1 << 20) + 4096] not in parts[0].read_bytes()
    writer.close()
    await writer.wait_closed()
    for _ in range(200):
        if not list(hub.blobs.tmp.glob("*.part")):
            break
        await asyncio.sleep(0.02)
    # The source uploads again, with the same packet and data key.
    await a.client.upload(created["upload"]["url"], content, sha)
    assert await b.client.fetch_bytes(created["id"]) == content


async def test_purge_destroys_the_data_key_so_an_earlier_copy_is_unreadable(make_actor: MakeActor, hub: Hub,
                                                                            tmp_path: Path) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = b"bi mat " * 10_000
    packet_id = await a.client.send(content, [b.unit], subject="s")
    (path,) = stored_files(hub)
    backup = tmp_path / "backup" / path.name
    backup.parent.mkdir()
    shutil.copy(path, backup)  # a disk copy or backup taken before delivery
    async with hub.db.read() as conn:
        assert await conn.scalar(select(content_keys.c.key_id).where(content_keys.c.key_id == packet_id))
    assert await read_with_store(hub, backup) == content
    data = await b.client.fetch_bytes(packet_id)
    await b.client.ack(packet_id, hashlib.sha256(data).hexdigest())
    assert stored_files(hub) == []
    async with hub.db.read() as conn:
        assert await conn.scalar(select(content_keys.c.key_id).where(content_keys.c.key_id == packet_id)) is None
    assert await hub.blobs.data_key(path.name) is None
    with pytest.raises(BlobKeyGone):
        await read_with_store(hub, backup)
    assert content[:100] not in backup.read_bytes()


async def test_blobs_written_before_encryption_stay_readable(tmp_path: Path, make_actor: MakeActor) -> None:
    """A hub run with encryption off (as before it existed), then on: old content is still served."""
    env = base_env(tmp_path / "var")
    cfg_plain = load_config(None, env={**env, "LGSP_BLOBS_ENCRYPT": "false"})
    async with Hub(cfg_plain) as plain:
        a_key = await _unit_with_key(plain, "000.00.00.H23")
        b_key = await _unit_with_key(plain, "000.00.01.H23")
        a = LgspClient(Credentials(plain.url, a_key.access_key, "HMAC-SHA256", secret=a_key.secret))
        try:
            content = b"truoc khi ma hoa " * 5000
            packet_id = await a.send(content, ["000.00.01.H23"], subject="cũ")
        finally:
            await a.close()
        (path,) = stored_files(plain)
        assert content[:200] in path.read_bytes()
    async with Hub(load_config(None, env=env)) as hub:
        b = LgspClient(Credentials(hub.url, b_key.access_key, "HMAC-SHA256", secret=b_key.secret))
        try:
            assert await b.fetch_bytes(packet_id) == content
            # A new packet on the same hub is sealed.
            back = await b.send(b"moi " * 1000, ["000.00.00.H23"], subject="mới")
        finally:
            await b.close()
        new = await stored_bytes(hub, (await blob_of(hub, back)).name)  # small: kept in the store
        assert new is not None and new.startswith(b"LGSPBLB1") and b"moi moi" not in new


async def _unit_with_key(hub: Hub, unit: str) -> IssuedKey:
    await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    app = await hub.directory.add_application(unit, "app")
    return await hub.directory.issue_key(app.id, "HMAC-SHA256")


async def test_damage_found_after_the_headers_went_cuts_the_download(make_actor: MakeActor, hub: Hub) -> None:
    """A chunk that fails once the 200 is on its way: the body stops short, never with wrong bytes."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(3 << 20)
    packet_id = await a.client.send(content, [b.unit], subject="s")
    (path,) = stored_files(hub)
    raw = bytearray(path.read_bytes())
    raw[-(CHUNK_SIZE // 2)] ^= 1  # inside the last chunk, well after the first 1 MiB block
    path.write_bytes(bytes(raw))
    url = URL((await b.client.ready(packet_id))["url"], encoded=True)
    got = bytearray()

    async def read_body(resp: aiohttp.ClientResponse) -> None:
        async for block in resp.content.iter_chunked(1 << 16):
            got.extend(block)

    async with aiohttp.ClientSession() as http, http.get(url, headers=b.client.signed_headers("GET", url)) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_body(resp)
    assert len(got) < len(content) and bytes(got) == content[:len(got)]


def test_a_spooled_request_body_is_sealed_under_a_key_only_its_object_holds(tmp_path: Path) -> None:
    """SOAP and VXP bodies spooled before their packet exists (no data key yet) are not in clear."""
    from lgsp.core.store.blobcrypt import SealedSpool

    body = b"<edXML>noi dung mat</edXML>" * 5000
    spool = SealedSpool(tmp_path / "soap-1.part")
    spool.write(body[:1000])
    spool.write(body[1000:])
    spool.close()
    raw = spool.path.read_bytes()
    assert b"noi dung mat" not in raw and raw.startswith(b"LGSPBLB1")
    with spool.open() as fh:
        assert fh.read() == body
    spool.path.unlink()
    other = SealedSpool(tmp_path / "soap-1.part")  # another request, same name, its own key
    other.close()
    other.path.write_bytes(raw)  # the first body's bytes under the second's name
    with pytest.raises(BlobCorrupt, match="does not authenticate"):
        other.open().read()


async def test_one_data_key_per_packet_even_when_writers_race(hub: Hub) -> None:
    keys = hub.blobs.keys
    assert keys is not None
    packet = "3f2b8c1e-0000-4000-8000-0000000000bb"
    first, second = await asyncio.gather(keys.get_or_create(packet), keys.get_or_create(packet))
    assert first == second == await keys.get_or_create(packet) == await keys.get(packet)
    async with hub.db.read() as conn:
        sealed = await conn.scalar(select(content_keys.c.sealed).where(content_keys.c.key_id == packet))
    assert first not in bytes(sealed)  # stored sealed, never as is


async def test_the_data_key_is_made_with_the_packet_and_goes_when_it_ends_unfilled(make_actor: MakeActor,
                                                                                  hub: Hub) -> None:
    """The packet's creation makes its data key (in the same transaction: the upload needs no write
    of its own and finds the key); a packet whose deliveries are all cancelled before any upload
    loses its key with its completion."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = b"khoa theo goi " * 100
    sha = hashlib.sha256(content).hexdigest()

    async def key_of(packet_id: str) -> bytes | None:
        async with hub.db.read() as conn:
            return await conn.scalar(select(content_keys.c.sealed).where(content_keys.c.key_id == packet_id))

    created = await a.client.create_packet([b.unit], subject="s", size=len(content), sha256=sha)
    made = await key_of(created["id"])
    assert made is not None  # before any upload
    await a.client.upload(created["upload"]["url"], content, sha)
    assert await key_of(created["id"]) == made  # the upload used the key made with the packet
    path = await blob_of(hub, created["id"])
    hub.blobs.cache.clear()  # read from where it is stored (a small upload: the store), not memory
    assert await read_with_store(hub, path) == content

    unfilled = await a.client.create_packet([b.unit], subject="s", size=len(content), sha256=sha)
    assert await key_of(unfilled["id"]) is not None
    cancelled = await a.client.cancel(unfilled["id"])
    assert cancelled["state"] == "completed"
    assert await key_of(unfilled["id"]) is None


def content_key_reads(seen: list[str]) -> list[str]:
    """The statements (of `statements`) that read the `content_keys` table directly, not joined."""
    return [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM CONTENT_KEYS" in s.upper()]


async def test_the_upload_and_the_download_read_the_data_key_with_the_packet(make_actor: MakeActor,
                                                                             hub: Hub) -> None:
    """The statement that loads the packet for an upload or a download also reads its sealed data
    key: neither sends a statement of its own for it, and the content is sealed and opened with it."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(10_240)
    sha = hashlib.sha256(content).hexdigest()
    created = await a.client.create_packet([b.unit], subject="s", size=len(content), sha256=sha)
    with statements(hub) as seen:
        await a.client.upload(created["upload"]["url"], content, sha)
        assert content_key_reads(seen) == []
        path = await blob_of(hub, created["id"])
        stored = await stored_bytes(hub, path.name)
        assert stored is not None and stored[:8] == b"LGSPBLB1" and content[:64] not in stored
        assert await b.client.fetch_bytes(created["id"]) == content
        assert content_key_reads(seen) == []
        # The national axis' and SOAP's readers too (the blob opened with the key read with the packet).
        readable = await hub.exchange.open_content(principal_of(b), created["id"], peek=True)
        assert readable.data_key is not None
        assert await _read_stored(hub, readable, len(content)) == content
        opener = await hub.content.opener(readable.path, data_key=readable.data_key)
        assert await asyncio.to_thread(lambda: opener().read()) == content  # opened in a worker thread
        assert content_key_reads(seen) == []
    assert await read_with_store(hub, path) == content  # the key as stored opens it too


async def test_without_a_data_key_the_upload_makes_one_and_the_download_is_refused(make_actor: MakeActor,
                                                                                  hub: Hub) -> None:
    """A packet created before keys were made with packets has none: its upload makes it (as it did).
    A packet whose key is destroyed is refused as gone, whether its key was read with the packet or not."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = b"khong co khoa " * 700
    sha = hashlib.sha256(content).hexdigest()
    created = await a.client.create_packet([b.unit], subject="s", size=len(content), sha256=sha)
    async with hub.db.write() as conn:
        await conn.execute(delete(content_keys).where(content_keys.c.key_id == created["id"]))
    await a.client.upload(created["upload"]["url"], content, sha)
    async with hub.db.read() as conn:
        assert await conn.scalar(select(content_keys.c.sealed).where(content_keys.c.key_id == created["id"]))
    assert await b.client.fetch_bytes(created["id"]) == content
    async with hub.db.write() as conn:  # destroyed (as a purge does) while the delivery is still open
        await conn.execute(delete(content_keys).where(content_keys.c.key_id == created["id"]))
    url = URL((await b.client.ready(created["id"]))["url"], encoded=True)
    status, _, body = await get(url, b.client.signed_headers("GET", url))
    assert status == 410 and b"content.gone" in body
    readable = await hub.exchange.open_content(principal_of(b), created["id"], peek=True)
    assert readable.data_key is not None and await readable.data_key() is None
    with pytest.raises(BlobKeyGone):
        await hub.content.open_stored(readable.path, data_key=readable.data_key)


async def test_a_data_key_read_before_a_rotation_retired_its_master_key_still_opens(make_actor: MakeActor,
                                                                                   hub: Hub) -> None:
    """A download or upload holds its packet's data key sealed from the load to the read: if a rotation
    re-sealed it and retired the old master key in between, the stored value is read again."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(5000)
    packet_id = await a.client.send(content, [b.unit], subject="s")
    readable = await hub.exchange.open_content(principal_of(b), packet_id, peek=True)
    key = hub.master_key
    key.new_primary()
    await reseal_all(hub.db, key)
    key.retire_older()
    assert await _read_stored(hub, readable, len(content)) == content


def principal_of(actor: Actor) -> Principal:
    """The principal the hub makes of the actor's signed requests."""
    return Principal(actor.unit, actor.key.application_id, actor.key.access_key, actor.key.algorithm)
