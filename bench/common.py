"""Shared helpers of the benchmark: statistics, process monitoring, machine facts, sizes.

Absolute times on a shared machine are noise, so every figure keeps its repetitions (for the
spread) and the CPU time the server and the load generator used (to see which side saturated).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

VERSIONED = ("aiohttp", "yarl", "multidict", "SQLAlchemy", "aiosqlite", "alembic", "cryptography", "aio-pika",
             "aiormq", "psutil", "pyinstrument", "py-spy", "lxml", "uvloop", "lgsp")


async def wait_until(condition: Callable[[], bool], deadline: float, step: float = 0.02) -> bool:
    """Poll `condition` until it holds or time.perf_counter() passes `deadline`; True if it held.

    Polling, not an Event: the conditions are counts kept by many tasks, and a 20 ms step is far
    below the windows measured.
    """
    while not condition():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


def human_size(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), as numpy's default; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def fractional_rate(spans: Sequence[tuple[float, float]], t0: float, t1: float) -> float:
    """Operations completed per second in [t0, t1), each counted by the share of it inside.

    A closed loop on a queueing server falls into lock-step waves (every pair finishing at once
    every few seconds); counting whole completions in a window then jumps between one and two
    waves. Crediting each operation with the fraction of its span inside the window does not.
    """
    if t1 <= t0:
        return math.nan
    total = 0.0
    for start, end in spans:
        if end <= start or end <= t0 or start >= t1:
            continue
        total += (min(end, t1) - max(start, t0)) / (end - start)
    return total / (t1 - t0)


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median with min/max and quartiles over repeated runs: the spread travels with the figure."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None, "runs": list(values)}
    return {"n": len(clean), "median": statistics.median(clean), "min": min(clean), "max": max(clean),
            "q1": percentile(clean, 25), "q3": percentile(clean, 75), "runs": list(values)}


def ratio_summary(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, Any]:
    """Per-repetition ratios (runs interleave, so pairs share the moment), summarised."""
    def usable(x: float | None) -> bool:  # a run that failed is stored as NaN (or None)
        return x is not None and math.isfinite(x)

    per_run = [a / b for a, b in zip(numerators, denominators, strict=False) if usable(a) and usable(b) and b]
    out = summarize(per_run)
    good_a = [a for a in numerators if usable(a)]
    good_b = [b for b in denominators if usable(b) and b]
    med_a = statistics.median(good_a) if good_a else None
    med_b = statistics.median(good_b) if good_b else None
    out["of_medians"] = (med_a / med_b) if med_a is not None and med_b else None
    return out


@dataclass
class ProcessMonitor:
    """Samples a process's resident memory in a thread and measures the CPU it used meanwhile.

    Sampling runs off the event loop so a busy loop cannot hide a memory peak.
    """

    pid: int
    interval: float = 0.01
    peak_rss: int = 0
    start_rss: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _proc: psutil.Process | None = None
    _cpu0: float = 0.0
    _t0: float = 0.0

    def __enter__(self) -> ProcessMonitor:
        self._proc = psutil.Process(self.pid)
        self.start_rss = self.peak_rss = self._proc.memory_info().rss
        self._cpu0 = _cpu(self._proc)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"rss-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._proc is not None
        while not self._stop.wait(self.interval):
            try:
                rss = self._proc.memory_info().rss
            except psutil.Error:
                return
            self.samples += 1
            self.peak_rss = max(self.peak_rss, rss)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        assert self._proc is not None
        self.wall_seconds = time.perf_counter() - self._t0
        with contextlib.suppress(psutil.Error):
            self.cpu_seconds = _cpu(self._proc) - self._cpu0
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    @property
    def cpu_share(self) -> float:
        """CPU used as a fraction of one core over the window (above 1.0 means several threads)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


@contextlib.contextmanager
def cpu_window(*pids: int) -> Iterator[dict[str, float]]:
    """CPU share (of one core) each process used during the block, keyed by pid (as a string).

    Also `machine_busy` (cores busy machine-wide) and `others` (busy cores not explained by these
    processes): on a shared machine, the second says how much a figure was disturbed.
    """
    procs = {pid: psutil.Process(pid) for pid in pids}
    before = {pid: _cpu(p) for pid, p in procs.items()}
    busy0 = _machine_busy()
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    try:
        yield out
    finally:
        wall = time.perf_counter() - t0
        ours = 0.0
        for pid, p in procs.items():
            with contextlib.suppress(psutil.Error):
                out[str(pid)] = (_cpu(p) - before[pid]) / wall if wall else 0.0
                ours += out[str(pid)]
        if wall:
            out["machine_busy"] = (_machine_busy() - busy0) / wall
            out["others"] = max(0.0, out["machine_busy"] - ours)


def payload(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes (nothing on the path compresses, but keep it honest)."""
    out = bytearray()
    block = hashlib.sha512(f"lgsp-bench-{seed}".encode()).digest()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block
    return bytes(out[:size])


def write_big_file(path: Path, size: int, block: int = 16 * MiB) -> str:
    """A file of `size` random-looking bytes; returns its SHA-256 (computed while writing)."""
    sha = hashlib.sha256()
    chunk = os.urandom(block)
    written = 0
    with path.open("wb") as fh:
        while written < size:
            part = chunk[: min(block, size - written)]
            # vary each block so no layer could deduplicate it
            part = written.to_bytes(8, "little") + part[8:] if len(part) >= 8 else part
            sha.update(part)
            fh.write(part)
            written += len(part)
    return sha.hexdigest()


# -- machine facts -----------------------------------------------------------------------------

def machine_facts() -> dict[str, Any]:
    """What a reader needs to compare two result files: hardware, software, versions, commit."""
    vm = psutil.virtual_memory()
    facts: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "ram_bytes": vm.total,
        "ram_gib": round(vm.total / GiB, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "event_loop": "asyncio (default selector loop)",
        "versions": _versions(),
        "git": _git(),
        "load_average": list(os.getloadavg()),
    }
    return facts


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        status = [line for line in run("status", "--porcelain").splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    changed = [line[3:] for line in status if not line.startswith("??")]
    untracked = [line[3:] for line in status if line.startswith("??")]
    # "dirty" means tracked files differ from the commit (the code measured is not the commit's)
    return {"commit": commit or None, "dirty": bool(changed), "changed_files": changed[:50],
            "untracked_files": len(untracked)}


def disk_of(path: Path) -> dict[str, str]:
    """Device and file system a folder lives on (fsync cost depends on it)."""
    best = None
    target = str(path.resolve())
    for part in psutil.disk_partitions(all=True):
        if target.startswith(part.mountpoint) and (best is None or len(part.mountpoint) > len(best.mountpoint)):
            best = part
    if best is None:
        return {"path": target}
    return {"path": target, "device": best.device, "fstype": best.fstype, "mountpoint": best.mountpoint}
