"""`IN` lists that SQLAlchemy compiles once.

An `IN` over a Python list (`column.in_(values)`, or an `expanding` bindparam) is compiled with a
placeholder that SQLAlchemy rewrites into one parameter per value at *every* execution (its
"post-compile" step: string substitution over the statement's SQL and a new parameter dict). On the
exchange's hot path that step cost as much as the rest of SQLAlchemy's work for the statement (an
UPDATE of `deliveries` with two such lists: 80 µs against 40 µs with plain parameters, measured in
docs/performance.md, saving 6). A list of `n` plain bindparams is compiled once per `n` and served
from the compiled cache after that: `in_list` builds the condition, `in_values` its parameters.

A list of constants fixed in the code (a set of states) is the same problem: `column.in_(STATES)`
is compiled as an expanding parameter too. `constants(STATES)` gives one bound parameter per value
instead, part of the statement's compiled form: `column.in_(constants(STATES))`.

Use `in_list` for lists whose length takes a few values (a state set, one or a few units); a list whose
length varies widely would fill the compiled cache with one entry per length, so the callers fall
back to an expanding parameter above `MAX_PLAIN`.

Several rows in one INSERT is the same problem again. A list of parameter sets goes through
SQLAlchemy's "insertmanyvalues", which rewrites the statement's SQL at each execution, and a
multi-row `.values(list)` is a new statement each time: neither can run at the driver
(core/store/prepared.py, core/store/pg_direct.py). `rows_select` is the rows of an
`INSERT … SELECT`, one statement object per shape, and `rows_values` its parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import sqlalchemy
from sqlalchemy import ColumnElement, Table, bindparam, literal

#: Longest list compiled as plain parameters; longer ones use SQLAlchemy's expanding parameter.
MAX_PLAIN = 8


def in_list(column: ColumnElement[Any], name: str, n: int) -> ColumnElement[bool]:
    """`column IN (:name_0, …)` with `n` plain parameters (`column = :name_0` for one), or an
    expanding `:name` when `n` exceeds `MAX_PLAIN`. Its parameters: `in_values(name, values)`."""
    if n < 1:
        raise ValueError("an IN list needs at least one value")
    if n > MAX_PLAIN:
        return column.in_(bindparam(name, expanding=True))
    if n == 1:
        return column == bindparam(f"{name}_0")
    return column.in_([bindparam(f"{name}_{i}") for i in range(n)])


def in_values(name: str, values: Iterable[Any]) -> dict[str, Any]:
    """The parameters of `in_list(column, name, len(values))` for these values."""
    values = list(values)
    if len(values) > MAX_PLAIN:
        return {name: values}
    return {f"{name}_{i}": value for i, value in enumerate(values)}


def constants(values: Iterable[Any]) -> list[ColumnElement[Any]]:
    """Fixed values for `column.in_(...)` / `not_in(...)`, each its own bound parameter in the compiled
    statement (sorted, so that a set gives the same statement every time)."""
    return [literal(value) for value in sorted(values)]


#: Most rows `rows_select` is asked for by the callers that fall back to a list of parameter sets.
MAX_ROWS = 64


@functools.lru_cache(maxsize=512)
def rows_select(table: Table, columns: tuple[str, ...], n: int, prefix: str) -> Any:
    """`SELECT :p0_a, :p0_b UNION ALL SELECT :p1_a, …`: `n` rows of typed parameters named
    `{prefix}{i}_{column}`, for `insert(table).from_select(columns, …)`. Built once per shape.

    The rows are inserted in this order, so identifiers a sequence (PostgreSQL) or the rowid
    (SQLite) draws for them increase from the first row to the last. SQLite accepts `ON CONFLICT`
    after it: the arms have no FROM clause whose `ON` it could be taken for."""
    if n < 1:
        raise ValueError("an INSERT needs at least one row")
    rows = [sqlalchemy.select(*(bindparam(f"{prefix}{i}_{c}", type_=table.c[c].type) for c in columns))
            for i in range(n)]
    return rows[0] if n == 1 else sqlalchemy.union_all(*rows)


def rows_values(rows: list[dict[str, Any]], columns: tuple[str, ...], prefix: str) -> dict[str, Any]:
    """The parameters of `rows_select(table, columns, len(rows), prefix)` for these rows."""
    return {f"{prefix}{i}_{c}": row[c] for i, row in enumerate(rows) for c in columns}
