"""SQLite through SQLAlchemy's synchronous engine, on the event loop's thread, behind the async API.

SQLAlchemy's async layer runs every call (connect, begin, each statement, commit, close) in a new
greenlet and, with aiosqlite, sends the work to another thread and back. For SQLite, where an
indexed lookup or a one-row write takes microseconds, that machinery cost more than the SQL: a
write transaction of one UPDATE took about 240 µs of CPU through it against 55 µs through the
synchronous engine, a one-row SELECT 24 µs against 12 µs (docs/performance.md). So on SQLite
`Database` uses `InlineEngine` and `InlineConnection`: the `AsyncEngine`/`AsyncConnection`
interface the use cases are written against, with the synchronous engine underneath, each call
made directly on the loop's thread. It keeps a thread for what may wait or take long:

- A BEGIN IMMEDIATE that finds the database locked by another process (the CLI, a backup) is run
  again on the store's thread with the usual busy timeout: the loop never sleeps in SQLite's busy
  handler (inline statements run with a busy timeout of 0).
- A statement outside a transaction (the readers) gets a budget of virtual-machine steps; one that
  exceeds it (a report, an export) is interrupted, which undoes nothing because it changed nothing,
  and run again on the thread, so the loop keeps serving.
- COMMIT runs inline when it cannot reach the disk: in WAL mode with ``synchronous=NORMAL`` a
  commit appends to the WAL without fsync, and the automatic checkpoint (the one step of a commit
  that fsyncs) is switched off on the writer and done by `Checkpointer` on the thread instead. With
  ``synchronous=FULL`` every commit fsyncs, so it goes to the thread. Durability is that of the
  configured mode either way: nothing is acted on before its COMMIT has returned.

Rows are fetched during the statement itself (`_BufferedCursor`), as the async layer buffers them,
so a result can be read after its connection has gone back to the pool, and the step budget covers
the whole of a query's work. Connections are handed out by an `asyncio.Semaphore` sized as the pool,
so a checkout never blocks the loop: the writer's single slot is the queue of write transactions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from lgsp.core.store.prepared import PreparedStatements

log = logging.getLogger(__name__)

#: Busy timeout for statements run on the store's thread (inline ones use 0), in ms.
BUSY_TIMEOUT_MS = 30000
#: SQLite virtual-machine steps a statement outside a transaction may take on the event loop before
#: it is interrupted and run on the store's thread instead (an indexed lookup takes ~100).
INLINE_READ_STEPS = 20_000
#: Inline commits between two checkpoints of the WAL (SQLite's own default is every 1 000 pages;
#: an exchange's six write transactions touch about 26).
CHECKPOINT_EVERY_COMMITS = 64
_SQLITE_BUSY, _SQLITE_INTERRUPT = 5, 9

T = TypeVar("T")


class _BufferedCursor(sqlite3.Cursor):
    """Fetches every row during `execute`, so the statement's work is done in that call."""

    _rows: collections.deque[Any]

    def execute(self, sql: str, parameters: Any = (), /) -> _BufferedCursor:
        super().execute(sql, parameters)
        self._rows = collections.deque(super().fetchall() if self.description else ())
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _BufferedCursor:
        super().executemany(sql, seq_of_parameters)
        self._rows = collections.deque()
        return self

    def fetchone(self) -> Any:
        rows = getattr(self, "_rows", None)
        return rows.popleft() if rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = getattr(self, "_rows", None)
        if not rows:
            return []
        n = self.arraysize if size is None else size
        return [rows.popleft() for _ in range(min(n, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = getattr(self, "_rows", None)
        if not rows:
            return []
        out = list(rows)
        rows.clear()
        return out


class BufferedConnection(sqlite3.Connection):
    """The DBAPI connection the inline engine opens (``connect_args={"factory": ...}``)."""

    def cursor(self, factory: Any = _BufferedCursor) -> Any:
        return super().cursor(factory)


def _interrupt() -> int:
    return 1


def _waiting(raw: sqlite3.Connection, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """`fn` on the store's thread, with the busy timeout the inline path goes without."""
    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return fn(*args, **kw)
    finally:
        raw.execute("PRAGMA busy_timeout=0")


def _sqlite_code(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)


class Checkpointer:
    """Checkpoints the WAL on the store's thread every `CHECKPOINT_EVERY_COMMITS` inline commits.

    A PASSIVE checkpoint takes no lock a writer or reader waits for; it copies what no reader still
    needs into the database file and fsyncs it, the work SQLite's automatic checkpoint would do
    inside a COMMIT (on the loop) otherwise."""

    def __init__(self, path: str, executor: ThreadPoolExecutor) -> None:
        self.path = path
        self.executor = executor
        self._commits = 0
        self._running: Future[None] | None = None
        self._conn: sqlite3.Connection | None = None
        self.done = 0  # checkpoints run (tests read it)

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY_COMMITS and self._running is None:
            self._commits = 0
            self._running = self.executor.submit(self._checkpoint)
            self._running.add_done_callback(self._finished)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.done += 1

    def _finished(self, future: Future[None]) -> None:
        self._running = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("checkpoint of the SQLite WAL failed; the next one retries",
                        exc_info=future.exception())

    def close(self) -> None:
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                running.result(timeout=30)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


class InlineEngine(AsyncEngine):
    """An `AsyncEngine` over a synchronous SQLite engine whose connections run on the loop's thread."""

    def __init__(self, sync_engine: Engine, *, slots: int, pool_timeout: float, executor: ThreadPoolExecutor,
                 commit_inline: bool, checkpointer: Checkpointer | None = None,
                 on_begin: Callable[[Connection], None] | None = None) -> None:
        # Not AsyncEngine.__init__: it insists on an async driver, which is the point of this class.
        self.sync_engine = self._assign_proxied(sync_engine)
        self._slots = asyncio.Semaphore(slots)
        self._pool_timeout = pool_timeout
        self.executor = executor
        self.commit_inline = commit_inline
        self.checkpointer = checkpointer
        #: Runs right after each BEGIN IMMEDIATE (the transition guard of the tests' checking mode).
        self.on_begin = on_begin
        # Connections kept checked out between uses: a use takes one without the pool's checkout and
        # return (their events, the reset on return), a fifth of a one-row read block's cost.
        self._idle: list[Connection] = []
        #: Statements executed again and again run at the driver, compiled once (core/store/prepared.py).
        self.statements = PreparedStatements(sync_engine)

    def take(self) -> Connection:
        """A connection for one use (the caller holds a slot): a kept one, else a new checkout."""
        while self._idle:
            sync = self._idle.pop()
            if not sync.closed and not sync.invalidated:
                return sync
        return self.sync_engine.connect()

    def give_back(self, sync: Connection) -> None:
        """Keep `sync` for the next use, its transaction ended (a read's is SQLAlchemy's alone: its
        ROLLBACK sends nothing); one that is broken goes back to the pool, which discards it."""
        if not sync.closed and not sync.invalidated:
            try:
                if sync.in_transaction():
                    sync.rollback()
            except Exception:
                log.warning("a SQLite connection could not end its transaction; it is discarded", exc_info=True)
            else:
                self._idle.append(sync)
                return
        with contextlib.suppress(Exception):
            sync.close()

    def pool_counts(self) -> dict[str, int]:
        """Connections in use, idle (kept or in the pool) and the pool's size, for the metrics."""
        pool: Any = self.sync_engine.pool
        kept = len(self._idle)
        return {"in_use": pool.checkedout() - kept, "idle": pool.checkedin() + kept, "size": pool.size()}

    def connect(self) -> InlineConnection:
        return InlineConnection(self)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[InlineConnection]:
        """A write transaction (BEGIN IMMEDIATE) that commits when the block ends without error."""
        conn = await self.connect().start()
        try:
            await conn.begin_immediate()
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
        finally:
            await conn.close()

    async def acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns without a trip through the loop
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._pool_timeout)
        except TimeoutError:
            raise sqlalchemy.exc.TimeoutError(
                f"no SQLite connection free within {self._pool_timeout:.0f} s") from None

    def release(self) -> None:
        self._slots.release()

    async def off_loop(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """`fn` on the store's thread. If the caller is cancelled meanwhile, the thread still owns the
        connection: wait for it to finish before the cancellation goes on (the block's exit would
        otherwise roll back on the connection the thread is using)."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kw))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({future})
            raise

    async def dispose(self, close: bool = True) -> None:
        idle, self._idle = self._idle, []
        for sync in idle:
            with contextlib.suppress(Exception):
                sync.close()
        self.sync_engine.dispose(close=close)
        if self.checkpointer is not None:  # waits for a checkpoint under way: not on the loop
            await asyncio.to_thread(self.checkpointer.close)


class InlineConnection(AsyncConnection):
    """An `AsyncConnection` whose calls run the synchronous connection directly (module doc)."""

    engine: InlineEngine

    def __init__(self, engine: InlineEngine) -> None:
        # Not AsyncConnection.__init__'s registry of proxies (events here get the sync connection).
        self.engine = engine
        self.sync_engine = engine.sync_engine
        self.sync_connection = None
        self._raw: Any = None
        self._held = False

    async def start(self, is_ctxmanager: bool = False) -> InlineConnection:
        if self.sync_connection:
            raise sqlalchemy.exc.InvalidRequestError("connection is already started")
        await self.engine.acquire()
        try:
            sync = self.engine.take()
        except BaseException:
            self.engine.release()
            raise
        self._held = True
        self.sync_connection = sync
        self._raw = sync.connection.dbapi_connection
        return self

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        await self.close()  # all inline: no task to shield, unlike the async layer's close

    async def close(self) -> None:
        sync, self.sync_connection, self._raw = self.sync_connection, None, None
        try:
            if sync is not None:
                self.engine.give_back(sync)
        finally:
            if self._held:
                self._held = False
                self.engine.release()

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run one statement inline; outside a transaction, on the thread when SQLite says it would
        wait for a lock or it outgrew its step budget (nothing to undo: it changed nothing)."""
        raw = self._raw
        if raw is None:
            raise sqlalchemy.exc.ResourceClosedError("this connection is closed")
        if raw.in_transaction:
            return fn(*args, **kw)
        raw.set_progress_handler(_interrupt, INLINE_READ_STEPS)
        try:
            return fn(*args, **kw)
        except sqlalchemy.exc.OperationalError as exc:
            if _sqlite_code(exc) not in (_SQLITE_BUSY, _SQLITE_INTERRUPT):
                raise
        finally:
            raw.set_progress_handler(None, 0)
        return await self.engine.off_loop(_waiting, raw, fn, *args, **kw)

    async def begin_immediate(self) -> None:
        """BEGIN IMMEDIATE: inline, or on the thread with the busy timeout when another process holds
        the write lock (so the loop never waits in SQLite's busy handler)."""
        sync = self._proxied
        try:
            sync.exec_driver_sql("BEGIN IMMEDIATE")
        except sqlalchemy.exc.OperationalError as exc:
            if _sqlite_code(exc) != _SQLITE_BUSY:
                raise
            await self.engine.off_loop(_waiting, self._raw, sync.exec_driver_sql, "BEGIN IMMEDIATE")
        if self.engine.on_begin is not None:
            self.engine.on_begin(sync)

    async def execute(self, statement: Any, parameters: Any = None, *,
                      execution_options: Any = None) -> Any:
        sync = self._proxied
        if execution_options is None and (run := self.engine.statements.runner(sync, statement, parameters)):
            return await self._call(run)
        return await self._call(sync.execute, statement, parameters, execution_options=execution_options)

    async def exec_driver_sql(self, statement: str, parameters: Any = None,
                              execution_options: Any = None) -> Any:
        return await self._call(self._proxied.exec_driver_sql, statement, parameters,
                                execution_options=execution_options)

    async def scalar(self, statement: Any, parameters: Any = None, *,
                     execution_options: Any = None) -> Any:
        return (await self.execute(statement, parameters, execution_options=execution_options)).scalar()

    async def scalars(self, statement: Any, parameters: Any = None, *,
                      execution_options: Any = None) -> Any:
        return (await self.execute(statement, parameters, execution_options=execution_options)).scalars()

    async def run_sync(self, fn: Callable[..., T], *arg: Any, **kw: Any) -> T:
        return fn(self._proxied, *arg, **kw)

    async def commit(self) -> None:
        sync = self._proxied
        if self.engine.commit_inline:
            sync.commit()
            if self.engine.checkpointer is not None:
                self.engine.checkpointer.committed()
        else:
            await self.engine.off_loop(sync.commit)

    async def rollback(self) -> None:
        self._proxied.rollback()

    async def invalidate(self, exception: BaseException | None = None) -> None:
        self._proxied.invalidate(exception=exception)

    async def get_raw_connection(self) -> Any:
        return self._proxied.connection


def new_executor(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lgsp-sqlite")

