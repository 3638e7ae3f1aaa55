"""PostgreSQL: the hub's prebuilt statements sent straight to asyncpg, compiled once.

Through SQLAlchemy's async layer every statement runs in a new greenlet, through the execution
context (parameters rebuilt, result metadata made) and the asyncpg adapter's cursor: about 215 µs
of the hub's CPU for a one-row SELECT against 85 µs for asyncpg's own prepared statement on the same
connection (docs/performance.md, saving 15). On PostgreSQL every statement of the hot path is a
round trip, so that difference is paid some twenty times per exchange.

`DirectConnection` is the `AsyncConnection` the PostgreSQL engine hands out (`DirectEngine`). A
statement it has executed before — the same object: the hot path's statements are built once, at
import (tests/test_statements.py) — is compiled here once, by SQLAlchemy's own compiler, into its
SQL, its parameter order and SQLAlchemy's bind and result processors, and then executed on the
asyncpg connection underneath, through the adapter's own prepared-statement cache, in the
transaction the adapter keeps. The rows come back as SQLAlchemy rows in a SQLAlchemy result, so
callers cannot tell the difference. SQLAlchemy stays the one place where statements are written.

Everything else takes SQLAlchemy's usual path, unchanged: a statement seen for the first time (one
built per call is never seen twice), lists of parameter sets (executemany), execution options,
statements whose execution needs SQLAlchemy's context (Python-side column defaults, an INSERT's
generated key fetched by an implicit RETURNING, expanding IN parameters, schema translation), a
transaction SQLAlchemy holds as failed, and every statement of a connection whose engine has
statement listeners (the tools that count statements, bench/statements.py and the tests, see all
of them; `prepared.statement_listeners`), whose dialect has listeners, or which echoes its
statements to the log. An error is handled by SQLAlchemy's own code as if it had run the
statement: the same exception classes, and a lost connection is invalidated the same way.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import TypedReturnsRows
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util import queue as sqla_queue
from sqlalchemy.util.concurrency import in_greenlet

from lgsp.core.store.prepared import Arguments, bind, bound_arguments, statement_listeners

__all__ = ["DirectConnection", "DirectEngine", "DirectPool", "DirectResult", "DirectTransaction",
           "NotReadyWithoutGreenlet", "direct_plan"]


@dataclass(eq=False)
class Plan:
    """A statement compiled for direct execution: its SQL, where each parameter goes, and its
    result columns (names and types; None for a statement without rows)."""

    sql: str
    #: Where each argument comes from, worked out once (`prepared.bound_arguments`).
    arguments: Arguments
    columns: tuple[tuple[str, Any], ...] | None
    #: The result's keys and SQLAlchemy's result processors, made at the first execution: some
    #: processors depend on the type the server reports for the column (a float or a numeric).
    result: SimpleResultMetaData | None = None

    def result_metadata(self, dialect: Any, attributes: Sequence[Any]) -> SimpleResultMetaData:
        if self.result is None:
            assert self.columns is not None
            processors = [type_._cached_result_processor(dialect, attribute.type.oid)
                          for (_, type_), attribute in zip(self.columns, attributes, strict=True)]
            self.result = SimpleResultMetaData([name for name, _ in self.columns],
                                               _processors=processors if any(processors) else None)
        return self.result


class DirectResult(IteratorResult[Any]):
    """A buffered result with the rowcount the server reported (UPDATE/DELETE/INSERT n)."""

    def __init__(self, metadata: SimpleResultMetaData, rows: Any, rowcount: int) -> None:
        super().__init__(metadata, rows)
        self.rowcount = rowcount


_NO_COLUMNS = SimpleResultMetaData([])

#: Statements seen once (not compiled yet) and their plans by parameter names (None: SQLAlchemy's
#: path). Weak: a statement that is dropped takes its entry with it.
_seen: weakref.WeakKeyDictionary[Any, dict[frozenset[str], Plan | None]] = weakref.WeakKeyDictionary()


def direct_plan(statement: Any, names: frozenset[str], dialect: Any) -> Plan | None:
    """The plan for `statement` with parameters `names` on `dialect`; None where SQLAlchemy must
    run it (module docstring). The first sight of a statement only records it."""
    plans = _seen.get(statement)
    if plans is None:
        with contextlib.suppress(TypeError):  # not weak-referenceable: never direct
            _seen[statement] = {}
        return None
    if names in plans:
        return plans[names]
    plan = plans[names] = _compile(statement, names, dialect)
    return plan


def _compile(statement: Any, names: frozenset[str], dialect: Any) -> Plan | None:
    if not isinstance(statement, ClauseElement) or getattr(statement, "_execution_options", None):
        return None
    try:
        compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(names))
    except Exception:  # SQLAlchemy's path raises it as it should, with its context
        return None
    # An INSERT whose generated key SQLAlchemy fetches with an implicit RETURNING answers with
    # `inserted_primary_key` and no rows: its execution context makes that result (as on SQLite).
    if (not compiled.positional or compiled.insert_prefetch or compiled.update_prefetch or compiled.implicit_returning
            or compiled.literal_execute_params or compiled.post_compile_params or compiled.schema_translate_map
            or compiled.isplaintext or compiled._textual_ordered_columns or compiled._ad_hoc_textual):
        return None
    columns = None
    if compiled._result_columns:
        columns = tuple((column[0], column[3]) for column in compiled._result_columns)
        if len({name for name, _ in columns}) != len(columns):
            return None  # duplicate labels: SQLAlchemy's metadata resolves them, keep its path
    elif isinstance(statement, TypedReturnsRows) and not (compiled.isinsert or compiled.isupdate
                                                          or compiled.isdelete):
        return None  # a SELECT whose columns the compiler did not list: leave it to SQLAlchemy
    arguments = bound_arguments(compiled, names)
    if arguments is None:
        return None
    return Plan(sql=compiled.string, arguments=arguments, columns=columns)


def _rowcount(status: str | None) -> int:
    """The row count of a command tag (`UPDATE 3`, `INSERT 0 2`, `SELECT 1`), as the adapter reads it."""
    if not status:
        return -1
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() and status.split(" ", 1)[0] in ("SELECT", "UPDATE", "DELETE", "INSERT") \
        else -1


class DirectConnection(AsyncConnection):
    """An `AsyncConnection` that runs statements it has seen before directly on asyncpg."""

    #: Whether statement listeners are attached (`prepared.statement_listeners`) or echo is on, looked
    #: up at this connection's first statement: asking SQLAlchemy's joined dispatcher at every
    #: statement cost 2 % of the loop.
    _watching: bool | None = None
    #: How many more statements this connection may send (None: any number): `Database.write_one`.
    statements_left: int | None = None

    async def execute(self, statement: Any, parameters: Any = None, *,
                      execution_options: Any = None) -> Any:
        if self.statements_left is not None:
            if self.statements_left <= 0:  # before anything is sent: the block's one statement already ran
                raise RuntimeError("a one-statement write block sent a second statement")
            self.statements_left -= 1
        sync = self.sync_connection
        if type(parameters) is list and len(parameters) == 1:
            parameters = parameters[0]  # one parameter set is one execution for SQLAlchemy too
        if execution_options is None and sync is not None and (parameters is None or type(parameters) is dict):
            watching = self._watching
            if watching is None:  # echo logs every statement; dialect listeners see them too
                watching = self._watching = bool(statement_listeners(sync) or sync._echo or sync.dialect._has_events)
            transaction = sync._transaction
            if not watching and (transaction is None or transaction.is_active):  # a failed one: SQLAlchemy says so
                plan = direct_plan(statement, frozenset(parameters) if parameters else frozenset(), sync.dialect)
                if plan is not None:
                    return await _run(sync, plan, parameters)
        return await super().execute(statement, parameters, execution_options=execution_options)

    def begin(self) -> AsyncTransaction:
        return DirectTransaction(self)

    async def start(self, is_ctxmanager: bool = False) -> AsyncConnection:
        """Take a connection from the pool. SQLAlchemy takes it in a greenlet, in case it must
        connect or wait; a connection idle in the pool and ready for use is taken without one
        (`DirectPool`), the rest SQLAlchemy's way."""
        if self.sync_connection is None:
            try:
                self.sync_connection = self._assign_proxied(self.sync_engine.connect())
                return self
            except NotReadyWithoutGreenlet:
                pass
        return await super().start(is_ctxmanager)

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        """Close. SQLAlchemy closes in a task of its own behind `asyncio.shield`, so that a
        cancellation cannot cut a close short while it talks to the server: a task, a shield and a
        turn of the event loop on every connection's return, 150 µs of CPU. When the server holds no
        transaction for this connection (a read; a write block that committed or rolled back), the
        close sends nothing and runs to its end without ever suspending (the pool's reset is a
        rollback the adapter skips, the entry goes back to the pool's queue at once), so nothing can
        cut it, and it needs no greenlet either: it is run here directly."""
        sync = self.sync_connection
        if sync is not None and _nothing_to_send(sync):
            sync.close()  # awaits nothing: the pool's reset is a rollback the adapter skips (no transaction)
            return
        await super().__aexit__(type_, value, traceback)


