"""Scaling on PostgreSQL: the pull exchange (10 KiB × 32 pairs) on 1, 2 and 4 worker processes of
one `lgsp run`, and on several nodes (separate `lgsp run` processes sharing the store, the blob
folder and the master key) when asked.

Every shape runs at the same time as the others, each on a database of its own, so the
repetitions interleave (1 worker, 2 workers, 4 workers, relay, 1 worker, ...) and a slow moment of
a shared machine hits all of them. The CPU of a shape is summed over every process serving it
(supervisors and workers of every node); a figure above the machine's core count cannot scale, so
the core count is recorded beside the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import psutil

from bench.procs import HubProcess, Pair, ServerProcess

PG_ADMIN_URL = os.environ.get("LGSP_BENCH_PG", os.environ.get("LGSP_TEST_PG",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
#: What the supervisor prints (LGSP_LANG=en) once every worker serves; a worker's own log line also
#: says "listening on", so that alone does not mean the shape is up.
ALL_LISTENING = "lgsp is listening on"
#: `database.pool_size` of a one-process shape; divided among the processes of larger shapes.
POOL_PER_SHAPE = 8


def worker_counts(most: int) -> list[int]:
    """1, 2, 4 and every power of two up to `most`, and `most` itself."""
    counts = {1, 2, 4, most}
    n = 8
    while n <= most:
        counts.add(n)
        n *= 2
    return sorted(counts)


def node_counts(most: int) -> list[int]:
    """Node counts beyond one: 2, 4, ... up to `most`, and `most` itself."""
    counts = {most} if most > 1 else set()
    n = 2
    while n < most:
        counts.add(n)
        n *= 2
    return sorted(counts)


def shape_name(nodes: int, workers: int) -> str:
    w = f"{workers} worker{'s' if workers > 1 else ''}"
    return w if nodes == 1 else f"{nodes} nodes × {w}"


async def postgres_reason() -> str | None:
    """Why the PostgreSQL rows cannot run here, or None."""
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        await conn.close()
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL} (LGSP_BENCH_PG): {exc!r}"
    return None


class NodeProcess(ServerProcess):
    """Another `lgsp run` on the same config file (same store, data folder and master key)."""

    def __init__(self, workdir: Path, index: int, command: list[str]) -> None:
        self.name = f"node{index}"
        super().__init__(workdir)
        self._command = command

    def command(self) -> list[str]:
        return self._command


class Shape:
    """`nodes` × `lgsp run` with `server.workers: workers`, on a PostgreSQL database of its own."""

    def __init__(self, workdir: Path, nodes: int, workers: int) -> None:
        self.nodes, self.workers = nodes, workers
        self.name = shape_name(nodes, workers)
        self.database = f"lgsp_bench_{secrets.token_hex(5)}"
        from sqlalchemy.engine import make_url

        url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=self.database)
        # Every shape gets about the same number of store connections in all (a process opens up to
        # two pools of pool_size), and all shapes together stay well under PostgreSQL's default
        # max_connections (100), which the first run of these rows exceeded ("too many clients").
        self.pool_size = max(2, POOL_PER_SHAPE // (nodes * workers))
        self.hub = HubProcess(workdir, overrides={
            "database": {"url": url.render_as_string(hide_password=False), "pool_size": self.pool_size},
            "server": {"workers": workers}})
        self.others: list[NodeProcess] = []

    @property
    def processes(self) -> list[ServerProcess]:
        return [self.hub, *self.others]

    async def start(self, n_pairs: int) -> None:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        await self.hub.provision(n_pairs)
        self.others = [NodeProcess(self.hub.workdir, i, self.hub.command()) for i in range(1, self.nodes)]
        for proc in self.processes:  # one after another: the first start of a store is not a race to run here
            await proc.start(limit_s=300.0)
            if self.workers > 1:
                await _wait_for(lambda proc=proc: ALL_LISTENING in proc.log_tail(1_000_000), 300.0,
                                f"{self.name}: {proc.name}'s workers")

    def pairs(self) -> list[Pair]:
        """Pair i talks to node i mod nodes (a client that knows one node, spread evenly)."""
        bound = self.hub.bound_pairs()
        out = []
        for i, pair in enumerate(bound):
            url = self.processes[i % self.nodes].url
            out.append(Pair(_at(pair.source, url), _at(pair.destination, url), pair.source_id, pair.destination_id))
        return out

    def pids(self) -> list[int]:
        """Every process serving this shape: each node's process and, under it, its workers."""
        out: list[int] = []
        for proc in self.processes:
            out.append(proc.pid)
            with contextlib.suppress(psutil.Error):
                out += [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
        return out

    async def stop(self) -> dict[str, Any]:
        codes = {proc.name: await proc.stop(grace_s=60.0) for proc in self.processes}
        errors = 0
        for proc in self.processes:
            errors += sum(1 for line in proc.log_tail(50_000_000).splitlines()
                          if " ERROR " in line or '"level": "ERROR"' in line or line.startswith("Traceback"))
        with contextlib.suppress(Exception):
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN_URL)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await admin.close()
        return {"exit_codes": codes, "log_errors": errors}


