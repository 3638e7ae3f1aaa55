"""`Database.single_node`: a periodic job's round runs on one node at a time (PostgreSQL advisory
lock), and always on SQLite (one node)."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from lgsp.core.store.database import Database


async def test_two_nodes_never_hold_the_same_job_at_once(pg_url: str) -> None:
    first, second = Database(pg_url), Database(pg_url)
    try:
        async with first.single_node("national_axis:poll") as mine:
            assert mine
            async with second.single_node("national_axis:poll") as theirs:
                assert not theirs  # the other node skips this round
            async with second.single_node("national_axis:track") as other_job:
                assert other_job  # another job is not held up
        async with second.single_node("national_axis:poll") as theirs:
            assert theirs  # released when the round ends
        try:
            async with first.single_node("national_axis:poll") as mine:
                assert mine
                raise RuntimeError("the round failed")
        except RuntimeError:
            pass
        async with second.single_node("national_axis:poll") as theirs:
            assert theirs  # released after a failed round too
    finally:
        await first.close()
        await second.close()


async def test_sqlite_is_one_node(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'lgsp.db'}")
    try:
        async with db.single_node("x") as a, db.single_node("x") as b:
            assert a and b
    finally:
        await db.close()


async def _pool_timeouts(db: Database, n: int) -> list[str]:
    """`idle_session_timeout` on n connections of the pool at once (so every pooled one is seen)."""
    conns = [await db.writer.connect() for _ in range(n)]
    try:
        return [str(await c.scalar(text("SHOW idle_session_timeout"))) for c in conns]
    finally:
        for c in conns:
            await c.close()


async def test_a_silent_holder_loses_the_job_after_its_lease(pg_url: str) -> None:
    """A node that stops running in the middle of a round (its keeper falls silent, as a frozen
    process's does) loses the job's lock when the lease runs out; another node runs the next round,
    and the woken node learns it lost the lock instead of going on as if it held it."""
    first, second = Database(pg_url, pool_size=1), Database(pg_url, pool_size=1)
    try:
        async with first.single_node("sftp-inbound:x", lease_seconds=1.0, ping_seconds=0.2) as mine:
            assert mine
            await asyncio.sleep(1.5)  # the keeper speaks: a running holder keeps the lock past its lease
            assert await mine.confirm()
            async with second.single_node("sftp-inbound:x") as theirs:
                assert not theirs
            assert mine._keeper is not None
            mine._keeper.cancel()  # from now on silent, as a frozen process is
            started = time.monotonic()
            while True:
                async with second.single_node("sftp-inbound:x") as theirs:
                    if theirs:
                        break
                assert time.monotonic() - started < 10, "the lock outlived the silent holder's lease"
                await asyncio.sleep(0.2)
            assert time.monotonic() - started < 5
            assert not await mine.confirm()  # woken: the round must not go on as if it held the lock
            assert not mine and mine.lost
        # Leaving the block after the loss raises nothing, and the pool gives working connections.
        assert await _pool_timeouts(first, 2) == ["0", "0"]
    finally:
        await first.close()
        await second.close()


async def test_a_running_holder_keeps_the_job_through_a_long_round(pg_url: str) -> None:
    db, other = Database(pg_url), Database(pg_url)
    try:
        async with db.single_node("national_axis:poll", lease_seconds=1.0, ping_seconds=0.2) as mine:
            await asyncio.sleep(3.0)  # three leases long
            assert await mine.confirm()
            async with other.single_node("national_axis:poll") as theirs:
                assert not theirs
    finally:
        await db.close()
        await other.close()


async def test_pooled_connections_carry_no_lease(pg_url: str) -> None:
    """The lease is on the holder's session only while it holds the lock: neither the holder's
    connection after the round nor a node that did not get the lock keeps it, so an idle pooled
    connection is never ended by the server."""
    holder, other = Database(pg_url, pool_size=1), Database(pg_url, pool_size=1)
    try:
        async with holder.single_node("peer:track", lease_seconds=1.0, ping_seconds=0.2) as mine:
            assert mine
            async with other.single_node("peer:track", lease_seconds=1.0) as theirs:
                assert not theirs
        await asyncio.sleep(1.5)  # longer than the lease: a connection that kept it would be ended now
        assert await _pool_timeouts(holder, 2) == ["0", "0"]
        assert await _pool_timeouts(other, 2) == ["0", "0"]
    finally:
        await holder.close()
        await other.close()


async def test_a_write_transaction_left_idle_is_ended_and_its_locks_freed(pg_url: str) -> None:
    """A node frozen inside a write transaction would hold its row locks until it ran again: the
    server ends the idle transaction (the hub's never waits on anything but its statements), the
    other node's write goes through, and the frozen one's commit fails instead of half-applying."""
    frozen, other = Database(pg_url, pool_size=1, idle_in_transaction_ms=500), Database(pg_url, pool_size=1)
    table = f"idle_tx_{secrets.token_hex(4)}"
    try:
        async with other.write() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)"))
            await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'before')"))
        async def frozen_writer() -> None:
            async with frozen.write() as conn:
                await conn.execute(text(f"UPDATE {table} SET v = 'frozen' WHERE id = 1"))  # row locked
                await asyncio.sleep(1.0)  # silent inside the transaction
                async with asyncio.timeout(5):  # the row is free again: not blocked behind the frozen node
                    async with other.write() as mine:
                        await mine.execute(text(f"UPDATE {table} SET v = 'other' WHERE id = 1"))
                await conn.execute(text("SELECT 1"))

        with pytest.raises(sqlalchemy.exc.DBAPIError):
            await frozen_writer()
        async with other.read() as conn:
            assert await conn.scalar(text(f"SELECT v FROM {table} WHERE id = 1")) == "other"
    finally:
        async with other.write() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await frozen.close()
        await other.close()
