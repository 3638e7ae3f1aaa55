"""PostgreSQL statements sent straight to asyncpg (core/store/pg_direct.py): the same rows, types,
row counts, transactions and errors as SQLAlchemy's own path, and the hot path really takes it."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import auth
from lgsp.core.config import load_config
from lgsp.core.exchange import base
from lgsp.core.hub import Hub
from lgsp.core.store import pg_direct
from lgsp.core.store.database import Database
from lgsp.core.store.tables import clock_offsets, packets, units

from .conftest import PG_ADMIN_URL, base_env
from .test_statements import REPO, _pairs

sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package
from bench.exchange import PairWorker

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

_UNIT = insert(units)
_UNIT_BY_ID = select(units).where(units.c.id == bindparam("p_id"))
_PACKET_BY_ID = select(packets.c.id, packets.c.meta, packets.c.created_at, packets.c.size).where(
    packets.c.id == bindparam("p_id"))
_SEEN = update(units).where(units.c.id == bindparam("p_id")).values(
    clock_offset_seconds=bindparam("offset"), last_seen_at=bindparam("at"))
_NOW = select(func.now())


def _unit(unit_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": unit_id, "name": f"Đơn vị {unit_id}", "name_folded": unit_id.lower(), "zone": "local",
            "legacy": False, "status": "active", "created_at": NOW, "online": False, "stream_cursor": 0} | extra


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url, pool_size=2)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.close()


@contextmanager
def watching(db: Database) -> Iterator[list[str]]:
    """The statements SQLAlchemy sends to the driver (its cursor-execute event)."""
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.writer.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(db.writer.sync_engine, "before_cursor_execute", on_execute)


def _planned(statement: Any) -> bool:
    return any(plan is not None for plan in pg_direct._seen.get(statement, {}).values())


async def _twice(conn: AsyncConnection, statement: Any, params: dict[str, Any] | None = None) -> Any:
    """Execute so that the next execution is direct (the first sight only records a statement)."""
    await conn.execute(statement, params)
    return await conn.execute(statement, params)


async def test_the_exchange_statements_are_sent_direct(pg_url: str, tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url, LGSP_DATABASE_POOL_SIZE="4")
    async with Hub(load_config(None, env=env)) as hub:
        assert isinstance(hub.db.writer, pg_direct.DirectEngine)
        workers = [PairWorker(pair) for pair in await _pairs(hub, 2)]
        await asyncio.gather(*(worker.open() for worker in workers))
        try:
            data = b"direct to asyncpg"
            sha = hashlib.sha256(data).hexdigest()
            for _ in range(3):  # one exchange in flight per pair; a statement's second run is direct
                sent = await asyncio.gather(*(worker.send(data, sha) for worker in workers))
                await asyncio.wait_for(asyncio.gather(*(done for _, _, done in sent)), 60)
            assert not [e for worker in workers for e in worker.errors]
        finally:
            await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
    # The packet loads (with and without the data key): planned, so their later executions went
    # straight to asyncpg; and so were the acceptance and the completion, each one statement with the
    # rows it carries (built once per shape).
    for statement in (base._PACKET_WITH_DELIVERIES, base._PACKET_WITH_DELIVERIES_AND_KEY):
        assert _planned(statement), statement
    planned = [str(s.compile(dialect=postgresql.dialect())) for s in list(pg_direct._seen) if _planned(s)]
    for head in ("WITH accepted AS", "WITH done AS"):
        assert any(sql.startswith(head) for sql in planned), head
    # The nonce batch of one request (a multi-row INSERT … SELECT, one statement per batch size).
    assert _planned(auth._spend_statement("postgresql", 1))


async def test_rows_and_types_are_sqlalchemys(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1", clock_offset_seconds=1.5, last_seen_at=NOW))
        await conn.execute(insert(packets), {
            "id": "p1", "source_unit": "u1", "subject": "s", "priority": 0, "data_type": "d", "protocol": "p",
            "size": 7, "sha256": "0" * 64, "state": "created", "content_state": "none", "created_at": NOW,
            "upload_expires_at": NOW, "meta": {"k": ["v", 1]}})
    for statement, params in ((_UNIT_BY_ID, {"p_id": "u1"}), (_PACKET_BY_ID, {"p_id": "p1"})):
        async with db.read() as conn:
            direct = (await _twice(conn, statement, params)).all()
        assert _planned(statement)
        with watching(db) as seen:
            async with db.read() as conn:
                usual = (await conn.execute(statement, params)).all()
        assert seen, "with a listener attached, SQLAlchemy runs the statement"
        assert direct == usual and len(direct) == 1
        assert [type(v) for v in direct[0]] == [type(v) for v in usual[0]]
        assert direct[0]._mapping == usual[0]._mapping
    async with db.read() as conn:
        row = (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one()
        packet = (await conn.execute(_PACKET_BY_ID, {"p_id": "p1"})).one()
        assert (await conn.execute(_UNIT_BY_ID, {"p_id": "nobody"})).first() is None
        assert await conn.scalar(_PACKET_BY_ID, {"p_id": "p1"}) == "p1"
    assert row.clock_offset_seconds == 1.5 and row.last_seen_at == NOW and row.last_seen_at.tzinfo is not None
    assert packet.meta == {"k": ["v", 1]} and packet.size == 7


async def test_row_counts_and_results_without_rows(db: Database) -> None:
    async with db.write() as conn:
        for unit in ("u1", "u2"):
            await conn.execute(_UNIT, _unit(unit))
    async with db.write() as conn:
        await conn.execute(_SEEN, {"p_id": "u1", "offset": 0.25, "at": NOW})
        result = await conn.execute(_SEEN, {"p_id": "u2", "offset": -2.0, "at": NOW})
        assert _planned(_SEEN)
        assert result.rowcount == 1
        with pytest.raises(sqlalchemy.exc.ResourceClosedError):
            result.first()  # an UPDATE without RETURNING has no rows, as with SQLAlchemy
        assert (await conn.execute(_SEEN, {"p_id": "nobody", "offset": 0.0, "at": NOW})).rowcount == 0
    async with db.read() as conn:
        assert (await conn.execute(_UNIT_BY_ID, {"p_id": "u2"})).one().clock_offset_seconds == -2.0


async def test_a_write_block_is_one_transaction_and_a_read_is_none(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))
    async with db.write() as conn:
        first = (await _twice(conn, _NOW)).scalar()
        await asyncio.sleep(0.02)
        assert (await conn.execute(_NOW)).scalar() == first  # now() is the transaction's start

    async def undone() -> None:
        async with db.write() as conn:
            await _twice(conn, _SEEN, {"p_id": "u1", "offset": 9.0, "at": NOW})
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        await undone()
    async with db.read() as conn:
        assert (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one().clock_offset_seconds is None
        one = (await _twice(conn, _NOW)).scalar()
        await asyncio.sleep(0.02)
        assert (await conn.execute(_NOW)).scalar() > one  # each read statement on its own (autocommit)


async def test_errors_are_sqlalchemys_and_the_connection_recovers(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))
        await conn.execute(_UNIT, _unit("u2"))
    assert _planned(_UNIT)

    async def duplicate() -> None:
        async with db.write() as conn:
            await conn.execute(_UNIT, _unit("u3"))
            await conn.execute(_UNIT, _unit("u1"))  # the key exists

    with pytest.raises(sqlalchemy.exc.IntegrityError) as caught:
        await duplicate()
    assert "duplicate key" in str(caught.value.orig)
    async with db.read() as conn:  # the failed block left nothing, and the pool's connections work
        ids = {r.id for r in (await conn.execute(select(units.c.id))).all()}
    assert ids == {"u1", "u2"}


async def test_a_lost_connection_is_invalidated_as_sqlalchemy_would(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))
    async with db.read() as conn:
        await _twice(conn, _UNIT_BY_ID, {"p_id": "u1"})
        pid = await conn.scalar(select(func.pg_backend_pid()))
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})
        assert caught.value.connection_invalidated
    async with db.read() as conn:  # a new connection takes its place
        assert (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one().id == "u1"


async def test_what_stays_on_sqlalchemys_path(db: Database) -> None:
    """A statement built per call, executemany, execution options, expanding IN: never planned."""
    async with db.write() as conn:
        await conn.execute(_UNIT, [_unit("u1"), _unit("u2")])  # executemany
        await conn.execute(_UNIT, [_unit("u3"), _unit("u4")])
    expanding = select(units.c.id).where(units.c.id.in_(bindparam("ids", expanding=True)))
    async with db.read() as conn:
        for _ in range(3):
            assert len((await conn.execute(expanding, {"ids": ["u1", "u2"]})).all()) == 2
            assert (await conn.execute(select(units.c.id).where(units.c.id == "u3"))).scalar() == "u3"
            await conn.execute(_UNIT_BY_ID, {"p_id": "u4"}, execution_options={"logging_token": "t"})
    assert not _planned(expanding)
    generated = insert(clock_offsets)  # the key is the database's: SQLAlchemy fetches it (implicit RETURNING)
    sample = {"unit_id": "u1", "at": NOW, "offset_seconds": 0.0, "min_seconds": 0.0, "max_seconds": 0.0,
              "requests": 1}
    async with db.write() as conn:
        keys = [(await conn.execute(generated, sample)).inserted_primary_key[0] for _ in range(3)]
    assert not _planned(generated) and len(set(keys)) == 3
    with watching(db) as seen:
        async with db.read() as conn:
            await _twice(conn, _UNIT_BY_ID, {"p_id": "u1"})
    assert len(seen) == 2  # listeners see every statement: none went around them


async def test_a_close_with_nothing_to_send_needs_no_shielded_task(db: Database, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """Closing runs in SQLAlchemy's task-and-shield only while the server holds a transaction for the
    connection; every close returns the connection to the pool, also under cancellation."""
    import sqlalchemy.ext.asyncio.engine as async_engine

    shielded: list[Any] = []
    real = async_engine._run_to_completion

    async def counting(coro: Any) -> Any:
        shielded.append(coro)
        return await real(coro)

    monkeypatch.setattr(async_engine, "_run_to_completion", counting)
    pool: Any = db.writer.sync_engine.pool
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))
    for _ in range(3):
        async with db.read() as conn:
            await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})
    assert shielded == [] and pool.checkedout() == 0

    async with db.writer.connect() as conn:  # BEGIN sent, never committed: the close must roll back
        await conn.execute(_SEEN, {"p_id": "u1", "offset": 3.0, "at": NOW})
    assert len(shielded) == 1 and pool.checkedout() == 0

    entered = asyncio.Event()

    async def reading() -> None:
        async with db.read() as conn:
            await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(reading())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.checkedout() == 0
    async with db.read() as conn:
        assert (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one().clock_offset_seconds is None


@contextmanager
def counting_greenlets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every greenlet SQLAlchemy's async layer and pg_direct start, by the function they run."""
    import sqlalchemy.ext.asyncio.engine as async_engine

    spawned: list[str] = []

    def wrap(real: Any) -> Any:
        async def counting(fn: Any, *args: Any, **kw: Any) -> Any:
            spawned.append(getattr(fn, "__name__", repr(fn)))
            return await real(fn, *args, **kw)
        return counting

    monkeypatch.setattr(async_engine, "greenlet_spawn", wrap(async_engine.greenlet_spawn))
    monkeypatch.setattr(pg_direct, "greenlet_spawn", wrap(pg_direct.greenlet_spawn))
    yield spawned


