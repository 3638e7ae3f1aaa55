"""Rows a PostgreSQL write transaction inserts without reading back, sent with its next INSERT.

On PostgreSQL every statement is an event-loop round trip, the hot path's main cost there. Some
rows of a transaction are written only to be kept, never read back in it: the audit entry of the
fact being recorded (core/audit.py; the chainer reads it later, in a transaction of its own). Such
a row is held here and sent as a data-modifying CTE of the transaction's events INSERT
(core/events.py), so one statement writes both: the same transaction, the same atomicity and the
same durability as two statements, one round trip fewer. What no events INSERT took is inserted when
the block of `Database.write` ends, before its COMMIT, so nothing held is ever lost or left out of
its transaction; a transaction that fails takes its held rows with it.

SQLite runs statements on the event loop's thread without a round trip (core/store/sqlite_inline.py)
and has no data-modifying CTEs: there, and on any connection `Database.write` did not open, `hold`
declines and the caller inserts at once.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import sqlalchemy
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.store.params import rows_select, rows_values

#: The rows held by each write transaction in progress, by its connection object (not in the
#: connection's `info`, which an invalidated connection refuses to give, and which outlives the
#: transaction in the pool).
_held: weakref.WeakKeyDictionary[AsyncConnection, list[tuple[Table, dict[str, Any]]]] = weakref.WeakKeyDictionary()


def open_holding(conn: AsyncConnection) -> None:
    """Start holding rows for this write transaction (PostgreSQL: `Database.write`)."""
    _held[conn] = []


def close_holding(conn: AsyncConnection) -> None:
    """Forget what this connection held (the transaction ended, either way)."""
    _held.pop(conn, None)


def hold(conn: AsyncConnection, table: Table, row: dict[str, Any]) -> bool:
    """Hold `row` for `table` until the transaction's next events INSERT (or its end); False where
    rows are not held (SQLite, or a connection outside `Database.write`): insert it now."""
    held = _held.get(conn)
    if held is None:
        return False
    held.append((table, row))
    return True


async def insert(conn: AsyncConnection, table: Table, rows: dict[str, Any] | list[dict[str, Any]],
                 statement: Any = None) -> None:
    """Insert rows the transaction will not read back: held where rows are held (`hold`), else now
    (with `statement`, an INSERT built once, or the table's plain INSERT)."""
    many = rows if isinstance(rows, list) else [rows]
    if not many:
        return
    if conn in _held:
        for row in many:
            hold(conn, table, row)
        return
    await conn.execute(_plain_insert(table) if statement is None else statement, rows)


@functools.cache
def _plain_insert(table: Table) -> Any:
    """A table's INSERT, built once (one built per call is keyed again by SQLAlchemy each time)."""
    return table.insert()


def take(conn: AsyncConnection) -> list[tuple[Table, dict[str, Any]]]:
    """The rows held so far, handed to the caller, who must write them in this transaction."""
    held = _held.get(conn)
    if not held:
        return []
    _held[conn] = []
    return held


async def flush(conn: AsyncConnection) -> None:
    """Insert what is still held (end of the write block, before COMMIT): one INSERT per table."""
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for table, row in take(conn):
        by_table.setdefault(table, []).append(row)
    for table, rows in by_table.items():
        await conn.execute(_plain_insert(table), rows)


@functools.lru_cache(maxsize=256)
def _values(table: Table, columns: tuple[str, ...], n: int, prefix: str, returning: str | None = None) -> Any:
    """`INSERT INTO table (columns) SELECT … UNION ALL SELECT …` of n rows (`params.rows_select`),
    with `RETURNING returning`: one statement object per shape, so SQLAlchemy compiles each once."""
    stmt = sqlalchemy.insert(table).from_select(list(columns), rows_select(table, columns, n, prefix))
    return stmt.returning(table.c[returning]) if returning else stmt


def rows_statement(table: Table, rows: list[dict[str, Any]], prefix: str, *, returning: str | None = None
                   ) -> tuple[Any, dict[str, Any]]:
    """A multi-row INSERT of `rows` (all with the same columns) and its parameters."""
    columns = tuple(sorted(rows[0]))
    return _values(table, columns, len(rows), prefix, returning), rows_values(rows, columns, prefix)


@functools.lru_cache(maxsize=256)
def _guarded_values(table: Table, columns: tuple[str, ...], n: int, prefix: str, guard: Any) -> Any:
    """`_values`, inserting its rows only if the CTE `guard` returns a row."""
    rows = rows_select(table, columns, n, prefix).subquery("r")
    return sqlalchemy.insert(table).from_select(
        list(columns), sqlalchemy.select(*rows.c).where(sqlalchemy.select(sqlalchemy.literal(1))
                                                        .select_from(guard).exists()))


@functools.lru_cache(maxsize=256)
def _with_held(main: Any, held: tuple[tuple[Table, tuple[str, ...], int], ...], guard: Any) -> Any:
    stmt = main
    for k, (table, columns, n) in enumerate(held):
        rows = (_values(table, columns, n, f"h{k}_") if guard is None
                else _guarded_values(table, columns, n, f"h{k}_", guard))
        stmt = stmt.add_cte(rows.cte(f"held_{k}"))
    return stmt


def with_held(main: Any, main_params: dict[str, Any], held: list[tuple[Table, dict[str, Any]]], *,
              guard: Any = None) -> tuple[Any, dict[str, Any]]:
    """`main` (a statement built once) carrying the held rows as data-modifying CTEs, with the
    parameters of both; built once per shape (tables, columns and row counts). With `guard`, a CTE
    of `main` (a conditional UPDATE … RETURNING), the held rows are written only if it returns a
    row: the statement then writes them exactly when the change they belong to happened."""
    groups: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, row in held:
        groups.setdefault((table, tuple(sorted(row))), []).append(row)
    shape = tuple((table, columns, len(rows)) for (table, columns), rows in groups.items())
    params = dict(main_params)
    for k, ((_, columns), rows) in enumerate(groups.items()):
        params.update(rows_values(rows, columns, f"h{k}_"))
    return _with_held(main, shape, guard), params
