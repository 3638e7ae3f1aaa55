"""aiosqlite with one hand-off to the SQLite thread per statement instead of four.

SQLAlchemy's aiosqlite adapter opens a cursor, executes, fetches and closes it as four separate
calls into aiosqlite's worker thread; each hand-off costs about 100 µs of thread wake-ups and GIL
traffic, which the benchmarks showed to be the largest cost of a packet exchange (docs/performance.md).
This dialect does the same four steps as one function on that thread. It is the stock dialect in
every other respect (same SQL, same isolation, same errors), registered as `sqlite+lgsp_aiosqlite`;
`Database` uses it for `sqlite+aiosqlite` URLs when the installed SQLAlchemy and aiosqlite have the
hooks it builds on, and falls back to the stock dialect otherwise (tests/test_store.py checks both).
"""

from __future__ import annotations

import collections
import logging
from typing import Any

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


if _HOOKS:
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
            return None  # no aiosqlite cursor: each statement uses a fresh sqlite3 cursor on the thread

        def _aenter_cursor(self, cursor: Any) -> Any:
            return _Outcome()

        async def _execute_async(self, operation: Any, parameters: Any) -> Any:
            raw = self._connection._conn
            if isinstance(operation, str) and operation.startswith("BEGIN"):
                adapt: Any = self._adapt_connection  # SQLAlchemy's private flag, not in its annotations
                adapt._in_tx = True

            def run() -> tuple[Any, int, int | None, list[Any]]:
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

            async with self._adapt_connection._execute_mutex:
                description, rowcount, lastrowid, rows = await self._connection._execute(run)
            outcome: Any = self._cursor  # our _Outcome, not the aiosqlite cursor the base class declares
            outcome.description, outcome.rowcount, outcome.lastrowid = description, rowcount, lastrowid
            self._rows = collections.deque(rows)
            return None

        async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
            raw = self._connection._conn

            def run() -> tuple[int, int | None]:
                cur = raw.cursor()
                try:
                    cur.executemany(operation, seq_of_parameters)
                    return cur.rowcount, cur.lastrowid
                finally:
                    cur.close()

            async with self._adapt_connection._execute_mutex:
                rowcount, lastrowid = await self._connection._execute(run)
            outcome: Any = self._cursor
            outcome.rowcount, outcome.lastrowid = rowcount, lastrowid
            return None

    class OneHopConnection(stock.AsyncAdapt_aiosqlite_connection):
        """Also skips the hand-off of a rollback or commit when no BEGIN was sent (the connection
        is in autocommit mode, so there is nothing to end): reads cost one hand-off each."""

        __slots__ = ("_in_tx",)
        _cursor_cls = OneHopCursor

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
