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
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, bindparam, literal

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
