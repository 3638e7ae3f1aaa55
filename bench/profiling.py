"""Sampling profiles of the server process while a benchmark row runs (py-spy, out of process).

py-spy attaches to the hub by pid, so the hub runs exactly as in production (no profiler inside
it). `--nonblocking` keeps it from pausing the hub at each sample. The raw (collapsed) stacks are
summarised here into the frames that take the most samples, which is what docs/performance.md
quotes; the raw files stay next to the JSON for flame graphs (flamegraph.pl, speedscope).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Leaf frames where a thread waits for work. py-spy's idle filter does not see these blocking C
# calls in --nonblocking mode, so they are recognised here by the source line they stop at.
IDLE_WAITS: tuple[tuple[str, str, str], ...] = (
    ("aiosqlite.core", "_connection_worker_thread", "tx.get()"),
    ("concurrent.futures.thread", "_worker", "work_queue.get(block=True)"),
    ("selectors", "EpollSelector.select", "self._selector.poll("),
)

# Where a busy sample's time goes, judged by the first matching frame from the leaf up.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("thread hand-offs (store thread, loop wake-ups)",
     ("Connection._execute (aiosqlite/", "_read_from_self (asyncio/", "_write_to_self (asyncio/",
      "call_soon_threadsafe (asyncio/", "InlineEngine.off_loop (core/store/sqlite_inline")),
    # The frames in which the SQLite store runs a statement (core/store/sqlite_inline.py: its
    # buffered cursor on the event loop's thread, or `_waiting` on the store's thread for a long
    # read, a BEGIN that waits for another process, a COMMIT under synchronous=FULL; sqlite3's C
    # calls have no frame of their own), and aiosqlite's thread where another tool still uses it.
    # Listed before "lgsp code", which would otherwise claim those functions by their path.
    ("sqlite executing",
     ("_connection_worker_thread (aiosqlite/", "_BufferedCursor.execute (core/store/sqlite_inline",
      "_BufferedCursor.executemany (core/store/sqlite_inline", "_waiting (core/store/sqlite_inline",
      "Checkpointer._checkpoint (core/store/sqlite_inline")),
    ("hashing", ("hashlib", "sha256")),
    ("blob write, hash, fsync, unlink (thread pool)",
     ("os.fsync", "_commit (core/store/blobs", "_write_chunk", "_delete", "Path.unlink")),
    ("logging (access log)", ("logging/",)),
    ("SQLAlchemy", ("sqlalchemy/", "<sqlalchemy generated")),
    ("JSON", ("json/",)),
    ("signature verification", ("plugins/signatures.py", "hmac.py")),
    ("aiohttp", ("aiohttp/",)),
    ("asyncio", ("asyncio/", "selectors.py")),
    ("lgsp code", ("core/", "adapters/", "plugins/")),
)


def idle_lines() -> set[tuple[str, str, int]]:
    """(function, file suffix, line) of each wait in IDLE_WAITS, read from the installed sources."""
    import importlib.util

    out: set[tuple[str, str, int]] = set()
    for module, func, needle in IDLE_WAITS:
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                continue
            suffix = "/".join(Path(spec.origin).parts[-2:]) if "." in module else Path(spec.origin).name
            for number, text in enumerate(Path(spec.origin).read_text().splitlines(), start=1):
                if needle in text:
                    out.add((func, suffix, number))
    return out


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH; None when not installed."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


@contextlib.asynccontextmanager
async def record(pid: int, out: Path, *, rate: int = 200, enabled: bool = True,
                 idle: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Profile `pid` for the duration of the block; yields a dict filled with the outcome."""
    info: dict[str, Any] = {"file": None}
    exe = py_spy() if enabled else None
    if exe is None:
        info["skipped"] = "py-spy not installed" if enabled else "profiling off"
        yield info
        return
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", str(rate),
           "--nonblocking", "--threads"]
    if idle:
        cmd.append("--idle")
    spy = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.STDOUT)
    await asyncio.sleep(0.3)  # let it attach before the work starts
    try:
        yield info
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            log, _ = await asyncio.wait_for(spy.communicate(), 60)
        except TimeoutError:
            spy.kill()
            log, _ = await spy.communicate()
        text = (log or b"").decode(errors="replace")
        if await asyncio.to_thread(_nonempty, out):
            info["file"] = str(out)
            info["summary"] = await asyncio.to_thread(summarize, out)
        else:
            info["skipped"] = "py-spy produced no output: " + text.strip()[-300:]


