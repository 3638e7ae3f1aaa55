"""Run the benchmark: the hub against its baselines, side by side, in one invocation.

    python -m bench.run --quick          # make bench: a few minutes at most
    python -m bench.run --full           # make bench-full: the whole grid (1 GiB packet, ...)
    python -m bench.run --smoke          # seconds; what tests/test_bench_smoke.py runs
    python -m bench.run --full --pyspy   # also profile the hub on the rows that carry targets

The hub and the raw relay run as separate processes; the load generator, RabbitMQ's clients, the
disk-and-hash ceiling and the in-process auth figures run here. Repetitions interleave the systems
(hub, relay, RabbitMQ, hub, ...) so a slow moment of the machine hits all of them. Results: a
table on stdout and bench/results/<timestamp>.json (see docs/performance.md for the fields).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    auth_bench,
    axis_bridge_bench,
    disk,
    edxml_bench,
    exchange,
    profiling,
    push_bench,
    rabbit,
    report_bench,
    scale_bench,
    vxp_bench,
)
from bench.common import REPO, GiB, KiB, MiB, disk_of, human_size, machine_facts, payload, write_big_file
from bench.procs import HubProcess, RelayProcess
from bench.report import Row, Target, table, write_json

RESULTS = REPO / "bench" / "results"


def cpu_per_exchange_row(row: Row, systems: tuple[str, str] = ("hub", "relay")) -> Row:
    """Server CPU (all its threads) per completed exchange, from the same runs as a pull row.

    Throughput on a shared machine moves with other people's load; the CPU an exchange costs the
    server barely does, so this ratio is the steadier reading of the same runs.
    """
    out = Row(id=f"{row.id}/cpu", group=f"{row.group}-cpu", title=f"{row.title}: server CPU per exchange", unit="ms",
              higher_is_better=False, params=row.params, ratios=[systems])
    for system in systems:
        for value, detail in zip(row.values.get(system, []), row.details.get(system, []), strict=True):
            cpu = detail.get("server_cpu")
            out.add(system, 1000.0 * cpu / value if cpu and value and value == value else None)
    return out


@dataclass(frozen=True)
class Profile:
    """How much of the grid to run and for how long; `quick` must stay under three minutes."""

    name: str
    reps: int
    grid: tuple[tuple[int, int], ...]  # (pairs, payload size) of the pull rows
    warmup: float
    window: float
    max_window: float
    min_completions: int
    latency_cell: tuple[int, int]
    latency_duration: float
    latency_reps: int
    large: tuple[tuple[int, int], ...]  # (packets at once, size)
    large_reps: int
    auth_seconds: float
    auth_full_requests: int
    push_cell: tuple[int, int]
    push_reps: int = 3
    axis_docs: int = 20  # documents each way through the national axis bridge
    vxp_cell: tuple[int, int] = (2, 10)  # (pairs, documents per pair) through /vxp and REST
    protocol_reps: int = 1  # repetitions of the axis and vxp rows
    protocol_size: int = 16 * KiB  # attachment bytes per edXML document of those rows
    encryption_cell: tuple[int, int] = (32, 10 * KiB)  # (pairs, size): small packets, encryption on vs off
    scale_cell: tuple[int, int] = (32, 10 * KiB)  # (pairs, size) of the PostgreSQL worker/node rows
    scale_reps: int = 3
    report_cell: tuple[int, int] = (200, 50_000)  # (units, packets) of the statistics report row (SQLite)

    @property
    def pairs_needed(self) -> int:
        return max([n for n, _ in self.grid] + [self.latency_cell[0]] + [n for n, _ in self.large])


PROFILES = {
    "smoke": Profile("smoke", reps=1, grid=((2, 1 * KiB),), warmup=0.1, window=0.5, max_window=3.0,
                     min_completions=2, latency_cell=(2, 1 * KiB), latency_duration=0.6, latency_reps=1,
                     large=((1, 4 * MiB),), large_reps=1, auth_seconds=0.05, auth_full_requests=25,
                     push_cell=(2, 1 * KiB), push_reps=1, axis_docs=3, vxp_cell=(1, 2), protocol_size=1 * KiB,
                     encryption_cell=(2, 1 * KiB), scale_cell=(2, 1 * KiB), scale_reps=1,
                     report_cell=(10, 2000)),
    "quick": Profile("quick", reps=3, grid=((1, 10 * KiB), (32, 10 * KiB), (32, 1 * MiB)), warmup=0.3,
                     window=1.5, max_window=5.0, min_completions=16, latency_cell=(32, 10 * KiB),
                     latency_duration=4.0, latency_reps=1, large=((1, 128 * MiB), (4, 32 * MiB)),
                     large_reps=1, auth_seconds=0.3, auth_full_requests=150, push_cell=(8, 10 * KiB),
                     push_reps=2),
    "full": Profile("full", reps=5, grid=tuple((n, s) for s in (1 * KiB, 10 * KiB, 1 * MiB) for n in (1, 8, 32)),
                    warmup=1.0, window=4.0, max_window=15.0, min_completions=64, latency_cell=(32, 10 * KiB),
                    latency_duration=20.0, latency_reps=3, large=((1, 1 * GiB), (10, 100 * MiB)), large_reps=3,
                    auth_seconds=1.0, auth_full_requests=600, push_cell=(8, 10 * KiB), push_reps=5,
                    axis_docs=100, vxp_cell=(4, 25), protocol_reps=3, report_cell=(200, 1_000_000)),
}
GROUPS = ("pull", "latency", "large", "encryption", "auth", "push", "edxml", "axis", "vxp", "report", "scale")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class Bench:
    """One invocation: the servers, the rows measured so far, what was skipped and why."""

    def __init__(self, profile: Profile, args: argparse.Namespace, workdir: Path, stamp: str) -> None:
        self.p = profile
        self.args = args
        self.workdir = workdir
        self.stamp = stamp
        self.rows: list[Row] = []
        self.skipped: list[dict[str, str]] = []
        self.errors: list[dict[str, str]] = []
        self.profiles: dict[str, Any] = {}
        self.hub = HubProcess(workdir / "hub")
        self.relay = RelayProcess(workdir / "relay")
        self.rabbit_reason = rabbit.available() if not args.no_rabbit else "disabled with --no-rabbit"
        self.rabbit_version: str | None = None
        self.pull_rows: dict[tuple[int, int], Row] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        t0 = time.perf_counter()
        await self.hub.provision(self.p.pairs_needed)
        await self.hub.start()
        await self.relay.start()
        log(f"hub {self.hub.url} (pid {self.hub.pid}), relay {self.relay.url} (pid {self.relay.pid}) "
            f"up in {time.perf_counter() - t0:.1f} s")
        if self.rabbit_reason is None:
            self.rabbit_version = await rabbit.server_version()
            if self.rabbit_version is None:
                self.rabbit_reason = "a broker listens on localhost:5672 but guest/guest login failed"
        if self.rabbit_reason:
            self.skipped.append({"row": "RabbitMQ baseline", "reason": self.rabbit_reason})
            log(f"RabbitMQ baseline skipped: {self.rabbit_reason}")
        await self.warm_up()

    async def warm_up(self) -> None:
        """A short unrecorded run on each system: the first requests after a start (connection pools,
        SQLAlchemy's statement cache, the broker's queues) are not what steady state looks like."""
        pairs, size = min(8, self.p.latency_cell[0]), self.p.latency_cell[1]
        data = payload(size)
        span = {"warmup": 0.0, "window": max(0.3, self.p.window / 2)}
        await exchange.closed_loop(self.hub.bound_pairs()[:pairs], data, server_pid=self.hub.pid, **span)
        await exchange.closed_loop(self.relay.bound_pairs(pairs), data, server_pid=self.relay.pid, **span)
        if self.rabbit_reason is None:
            await rabbit.closed_loop(pairs, data, **span)

    async def stop(self) -> dict[str, Any]:
        codes = {"hub": await self.hub.stop(), "relay": await self.relay.stop()}
        text = self.hub.log_tail(50_000_000)
        problems = [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line
                    or line.startswith("Traceback")]
        return {"exit_codes": codes, "hub_log_errors": len(problems), "hub_log_error_sample": problems[:5]}

    async def guarded(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """One group failing is reported and does not lose the others."""
        try:
            await fn()
        except Exception as exc:
            log(f"{name} failed: {exc!r}")
            self.errors.append({"group": name, "error": repr(exc), "traceback": traceback.format_exc()[-4000:]})

    # -- pull-mode throughput -----------------------------------------------------------------
    def _cell_args(self, pairs: int) -> dict[str, Any]:
        return {"warmup": self.p.warmup, "window": self.p.window, "max_window": self.p.max_window,
                "min_completions": max(self.p.min_completions, pairs // 2) if self.p.min_completions else 0}

    async def pull(self) -> None:
        for pairs, size in self.p.grid:
            row = Row(id=f"pull/{slug(human_size(size))}/n{pairs}", group="pull",
                      title=f"pull {human_size(size)} × {pairs} pairs", unit="exchanges/s",
                      params={"pairs": pairs, "size": size}, ratios=[("hub", "relay"), ("hub", "rabbitmq")])
            data = payload(size)
            for rep in range(self.p.reps):
                r = await exchange.closed_loop(self.hub.bound_pairs()[:pairs], data, server_pid=self.hub.pid,
                                               **self._cell_args(pairs))
                row.add("hub", r["value"], r)
                r2 = await exchange.closed_loop(self.relay.bound_pairs(pairs), data, server_pid=self.relay.pid,
                                                **self._cell_args(pairs))
                row.add("relay", r2["value"], r2)
                msg = f"{row.title} #{rep + 1}: hub {r['value']:.1f} (cpu {r['server_cpu']:.2f}), " \
                      f"relay {r2['value']:.1f} (cpu {r2['server_cpu']:.2f}, client {r2['client_cpu']:.2f})"
                if self.rabbit_reason is None:
                    r3 = await rabbit.closed_loop(pairs, data, **self._cell_args(pairs))
                    row.add("rabbitmq", r3["value"], r3)
                    msg += f", rabbitmq {r3['value']:.1f}"
                log(msg + f"; other processes {r['others_cpu']:.2f} / {r2['others_cpu']:.2f} cores")
                for name, res in (("hub", r), ("relay", r2)):
                    if res["errors"]:
                        row.notes.append(f"{name} run {rep + 1}: {res['errors']} errors, "
                                         f"e.g. {res['error_sample'][:1]}")
            noise = [d.get("others_cpu") or 0.0 for name in ("hub", "relay") for d in row.details.get(name, [])]
            row.extra["others_cpu_cores_median"] = statistics.median(noise) if noise else None
            if noise and statistics.median(noise) > 0.25:
                row.notes.append(f"other processes kept {statistics.median(noise):.2f} cores busy during these runs "
                                 "(shared machine): absolute figures are disturbed, ratios less so")
            self.rows.append(row)
            self.rows.append(cpu_per_exchange_row(row))
            self.pull_rows[(pairs, size)] = row
            if self.args.pyspy and (pairs, size) in ((32, 10 * KiB), (32, 1 * MiB), self.p.grid[-1]):
                await self.profile_pull(row, pairs, data)

    async def profile_pull(self, row: Row, pairs: int, data: bytes) -> None:
        """An extra, unmeasured hub run under py-spy (sampling perturbs the figure a little)."""
        out = self.workdir / f"{slug(row.id)}.pyspy.txt"
        args = self._cell_args(pairs)
        args["window"] = max(args["window"], 5.0)
        async with profiling.record(self.hub.pid, out) as info:
            r = await exchange.closed_loop(self.hub.bound_pairs()[:pairs], data, server_pid=self.hub.pid, **args)
        info["rate_while_profiled"] = r["value"]
        self._keep_profile(row.id, info, out)

    def _keep_profile(self, row_id: str, info: dict[str, Any], raw: Path) -> None:
        if info.get("file"):
            dest = RESULTS / f"{self.stamp}-profile-{slug(row_id)}.json"
            write_json(dest, {"row": row_id, "tool": "py-spy record --format raw --nonblocking",
                              "summary": info.get("summary"), "collapsed": raw.read_text(errors="replace")})
            info["file"] = str(dest.relative_to(REPO))
            log(f"profile of {row_id}:\n" + profiling.render(info["summary"], 8))
        self.profiles[row_id] = info

    # -- latency at half the measured maximum -------------------------------------------------
    async def latency(self) -> None:
        pairs, size = self.p.latency_cell
        data = payload(size)
        ref = self.pull_rows.get((pairs, size))
        if ref is None:
            r = await exchange.closed_loop(self.hub.bound_pairs()[:pairs], data, server_pid=self.hub.pid,
                                           **self._cell_args(pairs))
            max_rate = r["value"]
        else:
            max_rate = ref.summary("hub")["median"]
        rate = max(0.5 * max_rate, 0.5)
        label = f"{human_size(size)}×{pairs} @ {rate:.1f}/s"
        metrics = (("notify_ms", "notify"), ("create_to_delivered_ms", "create→delivered"))
        rows = {(m, q): Row(id=f"latency/{m}/{q}", group="latency", title=f"{title} {q} ({label})", unit="ms",
                            higher_is_better=False, params={"pairs": pairs, "size": size, "rate": rate,
                                                            "hub_max_rate": max_rate},
                            ratios=[("hub", "relay"), ("hub", "rabbitmq")])
                for m, title in metrics for q in ("p50", "p95", "p99")}
        for rep in range(self.p.latency_reps):
            results = {"hub": await exchange.open_loop(self.hub.bound_pairs()[:pairs], data, rate=rate,
                                                       duration=self.p.latency_duration, server_pid=self.hub.pid),
                       "relay": await exchange.open_loop(self.relay.bound_pairs(pairs), data, rate=rate,
                                                         duration=self.p.latency_duration,
                                                         server_pid=self.relay.pid)}
            if self.rabbit_reason is None:
                results["rabbitmq"] = await rabbit.open_loop(pairs, data, rate=rate, duration=self.p.latency_duration)
            for system, res in results.items():
                for (m, q), row in rows.items():
                    row.add(system, res[m][q], res if (m, q) == ("notify_ms", "p99") else None)
                if res["errors"] or res["completed"] < res["sent"]:
                    rows[("notify_ms", "p99")].notes.append(
                        f"{system} run {rep + 1}: {res['completed']}/{res['sent']} completed, {res['errors']} errors")
            hub = results["hub"]
            log(f"latency #{rep + 1} at {rate:.1f}/s: hub notify p50/p95/p99 "
                f"{hub['notify_ms']['p50']:.1f}/{hub['notify_ms']['p95']:.1f}/{hub['notify_ms']['p99']:.1f} ms, "
                f"relay p99 {results['relay']['notify_ms']['p99']:.1f} ms")
        self.rows.extend(rows.values())
        if self.args.pyspy:
            out = self.workdir / "latency.pyspy.txt"
            async with profiling.record(self.hub.pid, out) as info:
                await exchange.open_loop(self.hub.bound_pairs()[:pairs], data, rate=rate,
                                         duration=max(5.0, self.p.latency_duration), server_pid=self.hub.pid)
            self._keep_profile("latency/notify", info, out)

    # -- large packets ------------------------------------------------------------------------
    async def large(self) -> None:
        # The same hub with content encryption at rest off, started for this group only: what
        # encryption costs is the ratio `hub` / `hub unencrypted`, measured run by run.
        plain = HubProcess(self.workdir / "hub-plain", overrides={"blobs": {"encrypt": False}})
        await plain.provision(max(n for n, _ in self.p.large))
        await plain.start()
        log(f"hub without encryption at rest {plain.url} (pid {plain.pid})")
        try:
            await self._large(plain)
        finally:
            await plain.stop()

    async def _large(self, plain: HubProcess) -> None:
        files: dict[int, tuple[Path, str]] = {}
        try:
            for count, size in self.p.large:
                if size not in files:
                    path = self.workdir / f"source-{size}.bin"
                    log(f"writing a {human_size(size)} source file")
                    files[size] = (path, await asyncio.to_thread(write_big_file, path, size))
                path, sha = files[size]
                title = f"large {count} × {human_size(size)} at once"
                row = Row(id=f"large/{count}x{slug(human_size(size))}", group="large", title=title, unit="MB/s",
                          params={"packets": count, "size": size},
                          ratios=[("hub", "disk+hash ceiling"), ("hub", "relay"), ("hub", "hub unencrypted")],
                          notes=["MB/s = 10^6 bytes/s over the whole exchange (create, upload, ready, "
                                 "download to a file with the client's hash check, ack)",
                                 "hub: content encrypted at rest (the default); hub unencrypted: the same hub "
                                 "with blobs.encrypt false (sendfile downloads)"])
                rss = Row(id=f"large/{count}x{slug(human_size(size))}/rss", group="large",
                          title=f"{title}: hub peak RSS", unit="MB", higher_is_better=False,
                          params={"packets": count, "size": size},
                          ratios=[("hub", "hub idle"), ("hub", "hub unencrypted")])
                up = Row(id=f"large/{count}x{slug(human_size(size))}/upload", group="large",
                         title=f"{title}: upload leg", unit="MB/s", params={"packets": count, "size": size},
                         ratios=[("hub", "disk+hash ceiling"), ("hub", "relay"), ("hub", "hub unencrypted")])
                down = Row(id=f"large/{count}x{slug(human_size(size))}/download", group="large",
                           title=f"{title}: download leg (client writes + hashes)", unit="MB/s",
                           params={"packets": count, "size": size},
                           ratios=[("hub", "disk+hash ceiling"), ("hub", "relay"), ("hub", "hub unencrypted")])
                for rep in range(self.p.large_reps):
                    ceil = await asyncio.to_thread(disk.ceiling, path, count, self.workdir)
                    h = await exchange.large(self.hub.bound_pairs()[:count], path, sha, size, self.workdir,
                                             server_pid=self.hub.pid)
                    r = await exchange.large(self.relay.bound_pairs(count), path, sha, size, self.workdir,
                                             server_pid=self.relay.pid)
                    p = await exchange.large(plain.bound_pairs()[:count], path, sha, size, self.workdir,
                                             server_pid=plain.pid)
                    row.add("hub", h["value"], h)
                    row.add("relay", r["value"], r)
                    up.add("hub", h["upload_MBps"])
                    up.add("relay", r["upload_MBps"])
                    down.add("hub", h["download_MBps"])
                    down.add("relay", r["download_MBps"])
                    row.add("disk+hash ceiling", ceil["value"], ceil)
                    up.add("disk+hash ceiling", ceil["value"])
                    down.add("disk+hash ceiling", ceil["value"])
                    rss.add("hub", h["peak_rss_MB"])
                    rss.add("hub idle", h["start_rss_MB"])
                    row.add("hub unencrypted", p["value"], p)
                    up.add("hub unencrypted", p["upload_MBps"])
                    down.add("hub unencrypted", p["download_MBps"])
                    rss.add("hub unencrypted", p["peak_rss_MB"])
                    rss.extra.setdefault("relay_peak_rss_MB", []).append(r["peak_rss_MB"])
                    log(f"{title} #{rep + 1}: hub {h['value']:.0f} MB/s (up {h['upload_MBps']:.0f}, down "
                        f"{h['download_MBps']:.0f}), peak RSS {h['peak_rss_MB']:.0f} MB; unencrypted "
                        f"{p['value']:.0f} MB/s (up {p['upload_MBps']:.0f}, down {p['download_MBps']:.0f}), peak RSS "
                        f"{p['peak_rss_MB']:.0f} MB; relay {r['value']:.0f}; ceiling {ceil['value']:.0f}")
                rss.notes.append("relay keeps bodies in memory by design; its RSS is in extra, not a baseline")
                self.rows += [row, up, down, rss]
                if self.args.pyspy and (count, size) == self.p.large[0]:
                    out = self.workdir / "large.pyspy.txt"
                    async with profiling.record(self.hub.pid, out, rate=100) as info:
                        await exchange.large(self.hub.bound_pairs()[:count], path, sha, size, self.workdir,
                                             server_pid=self.hub.pid)
                    self._keep_profile(row.id, info, out)
        finally:
            for path, _ in files.values():
                path.unlink(missing_ok=True)

    # -- encryption at rest on small packets ---------------------------------------------------
    async def encryption(self) -> None:
        """What encryption at rest costs a small packet (a data key made, sealed, stored, unsealed and
        destroyed per packet, on top of the cipher): the same pull exchange on the usual hub and on a
        hub with `blobs.encrypt: false`, alternated within every repetition so both see the same
        machine state; the figure is the median of the per-repetition ratios."""
        pairs, size = self.p.encryption_cell
        plain = HubProcess(self.workdir / "hub-plain-small", overrides={"blobs": {"encrypt": False}})
        await plain.provision(pairs)
        await plain.start()
        log(f"hub without encryption at rest {plain.url} (pid {plain.pid})")
        try:
            data = payload(size)
            span = {"warmup": 0.0, "window": max(0.3, self.p.window / 2)}
            await exchange.closed_loop(plain.bound_pairs()[:pairs], data, server_pid=plain.pid, **span)
            row = Row(id=f"encryption/pull/{slug(human_size(size))}/n{pairs}", group="encryption",
                      title=f"pull {human_size(size)} × {pairs} pairs, encryption at rest on vs off",
                      unit="exchanges/s", params={"pairs": pairs, "size": size},
                      ratios=[("hub", "hub unencrypted")],
                      notes=["hub: blobs.encrypt true (the default); hub unencrypted: the same hub with "
                             "blobs.encrypt false; runs alternate, the first system switching each repetition"])
            systems = [("hub", self.hub), ("hub unencrypted", plain)]
            for rep in range(self.p.reps):
                got: dict[str, dict[str, Any]] = {}
                for name, server in systems if rep % 2 == 0 else systems[::-1]:
                    got[name] = await exchange.closed_loop(server.bound_pairs()[:pairs], data,
                                                           server_pid=server.pid, **self._cell_args(pairs))
                    row.add(name, got[name]["value"], got[name])
                    if got[name]["errors"]:
                        row.notes.append(f"{name} run {rep + 1}: {got[name]['errors']} errors")
                h, p = got["hub"], got["hub unencrypted"]
                log(f"{row.title} #{rep + 1}: encrypted {h['value']:.1f}/s (cpu {h['server_cpu']:.2f}), "
                    f"unencrypted {p['value']:.1f}/s (cpu {p['server_cpu']:.2f})")
            self.rows.append(row)
            self.rows.append(cpu_per_exchange_row(row, ("hub", "hub unencrypted")))
        finally:
            await plain.stop()

    # -- auth ---------------------------------------------------------------------------------
    async def auth(self) -> None:
        results = await auth_bench.run(self.workdir / "auth", seconds=self.p.auth_seconds,
                                       full_requests=self.p.auth_full_requests)
        for res in results:
            bits = f" ({res['key_bits']}-bit)" if res.get("key_bits") else ""
            row = Row(id=f"auth/{slug(res['algorithm'])}", group="auth", title=f"auth {res['algorithm']}{bits}",
                      unit="verifications/s", params={"algorithm": res["algorithm"], "key_bits": res["key_bits"]},
                      ratios=[("hub", "protocol"), ("hub", "primitive")],
                      notes=["hub = Authenticator.authenticate (store lookup + nonce write); protocol = header "
                             "parsing + string to sign + verify; primitive = the algorithm's verify alone"])
            row.add("hub", res["full"], res)
            row.add("protocol", res["protocol"])
            row.add("primitive", res["primitive"])
            self.rows.append(row)
        log("auth: " + ", ".join(f"{r['algorithm']} {r['full']:.0f}/s (primitive {r['primitive']:.0f}/s)"
                                  for r in results))

    # -- extension rows: push delivery and edXML -------------------------------------
    async def push(self) -> None:
        reason = await asyncio.to_thread(push_bench.unavailable_reason, self.hub.config_path)
        if reason:
            self.skipped.append({"row": "push-mode throughput", "reason": reason})
            log(f"push row skipped: {reason}")
            return
        pairs, size = self.p.push_cell
        res = await push_bench.run(self.workdir / "push", n_pairs=pairs, size=size, reps=self.p.push_reps,
                                   warmup=self.p.warmup, window=self.p.window, data=payload(size))
        row = Row(id=f"push/{slug(human_size(size))}/n{pairs}", group="push",
                  title=f"push {human_size(size)} × {pairs} pairs", unit="deliveries/s",
                  params={"pairs": pairs, "size": size}, ratios=[("hub", "relay")])
        for system in ("hub", "relay"):
            for r in res[system]:
                row.add(system, r["value"], r)
        row.extra["first_delivery_s"] = res["warmup_s"][0]
        row.notes.append("one packet per pair is pushed and delivered before timing (the first push creates "
                         "the hub's signing key)")
        self.rows.append(row)
        log(f"{row.title}: hub {row.summary('hub')['median']:.1f}/s, relay {row.summary('relay')['median']:.1f}/s")

    async def report(self) -> None:
        """A unit's yearly statistics: from the aggregates vs from the raw rows (bench/report_bench.py)."""
        units, packets = self.p.report_cell
        folder = self.workdir / "report"
        folder.mkdir(parents=True, exist_ok=True)
        res = await report_bench.measure(f"sqlite+aiosqlite:///{folder / 'stats.db'}", units=units, packets=packets,
                                         repeats=max(3, self.p.reps), busiest=1, log=log)
        first = res["reports"][0]
        row = Row(id=f"report/year/p{packets}", group="report", title=f"yearly report, {packets} packets",
                  unit="s", higher_is_better=False, params={"units": units, "packets": packets},
                  ratios=[("aggregates", "raw")])
        for system, key in (("aggregates", "aggregates_times_s"), ("raw", "raw_times_s")):
            for value in first[key]:
                row.add(system, value)
        row.extra.update({"counts": res["counts"], "backfill_s": res["backfill_seconds"],
                          "incremental_round_2000_events_s": res["incremental_round_2000_events_s"]})
        row.notes.append("the busiest unit's report for the year on SQLite; aggregates = unit_report (roll-up "
                         "first), raw = unit_report_raw (every raw row)")
        self.rows.append(row)

    async def scale(self) -> None:
        await scale_bench.measure(self)  # PostgreSQL: 1, 2, 4 (--workers) worker processes, --nodes nodes

    async def edxml(self) -> None:
        results = []
        for _ in range(1 if self.p.name != "full" else min(self.p.reps, 3)):
            # CPU-bound and synchronous: a worker thread keeps this loop (and its timers) alive
            results.append(await asyncio.to_thread(edxml_bench.run, self.p.name != "full"))
        self.rows += rows_from_edxml(results) or rows_from_plugin("edxml", results[-1])
        log("edXML: " + "; ".join(f"{r.title} {r.summary(next(iter(r.values)))['median']:.1f} {r.unit}"
                                  for r in self.rows if r.group == "edxml"))

    async def axis(self) -> None:
        """The national axis bridge against the simulator, beside the axis client alone."""
        docs, size = self.p.axis_docs, self.p.protocol_size
        params = {"documents": docs, "attachment_bytes": size, "concurrency": axis_bridge_bench.CONCURRENCY}
        out = Row(id="axis/outbound", group="axis", unit="documents/s", params=params,
                  title=f"national axis outbound {docs} docs: REST upload → sendEdoc → forwarded",
                  ratios=[("hub bridge", "axis client alone")],
                  notes=["hub bridge: a local unit uploads over REST, the delivery engine sends each with "
                         "sendEdoc to the simulator (counted when forwarded); axis client alone: sendEdoc of "
                         "other documents of the same size, as many in flight as the bridge's lane"])
        inbound = Row(id="axis/inbound", group="axis", unit="documents/s", params=params,
                      title=f"national axis inbound {docs} docs: one poll round",
                      ratios=[("hub poller", "axis client alone")],
                      notes=["hub poller: getReceivedEdocList, getEdoc, submit as a packet, updateStatus done; "
                             "axis client alone: the same calls without the hub"])
        for rep in range(self.p.protocol_reps):
            folder = self.workdir / f"axis-{rep}"
            folder.mkdir()
            r = await axis_bridge_bench.run(docs, size, folder)
            out.add("hub bridge", r["outbound_docs_per_s"], r)
            out.add("axis client alone", r["direct_outbound_docs_per_s"])
            inbound.add("hub poller", r["inbound_docs_per_s"], r)
            inbound.add("axis client alone", r["direct_inbound_docs_per_s"])
            log(f"axis #{rep + 1}: outbound {r['outbound_docs_per_s']}/s (client alone "
                f"{r['direct_outbound_docs_per_s']}/s), inbound {r['inbound_docs_per_s']}/s (client alone "
                f"{r['direct_inbound_docs_per_s']}/s)")
        self.rows += [out, inbound]

    async def vxp(self) -> None:
        """The hub's /vxp routes driven like SDK systems, beside the same exchange over REST."""
        pairs, docs = self.p.vxp_cell
        params = {"pairs": pairs, "documents_per_pair": docs, "attachment_bytes": self.p.protocol_size}
        rate = Row(id="vxp/end-to-end", group="vxp", unit="documents/s", params=params,
                   title=f"/vxp end to end {pairs} pairs × {docs} docs (sendEdoc, list, getEdoc, done)",
                   ratios=[("hub /vxp", "hub REST")],
                   notes=["hub REST: the same hub process, other documents of the same size: create, upload, "
                          "inbox, download, ack"])
        cpu = Row(id="vxp/cpu", group="vxp", unit="ms", higher_is_better=False, params=params,
                  title="/vxp: hub CPU per document", ratios=[("hub /vxp", "hub REST")])
        for rep in range(self.p.protocol_reps):
            r = await vxp_bench.main(pairs, docs, self.p.protocol_size, self.workdir / f"vxp-{rep}")
            rate.add("hub /vxp", r["documents_per_s"], r)
            rate.add("hub REST", r["rest_documents_per_s"])
            cpu.add("hub /vxp", r["hub_cpu_ms_per_document"])
            cpu.add("hub REST", r["rest_hub_cpu_ms_per_document"])
            log(f"vxp #{rep + 1}: {r['documents_per_s']}/s (REST {r['rest_documents_per_s']}/s), CPU "
                f"{r['hub_cpu_ms_per_document']} ms/doc (REST {r['rest_hub_cpu_ms_per_document']})")
        self.rows += [rate, cpu]


