"""What a statement costs the hub on PostgreSQL, sent straight to asyncpg or through SQLAlchemy:

    python -m bench.pg_direct            # LGSP_BENCH_PG, else postgresql://postgres@127.0.0.1:5432/postgres

On a fresh database: the exchange's packet load (`_PACKET_WITH_DELIVERIES`, one packet, two
deliveries) on a read connection and a one-row UPDATE of a delivery inside a write transaction, each
run N times on one connection; and a read connection taken from the pool and returned, closed
directly or as SQLAlchemy closes it (in a task behind `asyncio.shield`). Figures: this process's CPU
(time.process_time) per call, best of several rounds. The same statement objects both ways:
SQLAlchemy's path is taken by asking for it with an execution option (`core/store/pg_direct.py`
leaves a statement with execution options to SQLAlchemy), which costs SQLAlchemy nothing
measurable. The client's CPU is the hub's CPU here: the server's own work is not in it. Compare the
two columns of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.cell import _pg_database, _pg_url
from lgsp.core.exchange.base import _PACKET_WITH_DELIVERIES
from lgsp.core.store.database import Database
from lgsp.core.store.tables import deliveries, packets, units

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
_TOUCH = (update(deliveries).where(and_(deliveries.c.packet_id == bindparam("p_packet"),
                                        deliveries.c.unit_id == bindparam("p_unit")))
          .values(updated_at=bindparam("at")))
SQLALCHEMY = {"logging_token": "bench"}  # any execution option keeps a statement on SQLAlchemy's path


async def _seed(db: Database) -> None:
    async with db.write() as conn:
        for unit in ("A", "B", "C"):
            await conn.execute(units.insert(), {"id": unit, "name": unit, "name_folded": unit.lower(),
                                                "zone": "local", "legacy": False, "status": "active",
                                                "created_at": NOW, "online": False, "stream_cursor": 0})
        await conn.execute(packets.insert(), {
            "id": "p", "source_unit": "A", "subject": "s", "priority": 0, "data_type": "d", "protocol": "p",
            "size": 1, "sha256": "0" * 64, "state": "accepted", "content_state": "stored", "created_at": NOW,
            "upload_expires_at": NOW, "meta": {"k": "v"}})
        for unit in ("B", "C"):
            await conn.execute(deliveries.insert(), {"packet_id": "p", "unit_id": unit, "mode": "pull", "priority": 0,
                                                     "packet_created_at": NOW,
                                                     "state": "queued", "updated_at": NOW})


async def _per_call(run: Callable[[Any], Awaitable[Any]], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            await run(None)
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


async def measure(n: int, rounds: int) -> dict[str, dict[str, float]]:
    name = f"lgsp_bench_{secrets.token_hex(4)}"
    await _pg_database(True, name)
    db = Database(_pg_url(name), pool_size=2)
    try:
        await db.upgrade()
        await _seed(db)
        out: dict[str, dict[str, float]] = {}
        async with db.read() as conn:
            def load(options: Any) -> Callable[[Any], Awaitable[Any]]:
                async def one(_: Any) -> Any:
                    return (await conn.execute(_PACKET_WITH_DELIVERIES, {"packet_id": "p"},
                                               execution_options=options)).all()
                return one
            for _ in range(2):
                await load(None)(None)
            out["packet load (read connection)"] = {"direct": await _per_call(load(None), n, rounds),
                                                     "sqlalchemy": await _per_call(load(SQLALCHEMY), n, rounds)}
        async with db.write() as conn:
            def touch(options: Any) -> Callable[[Any], Awaitable[Any]]:
                async def one(_: Any) -> Any:
                    return (await conn.execute(_TOUCH, {"p_packet": "p", "p_unit": "B", "at": NOW},
                                               execution_options=options)).rowcount
                return one
            for _ in range(2):
                await touch(None)(None)
            out["delivery UPDATE (write transaction)"] = {
                "direct": await _per_call(touch(None), n, rounds),
                "sqlalchemy": await _per_call(touch(SQLALCHEMY), n, rounds)}
        engine: Any = db._read_engine

        async def take_and_return(_: Any) -> None:
            async with engine.connect():
                pass

        async def take_and_return_shielded(_: Any) -> None:
            conn = await engine.connect().start()
            await AsyncConnection.__aexit__(conn, None, None, None)  # SQLAlchemy's close: task and shield

        out["a connection taken and returned"] = {"direct": await _per_call(take_and_return, n, rounds),
                                                   "sqlalchemy": await _per_call(take_and_return_shielded, n, rounds)}
        return out
    finally:
        await db.close()
        await _pg_database(False, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="statements per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(measure(args.n, args.rounds))
    print(f"{'call':40} {'direct':>10} {'SQLAlchemy':>12}  (µs of this process's CPU, best of {args.rounds})")
    for label, row in results.items():
        print(f"{label:40} {row['direct']:10.0f} {row['sqlalchemy']:12.0f}  "
              f"({row['sqlalchemy'] / row['direct']:.1f}×)")


if __name__ == "__main__":
    main()