class DirectTransaction(AsyncTransaction):
    """A transaction begun without a greenlet: SQLAlchemy's BEGIN sends nothing on asyncpg (the
    adapter sends BEGIN with the first statement), so on a valid connection it runs here directly;
    a greenlet per write block was 5 % of the loop's time on PostgreSQL. Commit and rollback, which
    talk to the server, keep SQLAlchemy's way."""

    async def start(self, is_ctxmanager: bool = False) -> AsyncTransaction:
        sync = self.connection.sync_connection
        if self.nested or sync is None or sync._dbapi_connection is None or sync.invalidated:
            return await super().start(is_ctxmanager)
        self.sync_transaction = self._assign_proxied(sync.begin())
        if is_ctxmanager:
            self.sync_transaction.__enter__()
        return self


def _nothing_to_send(sync: Connection) -> bool:
    """Whether closing `sync` sends nothing to the server: a valid connection whose asyncpg
    adapter has no transaction open (the pool's reset on return is then a no-op rollback), going
    back to a pool with room for it (a pool that is full closes the connection instead, which
    talks to the server; `Database` sizes the pool so that it never is)."""
    fairy: Any = sync._dbapi_connection
    if fairy is None or sync.invalidated:
        return False
    adapter = fairy.dbapi_connection
    pool: Any = sync.engine.pool
    return (adapter is not None and getattr(adapter, "_transaction", True) is None
            and pool.checkedin() < pool.size())


