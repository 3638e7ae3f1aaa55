"""Where a test finds a stored blob, whichever way the hub keeps it: a file in the blob store, or
(a small upload, `blobs.inline_bytes`) a row of `inline_blobs` written with its acceptance."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, select, update

from lgsp.core.store.blobs import key_id_of
from lgsp.core.store.tables import inline_blobs


def _row(key: str) -> Any:
    return (inline_blobs.c.key_id == key_id_of(key)) & (inline_blobs.c.blob_key == key)


async def kept_inline(hub: Any, key: str) -> bytes | None:
    """The sealed bytes the store keeps for blob `key` (None: not kept in the store)."""
    async with hub.db.read() as conn:
        row = (await conn.execute(select(inline_blobs.c.content).where(_row(key)))).first()
    return None if row is None else bytes(row.content)


async def inline_count(hub: Any) -> int:
    """How many blobs the store keeps (every packet's)."""
    async with hub.db.read() as conn:
        return len((await conn.execute(select(inline_blobs.c.blob_key))).all())


async def stored_bytes(hub: Any, key: str) -> bytes | None:
    """What is stored for blob `key`, as written (sealed): its file's bytes, else its row's; None: neither."""
    path = hub.blobs.path(key)
    if path.is_file():
        return path.read_bytes()
    return await kept_inline(hub, key)


async def replace_stored(hub: Any, key: str, data: bytes) -> None:
    """Put `data` where blob `key` is stored (a damaged copy), and forget what memory holds of it."""
    hub.blobs.cache.evict(key)
    path = hub.blobs.path(key)
    if path.is_file():
        path.write_bytes(data)
        return
    async with hub.db.write() as conn:
        done = await conn.execute(update(inline_blobs).where(_row(key)).values(content=data))
    assert done.rowcount == 1, f"blob {key} is stored nowhere"


async def lose_stored(hub: Any, key: str) -> None:
    """Blob `key` disappears from where it is stored (and from memory), as a purge would leave it."""
    hub.blobs.cache.evict(key)
    path = hub.blobs.path(key)
    if path.is_file():
        path.unlink()
        return
    async with hub.db.write() as conn:
        done = await conn.execute(delete(inline_blobs).where(_row(key)))
    assert done.rowcount == 1, f"blob {key} is stored nowhere"


async def stored_count(hub: Any) -> int:
    """How many blobs hold content, in files and in the store (processes' `.owner` files hold none)."""
    files = [p for p in hub.blobs.objects.rglob("*") if p.is_file()]
    return len(files) + await inline_count(hub)


def larger_than_inline(hub: Any, unit: bytes) -> bytes:
    """`unit` repeated past `blobs.inline_bytes`: content the hub keeps in a file."""
    return unit * (hub.config.blobs.inline_bytes // len(unit) + 1)


async def blob_of(hub: Any, packet_id: str) -> Any:
    """Where packet `packet_id`'s accepted upload is read from (a file's path, whether or not there
    is a file: a small upload kept in the store is read by the same path)."""
    info = await hub.exchange.packet(packet_id)
    assert info is not None and info.blob_key, f"packet {packet_id} holds no content"
    return hub.blobs.path(info.blob_key)


async def inline_keys(hub: Any, packet_id: str) -> list[str]:
    """The blobs of packet `packet_id` the store keeps."""
    async with hub.db.read() as conn:
        return list((await conn.execute(select(inline_blobs.c.blob_key).where(
            inline_blobs.c.key_id == packet_id))).scalars())


async def upload_counting_hand_offs(source: Any, destination: str, content: bytes) -> tuple[dict[str, Any], Any]:
    """Create a packet from `source` (an Actor) to `destination` and upload `content`, counting the
    worker-thread hand-offs of the upload alone: (the created packet, the hand-offs by function)."""
    from bench.statements import counting_hand_offs

    sha = hashlib.sha256(content).hexdigest()
    created = await source.client.create_packet([destination], subject="nhỏ", size=len(content), sha256=sha)
    with counting_hand_offs() as seen:
        answer = await source.client.upload(created["upload"]["url"], content, sha)
    assert answer["state"] == "accepted"
    return created, seen
