"""The cluster's catch-up (core/cluster.py) on PostgreSQL: an event this node committed but has
not published yet is not "missed"; an event nobody published or announced is handed over once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from lgsp.core.cluster import ClusterEvents
from lgsp.core.events import Event, EventBus
from lgsp.core.store.database import Database
from lgsp.core.store.tables import packet_events

UNIT = "000.00.01.H23"


@pytest.fixture
async def node(pg_url: str) -> AsyncIterator[tuple[Database, EventBus, ClusterEvents]]:
    db = Database(pg_url, pool_size=2)
    await db.upgrade()
    bus = EventBus()
    cluster = ClusterEvents(db, bus, "node-a")
    await cluster.start()  # its own 3-second catch-up runs too; the test calls rounds itself
    try:
        yield db, bus, cluster
    finally:
        await cluster.stop()
        await db.close()


async def _commit_event(db: Database) -> Event:
    at = datetime.now(UTC)
    async with db.write() as conn:
        seq = await conn.scalar(packet_events.insert().returning(packet_events.c.id).values(
            packet_id=None, at=at, type="destination.offline", unit=UNIT, audience=UNIT, detail=None))
    return Event(int(seq), "destination.offline", None, at, UNIT, UNIT, None)


def _drain(queue: asyncio.Queue[Event | None]) -> list[int]:
    seqs = []
    while not queue.empty():
        event = queue.get_nowait()
        assert event is not None
        seqs.append(event.seq)
    return seqs


async def test_an_event_committed_here_and_published_late_reaches_a_stream_once(
        node: tuple[Database, EventBus, ClusterEvents]) -> None:
    db, bus, cluster = node
    sub = bus.subscribe(UNIT)
    event = await _commit_event(db)  # committed; its publish comes after the commit's follow-up

    async def publish_late() -> None:
        await asyncio.sleep(0.2)
        bus.publish([event])

    publisher = asyncio.create_task(publish_late())
    assert await cluster.catch_up_once(grace=1.0) == 0  # the catch-up read it before the publish
    await publisher
    assert _drain(sub.queue) == [event.seq]


async def test_an_event_nobody_published_is_handed_over_once(
        node: tuple[Database, EventBus, ClusterEvents]) -> None:
    db, bus, cluster = node
    sub = bus.subscribe(UNIT)
    event = await _commit_event(db)  # as if its node died between commit and publish
    assert await cluster.catch_up_once(grace=0.1) == 1
    assert await cluster.catch_up_once(grace=0.1) == 0
    assert _drain(sub.queue) == [event.seq]