class NotReadyWithoutGreenlet(Exception):
    """`DirectPool` has no connection to hand out without a greenlet (none idle, or the idle one
    must be connected first): the caller takes one SQLAlchemy's way."""


class DirectPool(AsyncAdaptedQueuePool):
    """The PostgreSQL engine's pool (`Database` passes it as `poolclass`).

    SQLAlchemy's async layer takes every connection in a greenlet, because taking one may have to
    connect, or wait for one to come back, and both await. Taking one that sits idle in the pool,
    connected and usable, awaits nothing: outside a greenlet this pool hands out only such a
    connection, and otherwise raises `NotReadyWithoutGreenlet` before anything changed (an entry it
    looked at goes back to the queue). Inside a greenlet it is SQLAlchemy's pool unchanged. "Usable"
    is what `_ConnectionRecord.get_connection` would accept without connecting again (not
    invalidated, not due for recycling), and a socket the server has not closed (what the checkout
    listener of `Database` otherwise finds and replaces)."""

    def _do_get(self) -> ConnectionPoolEntry:
        if in_greenlet():
            return super()._do_get()
        try:
            record: Any = self._pool.get_nowait()
        except sqla_queue.Empty:
            raise NotReadyWithoutGreenlet from None
        if not _usable(self, record):
            self._pool.put_nowait(record)
            raise NotReadyWithoutGreenlet
        return record  # type: ignore[no-any-return]


def _usable(pool: Any, record: Any) -> bool:
    adapter = record.dbapi_connection
    if adapter is None:
        return False
    started = record.starttime
    if pool._recycle > -1 and time.time() - started > pool._recycle:
        return False
    if pool._invalidate_time > started or record._soft_invalidate_time > started:
        return False
    driver = getattr(adapter, "driver_connection", None)
    return driver is not None and not driver.is_closed()


class DirectEngine(AsyncEngine):
    """The PostgreSQL engine of `Database`: its connections are `DirectConnection`s, and so are
    those of its `execution_options(...)` copies (SQLAlchemy's make a plain `AsyncEngine`)."""

    _connection_cls = DirectConnection

    def execution_options(self, **opt: Any) -> DirectEngine:
        return DirectEngine(self.sync_engine.execution_options(**opt))


async def _run(sync: Connection, plan: Plan, parameters: dict[str, Any] | None) -> DirectResult:
    args = bind(plan.arguments, parameters)
    if sync._transaction is None:
        sync.begin()  # what SQLAlchemy's autobegin does before a statement (asyncpg's BEGIN is lazy)
    adapter: Any = sync.connection.dbapi_connection
    dialect: Any = sync.dialect
    failure: Exception | None = None
    async with adapter._execute_mutex:
        try:
            if adapter._transaction is None:
                await adapter._start_transaction()  # no-op in autocommit
            prepared, attributes = await adapter._prepare(plan.sql, dialect._invalidate_schema_cache_asof)
            records = await prepared.fetch(*args)
            status = prepared.get_statusmsg()
        except Exception as error:  # handled below, as SQLAlchemy would, outside the mutex
            failure = error
    if failure is not None:
        await greenlet_spawn(_raise_as_sqlalchemy, sync, adapter, failure, plan.sql, args)
    if plan.columns is not None:
        return DirectResult(plan.result_metadata(dialect, attributes), iter([tuple(r) for r in records]),
                            _rowcount(status))
    done = DirectResult(_NO_COLUMNS, iter(()), _rowcount(status))
    done._soft_close(hard=True)  # no rows to fetch: reading them raises, as SQLAlchemy's result does
    return done


def _raise_as_sqlalchemy(sync: Connection, adapter: Any, error: Exception, sql: str, args: Sequence[Any]) -> None:
    """The asyncpg error as the adapter translates it, then as SQLAlchemy's connection handles a
    DBAPI error (exception class, disconnect detection and invalidation); in a greenlet, since the
    invalidation closes the connection through the adapter's synchronous API."""
    try:
        adapter._handle_exception(error)
    except Exception as dbapi_error:
        sync._handle_dbapi_exception(dbapi_error, sql, tuple(args), None, None)
    raise error  # pragma: no cover - both calls above always raise
