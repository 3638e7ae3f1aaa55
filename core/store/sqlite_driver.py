"""aiosqlite, with statements run on the event loop's own thread and one hand-off per transaction.

SQLAlchemy's aiosqlite adapter sends every cursor call (open, execute, fetch, close) to aiosqlite's
worker thread and waits for the loop to be woken with the answer. Under load those hand-offs (queue
put, thread wake-up, GIL transfer, the loop's self-pipe) cost far more CPU than the statements: on
a shared two-core machine they were half of the hub's busy samples (docs/performance.md). This
dialect runs each statement directly on the calling thread instead, where SQLite answers an indexed
lookup or a one-row write in microseconds, and keeps the thread for what may wait or take long:

- COMMIT (and ROLLBACK) go to the connection's thread: a commit may fsync (``synchronous=full``, or
  a WAL checkpoint), which must not stall the loop. A write transaction costs one hand-off.
- Inline statements run with SQLite's busy timeout at 0. A BEGIN that finds the database locked by
  another process is retried on the thread with the usual timeout, so the loop never sleeps in
  SQLite's busy handler.
- A statement outside a transaction (the readers) gets a budget of virtual-machine steps (a
  progress handler); a large query that exceeds it is interrupted, which undoes nothing because
  it changed nothing, and run again on the thread. So a report or an export still runs off the loop.

Same SQL, same isolation, same errors as the stock dialect; registered as ``sqlite+lgsp_aiosqlite``.
`Database` uses it for ``sqlite+aiosqlite`` URLs when the installed SQLAlchemy and aiosqlite have
the hooks it builds on, and falls back to the stock dialect otherwise (tests/test_store.py checks both).
"""

from __future__ import annotations

import collections
import logging
from typing import Any, cast

log = logging.getLogger(__name__)

DRIVER = "lgsp_aiosqlite"

try:  # the hooks below exist in SQLAlchemy >= 2.1 with aiosqlite >= 0.20
    import aiosqlite
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.sqlite import aiosqlite as stock
    from sqlalchemy.util.concurrency import await_

    _HOOKS = all(hasattr(stock.AsyncAdapt_aiosqlite_cursor, name)
                 for name in ("_make_new_cursor", "_aenter_cursor", "_execute_async", "_executemany_async")) \
        and hasattr(aiosqlite.Connection, "_execute")
except ImportError:  # pragma: no cover - aiosqlite is a dependency
    _HOOKS = False


def available() -> bool:
    return _HOOKS


#: Busy timeout for statements run on the connection's thread (inline ones use 0), in ms.
BUSY_TIMEOUT_MS = 30000
#: SQLite virtual-machine steps a statement outside a transaction may take on the event loop before
#: it is interrupted and run on the connection's thread instead (an indexed lookup takes ~100).
INLINE_READ_STEPS = 20_000
_SQLITE_BUSY, _SQLITE_INTERRUPT = 5, 9


def _run_statement(raw: Any, operation: Any, parameters: Any) -> tuple[Any, int, int | None, list[Any]]:
    """Execute one statement and fetch all its rows, on whichever thread calls it."""
    cur = raw.cursor()
    try:
        if parameters is None:
            cur.execute(operation)
        else:
            cur.execute(operation, parameters)
        description = cur.description
        return description, cur.rowcount, cur.lastrowid, cur.fetchall() if description else []
    finally:
        cur.close()


def _run_many(raw: Any, operation: Any, seq_of_parameters: Any) -> tuple[Any, int, int | None, list[Any]]:
    cur = raw.cursor()
    try:
        cur.executemany(operation, seq_of_parameters)
        return None, cur.rowcount, cur.lastrowid, []
    finally:
        cur.close()


def _waiting(raw: Any, run: Any, *args: Any) -> Any:
    """`run` on the connection's thread, with the busy timeout the inline path goes without."""
    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return run(raw, *args)
    finally:
        raw.execute("PRAGMA busy_timeout=0")


def _interrupt() -> int:
    return 1