def rows_from_edxml(results: list[dict[str, Any]]) -> list[Row]:
    """Rows from bench/edxml_bench.py's result shape (one dict per repetition), if it is that shape.

    Per packet size: validated packets/s (parse_packet: stream, decode, hash, validate) beside
    lxml's bare fromstring of the same bytes, per CPU second (the figure that survives a shared
    machine) and per wall second; the large packet: MB/s and peak RSS growth.
    """
    rows: list[Row] = []
    first = results[0] if results else {}
    for key, value in first.items():
        if not isinstance(value, dict):
            continue
        if "edxml_packets_per_cpu_s" in value:
            size = human_size(int(value.get("packet_bytes", 0)))
            for per, suffix in (("cpu_s", "per CPU second"), ("s", "per wall second")):
                row = Row(id=f"edxml/{slug(key)}/{per}", group="edxml", title=f"edXML {key} ({size}) {suffix}",
                          unit="packets/s", params={"packet_bytes": value.get("packet_bytes")},
                          ratios=[("edxml validated", "lxml bare parse")])
                for r in results:
                    row.add("edxml validated", r[key][f"edxml_packets_per_{per}"], r[key])
                    row.add("lxml bare parse", r[key][f"lxml_fromstring_per_{per}"])
                rows.append(row)
        elif "parse_mb_per_s" in value:
            size = human_size(int(value.get("packet_bytes", 0)))
            row = Row(id=f"edxml/{slug(key)}/mbps", group="edxml", title=f"edXML {key} packet ({size}) parse",
                      unit="MB/s", params={"packet_bytes": value.get("packet_bytes")})
            rss = Row(id=f"edxml/{slug(key)}/rss", group="edxml", title=f"edXML {key} packet: peak RSS growth",
                      unit="MiB", higher_is_better=False, params={"packet_bytes": value.get("packet_bytes")})
            for r in results:
                row.add("edxml validated", r[key]["parse_mb_per_s"], r[key])
                rss.add("edxml validated", r[key]["peak_rss_growth_mb"])
            rows += [row, rss]
    return rows