async def test_an_idle_connection_is_taken_and_given_back_without_a_greenlet(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read and a committed write block take a connection idle in the pool and give it back with
    no greenlet; the pool then holds exactly what it held before."""
    pool: Any = db.writer.sync_engine.pool
    assert isinstance(pool, pg_direct.DirectPool)
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))
    for _ in range(2):  # connected, and the statements seen twice
        async with db.read() as conn:
            await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})
    idle = pool.checkedin()
    with counting_greenlets(monkeypatch) as spawned:
        async with db.read() as conn:
            assert (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one().id == "u1"
        async with db.write() as conn:
            await conn.execute(_SEEN, {"p_id": "u1", "offset": 1.5, "at": NOW})
    assert "connect" not in spawned and "close" not in spawned, spawned
    assert (pool.checkedin(), pool.checkedout()) == (idle, 0)
    async with db.read() as conn:
        assert (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one().clock_offset_seconds == 1.5


async def test_connections_the_server_closed_or_the_pool_lacks_are_taken_sqlalchemys_way(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle connections the server ended are replaced (in a greenlet: connecting awaits), with no
    coroutine left unawaited; more readers than connections wait for one to come back."""
    import warnings

    pool: Any = db.writer.sync_engine.pool
    size = pool.size()
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))

    async def read(hold: float = 0.0) -> str:
        async with db.read() as conn:
            row = (await conn.execute(_UNIT_BY_ID, {"p_id": "u1"})).one()
            await asyncio.sleep(hold)
            return str(row.id)

    async def backend(hold: float) -> int:
        async with db.read() as conn:
            pid = int(await conn.scalar(select(func.pg_backend_pid())))
            await asyncio.sleep(hold)
            return pid

    pids = set(await asyncio.gather(*(backend(0.05) for _ in range(size))))  # every slot connected
    assert len(pids) == size and pool.checkedin() == size
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        ended = await admin.fetchval("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                                     "FROM unnest($1::int[]) AS pid", sorted(pids))
    finally:
        await admin.close()
    assert ended == size
    await asyncio.sleep(0.3)  # asyncpg reads the closed sockets
    with warnings.catch_warnings(record=True) as caught, counting_greenlets(monkeypatch) as spawned:
        warnings.simplefilter("always")
        assert await asyncio.gather(*(read(0.02) for _ in range(2 * size + 3))) == ["u1"] * (2 * size + 3)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert "connect" in spawned  # the replacements, and the readers that waited
    assert pool.checkedout() == 0 and pool.checkedin() <= size


async def test_a_connection_a_full_pool_would_close_is_closed_sqlalchemys_way(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A pool allowed to overflow closes a connection that comes back when it is full, and closing
    talks to the server: that return is SQLAlchemy's (in a greenlet), not the direct one, where the
    close could not be awaited (SQLAlchemy would log it and leave the session to the server)."""
    import gc
    import logging
    import warnings

    from sqlalchemy.ext.asyncio import create_async_engine

    engine = pg_direct.DirectEngine(create_async_engine(pg_url, pool_size=1, max_overflow=1,
                                                        poolclass=pg_direct.DirectPool).sync_engine)
    pool: Any = engine.sync_engine.pool
    try:
        first, second = engine.connect(), engine.connect()
        await first.start()
        await second.start()  # the overflow connection
        for conn in (first, second):
            await conn.execute(_NOW)
            await conn.commit()
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR):
            warnings.simplefilter("always")
            await first.__aexit__(None, None, None)  # back into the pool: direct
            await second.__aexit__(None, None, None)  # the pool is full: closed SQLAlchemy's way
            gc.collect()
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # "Exception closing"
        assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
        assert (pool.checkedin(), pool.checkedout(), pool.overflow()) == (1, 0, 0)
        async with engine.connect() as conn:
            assert (await conn.execute(_NOW)).scalar() is not None
    finally:
        await engine.dispose()


async def test_a_write_block_begins_without_a_greenlet(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """BEGIN sends nothing on asyncpg (the adapter begins with the first statement): a write block
    begins directly; its statements are still one transaction, and a savepoint is SQLAlchemy's."""
    import sqlalchemy.ext.asyncio.engine as async_engine

    spawned: list[str] = []
    real = async_engine.greenlet_spawn

    async def counting(fn: Any, *args: Any, **kw: Any) -> Any:
        spawned.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kw)

    monkeypatch.setattr(async_engine, "greenlet_spawn", counting)
    async with db.write() as conn:
        await conn.execute(_UNIT, _unit("u1"))
        first = (await conn.execute(_NOW)).scalar()
        await asyncio.sleep(0.02)
        assert (await conn.execute(_NOW)).scalar() == first
        async with conn.begin_nested():  # a savepoint: SQLAlchemy's own path
            await conn.execute(_UNIT, _unit("u2"))
    assert "begin" not in spawned and "begin_nested" in spawned
    async with db.read() as conn:
        assert {r.id for r in (await conn.execute(select(units.c.id))).all()} == {"u1", "u2"}


async def test_an_echoing_engine_logs_every_statement(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """With echo on (debugging), SQLAlchemy runs every statement, so every one is logged."""
    db = Database(pg_url, pool_size=1, echo=True)
    try:
        await db.upgrade()
        statement = select(units.c.id).where(units.c.id == bindparam("p_id"))  # this test's own object
        with caplog.at_level("INFO", logger="sqlalchemy.engine"):
            async with db.read() as conn:
                for _ in range(3):
                    await conn.execute(statement, {"p_id": "u1"})
        assert not _planned(statement)
        assert sum("FROM units" in r.getMessage() for r in caplog.records) == 3
    finally:
        await db.close()

