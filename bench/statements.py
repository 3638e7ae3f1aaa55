"""Statements and write transactions per exchange, counted in-process:

    python -m bench.statements                     # 8 pairs × 10 exchanges each, SQLite
    python -m bench.statements --postgresql        # the same on a fresh PostgreSQL database (dropped after)
    python -m bench.statements --pairs 4 --per-pair 25 --json
    python -m bench.statements --hand-offs         # also the worker-thread hand-offs, by function

A hub runs in this process (its HTTP server on loopback, the store it is configured with) and
each pair does the pull exchange of the bench (create, upload, `packet.available` on the
destination's stream, ready, fetch, ack), one exchange in flight per pair. After a warm-up of one
exchange per pair, `StatementCounter` (an Engine `before_cursor_execute` listener and a `commit`
listener) counts every statement the hub sends to its store and every commit of a write
transaction; the tool prints both per exchange, statements by kind (verb and first table).

Statements are what the CPU of the hub's hot path follows most closely (SQLAlchemy's cost is per
statement, and on PostgreSQL each one is a round trip), so each saving in docs/performance.md is
measured here as well as in CPU (`bench.cell`). tests/test_statements.py pins the count to an
upper bound with the same counter. `--hand-offs` also counts every function the hub hands to a
worker thread (`run_in_executor`, so `asyncio.to_thread` too) during the same exchanges:
tests/test_blob_hot_path.py pins the blob store's share of them.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import functools
import hashlib
import json
import re
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_KIND = re.compile(r"^\s*(?:WITH\b.*?\)\s*)?(SELECT|INSERT|UPDATE|DELETE|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|"
                   r"PRAGMA|LISTEN|NOTIFY|UNLISTEN)\b(?:\s+\w+)?", re.IGNORECASE | re.DOTALL)
_TABLE = {"SELECT": re.compile(r"\bFROM\s+\"?(\w+)", re.IGNORECASE),
          "INSERT": re.compile(r"\bINTO\s+\"?(\w+)", re.IGNORECASE),
          "UPDATE": re.compile(r"^\s*UPDATE\s+\"?(\w+)", re.IGNORECASE),
          "DELETE": re.compile(r"\bFROM\s+\"?(\w+)", re.IGNORECASE)}


_CTE_HEAD = re.compile(r"^\s*(?:WITH\s+|,\s*)(\w+)\s+AS\s*\(", re.IGNORECASE)


def named_ctes(statement: str) -> tuple[list[tuple[str, str]], str]:
    """The names and bodies of a statement's leading `WITH name AS (...)` parts, and the main statement."""
    parts: list[tuple[str, str]] = []
    rest = statement
    while (head := _CTE_HEAD.match(rest)) is not None:
        depth, start = 1, head.end()
        for i in range(start, len(rest)):
            depth += {"(": 1, ")": -1}.get(rest[i], 0)
            if depth == 0:
                parts.append((head.group(1), rest[start:i]))
                rest = rest[i + 1:]
                break
        else:
            return parts, rest  # unbalanced: leave it to the main pattern
    return parts, rest


def split_ctes(statement: str) -> tuple[list[str], str]:
    """The bodies of a statement's leading `WITH name AS (...)` parts, and the main statement."""
    parts, main = named_ctes(statement)
    return [body for _, body in parts], main


def _writes(parts: list[tuple[str, str]]) -> dict[str, str]:
    """The data-modifying CTEs among `parts`, name → kind."""
    return {name: kind for name, body in parts if (kind := kind_of(body)).startswith(("INSERT", "UPDATE", "DELETE"))}


def _read_through(parts: list[tuple[str, str]], main: str) -> str | None:
    """The data-modifying CTE a main SELECT returns the rows of (`SELECT … FROM recorded …`): the
    statement is that write, which it sends with the others as its CTEs."""
    match = _KIND.match(main)
    found = _TABLE["SELECT"].search(main) if match is not None and match.group(1).upper() == "SELECT" else None
    return found.group(1) if found is not None and found.group(1) in _writes(parts) else None