def rows_from_plugin(group: str, result: Any) -> list[Row]:
    """Rows from an extension module's `run()`: {"rows": [{id, title, unit, systems: {name: values}}]}.

    `systems` maps a system name to a number or a list of repetitions; the first system is the
    subject, the others baselines (ratios are taken to each). Anything else is kept as is.
    """
    if not isinstance(result, dict):
        raise TypeError(f"{group} benchmark returned {type(result).__name__}, not a dict")
    rows = []
    for spec in result.get("rows", []):
        systems = spec.get("systems", {})
        names = list(systems)
        row = Row(id=f"{group}/{spec.get('id', len(rows))}", group=group,
                  title=spec.get("title", spec.get("id", group)),
                  unit=spec.get("unit", ""), higher_is_better=spec.get("higher_is_better", True),
                  params=spec.get("params", {}), ratios=[(names[0], b) for b in names[1:]] if names else [],
                  notes=list(spec.get("notes", [])))
        for name, values in systems.items():
            for v in values if isinstance(values, list) else [values]:
                row.add(name, v)
        rows.append(row)
    if not rows:
        row = Row(id=f"{group}/raw", group=group, title=f"{group} (unstructured result)", unit="")
        row.extra = result
        rows.append(row)
    return rows


# -- targets ----------------------------------------------------------------------------------

