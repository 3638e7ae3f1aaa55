"""Statements run at the driver on SQLite: compiled once by SQLAlchemy, executed on the DBAPI cursor.

SQLAlchemy stays the one place statements are written; what this skips is its work *per execution*:
the cache-key walk and compiled-cache lookup, the execution context, the parameter and result
set-up and the `CursorResult`: about half of a one-row read block's CPU (docs/performance.md,
saving 16; PostgreSQL's counterpart, over asyncpg, is `core/store/pg_direct.py`, saving 15). For a
statement object executed again and again (the hot path's are module constants,
tests/test_statements.py), `PreparedStatements` keeps, per parameter-key set, what
SQLAlchemy's own compiler made of it for this engine's dialect, once:

- the SQL string and the positional order of its parameters (`positiontup`);
- the bind processors (`UTCDateTime`, JSON, ...), and the scalar Python-side defaults of an INSERT
  (`insert_prefetch`), applied as SQLAlchemy's execution context applies them;
- the result's metadata and row factory, taken from SQLAlchemy's own `CursorResult` of the statement's
  second execution, so rows are processed by SQLAlchemy's code (result processors, `row.attr`,
  `row._mapping`).

From then on `Prepared.run` builds the parameters as SQLAlchemy's `construct_params` would, from
where each one comes from, worked out once (`bound_arguments`, also PostgreSQL's rule), calls
`cursor.execute(sql, params)` on the connection's DBAPI connection (`_BufferedCursor`: the rows are
fetched during the call) and returns a `DriverResult`, which offers the `Result` API callers use
(`first`, `all`, `one`, `one_or_none`, `scalar`, `scalar_one`, `scalar_one_or_none`, iteration,
`rowcount`) and hands anything else to SQLAlchemy's own `IteratorResult` over the same rows. An
error is raised by SQLAlchemy's own handler (`Connection._handle_dbapi_exception`): the same
`IntegrityError` or `OperationalError` with `.orig`, the same invalidation of a broken connection,
so `InlineConnection._call`'s retry on the store's thread and every caller's `except` are unchanged.
Transactions are untouched: BEGIN IMMEDIATE and COMMIT go through the connection as before.

Everything else takes SQLAlchemy's path, unchanged: the first execution of a statement object (a
statement built per call is never compiled apart), executemany (a list of several parameter sets,
so insertmanyvalues too), `execution_options` (per call, on the statement or the connection),
expanding and literal-execute parameters, Python-side defaults that are not constants, textual SQL,
and any connection that is not in a plain state (invalidated, a failed transaction, a nested one).
**Listeners stay honest**: while the engine has a `before_execute`, `after_execute`,
`before_cursor_execute` or `after_cursor_execute` listener, or the dialect any listener
(`handle_error`, `do_execute`), or echo is on, every statement goes through SQLAlchemy, so the tools
and tests that count statements through those events (bench.statements, tests/test_statements.py)
see every one of them. `PreparedStatements.runs` counts the executions done here (tests read it).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.result import IteratorResult
from sqlalchemy.sql import compiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import CompoundSelect, Select

#: Statement classes run at the driver (Core SELECT, INSERT, UPDATE, DELETE); textual SQL is not.
_KINDS = (Select, CompoundSelect, UpdateBase)


class Prepared:
    """One statement object compiled for one dialect and one set of parameter keys."""

    __slots__ = (
        "arguments",
        "compiled",
        "defaults",
        "make_row",
        "make_rows",
        "metadata",
        "positiontup",
        "processors",
        "sequence",
        "sql",
    )

    def __init__(self, compiled: Any, keys: tuple[str, ...], defaults: list[tuple[str, Any]], result: Any,
                 sequence: type) -> None:
        self.compiled = compiled
        self.sql: str = compiled.string
        self.positiontup: list[str] = list(compiled.positiontup or ())
        self.processors: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        self.defaults = defaults
        self.sequence = sequence
        #: The arguments worked out once (None: `construct_params` at each run).
        self.arguments = bound_arguments(compiled, keys, defaults)
        self.metadata: Any = None
        self.make_row: Callable[[Any], Any] | None = None
        self.make_rows: Callable[[Any], Any] | None = None
        if result.returns_rows:
            # SQLAlchemy's own metadata of this compiled statement (cached on it, as SQLAlchemy caches
            # it) and its own row factory: the rows come out exactly as through a CursorResult.
            self.metadata = result._metadata
            self.make_row, self.make_rows, _ = IteratorResult(self.metadata, iter(()))._row_getter

    def run(self, sync: Connection, params: dict[str, Any] | None) -> DriverResult:
        """Execute on the DBAPI connection under `sync` (a synchronous call: `InlineConnection._call`)."""
        compiled = self.compiled
        try:
            if self.arguments is not None:
                args = self.sequence(bind(self.arguments, params))
            else:
                values = compiled.construct_params(params, escape_names=False)
                for key, value in self.defaults:
                    values[key] = value
                procs = self.processors
                args = self.sequence([procs[k](values[k]) if k in procs else values[k] for k in self.positiontup])
        except BaseException as exc:  # as SQLAlchemy's execution context set-up: a StatementError
            sync._handle_dbapi_exception(exc, self.sql, [params or {}], None, None)
        fairy = sync._dbapi_connection
        assert fairy is not None and fairy.dbapi_connection is not None
        cursor = fairy.dbapi_connection.cursor()
        try:
            cursor.execute(self.sql, args)
            rows = list(cursor.fetchall()) if self.metadata is not None else None
            rowcount, lastrowid = cursor.rowcount, cursor.lastrowid
        except BaseException as exc:
            sync._handle_dbapi_exception(exc, self.sql, args, cursor, None)
        cursor.close()
        return DriverResult(self, rows, rowcount, lastrowid)


class _Seen:
    """A statement object met before, and what each of its parameter-key sets compiled to (None:
    not for the driver)."""

    __slots__ = ("by_keys",)

    def __init__(self) -> None:
        self.by_keys: dict[tuple[str, ...], Prepared | None] = {}


class PreparedStatements:
    """The statements of one SQLite engine run at the driver (module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._seen: weakref.WeakKeyDictionary[Any, _Seen] = weakref.WeakKeyDictionary()
        #: Executions done at the driver (tests check the hot path's statements are among them).
        self.runs = 0
        self.enabled = True

    def runner(self, sync: Connection, statement: Any, params: Any) -> Callable[[], Any] | None:
        """What runs `statement` with `params` on `sync` at the driver (compiling it first if this is
        its second execution), or None: SQLAlchemy's path. The call may be made again on the store's
        thread (`InlineConnection._call`)."""
        if not self.enabled or not isinstance(statement, _KINDS) or statement._execution_options:
            return None
        if type(params) is list:  # one parameter set in a list is one execution for SQLAlchemy too
            if len(params) != 1:
                return None
            params = params[0]
        if params is not None and type(params) is not dict:
            return None
        if not self._plain(sync):
            return None
        seen = self._seen.get(statement)
        if seen is None:
            self._seen[statement] = _Seen()
            return None
        keys = tuple(params) if params else ()
        if keys not in seen.by_keys:
            return functools.partial(self._prepare, sync, statement, seen, keys, params)
        prepared = seen.by_keys[keys]
        if prepared is None:
            return None
        self.runs += 1
        return functools.partial(prepared.run, sync, params)

    def _plain(self, sync: Connection) -> bool:
        """Whether SQLAlchemy would do nothing but compile, execute and read for this connection: no
        statement listeners, no echo, no execution options, a usable connection and transaction."""
        if (sync._has_events or self.engine._has_events) and statement_listeners(sync):
            return False
        transaction = sync._transaction
        return not (self.dialect._has_events or sync._echo or sync._execution_options
                    or sync._dbapi_connection is None or sync._nested_transaction is not None
                    or sync._trans_context_manager is not None
                    or (transaction is not None and not transaction.is_active))

    def _prepare(self, sync: Connection, statement: Any, seen: _Seen, keys: tuple[str, ...],
                 params: dict[str, Any] | None) -> Any:
        """Compile `statement` for these keys as SQLAlchemy would and execute it through SQLAlchemy with
        that compiled form; keep it for the driver when nothing in it needs SQLAlchemy per execution."""
        dialect = self.dialect
        compiled = statement.compile(dialect=dialect, column_keys=sorted(keys), for_executemany=False,
                                     linting=dialect.compiler_linting | compiler.WARN_LINTING)
        defaults = _scalar_defaults(compiled)
        if (defaults is None or not compiled.positional or compiled.post_compile_params
                or compiled.literal_execute_params or compiled.has_out_parameters or compiled.implicit_returning
                or compiled.schema_translate_map or compiled.isplaintext):
            seen.by_keys[keys] = None
            return sync.execute(statement, params)
        distilled = [params] if params else []
        options = sync._execution_options
        result = sync._execute_context(dialect, dialect.execution_ctx_cls._init_compiled, compiled, distilled,
                                       options, compiled, distilled, statement, None,
                                       cache_hit=dialect.CACHING_DISABLED)
        if result.returns_rows and compiled._cached_metadata is not result._metadata:
            seen.by_keys[keys] = None  # metadata SQLAlchemy itself would not reuse
        else:
            seen.by_keys[keys] = Prepared(compiled, keys, defaults, result, dialect.execute_sequence_format)
        return result

    def forget(self) -> None:
        """Drop every compiled form (tests)."""
        self._seen = weakref.WeakKeyDictionary()


def statement_listeners(sync: Connection) -> bool:
    """Whether anything listens to statement executions on this connection or its engine: then
    SQLAlchemy runs every statement, so that the listeners see them all (here and in pg_direct)."""
    dispatch: Any = sync.dispatch
    return bool(dispatch.before_execute or dispatch.after_execute or dispatch.before_cursor_execute
                or dispatch.after_cursor_execute)


#: Per positional parameter of a compiled statement: (True, the caller's key, SQLAlchemy's bind
#: processor or None), or (False, the value the statement binds, already processed).
Arguments = tuple[tuple[bool, Any, Any], ...]


def bound_arguments(compiled: Any, names: Iterable[str], overrides: Iterable[tuple[str, Any]] = ()
                    ) -> Arguments | None:
    """Where each positional parameter of `compiled` comes from, worked out once for parameter dicts
    with these keys, as SQLAlchemy's `construct_params` and bind processors decide it (the values
    the statement collected first, the caller's over them; `overrides`, by bind name: the constant
    Python-side defaults its execution context adds). None where that needs more than a lookup (a
    required value not given, a callable value): SQLAlchemy's path says or does it.

    Used by both driver paths (here, and PostgreSQL's core/store/pg_direct.py): `bind` then makes a
    call's arguments with no `construct_params` per execution."""
    given = frozenset(names)
    fixed = dict(overrides)
    collected = compiled._collected_params if getattr(compiled, "_collect_params", False) else {}
    processors = compiled._bind_processors
    source: dict[str, tuple[bool, Any, Any]] = {}
    for bindparam, name in compiled.bind_names.items():
        processor = processors.get(name)
        if name in fixed:
            value = fixed[name]
            source[name] = (False, processor(value) if processor else value, None)
            continue
        for key in (bindparam.key, name):
            if key in given:
                source[name] = (True, key, processor)
                break
            if key in collected:
                value = collected[key]
                source[name] = (False, processor(value) if processor else value, None)
                break
        else:
            if bindparam.required or bindparam.callable:
                return None
            value = bindparam.value
            source[name] = (False, processor(value) if processor else value, None)
    try:
        return tuple(source[name] for name in compiled.positiontup)
    except KeyError:
        return None


def bind(arguments: Arguments, params: dict[str, Any] | None) -> list[Any]:
    """A call's positional arguments (see `bound_arguments`)."""
    given = params or {}
    return [(process(given[what]) if process else given[what]) if from_caller else what
            for from_caller, what, process in arguments]


def _scalar_defaults(compiled: Any) -> list[tuple[str, Any]] | None:
    """The Python-side defaults SQLAlchemy's execution context would add (a constant each), or None
    when one is computed per execution (a callable, a sequence, a SQL expression)."""
    columns = compiled.insert_prefetch or compiled.update_prefetch
    if not columns:
        return []
    key_of = compiled._within_exec_param_key_getter
    out = []
    for column in columns:
        arg, is_scalar, _callable, is_sentinel = (column._default_description_tuple if compiled.insert_prefetch
                                                  else column._onupdate_description_tuple)
        if not is_scalar or is_sentinel:
            return None
        out.append((key_of(column), arg))
    return out


class DriverResult:
    """The rows of one execution at the driver, read as from SQLAlchemy's `Result`.

    The calls the store's callers make are served here; any other goes to SQLAlchemy's own
    `IteratorResult` over the rows not yet read (built on first use), so its behaviour is SQLAlchemy's."""

    __slots__ = ("_closed", "_prepared", "_rows", "_sa", "lastrowid", "rowcount")

    def __init__(self, prepared: Prepared, rows: list[Any] | None, rowcount: int, lastrowid: Any) -> None:
        self._prepared = prepared
        self._rows = rows
        self._closed = False
        self._sa: Any = None
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    @property
    def returns_rows(self) -> bool:
        return self._prepared.metadata is not None

    def _take(self) -> list[Any]:
        """The raw rows, for a call that reads the rest of them; the errors SQLAlchemy raises otherwise."""
        if self._rows is None:
            raise sqlalchemy.exc.ResourceClosedError(
                "This result object does not return rows. It has been closed automatically.")
        if self._closed:
            raise sqlalchemy.exc.ResourceClosedError("This result object is closed.")
        rows = self._rows
        self._rows = []
        return rows

    def _result(self) -> Any:
        if self._sa is None:
            rows = self._take()
            self._closed = True
            self._sa = IteratorResult(self._prepared.metadata, iter(rows))
        return self._sa

    def __getattr__(self, name: str) -> Any:
        # Only what SQLAlchemy's Result offers, and asking for anything else reads no rows (so that
        # getattr with a default and hasattr behave).
        if name.startswith("__") or not hasattr(IteratorResult, name):
            raise AttributeError(name)
        return getattr(self._result(), name)

    def __iter__(self) -> Iterator[Any]:
        if self._sa is not None:
            return iter(self._sa)
        make_row = self._prepared.make_row
        assert make_row is not None or self._rows is None
        return (make_row(row) for row in self._take())  # type: ignore[misc]

    def all(self) -> list[Any]:
        if self._sa is not None:
            return self._sa.all()  # type: ignore[no-any-return]
        rows = self._take()
        make_rows = self._prepared.make_rows
        assert make_rows is not None
        return list(make_rows(rows))

    def fetchall(self) -> list[Any]:
        return self.all()

    def first(self) -> Any:
        if self._sa is not None:
            return self._sa.first()
        rows = self._take()
        self._closed = True
        return self._prepared.make_row(rows[0]) if rows else None  # type: ignore[misc]

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def _only(self, required: bool) -> Any:
        rows = self._take()
        self._closed = True
        if not rows:
            if required:
                raise sqlalchemy.exc.NoResultFound("No row was found when one was required")
            return None
        if len(rows) > 1:
            raise sqlalchemy.exc.MultipleResultsFound(
                "Multiple rows were found when exactly one was required" if required
                else "Multiple rows were found when one or none was required")
        return self._prepared.make_row(rows[0])  # type: ignore[misc]

    def one(self) -> Any:
        return self._sa.one() if self._sa is not None else self._only(True)

    def one_or_none(self) -> Any:
        return self._sa.one_or_none() if self._sa is not None else self._only(False)

    def scalar_one(self) -> Any:
        return self._sa.scalar_one() if self._sa is not None else self._only(True)[0]

    def scalar_one_or_none(self) -> Any:
        if self._sa is not None:
            return self._sa.scalar_one_or_none()
        row = self._only(False)
        return None if row is None else row[0]

    def close(self) -> None:
        self._closed = True
        if self._sa is not None:
            self._sa.close()
