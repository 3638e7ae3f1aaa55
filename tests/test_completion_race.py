"""The last two deliveries of a packet ending at the same moment, on two nodes or two requests.

On PostgreSQL (READ COMMITTED) each transaction checks whether every delivery has ended while the
other's move is not yet committed: without an order between them, both saw the other delivery
still open and the packet stayed `accepted` with its content stored for ever (seen in the
three-node failover test). SQLite runs one write transaction at a time, so the race is PostgreSQL's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import and_, select

from lgsp.core import deliveries as dv
from lgsp.core.exchange.base import AfterCommit
from lgsp.core.hub import Hub
from lgsp.core.store.tables import deliveries, packet_events, packets

from .delivery.helpers import UNITS, add_units, base_config

SRC, A, B = UNITS[0], UNITS[1], UNITS[2]


async def test_two_last_deliveries_ending_together_complete_the_packet(pg_url: str, tmp_path: Path) -> None:
    cfg = base_config(tmp_path).replace(database={"url": pg_url})
    async with Hub(cfg) as hub:
        creds = await add_units(hub, [SRC, A, B])
        async with creds[SRC].client(hub.url) as src:
            pid = await src.send(b"hai noi nhan", [A, B], subject="Cùng lúc")
        async with hub.db.read() as conn:
            states = dict((await conn.execute(select(deliveries.c.unit_id, deliveries.c.state)
                                              .where(deliveries.c.packet_id == pid))).all())
        exchange = hub.exchange
        first_checked, release_first, second_checking = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def end(unit: str, *, first: bool) -> None:
            now = hub.clock()
            after = AfterCommit()
            async with hub.db.write() as conn:
                if not first:
                    await first_checked.wait()  # A's transaction has checked and not yet committed
                moved = await dv.move_rows(conn, pid, [unit], dv.DELIVERED, now, allowed_from=[states[unit]])
                assert len(moved) == 1
                if not first:
                    second_checking.set()
                await exchange._complete_if_done(conn, pid, now, after)
                if first:
                    first_checked.set()
                    await release_first.wait()

        first = asyncio.create_task(end(A, first=True))
        second = asyncio.create_task(end(B, first=False))
        await second_checking.wait()
        await asyncio.sleep(0.5)  # the second check runs now, or waits for the first to commit
        release_first.set()
        await asyncio.wait_for(asyncio.gather(first, second), 20)
        async with hub.db.read() as conn:
            row = (await conn.execute(select(packets.c.state, packets.c.content_state)
                                      .where(packets.c.id == pid))).one()
        assert (row.state, row.content_state) == ("completed", "purged")


async def _repair(hub: Hub) -> None:
    creds = await add_units(hub, [SRC, A, B])
    async with creds[SRC].client(hub.url) as src:
        stuck = await src.send(b"bi bo quen", [A, B], subject="Bị bỏ quên")
        waiting = await src.send(b"con cho", [A, B], subject="Còn chờ")
    now = hub.clock()
    async with hub.db.write() as conn:  # what the race left: every delivery ended, the packet not completed
        for unit in (A, B):
            await dv.move_rows(conn, stuck, [unit], dv.DELIVERED, now, allowed_from=sorted(dv.ACTIVE))
        await dv.move_rows(conn, waiting, [A], dv.DELIVERED, now, allowed_from=sorted(dv.ACTIVE))
    assert await hub.exchange.complete_finished() == 1
    async with hub.db.read() as conn:
        rows = dict((await conn.execute(select(packets.c.id, packets.c.state)
                                        .where(packets.c.id.in_([stuck, waiting])))).all())
        completed = await conn.scalar(select(packet_events.c.id).where(and_(
            packet_events.c.packet_id == stuck, packet_events.c.type == "packet.completed")))
    assert rows == {stuck: "completed", waiting: "accepted"}  # one delivery of `waiting` is still open
    assert completed is not None
    assert not [p for p in (hub.config.data_dir / "blobs" / "objects").rglob(f"{stuck}*") if p.is_file()]
    assert await hub.exchange.complete_finished() == 0  # nothing twice


async def test_housekeeping_completes_a_packet_left_incomplete_sqlite(tmp_path: Path) -> None:
    async with Hub(base_config(tmp_path)) as hub:
        await _repair(hub)


async def test_housekeeping_completes_a_packet_left_incomplete_postgresql(pg_url: str, tmp_path: Path) -> None:
    async with Hub(base_config(tmp_path).replace(database={"url": pg_url})) as hub:
        await _repair(hub)