def evaluate_targets(rows: list[Row]) -> list[Target]:
    by_id = {r.id: r for r in rows}
    out: list[Target] = []

    def ratio_target(row_id: str, text: str, threshold: float) -> None:
        row = by_id.get(row_id)
        r = row.ratio("hub", "relay") if row else None
        if not r or r.get("median") is None:
            out.append(Target(row_id, text, "not measured", threshold=threshold, detail="row not in this profile"))
            return
        value = r["median"]
        out.append(Target(row_id, text, "met" if value >= threshold else "missed", value, threshold,
                          f"{value:.3f}× relay, runs {r['min']:.3f}–{r['max']:.3f}"))

    ratio_target("pull/10-kib/n32", "pull exchanges ≥ 0.5× raw relay at 10 KiB with 32 pairs", 0.5)
    ratio_target("pull/1-mib/n32", "pull exchanges ≥ 0.8× raw relay at 1 MiB with 32 pairs", 0.8)

    p99 = by_id.get("latency/notify_ms/p99")
    if p99 and p99.summary("hub")["median"] is not None:
        s = p99.summary("hub")
        out.append(Target(p99.id, "notify latency p99 under 50 ms at half load",
                          "met" if s["median"] < 50 else "missed", s["median"], 50.0,
                          f"p99 {s['median']:.1f} ms (runs {s['min']:.1f}–{s['max']:.1f}) at "
                          f"{p99.params['rate']:.1f}/s"))
    else:
        out.append(Target("latency/notify_ms/p99", "notify latency p99 under 50 ms at half load", "not measured"))

    rss = by_id.get("large/1x1-gib/rss")
    if rss:
        s = rss.summary("hub")
        out.append(Target(rss.id, "peak RSS under 200 MB while a 1 GiB packet passes",
                          "met" if s["max"] < 200 else "missed", s["max"], 200.0,
                          f"peak {s['max']:.0f} MB (idle {rss.summary('hub idle')['median']:.0f} MB)"))
    else:
        smaller = [r for r in rows if r.group == "large" and r.id.endswith("/rss")]
        detail = "; ".join(f"{r.title}: {r.summary('hub')['max']:.0f} MB" for r in smaller)
        out.append(Target("large/1x1-gib/rss", "peak RSS under 200 MB while a 1 GiB packet passes", "not measured",
                          threshold=200.0, detail=("1 GiB only in --full; " + detail) if detail else "--full only"))

    for row in rows:
        if row.group == "large" and not row.id.endswith(("/rss", "/upload", "/download")):
            r = row.ratio("hub", "disk+hash ceiling")
            if r and r.get("median") is not None:
                legs = []
                for leg in ("upload", "download"):
                    lr = by_id.get(f"{row.id}/{leg}")
                    ratio = lr.ratio("hub", "disk+hash ceiling") if lr else None
                    if ratio and ratio.get("median") is not None:
                        legs.append(f"{leg} leg {ratio['median']:.2f}×")
                out.append(Target(row.id, f"{row.title} (whole exchange): ≥ 0.5× disk+hash ceiling",
                                  "met" if r["median"] >= 0.5 else "missed", r["median"], 0.5,
                                  f"{r['median']:.2f}× ceiling, runs {r['min']:.2f}–{r['max']:.2f}; "
                                  + ", ".join(legs)))
    return out


