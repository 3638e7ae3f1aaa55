"""Idempotent submissions (core/claims.py): one packet per (scope, key) within the window; a copy
whose first attempt failed, or arrives after the window, creates its own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from lgsp.core.claims import ClaimBusy, SubmitClaims
from lgsp.core.hub import Hub
from lgsp.core.store.tables import packets


@dataclass(frozen=True)
class Made:
    id: str


async def _packet(hub: Hub, packet_id: str, state: str = "accepted") -> Made:
    now = datetime.now(UTC)
    async with hub.db.write() as conn:
        await conn.execute(packets.insert().values(
            id=packet_id, source_unit="000.00.00.H45", subject="s", priority=0, data_type="pdf", size=1,
            sha256="0" * 64, state=state, content_state="stored", created_at=now, upload_expires_at=now))
    return Made(packet_id)


async def test_one_packet_per_key_and_a_failed_first_copy_frees_it(hub: Hub) -> None:
    await hub.directory.add_unit("000.00.00.H45", "UBND tỉnh")
    claims = SubmitClaims(hub.db, hub.clock)
    window = timedelta(minutes=10)

    async def refuse() -> Made:
        raise ValueError("content rejected")

    with pytest.raises(ValueError, match="content rejected"):
        await claims.once("t", "k", window, refuse)
    first = await claims.once("t", "k", window, lambda: _packet(hub, "p-1"))
    again = await claims.once("t", "k", window, lambda: _packet(hub, "p-2"))
    other = await claims.once("t", "k2", window, lambda: _packet(hub, "p-3"))
    assert (first, again, other) == (("p-1", True), ("p-1", False), ("p-3", True))


async def test_after_the_window_or_with_its_packet_expired_a_copy_creates_anew(hub: Hub) -> None:
    await hub.directory.add_unit("000.00.00.H45", "UBND tỉnh")
    now = [datetime.now(UTC)]
    claims = SubmitClaims(hub.db, lambda: now[0])
    window = timedelta(minutes=10)
    assert await claims.once("t", "k", window, lambda: _packet(hub, "p-1")) == ("p-1", True)
    now[0] += window + timedelta(seconds=1)
    assert await claims.once("t", "k", window, lambda: _packet(hub, "p-2")) == ("p-2", True)
    assert await claims.once("t", "e", window, lambda: _packet(hub, "p-3", state="expired")) == ("p-3", True)
    assert await claims.once("t", "e", window, lambda: _packet(hub, "p-4")) == ("p-4", True)


async def test_a_copy_waits_for_the_first_and_gives_up_after_its_wait(hub: Hub) -> None:
    await hub.directory.add_unit("000.00.00.H45", "UBND tỉnh")
    claims = SubmitClaims(hub.db, hub.clock)
    window = timedelta(minutes=10)
    release = asyncio.Event()

    async def slow() -> Made:
        await release.wait()
        return await _packet(hub, "p-1")

    first = asyncio.create_task(claims.once("t", "k", window, slow))
    await asyncio.sleep(0.1)
    with pytest.raises(ClaimBusy):
        await claims.once("t", "k", window, lambda: _packet(hub, "p-2"), wait=0.3)
    waiting = asyncio.create_task(claims.once("t", "k", window, lambda: _packet(hub, "p-3")))
    await asyncio.sleep(0.1)
    release.set()
    assert await first == ("p-1", True)
    assert await waiting == ("p-1", False)
