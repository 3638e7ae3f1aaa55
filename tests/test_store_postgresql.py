"""PostgreSQL store: what a read and a write send to the server, and connections the server ends.

The queries are seen through asyncpg's own query logger on the pooled connection (it sees BEGIN,
COMMIT, ROLLBACK and the pool's ping, which SQLAlchemy's cursor events do not).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, text

from lgsp.core.store.database import Database
from lgsp.core.store.tables import nodes

from .conftest import PG_ADMIN_URL


def _logged(driver: Any) -> list[str]:
    seen: list[str] = []
    driver.add_query_logger(lambda record: seen.append(record.query.strip().upper()))
    return seen


async def _driver(db: Database) -> Any:
    async with db.read() as conn:
        return (await conn.get_raw_connection()).driver_connection


def _row(node: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {"id": node, "host": "h", "pid": 1, "started_at": now, "heartbeat_at": now}


async def test_postgresql_read_sends_no_begin_rollback_or_ping(pg_url: str) -> None:
    db = Database(pg_url, pool_size=1)  # one connection, so every block below uses the one observed
    try:
        await db.upgrade()
        driver = await _driver(db)
        seen = _logged(driver)
        for _ in range(3):
            async with db.read() as conn:
                assert await conn.scalar(select(func.count()).select_from(nodes)) == 0
        assert seen == []  # the SELECTs run as prepared statements; nothing else was sent

        async with db.write() as conn:
            await conn.execute(nodes.insert().values(**_row("n1")))
            await conn.execute(nodes.insert().values(**_row("n2")))
        # asyncpg calls query loggers with `call_soon`: the COMMIT's entry comes at the loop's next
        # turn (the block's end no longer takes one: core/store/pg_direct.py closes without a task).
        await asyncio.sleep(0)
        # The write is still one transaction (its BEGIN names the server's default level once a
        # read has used the connection: SQLAlchemy puts the level back when the read returns it).
        assert [q.split()[0] for q in seen] == ["BEGIN", "COMMIT;"], seen
        assert seen[0] in ("BEGIN;", "BEGIN ISOLATION LEVEL READ COMMITTED;")

        # Each statement of a read sees what was committed when it started (no snapshot held): a
        # row committed between two statements of one read block shows in the second.
        other = Database(pg_url, pool_size=1)
        try:
            async with db.read() as conn:
                assert await conn.scalar(select(func.count()).select_from(nodes)) == 2
                async with other.write() as wconn:
                    await wconn.execute(nodes.insert().values(**_row("n3")))
                assert await conn.scalar(select(func.count()).select_from(nodes)) == 3
        finally:
            await other.close()
    finally:
        await db.close()


async def test_postgresql_write_after_a_read_on_the_same_connection_is_a_transaction(pg_url: str) -> None:
    """The read's autocommit stays with the read: the connection goes back to the pool
    transactional, so a write that fails after a read leaves nothing behind."""
    db = Database(pg_url, pool_size=1)
    try:
        await db.upgrade()
        async with db.read() as conn:
            await conn.scalar(text("SELECT 1"))

        async def failing_write() -> None:
            async with db.write() as conn:
                await conn.execute(nodes.insert().values(**_row("gone")))
                raise RuntimeError("fails after its first statement")

        with pytest.raises(RuntimeError):
            await failing_write()
        async with db.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(nodes)) == 0
        async with db.write() as conn:  # and the two statements of a write commit together
            assert await conn.scalar(text("SELECT now() = statement_timestamp()")) is not None
            first = await conn.scalar(text("SELECT now()"))
            await asyncio.sleep(0.01)
            assert await conn.scalar(text("SELECT now()")) == first
    finally:
        await db.close()


async def test_postgresql_connections_the_server_ended_are_replaced_without_an_error(pg_url: str) -> None:
    """No ping before each use: a pooled connection the server terminated (a restart, an
    administrator) is known closed, dropped at checkout and replaced; nobody sees an error."""
    import asyncpg

    db = Database(pg_url, pool_size=2)
    try:
        await db.upgrade()
        async with db.read() as a, db.read() as b:  # two pooled connections
            drivers = [(await c.get_raw_connection()).driver_connection for c in (a, b)]
            await a.scalar(text("SELECT 1"))
            await b.scalar(text("SELECT 1"))
        name = pg_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            ended = await admin.fetchval("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                                         "pg_stat_activity WHERE datname = $1) t", name)
        finally:
            await admin.close()
        assert ended >= 2
        for _ in range(200):
            if all(d.is_closed() for d in drivers):
                break
            await asyncio.sleep(0.01)
        assert all(d.is_closed() for d in drivers)
        async with db.read() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
        async with db.write() as conn:
            await conn.execute(nodes.insert().values(**_row("after")))
        async with db.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(nodes)) == 1
    finally:
        await db.close()