# -- main -------------------------------------------------------------------------------------

async def amain(args: argparse.Namespace) -> int:
    profile = PROFILES[args.profile]
    if args.reps:
        profile = replace(profile, reps=args.reps)
    # The scale rows start a hub per shape on PostgreSQL (minutes on a small machine): full profile or --only.
    groups = [g for g in GROUPS if g in args.only] if args.only else \
        [g for g in GROUPS if g != "scale" or profile.name == "full"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(args.workdir) if args.workdir else None
    workdir = Path(tempfile.mkdtemp(prefix="lgsp-bench-", dir=base))
    out_path = Path(args.out) if args.out else RESULTS / f"{stamp}.json"
    started = time.perf_counter()
    log(f"profile {profile.name}, groups {', '.join(groups)}, work folder {workdir}")
    facts = machine_facts()
    bench = Bench(profile, args, workdir, stamp)
    servers: dict[str, Any] = {}
    try:
        await bench.start()
        for group in groups:
            await bench.guarded(group, getattr(bench, group))
    finally:
        servers = await bench.stop()
        if args.keep:
            log(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    try:
        targets = evaluate_targets(bench.rows)
    except Exception:  # the measured rows are still worth keeping
        bench.errors.append({"group": "targets", "error": "evaluating the targets failed",
                             "traceback": traceback.format_exc()[-4000:]})
        targets = []
    result = {
        "schema": 1,
        "profile": asdict(profile),
        "started_utc": stamp,
        "duration_s": time.perf_counter() - started,
        "command": " ".join(sys.argv),
        "machine": facts,
        "disk": disk_of(workdir.parent),
        "rabbitmq": {"version": bench.rabbit_version, "skipped": bench.rabbit_reason},
        "hub_settings": bench.hub.config_data() | {"note": "every other setting is the default of config/lgsp.yaml"},
        "servers": servers,
        "rows": [r.to_dict() for r in bench.rows],
        "targets": [t.to_dict() for t in targets],
        "skipped": bench.skipped,
        "errors": bench.errors,
        "profiles": bench.profiles,
    }
    write_json(out_path, result)
    print(table(bench.rows, bench.skipped, targets))
    print(f"\n{profile.name} profile, {result['duration_s']:.0f} s; machine: {facts['cpu_count']} × "
          f"{facts['cpu_model']}, {facts['ram_gib']} GiB, Python {facts['python']}, SQLite {facts['sqlite']}, "
          f"commit {(facts['git'].get('commit') or '?')[:10]}{' (dirty)' if facts['git'].get('dirty') else ''}")
    with contextlib.suppress(ValueError):
        out_path = out_path.relative_to(REPO)
    print(f"results: {out_path}")
    if servers.get("hub_log_errors"):
        print(f"warning: the hub logged {servers['hub_log_errors']} errors, e.g. {servers['hub_log_error_sample'][:1]}")
    for err in bench.errors:
        print(f"error in {err['group']}: {err['error']}", file=sys.stderr)
    return 1 if bench.errors else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", dest="profile", action="store_const", const="quick", help="make bench (default)")
    which.add_argument("--full", dest="profile", action="store_const", const="full", help="make bench-full")
    which.add_argument("--smoke", dest="profile", action="store_const", const="smoke", help="CI smoke run")
    parser.set_defaults(profile="quick")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run only these groups")
    parser.add_argument("--reps", type=_positive, help="override the number of repetitions of the pull grid")
    parser.add_argument("--no-rabbit", action="store_true", help="skip the RabbitMQ baseline")
    parser.add_argument("--pyspy", action="store_true", help="profile the hub with py-spy on the target rows")
    parser.add_argument("--workers", type=_positive, default=4,
                        help="scale rows: worker processes up to N (1, 2, 4, ... N; default 4)")
    parser.add_argument("--nodes", type=_positive, default=1,
                        help="scale rows: also 2, 4, ... N nodes of one worker each (default 1: none)")
    parser.add_argument("--out", help="JSON file to write (default bench/results/<timestamp>.json)")
    parser.add_argument("--workdir", help="parent folder for temporary files (default: the system temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub log, store)")
    args = parser.parse_args(argv)
    # Checked now, not when the run ends: a full run must not be lost to a bad path after 20 minutes.
    if args.workdir and not Path(args.workdir).is_dir():
        parser.error(f"--workdir {args.workdir}: no such folder")
    if args.out:
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
            parser.error(f"--out {args.out}: not a writable file path")
    return args


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