if _HOOKS:
    import sqlite3

    class _Outcome:
        """Stands in for the aiosqlite cursor: what the last statement left behind."""

        __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

        def __init__(self) -> None:
            self.description: Any = None
            self.rowcount = -1
            self.lastrowid: int | None = None
            self.arraysize = 1

        def close(self) -> None:
            pass

    class OneHopCursor(stock.AsyncAdapt_aiosqlite_cursor):
        __slots__ = ()
        _awaitable_cursor_close = False

        def _make_new_cursor(self, connection: Any) -> Any:
            return None  # no aiosqlite cursor: each statement uses a fresh sqlite3 cursor

        def _aenter_cursor(self, cursor: Any) -> Any:
            return _Outcome()

        # SQLAlchemy's async layer insists that each execution awaits something: these coroutines
        # are awaited (a greenlet switch, no trip through the event loop) and finish at once unless
        # the statement has to go to the thread.
        async def _execute_async(self, operation: Any, parameters: Any) -> Any:
            self._store(await self._inline(_run_statement, operation, parameters))

        async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
            self._store(await self._inline(_run_many, operation, seq_of_parameters))

        async def _inline(self, run: Any, operation: Any, parameters: Any) -> tuple[Any, int, int | None, list[Any]]:
            """Run on this (the event loop's) thread; on the connection's thread only when SQLite
            says the statement would wait for a lock or outgrew its step budget (see the module doc)."""
            raw = self._connection._conn
            begins = isinstance(operation, str) and operation.startswith("BEGIN")
            redo = begins or not raw.in_transaction  # nothing would be undone by running it again
            if begins:
                adapt: Any = self._adapt_connection  # SQLAlchemy's private flag, not in its annotations
                adapt._in_tx = True
            if redo and not begins:
                raw.set_progress_handler(_interrupt, INLINE_READ_STEPS)
            try:
                return cast(tuple[Any, int, int | None, list[Any]], run(raw, operation, parameters))
            except sqlite3.OperationalError as exc:
                if not redo or exc.sqlite_errorcode not in (_SQLITE_BUSY, _SQLITE_INTERRUPT):
                    raise
            finally:
                if redo and not begins:
                    raw.set_progress_handler(None, 0)
            async with self._adapt_connection._execute_mutex:
                return cast(tuple[Any, int, int | None, list[Any]],
                            await self._connection._execute(_waiting, raw, run, operation, parameters))

        def _store(self, outcome: tuple[Any, int, int | None, list[Any]]) -> None:
            description, rowcount, lastrowid, rows = outcome
            cursor: Any = self._cursor  # our _Outcome, not the aiosqlite cursor the base class declares
            cursor.description, cursor.rowcount, cursor.lastrowid = description, rowcount, lastrowid
            self._rows = collections.deque(rows)

    class OneHopConnection(stock.AsyncAdapt_aiosqlite_connection):
        """Also skips the hand-off of a rollback or commit when no BEGIN was sent (the connection
        is in autocommit mode, so there is nothing to end): a read costs no hand-off at all."""

        __slots__ = ("_in_tx",)
        _cursor_cls = OneHopCursor
        #: What `Database` sets as the busy timeout: inline statements must never wait in SQLite.
        busy_timeout_ms = 0

        def __init__(self, dbapi: Any, connection: Any) -> None:
            super().__init__(dbapi, connection)
            self._in_tx = False

        def rollback(self) -> None:
            if self._in_tx:
                self._in_tx = False
                super().rollback()

        def commit(self) -> None:
            if self._in_tx:
                self._in_tx = False
                super().commit()

    class OneHopDBAPI(stock.AsyncAdapt_aiosqlite_dbapi):
        def connect(self, *arg: Any, **kw: Any) -> Any:
            creator_fn = kw.pop("async_creator_fn", None)
            kw["check_same_thread"] = False  # statements run on the loop's thread, commits on aiosqlite's
            connection = creator_fn(*arg, **kw) if creator_fn else self.aiosqlite.connect(*arg, **kw)
            if not creator_fn:
                connection._thread.daemon = True  # as the stock dialect does
            return OneHopConnection(self, await_(connection))

    class OneHopDialect(stock.SQLiteDialect_aiosqlite):
        driver = DRIVER
        supports_statement_cache = True

        @classmethod
        def import_dbapi(cls) -> Any:
            return OneHopDBAPI(aiosqlite, __import__("sqlite3"))

    dialect = OneHopDialect
    registry.register(f"sqlite.{DRIVER}", __name__, "OneHopDialect")