def _nonempty(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _frames(stack: str) -> list[tuple[str, str, int]]:
    out = []
    for raw in stack.split(";"):
        m = FRAME.match(raw.strip())
        if m:
            out.append((m.group("func"), m.group("file") or "", int(m.group("line") or 0)))
        else:
            out.append((raw.strip(), "", 0))
    return out


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Busy samples split by thread and component, top frames by self and inclusive samples.

    Samples of threads waiting for work (IDLE_WAITS) are counted apart as `idle_samples` and left
    out of every percentage, which are shares of the busy samples.
    """
    waits = idle_lines()
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    bucket_c: Counter[str] = Counter()
    main_c: Counter[str] = Counter()  # components of the event-loop thread's busy samples alone
    lgsp_c: Counter[str] = Counter()
    thread_c: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        thread = None
        if stack.startswith("thread ("):  # recorded with --threads: the first frame names the thread
            first, _, stack = stack.partition(";")
            thread = _thread_kind(first)
        frames = _frames(stack)
        if not frames:
            continue
        func, file, number = frames[-1]
        if any(func == f and file.endswith(suffix) and number == n for f, suffix, n in waits):
            idle += count
            continue
        if thread:
            thread_c[thread] += count
        names = [f"{fn} ({fl})" for fn, fl, _ in frames]
        self_c[names[-1]] += count
        for name in set(names):
            incl_c[name] += count
        bucket = _bucket(frames)
        bucket_c[bucket] += count
        if thread == "MainThread":
            main_c[bucket] += count
        # The deepest frame of our own code: which use case the sample belongs to.
        own = [f"{fn} ({fl})" for fn, fl, _ in frames if fl.startswith(("core/", "adapters/"))]
        lgsp_c[own[-1] if own else "(outside lgsp code)"] += count
    busy = total - idle
    main_busy = sum(main_c.values())

    def pct(counter: Counter[str], n: int, of: int | None = None) -> list[dict[str, Any]]:
        base = busy if of is None else of
        return [{"frame": k, "samples": v, "pct": round(100.0 * v / base, 1) if base else 0.0}
                for k, v in counter.most_common(n)]

    return {"samples": total, "idle_samples": idle, "busy_samples": busy, "threads": pct(thread_c, 10),
            "components": pct(bucket_c, len(BUCKETS) + 1),
            # The event loop is the hub's one Python thread serving requests: when it saturates (a
            # server CPU near 1.0 core), its own split says where a fix would buy throughput.
            "main_thread_busy_samples": main_busy,
            "components_main_thread": pct(main_c, len(BUCKETS) + 1, main_busy),
            "self": pct(self_c, top),
            "inclusive": pct(incl_c, top * 2), "deepest_lgsp_frame": pct(lgsp_c, top)}


def _thread_kind(frame: str) -> str:
    """Threads of one kind are summed: the event loop, the SQLite store's thread (aiosqlite's workers
    in tools that still use it), asyncio.to_thread's pool."""
    name = frame.split(":", 1)[-1].strip()
    if "_connection_worker_thread" in name:
        return "aiosqlite worker threads"
    if name.startswith("lgsp-sqlite"):
        return "SQLite store thread"
    if name.startswith("asyncio_"):
        return "asyncio.to_thread pool"
    return name


def _bucket(frames: list[tuple[str, str, int]]) -> str:
    for func, file, _ in reversed(frames):
        text = f"{func} ({file}"
        for name, needles in BUCKETS:
            if any(n in text for n in needles):
                return name
    return "other"


def render(summary: dict[str, Any], limit: int = 10) -> str:
    """A plain-text digest of a summary for the console and the docs."""
    lines = [f"samples: {summary.get('samples', 0)} ({summary.get('idle_samples', 0)} idle, left out)"]
    if summary.get("threads"):
        lines.append("threads:")
        lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["threads"]]
    lines.append("components:")
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary.get("components", [])]
    if summary.get("components_main_thread"):
        lines.append(f"components of the event-loop thread alone ({summary.get('main_thread_busy_samples')} "
                     "busy samples = 100%):")
        lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary["components_main_thread"]]
    lines.append("top self frames:")
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary.get("self", [])[:limit]]
    lines.append("deepest lgsp frame:")
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in summary.get("deepest_lgsp_frame", [])[:limit]]
    return "\n".join(lines)


def summarize_file(path: Path) -> dict[str, Any]:
    """A raw py-spy file, or a bench/results/*-profile-*.json (its collapsed stacks re-read)."""
    if path.suffix != ".json":
        return summarize(path)
    import json
    import tempfile

    data = json.loads(path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        raw.write_text(data["collapsed"], encoding="utf-8")
        return summarize(raw)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.profiling FILE [TOP] [--update]`: print a profile's summary; with --update,
    also store it back into a -profile- JSON (files written before a change to BUCKETS)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=main.__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("top", type=int, nargs="?", default=12)
    parser.add_argument("--update", action="store_true", help="rewrite the summary stored in the JSON file")
    args = parser.parse_args(argv)
    summary = summarize_file(args.file)
    print(render(summary, args.top))
    if args.update and args.file.suffix == ".json":
        data = json.loads(args.file.read_text(encoding="utf-8"))
        data["summary"] = summary
        args.file.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
