"""Small uploads kept in the store (`blobs.inline_bytes`, core/store/inline_blobs.py): no file is
written, the sealed bytes are committed with the acceptance, every reader still finds them (from
memory on the node that took them, from the store elsewhere and after a restart), and the purge
takes them with the packet's data key."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from lgsp.client.client import Credentials, LgspClient
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub
from lgsp.core.store.blobcrypt import MAGIC, BlobCorrupt
from lgsp.core.store.tables import content_keys
from tests.blob_support import (
    inline_count,
    inline_keys,
    kept_inline,
    lose_stored,
    replace_stored,
    upload_counting_hand_offs,
)

from .conftest import Actor, MakeActor, base_env

BLOB_MODULES = ("lgsp.core.store.blobs", "lgsp.core.store.blobcrypt", "lgsp.core.downloads", "io:")


def files_of(hub: Hub) -> list[Path]:
    return [p for p in hub.blobs.objects.rglob("*") if p.is_file()]


async def _pair(make_actor: MakeActor) -> tuple[Actor, Actor]:
    return await make_actor("000.00.00.H23"), await make_actor("000.00.01.H23")


async def test_a_small_upload_is_kept_with_its_acceptance_served_and_purged_with_its_key(
        make_actor: MakeActor, hub: Hub) -> None:
    a, b = await _pair(make_actor)
    content = os.urandom(10_240)
    sha = hashlib.sha256(content).hexdigest()
    created, seen = await upload_counting_hand_offs(a, b.unit, content)
    assert not [k for k in seen if k.startswith(BLOB_MODULES) and "BlobWriter" in k], seen  # no file work
    assert files_of(hub) == []
    (key,) = await inline_keys(hub, created["id"])
    sealed = await kept_inline(hub, key)
    assert sealed is not None and sealed.startswith(MAGIC) and content[:64] not in sealed  # never plaintext
    assert hub.blobs.cache.get(key) == sealed  # this node serves it from memory

    assert await b.client.fetch_bytes(created["id"]) == content
    hub.blobs.cache.clear()  # as another node, or after the cache let it go: read from the store
    status, headers, body = await b.raw("GET", f"/v1/packets/{created['id']}/content",
                                        headers={"Range": "bytes=100-199"})
    assert (status, body, headers["Content-Range"]) == (206, content[100:200], f"bytes 100-199/{len(content)}")
    assert await hub.blobs.size_of(key) == len(content)
    assert await hub.content.holds(hub.blobs.path(key))

    assert await b.client.ack(created["id"], sha) == "delivered"
    assert await inline_count(hub) == 0  # the purge deleted the data key, the cascade the row
    async with hub.db.read() as conn:
        assert (await conn.execute(select(content_keys.c.key_id))).all() == []
    assert not await hub.content.holds(hub.blobs.path(key))
    status, _, problem = await b.raw("GET", f"/v1/packets/{created['id']}/content")
    assert (status, problem["code"]) == (410, "content.gone"), problem


async def test_content_above_the_bound_goes_to_a_file_and_nothing_is_kept(make_actor: MakeActor, hub: Hub) -> None:
    a, b = await _pair(make_actor)
    content = os.urandom(hub.config.blobs.inline_bytes + 1)
    packet_id = await a.client.send(content, [b.unit], subject="lớn")
    assert await inline_count(hub) == 0
    (path,) = files_of(hub)
    assert path.name.startswith(packet_id)
    assert await b.client.fetch_bytes(packet_id) == content
    at_bound = os.urandom(hub.config.blobs.inline_bytes)
    kept = await a.client.send(at_bound, [b.unit], subject="đúng ngưỡng")
    assert len(await inline_keys(hub, kept)) == 1 and len(files_of(hub)) == 1
    assert await b.client.fetch_bytes(kept) == at_bound


async def test_a_cancelled_packet_takes_its_kept_content_with_it(make_actor: MakeActor, hub: Hub) -> None:
    a, b = await _pair(make_actor)
    packet_id = await a.client.send(b"huy goi " * 100, [b.unit], subject="hủy")
    assert len(await inline_keys(hub, packet_id)) == 1
    assert (await a.client.cancel(packet_id))["state"] == "completed"
    assert await inline_keys(hub, packet_id) == []


async def test_tampered_kept_content_is_never_served(make_actor: MakeActor, hub: Hub) -> None:
    a, b = await _pair(make_actor)
    packet_id = await a.client.send(os.urandom(4_000), [b.unit], subject="sửa")
    (key,) = await inline_keys(hub, packet_id)
    sealed = await kept_inline(hub, key)
    assert sealed is not None
    await replace_stored(hub, key, sealed[:200] + bytes([sealed[200] ^ 1]) + sealed[201:])
    status, _, problem = await b.raw("GET", f"/v1/packets/{packet_id}/content")
    assert (status, problem["code"]) == (500, "internal"), problem
    fh = await hub.blobs.open_blob(key)  # from the store: the header is intact, the chunk is not
    with pytest.raises(BlobCorrupt):
        await asyncio.to_thread(fh.read)


async def test_a_reader_on_the_loop_itself_is_told_the_file_is_missing_not_blocked(
        make_actor: MakeActor, hub: Hub) -> None:
    """`open_sync` reaches the store through the event loop from a worker thread; on the loop's own
    thread it cannot wait for itself, so it answers as for a missing file instead of hanging."""
    a, b = await _pair(make_actor)
    packet_id = await a.client.send(b"tren vong lap", [b.unit], subject="vòng lặp")
    (key,) = await inline_keys(hub, packet_id)
    hub.blobs.cache.clear()
    data_key = await hub.blobs.data_key(key)
    with pytest.raises(FileNotFoundError):
        hub.blobs.open_sync(hub.blobs.path(key), data_key)
    fh = await asyncio.to_thread(hub.blobs.open_sync, hub.blobs.path(key), data_key)
    assert fh.read() == b"tren vong lap"


async def test_kept_content_survives_a_restart_and_turning_the_bound_off(hub_config: Config, tmp_path: Path) -> None:
    content = os.urandom(20_000)
    async with Hub(hub_config) as first:
        units = ("000.00.00.H23", "000.00.01.H23")
        keys = []
        for unit in units:
            await first.directory.add_unit(unit, f"Đơn vị {unit}")
            app = await first.directory.add_application(unit, "app")
            keys.append(await first.directory.issue_key(app.id, "HMAC-SHA256"))
        async with LgspClient(Credentials(first.url, keys[0].access_key, "HMAC-SHA256", secret=keys[0].secret)) as a:
            packet_id = await a.send(content, [units[1]], subject="trước khi khởi động lại")
        assert len(await inline_keys(first, packet_id)) == 1
    off = load_config(None, env=base_env(hub_config.data_dir, LGSP_BLOBS_INLINE_BYTES="0"))
    async with Hub(off) as second:
        async with LgspClient(Credentials(second.url, keys[1].access_key, "HMAC-SHA256",
                                          secret=keys[1].secret)) as b:
            assert await b.fetch_bytes(packet_id) == content  # from the store: no file, nothing in memory
            back = await b.send(b"tra loi", [units[0]], subject="trả lời")
        assert await inline_keys(second, back) == []  # the bound is off: a file
        assert [p.name[:36] for p in files_of(second)] == [back]


@pytest.mark.parametrize("size", [4_000, 70_000])
async def test_content_lost_under_a_stored_packet_is_gone_not_an_error(make_actor: MakeActor, hub: Hub,
                                                                       size: int) -> None:
    """A packet still recorded as stored whose content is missing (its row or its file lost) is
    answered `410 content.gone` by the download itself, kept in the store or in a file alike."""
    a, b = await _pair(make_actor)
    packet_id = await a.client.send(os.urandom(size), [b.unit], subject="mất")
    info = await hub.exchange.packet(packet_id)
    assert info is not None and info.blob_key
    await lose_stored(hub, info.blob_key)
    for method in ("HEAD", "GET"):
        status, _, problem = await b.raw(method, f"/v1/packets/{packet_id}/content")
        assert status == 410, (method, status)
        if method == "GET":
            assert problem["code"] == "content.gone", problem
