"""Database access: one writer and many readers on SQLite, one pool on PostgreSQL.

SQLite allows a single writer at a time. Funnelling this process's writes through one connection
(taken with BEGIN IMMEDIATE) turns lock contention into an orderly queue instead of SQLITE_BUSY
errors, while WAL lets readers proceed in parallel. PostgreSQL needs none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from lgsp.core import states
from lgsp.core.store import deferred, pg_direct, sqlite_inline

log = logging.getLogger(__name__)

#: A periodic job's lock (`Database.single_node`) is a lease as the leader's is: a node silent this
#: long on the lock's session loses the lock, so a frozen node does not hold up the job's next round.
JOB_LEASE_SECONDS = 10.0
JOB_LEASE_PING_SECONDS = 2.0
#: PostgreSQL ends a transaction of the hub's that has been idle this long (a frozen node's).
IDLE_IN_TRANSACTION_MS = 60_000


class JobLease:
    """What `Database.single_node` yields: true while this node holds the job's lock.

    A round that may run long asks `confirm()` before each piece of work it must not share with
    another node: after a freeze longer than the lease the lock may be another node's by now."""

    def __init__(self, *, held: bool, name: str = "", conn: AsyncConnection | None = None,
                 ping_seconds: float = JOB_LEASE_PING_SECONDS) -> None:
        self._held = held
        self.name = name
        self._conn = conn
        self._ping_seconds = ping_seconds
        self._use = asyncio.Lock()  # one statement at a time on the lock's connection
        self._keeper: asyncio.Task[None] | None = None
        self._spoke = (time.monotonic(), time.time())
        self.lost = False

    def __bool__(self) -> bool:
        return self._held and not self.lost

    def start(self) -> None:
        self._keeper = asyncio.create_task(self._keep(), name=f"lgsp-job-lease:{self.name}")

    async def confirm(self) -> bool:
        """Whether this node still holds the lock. The server is asked only when it has not answered
        on the lock's session for longer than the keeper's ping (by either clock: the process was
        stopped, the machine paused); otherwise the session cannot have been silent for the lease."""
        if self._conn is None or not self:
            return bool(self)
        mono, wall = self._spoke
        if max(time.monotonic() - mono, time.time() - wall) < self._ping_seconds * 1.5:
            return True
        await self._speak()
        return bool(self)

    async def _speak(self) -> None:
        async with self._use:
            if self.lost or self._conn is None:
                return
            try:
                await self._conn.scalar(text("SELECT 1"))
                await self._conn.commit()
                self._spoke = (time.monotonic(), time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.lost = True
                log.warning("lost the lock of job %s (the store ended its session); another node may run it",
                            self.name, exc_info=True)

    async def _keep(self) -> None:
        while not self.lost:
            await asyncio.sleep(self._ping_seconds)
            await self._speak()

    async def end(self, key: int) -> None:
        """Release the lock and the lease, and give the connection back to the pool clean (or
        discard it when its session is gone)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        conn, self._conn = self._conn, None
        if conn is None:
            return
        async with self._use:
            if not self.lost:
                try:
                    await conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    if _pg_major(conn) >= 14:
                        await conn.scalar(text("SELECT set_config('idle_session_timeout', '0', false)"))
                    await conn.commit()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("could not release the lock of job %s; its session is discarded", self.name,
                                exc_info=True)
            with contextlib.suppress(Exception):
                await conn.invalidate()  # ending the session frees the lock, if it still held it


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False,
                 sqlite_synchronous: str = "normal", idle_in_transaction_ms: int = IDLE_IN_TRANSACTION_MS) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # SQLAlchemy's synchronous engine, run on the loop's thread (core/store/sqlite_inline.py).
            sync_url = parsed.set(drivername="sqlite+pysqlite")
            self._executor = sqlite_inline.new_executor(pool_size + 2)
            commit_inline = sqlite_synchronous != "full"
            checkpointer = sqlite_inline.Checkpointer(database, self._executor) \
                if commit_inline and database and database != ":memory:" else None
            guard = os.environ.get("LGSP_CHECK_TRANSITIONS") == "1"
            self.writer: AsyncEngine = sqlite_inline.InlineEngine(
                _sqlite_engine(sync_url, echo, 1, sqlite_synchronous, checkpoint_inline=checkpointer is None),
                slots=1, pool_timeout=120, executor=self._executor, commit_inline=commit_inline,
                checkpointer=checkpointer, on_begin=_install_transition_guard if guard else None)
            self.reader: AsyncEngine = sqlite_inline.InlineEngine(
                _sqlite_engine(sync_url, echo, pool_size, sqlite_synchronous, checkpoint_inline=True),
                slots=pool_size, pool_timeout=120, executor=self._executor, commit_inline=True)
        else:
            # No pool_pre_ping: its ping is three round trips (BEGIN, ";", ROLLBACK) on every checkout,
            # a seventh of the loop's busy time on the hot path. A connection the server has closed
            # (restart, pg_terminate_backend) is known closed without asking: see `_pg_setup`.
            # Up to 2 × pool_size connections, as before (pool_size kept + pool_size overflow), but all
            # of them kept once opened: an overflow connection closed on its return made the next
            # burst open a new one (TCP, SSL negotiation, codec set-up) and prepare every statement
            # again on it, a tenth of the loop's busy time under load.
            # A node that stops running inside a write transaction (frozen, a paused VM) would hold its
            # row locks until it runs again; the server ends such a transaction after a minute of
            # silence instead. The hub's write transactions never wait on anything but their statements.
            # Statements run before are sent straight to asyncpg, and an idle connection is taken from
            # the pool and given back without a greenlet (core/store/pg_direct.py).
            idle = {"idle_in_transaction_session_timeout": str(idle_in_transaction_ms)}
            self.writer = pg_direct.DirectEngine(create_async_engine(
                url, echo=echo, pool_size=2 * pool_size, max_overflow=0, poolclass=pg_direct.DirectPool,
                connect_args={"server_settings": idle}).sync_engine)
            self.reader = self.writer
            _pg_setup(self.writer)
        # Reads on PostgreSQL run in autocommit, as SQLite's readers run without BEGIN: each statement
        # reads the latest committed state on its own, with no BEGIN before it and no ROLLBACK when
        # the connection goes back to the pool (two round trips of the three a one-SELECT read made).
        # The same pool as the writes: execution_options shares it, and the isolation level is set
        # on the connection object only (no statement) and reset when it is returned.
        self._read_engine = (self.reader if self.dialect != "postgresql"
                             else self.writer.execution_options(isolation_level="AUTOCOMMIT"))

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits when the block ends without error. On PostgreSQL rows written
        only to be kept (audit entries) travel with the transaction's events INSERT
        (core/store/deferred.py); what is still held when the block ends is inserted before COMMIT."""
        async with self.writer.begin() as conn:
            if self.dialect != "postgresql":
                yield conn
                return
            deferred.open_holding(conn)
            try:
                yield conn
                await deferred.flush(conn)
            finally:
                deferred.close_holding(conn)

    @asynccontextmanager
    async def write_one(self) -> AsyncIterator[AsyncConnection]:
        """A write block of one statement, its last act: the rows it holds (core/store/deferred.py)
        ride that statement, the events INSERT. On PostgreSQL it is sent in autocommit, as
        `write_statement`'s: atomic and durable on its own, with no BEGIN and COMMIT round trips.
        A second statement is refused before it is sent, and a block that ends with rows still held
        (no statement carried them) fails without writing them: either is a bug of the block, which
        `write()` is for. On SQLite: `write()`."""
        if self.dialect != "postgresql":
            async with self.write() as conn:
                yield conn
            return
        async with self._read_engine.connect() as conn:
            assert isinstance(conn, pg_direct.DirectConnection)
            conn.statements_left = 1
            deferred.open_holding(conn)
            try:
                yield conn
                if deferred.take(conn):
                    raise RuntimeError("a one-statement write block ended with rows no statement carried")
            finally:
                deferred.close_holding(conn)

    async def write_statement(self, statement: Any, params: Any = None) -> list[Any]:
        """Run one write statement as a transaction of its own; its rows (RETURNING), all read.

        On PostgreSQL it is sent in autocommit: the server runs a lone statement atomically and
        commits it durably before answering, exactly as BEGIN, the statement and COMMIT would, with
        two event-loop round trips fewer. On SQLite it runs in `write()` (the one writer's slot,
        BEGIN IMMEDIATE, and a COMMIT that honours `synchronous`)."""
        if self.dialect == "postgresql":
            async with self._read_engine.connect() as conn:
                return list((await conn.execute(statement, params)).all())
        async with self.write() as conn:
            return list((await conn.execute(statement, params)).all())

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading: every statement sees what was committed when it started (no
        transaction around them, on either store). Never write through it."""
        async with self._read_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def single_node(self, name: str, *, lease_seconds: float | None = None,
                          ping_seconds: float | None = None) -> AsyncIterator[JobLease]:
        """Whether this node may run the job `name` now: one node at a time across a cluster.

        On PostgreSQL a session advisory lock held for the block, on a pooled connection taken out
        of the pool meanwhile; the lease is falsy when another node holds the lock. The lock's session
        carries a lease, as the leader's does (core/cluster.py): `idle_session_timeout` on it, and a
        keeper that speaks on it every `ping_seconds` while the block runs. A node that stops running
        in the middle of a round (frozen, a paused VM) falls silent, the server ends its session after
        `lease_seconds`, and another node can run the job's next round; the woken node learns it from
        `JobLease.confirm()` (or `lost`). SQLite serves one node, so always held.
        """
        if self.dialect != "postgresql":
            yield JobLease(held=True)
            return
        lease = JOB_LEASE_SECONDS if lease_seconds is None else lease_seconds
        ping = JOB_LEASE_PING_SECONDS if ping_seconds is None else ping_seconds
        key = int.from_bytes(hashlib.sha256(f"lgsp-job:{name}".encode()).digest()[:8], "big", signed=True)
        async with self.writer.connect() as conn:
            if _pg_major(conn) >= 14:
                # The lease only when the lock is taken: a connection going back to the pool unlocked
                # must not carry it (an idle pooled connection would be ended).
                got = bool(await conn.scalar(text(
                    "SELECT CASE WHEN pg_try_advisory_lock(:k) THEN "
                    "set_config('idle_session_timeout', :t, false) IS NOT NULL ELSE false END"),
                    {"k": key, "t": str(max(1, int(lease * 1000)))}))
            else:
                got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
            await conn.commit()
            if not got:
                yield JobLease(held=False)
                return
            job = JobLease(held=True, name=name, conn=conn, ping_seconds=ping)
            job.start()
            try:
                yield job
            finally:
                await job.end(key)

    async def close(self) -> None:
        """Close every connection (a second call does nothing more)."""
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)

    # -- migrations ---------------------------------------------------------------------------
    async def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations (several nodes may race here; PostgreSQL serialises them)."""
        async with self.writer.begin() as conn:
            await conn.run_sync(_upgrade, revision)

    async def current_revision(self) -> str | None:
        async with self.reader.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

    @staticmethod
    def head_revision() -> str | None:
        return ScriptDirectory.from_config(alembic_config()).get_current_head()


#: SQLSTATEs of a server that cannot take the connection or the work now (too many connections,
#: starting up or shutting down, connection failures): the store is unavailable, not the request wrong.
UNAVAILABLE_SQLSTATES = frozenset({"53300", "53400", "57P01", "57P02", "57P03", "08000", "08001", "08003",
                                   "08004", "08006"})


def _pg_major(conn: AsyncConnection) -> int:
    """PostgreSQL's major version (14 brought `idle_session_timeout`)."""
    first = (conn.dialect.server_version_info or (0,))[0]
    return first if isinstance(first, int) else 0


def store_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the store cannot serve now (PostgreSQL out of connections, restarting,
    unreachable; the pool exhausted): an answer of 503 with Retry-After, never a 500."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # no pooled connection within pool_timeout
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return state in UNAVAILABLE_SQLSTATES or isinstance(getattr(orig, "__cause__", None), OSError)
    return False


def conflict_insert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT that can say what to do on a key conflict (`on_conflict_do_nothing/_update`): the
    one race-free way to create-if-absent on both backends, where SELECT-then-INSERT is not."""
    return (postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table))


def _sqlite_engine(url: Any, echo: bool, pool_size: int, synchronous: str, *, checkpoint_inline: bool) -> Any:
    """The synchronous engine under an `InlineEngine`: `pool_size` connections, each set up once."""
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=0, pool_timeout=120,
                           connect_args={"check_same_thread": False, "factory": sqlite_inline.BufferedConnection})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        # Inline statements must never wait in SQLite: one that would goes to the store's thread.
        cur.execute("PRAGMA busy_timeout=0")
        cur.execute("PRAGMA foreign_keys=ON")
        if not checkpoint_inline:  # the Checkpointer does it off the loop
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    # Readers send no BEGIN: each statement reads the latest committed state on its own (WAL), and
    # there is no transaction to end when the connection goes back to the pool. The writer's BEGIN
    # IMMEDIATE is sent by `InlineEngine.begin`.
    return engine


def _pg_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # asyncpg reads every connection's socket all the time, so a connection the server ended
        # (restart, termination, idle timeout) is already marked closed here; the pool then drops it
        # and checks out another or a new one, as pool_pre_ping would, without a round trip.
        driver = getattr(dbapi_conn, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise sqlalchemy.exc.DisconnectionError("the server closed this connection")


def _install_transition_guard(conn: Connection) -> None:
    """Once per connection, when the tables exist: see `states.sqlite_transition_guard`."""
    info = conn.connection.info
    if info.get("lgsp_guard"):
        return
    found = conn.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('deliveries', 'packets')").scalar()
    if found == 2:
        for statement in states.sqlite_transition_guard():
            conn.exec_driver_sql(statement)
        info["lgsp_guard"] = True


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("lgsp.core.store") / "migrations"))
    return cfg


def _upgrade(conn: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)
