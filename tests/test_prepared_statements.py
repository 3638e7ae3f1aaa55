"""Statements run at the driver on SQLite (core/store/prepared.py): the same rows, counts and errors
as SQLAlchemy's own execution, statement by statement over real exchanges; SQLAlchemy's path kept
for listeners, per-call statements and executemany."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, bindparam, event, func, insert, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.selectable import Select

from lgsp.core.hub import Hub
from lgsp.core.store.database import Database
from lgsp.core.store.prepared import DriverResult, Prepared
from lgsp.core.store.sqlite_inline import INLINE_READ_STEPS, InlineEngine
from lgsp.core.store.tables import UTCDateTime

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package

from bench.statements import count_exchanges, kind_of  # noqa: E402

from .test_statements import _pairs  # noqa: E402

_meta = MetaData()
_things = Table("prep_things", _meta, Column("id", Integer, primary_key=True), Column("name", String(20)),
                Column("at", UTCDateTime), Column("doc", JSON), Column("n", Integer, nullable=False, default=7))
_INSERT = insert(_things)
_BY_ID = select(_things).where(_things.c.id == bindparam("id"))
_NAMES = select(_things.c.name, _things.c.at.label("when")).order_by(_things.c.id)
_RENAME = _things.update().where(_things.c.id == bindparam("key")).values(name=bindparam("name"))
_RENAME_RETURNING = (_things.update().where(_things.c.id == bindparam("key")).values(name=bindparam("name"))
                     .returning(_things.c.id, _things.c.doc))
_COUNT = select(func.count()).select_from(_things)


def _engines(db: Database) -> list[InlineEngine]:
    engines = [db.writer, db.reader]
    assert all(isinstance(e, InlineEngine) for e in engines)
    return engines  # type: ignore[return-value]


def _kind(engine: InlineEngine, statement: Any) -> str:
    return kind_of(str(statement.compile(dialect=engine.sync_engine.dialect)))


@contextmanager
def _sqlalchemy_only(db: Database) -> Iterator[None]:
    for engine in _engines(db):
        engine.statements.enabled = False
    try:
        yield
    finally:
        for engine in _engines(db):
            engine.statements.enabled = True


async def _store(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    async with db.write() as conn:
        await conn.run_sync(_meta.create_all)
    return db


def _same_rows(ours: list[Any], theirs: list[Any]) -> None:
    assert [tuple(r) for r in ours] == [tuple(r) for r in theirs]
    assert [[type(v) for v in r] for r in ours] == [[type(v) for v in r] for r in theirs]
    assert [list(r._mapping.keys()) for r in ours] == [list(r._mapping.keys()) for r in theirs]
    assert [r._fields for r in ours] == [r._fields for r in theirs]


# -- every statement of real exchanges, compared with SQLAlchemy's own execution ---------------------

class Comparing:
    """Wraps one engine's `PreparedStatements.runner`: each statement that goes to the driver is first
    executed by SQLAlchemy itself on the same connection (a write inside a SAVEPOINT rolled back),
    and the driver's rows, types and row count must equal SQLAlchemy's."""

    def __init__(self, engine: InlineEngine) -> None:
        self.engine = engine
        self.compared: Counter[str] = Counter()
        self.real = engine.statements.runner
        engine.statements.runner = self.runner  # type: ignore[method-assign]

    def close(self) -> None:
        del self.engine.statements.runner

    def runner(self, sync: Connection, statement: Any, params: Any) -> Callable[[], Any] | None:
        run = self.real(sync, statement, params)
        if not isinstance(run, functools.partial) or getattr(run.func, "__func__", None) is not Prepared.run:
            return run
        return functools.partial(self._compare, run, sync, statement, params)

    def _compare(self, run: Callable[[], DriverResult], sync: Connection, statement: Any, params: Any) -> DriverResult:
        raw = sync.connection.dbapi_connection
        assert raw is not None
        write = not isinstance(statement, Select)
        if write:
            raw.execute("SAVEPOINT lgsp_compare")
        try:
            theirs = sync.execute(statement, params)
            their_rows = theirs.all() if theirs.returns_rows else None
            their_count = theirs.rowcount
        finally:
            if write:
                raw.execute("ROLLBACK TO lgsp_compare")
                raw.execute("RELEASE lgsp_compare")
        ours = run()
        assert isinstance(ours, DriverResult)
        assert ours.returns_rows == (their_rows is not None)
        assert ours.rowcount == their_count
        if their_rows is not None:
            assert ours._rows is not None
            _same_rows(ours._prepared.make_rows(list(ours._rows)), their_rows)  # type: ignore[misc]
        self.compared[_kind(self.engine, statement)] += 1
        return ours


class NoCounter:
    """count_exchanges' counter without listeners (listeners send every statement SQLAlchemy's way)."""

    @contextmanager
    def counting(self, *_engines: Any) -> Iterator[NoCounter]:
        yield self


async def test_every_exchange_statement_gives_what_sqlalchemy_gives(hub: Hub) -> None:
    pairs = await _pairs(hub, 2)
    await count_exchanges(hub, pairs, per_pair=1, counter=NoCounter())  # type: ignore[arg-type]
    watchers = [Comparing(e) for e in _engines(hub.db)]
    try:
        await count_exchanges(hub, pairs, per_pair=2, counter=NoCounter())  # type: ignore[arg-type]
    finally:
        for w in watchers:
            w.close()
    compared = sum((w.compared for w in watchers), Counter[str]())
    # Every statement kind of the exchange the driver runs, the multi-row INSERTs (nonce batches,
    # several events) included.
    for kind in ("SELECT packets", "UPDATE deliveries", "UPDATE packets", "INSERT packets", "INSERT deliveries",
                 "INSERT audit_log", "INSERT content_keys", "DELETE content_keys", "INSERT packet_events",
                 "INSERT nonces"):
        assert compared[kind] > 0, compared


async def test_the_exchange_runs_at_the_driver(hub: Hub) -> None:
    """Fails when the exchange's statements stop going to the driver: per exchange, every packet load,
    delivery move, packet update, creation and audit entry is run there."""
    pairs = await _pairs(hub, 2)
    await count_exchanges(hub, pairs, per_pair=1, counter=NoCounter())  # type: ignore[arg-type]
    fast: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    originals = []
    for engine in _engines(hub.db):
        real = engine.statements.runner
        originals.append(engine)

        def recording(sync: Connection, statement: Any, params: Any, *, _real: Any = real,
                      _engine: InlineEngine = engine) -> Any:
            run = _real(sync, statement, params)
            target = fast if run is not None else missed
            target[_kind(_engine, statement)] += 1
            return run

        engine.statements.runner = recording  # type: ignore[method-assign]
    try:
        _, n = await count_exchanges(hub, pairs, per_pair=3, counter=NoCounter())  # type: ignore[arg-type]
    finally:
        for engine in originals:
            del engine.statements.runner
    per = {k: v / n for k, v in fast.items()}
    pinned = {"SELECT packets": 4, "UPDATE deliveries": 4, "UPDATE packets": 2, "INSERT packets": 1,
              "INSERT deliveries": 1, "INSERT audit_log": 3, "INSERT content_keys": 1, "DELETE content_keys": 1,
              "INSERT packet_events": 4}
    for kind, count in pinned.items():
        assert per.get(kind, 0) >= count, (per, missed)
    assert sum(pinned.values()) >= 21
    # Every signed request's nonce goes in a batch (one INSERT for all the requests that arrived
    # together), and a batch of a size seen before runs at the driver.
    assert per.get("INSERT nonces", 0) >= 2, (per, missed)


# -- the same answers and errors, statement by statement ------------------------------------------------

async def _both(db: Database, fn: Callable[[Any], Any], *, write: bool = False) -> tuple[Any, Any]:
    """`fn(conn)` through SQLAlchemy (the driver switched off) and then at the driver, each three times
    so that the driver has compiled the statement; the last results of each."""
    out = []
    for driver in (False, True):
        for engine in _engines(db):
            engine.statements.enabled = driver
        runs = sum(e.statements.runs for e in _engines(db))
        result = None
        for _ in range(3):
            if write:
                async with db.write() as conn:
                    result = await fn(conn)
            else:
                async with db.read() as conn:
                    result = await fn(conn)
        assert (sum(e.statements.runs for e in _engines(db)) > runs) == driver
        out.append(result)
    return out[0], out[1]


async def test_rows_types_and_counts_equal(tmp_path: Path) -> None:
    db = await _store(tmp_path)
    at = datetime(2026, 12, 6, 10, 30, 15, 123456, tzinfo=UTC)
    try:
        for i in range(1, 4):
            async with db.write() as conn:
                await conn.execute(_INSERT, {"id": i, "name": f"n{i}", "at": at, "doc": {"k": [i, "á"]}})
        async with db.write() as conn:  # the scalar default (n = 7) is applied as SQLAlchemy applies it
            await conn.execute(_INSERT, [{"id": 4, "name": None, "at": None, "doc": None}])

        async def all_by_id(conn: Any) -> list[Any]:
            return list((await conn.execute(_BY_ID, {"id": 2})).all())

        theirs, ours = await _both(db, all_by_id)
        _same_rows(ours, theirs)
        assert ours[0].at == at and ours[0].at.tzinfo is UTC and ours[0].doc == {"k": [2, "á"]}
        assert ours[0]._mapping[_things.c.name] == "n2"

        async def names(conn: Any) -> list[Any]:
            return [row for row in await conn.execute(_NAMES)]

        theirs, ours = await _both(db, names)
        _same_rows(ours, theirs)
        assert [r.when for r in ours] == [at, at, at, None]

        async def shapes(conn: Any) -> tuple[Any, ...]:
            return ((await conn.execute(_BY_ID, {"id": 4})).first(), await conn.scalar(_COUNT),
                    (await conn.execute(_BY_ID, {"id": 9})).first(),
                    (await conn.execute(_BY_ID, {"id": 9})).scalar_one_or_none(),
                    (await conn.execute(_BY_ID, {"id": 1})).scalar_one(),
                    (await conn.execute(_BY_ID, {"id": 1})).one_or_none(),
                    (await conn.execute(_BY_ID, {"id": 3})).scalars().all(),
                    [dict(m) for m in (await conn.execute(_NAMES)).mappings()])

        theirs, ours = await _both(db, shapes)
        assert ours == theirs
        assert ours[0].n == 7 and ours[1] == 4 and ours[2] is None

        async def lookups(conn: Any) -> tuple[Any, ...]:  # asking for what a result lacks reads nothing
            found = await conn.execute(_BY_ID, {"id": 2})
            renamed = await conn.execute(_RENAME, {"key": 3, "name": "n3"})
            return (getattr(found, "no_such_thing", None), hasattr(renamed, "no_such_thing"), found.one().name,
                    renamed.rowcount)

        theirs, ours = await _both(db, lookups, write=True)
        assert ours == theirs == (None, False, "n2", 1)

        async def counts(conn: Any) -> tuple[Any, ...]:
            renamed = await conn.execute(_RENAME, {"key": 1, "name": "renamed"})
            none = await conn.execute(_RENAME, {"key": 99, "name": "x"})
            returned = await conn.execute(_RENAME_RETURNING, {"key": 2, "name": "r2"})
            rows = returned.all()
            return renamed.rowcount, renamed.returns_rows, none.rowcount, [tuple(r) for r in rows], returned.rowcount

        theirs, ours = await _both(db, counts, write=True)
        assert ours == theirs == (1, False, 0, [(2, {"k": [2, "á"]})], 1)

        async def misuse(conn: Any) -> list[type[Exception]]:
            errors: list[type[Exception]] = []
            renamed = await conn.execute(_RENAME, {"key": 1, "name": "again"})
            try:
                renamed.first()  # an UPDATE without RETURNING has no rows
            except sqlalchemy.exc.ResourceClosedError as exc:
                errors.append(type(exc))
            found = await conn.execute(_BY_ID, {"id": 1})
            found.first()
            try:
                found.first()  # read once, then closed
            except sqlalchemy.exc.ResourceClosedError as exc:
                errors.append(type(exc))
            try:
                (await conn.execute(_NAMES)).one()
            except sqlalchemy.exc.MultipleResultsFound as exc:
                errors.append(type(exc))
            try:
                (await conn.execute(_BY_ID, {"id": 99})).one()
            except sqlalchemy.exc.NoResultFound as exc:
                errors.append(type(exc))
            return errors

        theirs, ours = await _both(db, misuse, write=True)
        assert ours == theirs and len(ours) == 4
    finally:
        await db.close()


async def test_errors_are_sqlalchemys(tmp_path: Path) -> None:
    """A constraint, a missing table and a bad parameter value raise the same SQLAlchemy exceptions
    with the same driver error (`.orig`, its SQLite code) as through SQLAlchemy; the transaction
    then rolls back as before."""
    db = await _store(tmp_path)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with db.write() as conn:
            await conn.execute(_INSERT, {"id": 1, "name": "one", "at": at, "doc": None})

        async def fails(fn: Callable[[Any], Any], warm: Callable[[Any], Any], *, write: bool = True
                        ) -> list[tuple[Any, ...]]:
            """`fn` failing through SQLAlchemy, then at the driver once `warm` (the same statement,
            succeeding) has had it compiled there."""
            seen = []
            for driver in (False, True):
                for engine in _engines(db):
                    engine.statements.enabled = driver
                if driver:
                    for _ in range(2):
                        async with db.write() as conn:
                            await warm(conn)
                runs = sum(e.statements.runs for e in _engines(db))
                for _ in range(3):
                    with pytest.raises(sqlalchemy.exc.StatementError) as caught:
                        await attempt(fn, write)
                    exc = caught.value
                    orig = exc.orig
                    seen.append((type(exc), type(orig), getattr(orig, "sqlite_errorcode", None), str(orig)))
                assert (sum(e.statements.runs for e in _engines(db)) > runs) == driver
            assert len(set(seen)) == 1, seen
            return seen

        async def attempt(fn: Callable[[Any], Any], write: bool) -> None:
            if write:
                async with db.write() as conn:
                    await fn(conn)
            else:
                async with db.read() as conn:
                    await fn(conn)

        ids = iter(range(10, 100))

        async def duplicate(conn: Any) -> None:
            await conn.execute(_INSERT, {"id": 1, "name": "dup", "at": at, "doc": None})

        async def insert_new(conn: Any) -> None:
            await conn.execute(_INSERT, {"id": next(ids), "name": "new", "at": at, "doc": None})

        seen = await fails(duplicate, insert_new)
        assert seen[0][:3] == (sqlalchemy.exc.IntegrityError, sqlite3.IntegrityError, 1555)

        stamp = _RENAME.values(at=bindparam("at"))

        async def naive(conn: Any) -> None:  # UTCDateTime refuses a naive datetime in its bind processor
            await conn.execute(stamp, {"key": 1, "name": "x", "at": datetime(2026, 1, 1)})

        async def aware(conn: Any) -> None:
            await conn.execute(stamp, {"key": 2, "name": "y", "at": at})

        seen = await fails(naive, aware)
        assert seen[0][:2] == (sqlalchemy.exc.StatementError, ValueError)
        async with db.read() as conn:
            assert (await conn.execute(_BY_ID, {"id": 1})).one().name == "one"  # nothing written

        async with db.read() as conn:  # the driver has this one compiled; now its table goes
            for _ in range(3):
                await conn.execute(_COUNT)
        async with db.write() as conn:
            await conn.run_sync(lambda c: _things.drop(c))
        seen = await fails(lambda conn: conn.execute(_COUNT), lambda conn: conn.execute(select(literal(1))),
                           write=False)
        assert seen[0][:3] == (sqlalchemy.exc.OperationalError, sqlite3.OperationalError, 1)
        assert "no such table" in seen[0][3]
    finally:
        await db.close()


# -- what stays SQLAlchemy's ----------------------------------------------------------------------------

async def test_listeners_see_every_statement(tmp_path: Path) -> None:
    """A statement listener (bench.statements, the statement tests) sends every statement through
    SQLAlchemy, so it sees each one; once removed, the driver is used again."""
    db = await _store(tmp_path)
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    try:
        async with db.read() as conn:
            for _ in range(3):
                await conn.execute(_BY_ID, {"id": 1})
        runs = db.reader.statements.runs  # type: ignore[attr-defined]
        event.listen(db.reader.sync_engine, "before_cursor_execute", listener)
        async with db.read() as conn:
            for _ in range(5):
                await conn.execute(_BY_ID, {"id": 1})
        assert len(seen) == 5
        assert db.reader.statements.runs == runs  # type: ignore[attr-defined]
        event.remove(db.reader.sync_engine, "before_cursor_execute", listener)
        async with db.read() as conn:
            await conn.execute(_BY_ID, {"id": 1})
        assert len(seen) == 5
        assert db.reader.statements.runs == runs + 1  # type: ignore[attr-defined]
    finally:
        await db.close()


async def test_statements_built_per_call_and_executemany_stay_sqlalchemys(tmp_path: Path) -> None:
    db = await _store(tmp_path)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with db.write() as conn:
            await conn.execute(_INSERT, [{"id": i, "name": f"n{i}", "at": at, "doc": [i]} for i in range(1, 6)])
        for i in range(1, 6):
            async with db.read() as conn:
                row = (await conn.execute(select(_things.c.doc).where(_things.c.id == i))).one()
                assert row.doc == [i]
                # A list of several values is expanded by SQLAlchemy at each execution: its path.
                many = (await conn.execute(select(_things.c.id).where(_things.c.id.in_(bindparam("ids",
                                                                                                expanding=True))),
                                           {"ids": [1, 2, i]})).scalars().all()
                assert sorted(many) == sorted({1, 2, i})
        assert db.reader.statements.runs == 0  # type: ignore[attr-defined]
        assert db.writer.statements.runs == 0  # type: ignore[attr-defined]
        async with db.read() as conn:  # per call options: SQLAlchemy's path too
            for _ in range(3):
                await conn.execute(_BY_ID, {"id": 1}, execution_options={"compiled_cache": None})
        assert db.reader.statements.runs == 0  # type: ignore[attr-defined]
    finally:
        await db.close()


async def test_a_long_read_at_the_driver_still_moves_to_the_thread(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The step budget holds at the driver: a read outgrowing it is interrupted (an OperationalError
    with SQLite's code, as SQLAlchemy raises it) and run again on the store's thread, complete."""
    db = await _store(tmp_path)
    c = select(literal(1).label("x")).cte("c", recursive=True)
    c = c.union_all(select(c.c.x + 1).where(c.c.x < bindparam("n")))
    heavy = select(func.count(), func.sum(c.c.x))
    off_loop = []
    real = InlineEngine.off_loop

    async def counting(self: InlineEngine, fn: Any, *a: Any, **kw: Any) -> Any:
        off_loop.append(fn)
        return await real(self, fn, *a, **kw)

    monkeypatch.setattr(InlineEngine, "off_loop", counting)
    try:
        async with db.read() as conn:
            for _ in range(3):
                assert tuple((await conn.execute(heavy, {"n": 10})).one()) == (10, 55)
        assert not off_loop
        runs = db.reader.statements.runs  # type: ignore[attr-defined]
        n = INLINE_READ_STEPS * 5
        async with db.read() as conn:
            assert tuple((await conn.execute(heavy, {"n": n})).one()) == (n, n * (n + 1) // 2)
        assert db.reader.statements.runs == runs + 1  # type: ignore[attr-defined]
        assert len(off_loop) == 1
    finally:
        await db.close()


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql+asyncpg"])
def test_arguments_worked_out_once_are_what_sqlalchemy_binds(dialect_name: str) -> None:
    """`bound_arguments` + `bind` (both driver paths) equal SQLAlchemy's `construct_params` followed
    by its bind processors, for given, literal and collected values and constant defaults; what
    needs more (a required value not given) is left to SQLAlchemy."""
    from sqlalchemy import text, update
    from sqlalchemy.dialects import postgresql, sqlite

    from lgsp.core.exchange import base, uploads
    from lgsp.core.store.prepared import bind, bound_arguments
    from lgsp.core.store.tables import units

    dialect = sqlite.pysqlite.dialect() if dialect_name == "sqlite" else postgresql.asyncpg.dialect()
    at = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    unit = {"id": "u9", "name": "Đơn vị u9", "name_folded": "u9", "zone": "local", "legacy": False,
            "status": "active", "created_at": at, "online": False, "stream_cursor": 0}
    cases: list[tuple[Any, dict[str, Any]]] = [
        (uploads._ACCEPT, {"p_packet": "p1", "blob_key": "p1.0", "accepted_at": at}),
        (base._PACKET_WITH_DELIVERIES, {"packet_id": "p1"}),
        (update(units).where(units.c.id == bindparam("p_id")).values(clock_offset_seconds=bindparam("o")),
         {"p_id": "u1", "o": 0.5}),
        (insert(units), unit),
        (select(units.c.id).where(units.c.id == bindparam("x", value="fixed")), {}),
        (text("SELECT CAST(:a AS text), CAST(:b AS integer)").bindparams(a="collected", b=1), {"b": 2}),
    ]
    for statement, params in cases:
        compiled: Any = statement.compile(dialect=dialect, column_keys=sorted(params))
        values = compiled.construct_params(params, escape_names=False)
        processors = compiled._bind_processors
        wanted = [processors[n](values[n]) if n in processors else values[n] for n in compiled.positiontup]
        arguments = bound_arguments(compiled, params)
        assert arguments is not None, statement
        assert bind(arguments, params) == wanted, statement
    # A constant default the execution context adds overrides the bind, by name.
    compiled = insert(units).compile(dialect=dialect, column_keys=sorted(unit))
    name = compiled.positiontup[0]
    arguments = bound_arguments(compiled, set(unit) - {name}, [(name, "from-default")])
    assert arguments is not None and bind(arguments, unit)[0] == "from-default"
    required = select(units.c.id).where(units.c.id == bindparam("needed"))
    assert bound_arguments(required.compile(dialect=dialect), ()) is None