def _at(creds: Any, url: str) -> Any:
    from bench.procs import _with_url

    return _with_url(creds, url)


async def _wait_for(check: Any, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not all serve within {limit_s:.0f} s")
        await asyncio.sleep(0.1)


async def measure(bench: Any) -> None:
    """The `scale` group of bench.run: rows of exchanges/s and server CPU per exchange by shape."""
    from bench import exchange
    from bench.common import human_size, payload
    from bench.report import Row
    from bench.run import log, slug

    reason = await postgres_reason()
    if reason:
        bench.skipped.append({"row": "scale (PostgreSQL, worker processes, nodes)", "reason": reason})
        log(f"scale rows skipped: {reason}")
        return
    pairs_n, size = bench.p.scale_cell
    counts = [2] if bench.p.name == "smoke" else worker_counts(bench.args.workers)
    shapes = [(1, w) for w in counts] + [(n, 1) for n in node_counts(bench.args.nodes)]
    cores = os.cpu_count()
    params = {"pairs": pairs_n, "size": size, "store": "postgresql", "cpu_count": cores,
              "shapes": [{"nodes": n, "workers": w, "pool_size": max(2, POOL_PER_SHAPE // (n * w))}
                         for n, w in shapes]}
    title = f"PostgreSQL: pull {human_size(size)} × {pairs_n} pairs"
    rate = Row(id=f"scale/pull/{slug(human_size(size))}/n{pairs_n}", group="scale", unit="exchanges/s",
               title=f"{title} by worker processes / nodes ({cores} cores)", params=params,
               ratios=[(shape_name(n, w), "1 worker") for n, w in shapes if (n, w) != (1, 1)])
    cpu = Row(id=f"{rate.id}/cpu", group="scale-cpu", unit="ms", higher_is_better=False, params=params,
              title=f"{title}: server CPU per exchange, all processes", ratios=[(shape_name(n, w), "relay")
                                                                               for n, w in shapes])
    started: list[Shape] = []
    try:
        t0 = time.perf_counter()
        for i, (n, w) in enumerate(shapes):
            shape = Shape(bench.workdir / f"scale-{i}", n, w)
            started.append(shape)
            await shape.start(pairs_n)
        log(f"scale: {', '.join(s.name for s in started)} up in {time.perf_counter() - t0:.0f} s "
            f"({cores} cores)")
        data = payload(size)
        span = {"warmup": 0.0, "window": max(0.3, bench.p.window / 2)}
        for shape in started:  # unrecorded: pools, statement caches, every worker's first requests
            pids = shape.pids()
            await exchange.closed_loop(shape.pairs(), data, server_pid=pids[0], more_server_pids=pids[1:], **span)
        for rep in range(bench.p.scale_reps):
            legs = []
            for shape in started:
                pids = shape.pids()
                r = await exchange.closed_loop(shape.pairs(), data, server_pid=pids[0], more_server_pids=pids[1:],
                                               **bench._cell_args(pairs_n))
                r["processes"] = len(pids)
                rate.add(shape.name, r["value"], r)
                cpu.add(shape.name, 1000.0 * r["server_cpu_all"] / r["value"] if r["value"] else None)
                legs.append(f"{shape.name} {r['value']:.1f} (cpu {r['server_cpu_all']:.2f} over {len(pids)} "
                            f"processes)")
                if r["errors"]:
                    rate.notes.append(f"{shape.name} run {rep + 1}: {r['errors']} errors, e.g. {r['error_sample'][:1]}")
            r = await exchange.closed_loop(bench.relay.bound_pairs(pairs_n), data, server_pid=bench.relay.pid,
                                           **bench._cell_args(pairs_n))
            rate.add("relay", r["value"], r)
            cpu.add("relay", 1000.0 * r["server_cpu"] / r["value"] if r["value"] and r["server_cpu"] else None)
            log(f"{title} #{rep + 1}: " + ", ".join(legs) + f", relay {r['value']:.1f}")
        noise = sorted(d.get("others_cpu") or 0.0 for ds in rate.details.values() for d in ds)
        rate.extra["others_cpu_cores_median"] = noise[len(noise) // 2] if noise else None
        rate.notes.append(f"{cores} cores: more busy processes than cores cannot add throughput")
        if noise and noise[len(noise) // 2] > 0.25:
            rate.notes.append(f"other processes kept {noise[len(noise) // 2]:.2f} cores busy during these runs "
                              "(shared machine)")
        bench.rows += [rate, cpu]
    finally:
        rate.extra["servers"] = {shape.name: await shape.stop() for shape in started}