def carried_of(statement: str) -> list[str]:
    """The writes a statement carries as data-modifying CTEs (core/store/deferred.py): `INSERT audit_log`, ..."""
    parts, main = named_ctes(statement)
    through = _read_through(parts, main)
    return [kind for name, kind in _writes(parts).items() if name != through]


def kind_of(statement: str) -> str:
    """`SELECT packets`, `INSERT packet_events`, `BEGIN IMMEDIATE`, ...: the verb and first table (of
    the main statement, after any data-modifying CTEs; of the write whose rows a main SELECT returns)."""
    parts, main = named_ctes(statement)
    writes = _writes(parts)
    if writes:
        through = _read_through(parts, main)
        if through is not None:
            return writes[through]
        statement = main
    match = _KIND.match(statement)
    if match is None:
        return statement.split(None, 1)[0].upper() if statement.strip() else "?"
    verb = match.group(1).upper()
    table = _TABLE.get(verb)
    if table is not None and (found := table.search(statement)) is not None:
        return f"{verb} {found.group(1)}"
    return " ".join(match.group(0).split()).upper()


@dataclass
class StatementCounter:
    """Counts the statements sent through some engines (by kind) and the commits of write transactions."""

    statements: Counter[str] = field(default_factory=Counter)
    #: Writes sent as data-modifying CTEs of another statement (no round trip of their own).
    carried: Counter[str] = field(default_factory=Counter)
    rows_many: int = 0  # statements sent as executemany (one statement, several parameter sets)
    commits: int = 0
    _listening: list[tuple[Engine, str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statements.values())

    def reset(self) -> None:
        self.statements.clear()
        self.carried.clear()
        self.rows_many = 0
        self.commits = 0

    def _on_statement(self, _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
                      executemany: bool) -> None:
        self.statements[kind_of(statement)] += 1
        self.carried.update(carried_of(statement))
        if executemany:
            self.rows_many += 1

    def _on_commit(self, _conn: Any) -> None:
        self.commits += 1

    def attach(self, *engines: Engine) -> None:
        for engine in dict.fromkeys(engines):  # the same engine once (PostgreSQL: reader is writer)
            for name, fn in (("before_cursor_execute", self._on_statement), ("commit", self._on_commit)):
                event.listen(engine, name, fn)
                self._listening.append((engine, name, fn))

    def detach(self) -> None:
        for engine, name, fn in self._listening:
            event.remove(engine, name, fn)
        self._listening.clear()

    @contextmanager
    def counting(self, *engines: Engine) -> Iterator[StatementCounter]:
        self.attach(*engines)
        try:
            yield self
        finally:
            self.detach()

    def per(self, n: int) -> dict[str, Any]:
        """Everything counted, divided by `n` exchanges."""
        return {"statements": self.total / n, "write_transactions": self.commits / n,
                "by_kind": {k: v / n for k, v in sorted(self.statements.items(), key=lambda kv: (-kv[1], kv[0]))},
                "carried": {k: v / n for k, v in sorted(self.carried.items(), key=lambda kv: (-kv[1], kv[0]))}}


@contextmanager
def counting_hand_offs() -> Iterator[Counter[str]]:
    """Every function handed to a worker thread (`run_in_executor`, so `asyncio.to_thread` too), by
    `module:qualified name`, while the block runs."""
    seen: Counter[str] = Counter()
    real = asyncio.base_events.BaseEventLoop.run_in_executor

    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        f = func.args[0] if isinstance(func, functools.partial) and func.args else func  # to_thread's ctx.run
        while isinstance(f, functools.partial):
            f = f.func
        f = getattr(f, "__func__", f)
        seen[f"{getattr(f, '__module__', '?')}:{getattr(f, '__qualname__', repr(f))}"] += 1
        return real(self, executor, func, *args)

    asyncio.base_events.BaseEventLoop.run_in_executor = run_in_executor  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        asyncio.base_events.BaseEventLoop.run_in_executor = real  # type: ignore[method-assign]


async def count_exchanges(hub: Any, pairs: list[Any], per_pair: int, size: int = 10 * 1024,
                          counter: StatementCounter | None = None,
                          hand_offs: Counter[str] | None = None) -> tuple[StatementCounter, int]:
    """Run one warm-up exchange per pair, then `per_pair` more per pair (one in flight per pair),
    counting the statements of the latter (and, given `hand_offs`, their worker-thread hand-offs);
    returns the counter and the number of exchanges."""
    from bench.exchange import PairWorker

    counter = counter or StatementCounter()
    data = secrets.token_bytes(size)
    sha = hashlib.sha256(data).hexdigest()
    workers = [PairWorker(p) for p in pairs]
    await asyncio.gather(*(w.open() for w in workers))
    try:
        async def one(worker: PairWorker) -> None:
            _, _, done = await worker.send(data, sha)
            await asyncio.wait_for(done, 60)

        await asyncio.gather(*(one(w) for w in workers))  # warm-up: caches, prepared statements
        await asyncio.sleep(0.1)
        with counter.counting(hub.db.writer.sync_engine, hub.db.reader.sync_engine), counting_hand_offs() as seen:
            async def loop(worker: PairWorker) -> None:
                for _ in range(per_pair):
                    await one(worker)

            await asyncio.gather(*(loop(w) for w in workers))
            await asyncio.sleep(0.05)  # the after-commit steps of the last acks
        if hand_offs is not None:
            hand_offs.update(seen)
        errors = [e for w in workers for e in w.errors]
        if errors:
            raise RuntimeError(f"exchanges failed: {errors[:3]}")
    finally:
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
    return counter, per_pair * len(workers)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.cell import _pg_database, _pg_url
    from bench.procs import HubProcess, _with_url
    from lgsp.core.config import load_config
    from lgsp.core.hub import Hub

    workdir = Path(tempfile.mkdtemp(prefix="lgsp-bench-statements-"))
    database = f"lgsp_bench_{secrets.token_hex(4)}" if args.postgresql else None
    overrides: dict[str, Any] = {"server": {"workers": 1}, "logging": {"access_log": False}}
    if database:
        overrides["database"] = {"url": _pg_url(database)}
        await _pg_database(True, database)
    try:
        shape = HubProcess(workdir / "hub", overrides=overrides)
        await shape.provision(args.pairs)
        async with Hub(load_config(shape.config_path)) as hub:
            pairs = [type(p)(_with_url(p.source, hub.url), _with_url(p.destination, hub.url), p.source_id,
                             p.destination_id) for p in shape.pairs]
            hand_offs: Counter[str] = Counter()
            counter, n = await count_exchanges(hub, pairs, args.per_pair, args.size, hand_offs=hand_offs)
    finally:
        if database:
            await _pg_database(False, database)
    result = {"store": "postgresql" if database else "sqlite", "exchanges": n, **counter.per(n)}
    if getattr(args, "hand_offs", False):
        result["hand_offs"] = sum(hand_offs.values()) / n
        result["hand_offs_by_function"] = {k: v / n for k, v in hand_offs.most_common()}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--per-pair", type=int, default=10, help="exchanges per pair after the warm-up")
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--postgresql", action="store_true", help="a fresh PostgreSQL database (LGSP_BENCH_PG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--hand-offs", action="store_true", help="also count worker-thread hand-offs, by function")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['store']}: {result['exchanges']} exchanges; per exchange "
          f"{result['statements']:.1f} statements, {result['write_transactions']:.2f} write transactions")
    for kind, per in result["by_kind"].items():
        print(f"  {per:6.2f}  {kind}")
    if result["carried"]:
        print("carried by another statement (data-modifying CTEs, no round trip of their own):")
        for kind, per in result["carried"].items():
            print(f"  {per:6.2f}  {kind}")
    if "hand_offs" in result:
        print(f"{result['hand_offs']:.2f} worker-thread hand-offs per exchange")
        for name, per in result["hand_offs_by_function"].items():
            print(f"  {per:6.2f}  {name}")


if __name__ == "__main__":
    main()
