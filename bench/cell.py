"""One pull cell, hub against relay, for measuring a single change quickly:

    python -m bench.cell                       # pull 10 KiB × 32 pairs, 5 interleaved repetitions, SQLite
    python -m bench.cell --postgresql          # the same on a fresh PostgreSQL database (dropped after)
    python -m bench.cell --reps 3 --pyspy out.txt   # then profile the hub for 8 s (raw py-spy stacks)
    python -m bench.cell --out run.json        # also keep the runs and the machine's facts as JSON

It does what `bench.run`'s pull row does for one (pairs, size) cell: the hub (production settings)
and the raw relay as processes, a warm-up, then repetitions that alternate hub and relay, and it
prints each run's server CPU per exchange and the hub ÷ relay ratio, with the median and range of
the per-run ratios. On a shared machine read the ratio, not the milliseconds (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import exchange
from bench.common import KiB, machine_facts, payload
from bench.procs import HubProcess, RelayProcess

PG_ADMIN_URL = os.environ.get("LGSP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_database(create: bool, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _pg_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="lgsp-bench-cell-"))
    database = f"lgsp_bench_{secrets.token_hex(4)}" if args.postgresql else None
    # One process: the CPU measured is the hub process's own (worker processes would escape it).
    overrides: dict[str, Any] = {"server": {"workers": 1}}
    if database:
        overrides["database"] = {"url": _pg_url(database)}
    hub = HubProcess(workdir / "hub", overrides=overrides)
    relay = RelayProcess(workdir / "relay")
    data = payload(args.size)
    span = {"warmup": 0.5, "window": args.window, "max_window": 4 * args.window, "min_completions": args.pairs}
    out: dict[str, Any] = {"store": "postgresql" if database else "sqlite", "pairs": args.pairs, "size": args.size,
                           "runs": []}
    if database:
        await _pg_database(True, database)
    try:
        await hub.provision(args.pairs)
        await hub.start()
        await relay.start()
        await exchange.closed_loop(hub.bound_pairs()[:8], data, server_pid=hub.pid, warmup=0.2, window=1.0)
        await exchange.closed_loop(relay.bound_pairs(8), data, server_pid=relay.pid, warmup=0.2, window=1.0)
        for rep in range(args.reps):
            h = await exchange.closed_loop(hub.bound_pairs()[:args.pairs], data, server_pid=hub.pid, **span)
            r = await exchange.closed_loop(relay.bound_pairs(args.pairs), data, server_pid=relay.pid, **span)
            hub_ms, relay_ms = 1000 * h["server_cpu"] / h["value"], 1000 * r["server_cpu"] / r["value"]
            run_ = {"hub_per_s": h["value"], "hub_cpu_ms": hub_ms, "relay_per_s": r["value"], "relay_cpu_ms": relay_ms,
                    "ratio": hub_ms / relay_ms, "errors": h["errors"] + r["errors"],
                    "others_cpu": [h["others_cpu"], r["others_cpu"]]}
            out["runs"].append(run_)
            print(f"run {rep + 1}: hub {h['value']:.1f}/s, {hub_ms:.2f} ms CPU per exchange | "
                  f"relay {r['value']:.0f}/s, {relay_ms:.3f} ms | ratio {hub_ms / relay_ms:.1f}× | "
                  f"errors {run_['errors']} | other processes "
                  f"{h['others_cpu']:.2f}/{r['others_cpu']:.2f} cores", flush=True)
        if args.pyspy:
            spy = Path(sys.executable).parent / "py-spy"
            proc = await asyncio.create_subprocess_exec(
                str(spy), "record", "-p", str(hub.pid), "-f", "raw", "-o", args.pyspy, "-d", "8", "--threads",
                "--nonblocking", "-r", "200")
            await asyncio.sleep(0.5)
            await exchange.closed_loop(hub.bound_pairs()[:args.pairs], data, server_pid=hub.pid, warmup=0.2,
                                       window=8.0, max_window=9.0)
            await proc.wait()
    finally:
        await hub.stop()
        await relay.stop()
        if database:
            await _pg_database(False, database)
    ratios = [r["ratio"] for r in out["runs"]]
    out["median"] = {"hub_cpu_ms": statistics.median(r["hub_cpu_ms"] for r in out["runs"]),
                     "relay_cpu_ms": statistics.median(r["relay_cpu_ms"] for r in out["runs"]),
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    m = out["median"]
    print(f"{out['store']}: hub {m['hub_cpu_ms']:.2f} ms, relay {m['relay_cpu_ms']:.3f} ms per exchange; "
          f"hub ÷ relay {m['ratio']:.1f}× [{m['ratio_min']:.1f}–{m['ratio_max']:.1f}] over {len(ratios)} runs")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cell", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--size", type=int, default=10 * KiB, help="payload bytes (default 10 KiB)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--window", type=float, default=3.0, help="seconds per run (stretched for enough exchanges)")
    parser.add_argument("--postgresql", action="store_true", help=f"a fresh database on {PG_ADMIN_URL}'s server")
    parser.add_argument("--pyspy", help="after the runs, profile the hub for 8 s into this raw py-spy file")
    parser.add_argument("--out", help="also write the runs as JSON to this file")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.out:
        result["machine"] = machine_facts()
        Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
