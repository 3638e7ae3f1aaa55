"""The load generator for the pull exchange, shared by the hub and the raw relay.

Both are driven by the same LgspClient code through the same round trips per packet:
create (POST), upload (PUT), `packet.available` over the destination's WebSocket, ready (POST),
download (GET), ack (POST); the hub purges the content on the last ack, the relay drops it.
Each unit has its own client session, as separate agencies would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import ProcessMonitor, cpu_window, fractional_rate, percentile, wait_until
from bench.procs import Pair
from lgsp.client.client import LgspClient

SUBJECT = "lgsp bench"
now = time.perf_counter


@dataclass
class Timeline:
    """perf_counter() instants of one exchange; `server_at` is the server's own event time (epoch)."""

    create: float = 0.0
    upload_start: float = 0.0
    upload_sent: float = 0.0  # the last byte of the body handed to the socket
    upload_done: float = 0.0
    available: float = 0.0
    available_wall: float = 0.0
    server_at: float = 0.0
    delivered: float = 0.0


@dataclass
class PairWorker:
    """A source and a destination client; the destination listens on its event stream.

    `concurrent`: handle each notification in its own task (open-loop load), or one after the other
    (closed loop, one exchange in flight per pair).
    """

    pair: Pair
    concurrent: bool = False
    timelines: dict[str, Timeline] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    on_delivered: Callable[[str, Timeline], None] | None = None
    _waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        # The source's session reports when the last byte of each request body left the client:
        # that instant is "upload complete" for the notify latency.
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(self._chunk_sent)
        session = await self._stack.enter_async_context(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300), trace_configs=[trace]))
        self.src = await self._stack.enter_async_context(LgspClient(self.pair.source, lang="en", session=session))
        self.dst = await self._stack.enter_async_context(LgspClient(self.pair.destination, lang="en"))
        stream = await self._stack.enter_async_context(self.dst.events())
        hello = await anext(stream)
        if hello.get("type") != "hello":
            raise RuntimeError(f"first event was {hello.get('type')!r}, not hello")
        for item in hello.get("inbox", []):  # leftovers of an earlier, interrupted measurement
            self._spawn(self._deliver(str(item["id"]), None))
        self._reader = asyncio.create_task(self._read(stream))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._stack.aclose()

    async def _chunk_sent(self, _session: Any, _ctx: Any, params: aiohttp.TraceRequestChunkSentParams) -> None:
        if params.method != "PUT":
            return
        parts = params.url.path.split("/")  # /v1/packets/{id}/content
        timeline = self.timelines.get(parts[3]) if len(parts) > 4 else None
        if timeline is not None:
            timeline.upload_sent = now()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, stream: AsyncIterator[dict[str, Any]]) -> None:
        async for message in stream:
            if message.get("type") != "packet.available":
                continue
            packet_id = str(message["id"])
            timeline = self.timelines.get(packet_id)
            if timeline is not None:
                timeline.available = now()
                timeline.available_wall = time.time()
                timeline.server_at = _epoch(message.get("at"))
            if self.concurrent:
                self._spawn(self._deliver(packet_id, timeline))
            else:
                await self._deliver(packet_id, timeline)

    async def _deliver(self, packet_id: str, timeline: Timeline | None) -> None:
        waiter = self._waiters.pop(packet_id, None)
        try:
            data = await self.dst.fetch_bytes(packet_id)
            state = await self.dst.ack(packet_id, hashlib.sha256(data).hexdigest())
            if state != "delivered":
                raise RuntimeError(f"ack answered {state!r}")
        except Exception as exc:
            self.errors.append(f"deliver {packet_id}: {exc!r}")
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return
        t = now()
        if timeline is not None:
            timeline.delivered = t
            if self.on_delivered is not None:
                self.on_delivered(packet_id, timeline)
        if waiter is not None and not waiter.done():
            waiter.set_result(t)

    async def send(self, data: bytes, sha: str) -> tuple[str, Timeline, asyncio.Future[float]]:
        """Create and upload one packet; the future resolves when the destination has acked it."""
        tl = Timeline(create=now())
        created = await self.src.create_packet([self.pair.destination_id], subject=SUBJECT, size=len(data),
                                               sha256=sha)
        packet_id = str(created["id"])
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[packet_id] = waiter
        self.timelines[packet_id] = tl
        tl.upload_start = now()
        await self.src.upload(created["upload"]["url"], data, sha)
        tl.upload_done = now()
        return packet_id, tl, waiter


def _epoch(at: Any) -> float:
    if not isinstance(at, str):
        return 0.0
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    return 0.0


@contextlib.asynccontextmanager
async def workers(pairs: list[Pair], *, concurrent: bool) -> AsyncIterator[list[PairWorker]]:
    ws = [PairWorker(p, concurrent=concurrent) for p in pairs]
    try:
        await asyncio.gather(*(w.open() for w in ws))
        yield ws
    finally:
        await asyncio.gather(*(w.close() for w in ws), return_exceptions=True)


# -- closed loop: the maximum rate ------------------------------------------------------------

async def closed_loop(pairs: list[Pair], data: bytes, *, warmup: float, window: float, server_pid: int,
                      max_window: float | None = None, min_completions: int = 0,
                      stall_s: float = 120.0, more_server_pids: Sequence[int] = ()) -> dict[str, Any]:
    """Every pair runs one exchange after another; exchanges completed per second in the window
    (each credited with the share of its span inside the window, see `fractional_rate`).

    Steady state first: the window opens after `warmup` and once every pair has finished one
    exchange. It lasts `window` seconds, stretched (up to `max_window`) until `min_completions`
    exchanges fell inside it, so a slow server is not judged on a handful of samples.
    `more_server_pids`: the server's other processes (worker processes, other nodes); their CPU
    joins `server_cpu_all`.
    """
    sha = hashlib.sha256(data).hexdigest()
    done: list[float] = []
    spans: list[tuple[float, float]] = []
    failures: list[str] = []
    per_pair = [0] * len(pairs)
    stop = asyncio.Event()

    async def loop(index: int, worker: PairWorker) -> None:
        while not stop.is_set():
            try:
                _, tl, waiter = await worker.send(data, sha)
                finished = await asyncio.wait_for(waiter, stall_s)
            except Exception as exc:
                failures.append(repr(exc))
                await asyncio.sleep(0.05)
                continue
            done.append(finished)
            spans.append((tl.create, finished))
            per_pair[index] += 1

    async with workers(pairs, concurrent=False) as ws:
        tasks = [asyncio.create_task(loop(i, w)) for i, w in enumerate(ws)]
        started = now()
        await asyncio.sleep(warmup)
        await wait_until(lambda: min(per_pair) > 0, started + stall_s)
        warm_s = now() - started
        with cpu_window(server_pid, *more_server_pids, _self_pid()) as cpu:
            t0 = now()
            await asyncio.sleep(window)
            await wait_until(lambda: sum(1 for t in done if t >= t0) >= min_completions,
                             t0 + (max_window or window))
            t1 = now()
        stop.set()
        await asyncio.wait(tasks, timeout=stall_s)
        errors = failures + [e for w in ws for e in w.errors]
    in_window = [t for t in done if t0 <= t < t1]
    lat = [end - start for start, end in spans if t0 <= end < t1]
    return {"value": fractional_rate(spans, t0, t1), "completed": len(in_window), "window_s": t1 - t0,
            "whole_completions_rate": len(in_window) / (t1 - t0),
            "warmup_s": warm_s, "errors": len(errors), "error_sample": errors[:3],
            "exchange_ms_p50": percentile(lat, 50) * 1000 if lat else None,
            "server_cpu": cpu.get(str(server_pid)), "client_cpu": cpu.get(str(_self_pid())),
            "server_cpu_all": sum(cpu.get(str(pid), 0.0) for pid in {server_pid, *more_server_pids}),
            "others_cpu": cpu.get("others"), "machine_busy": cpu.get("machine_busy")}


# -- open loop: latency at a given offered rate -----------------------------------------------

async def open_loop(pairs: list[Pair], data: bytes, *, rate: float, duration: float, server_pid: int,
                    drain_timeout: float = 30.0) -> dict[str, Any]:
    """Start exchanges at a fixed rate (round-robin over pairs) whatever the server's pace.

    Latencies: upload complete (the body's last byte handed to the socket, from aiohttp's request
    tracing) → `packet.available` at the destination; create → delivered (the ack answered).
    """
    sha = hashlib.sha256(data).hexdigest()
    finished: list[Timeline] = []
    failures: list[str] = []
    pending: set[asyncio.Task[None]] = set()

    async with workers(pairs, concurrent=True) as ws:
        for w in ws:
            w.on_delivered = lambda _pid, tl: finished.append(tl)

        async def one(worker: PairWorker) -> None:
            try:
                await worker.send(data, sha)
            except Exception as exc:
                failures.append(repr(exc))

        total = max(1, int(rate * duration))
        with cpu_window(server_pid, _self_pid()) as cpu:
            start = now()
            for k in range(total):
                delay = start + k / rate - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(ws[k % len(ws)]))
                pending.add(task)
                task.add_done_callback(pending.discard)
            offered_end = now()
            # a delivery that failed on the destination's side is in its worker's errors, not in failures
            await wait_until(lambda: len(finished) + len(failures) + sum(len(w.errors) for w in ws) >= total,
                             offered_end + drain_timeout, 0.005)
            end = now()
        errors = failures + [e for w in ws for e in w.errors]
    notify = [(tl.available - (tl.upload_sent or tl.upload_start)) * 1000 for tl in finished if tl.available]
    traced = sum(1 for tl in finished if tl.upload_sent)
    e2e = [(tl.delivered - tl.create) * 1000 for tl in finished]
    hub_to_dest = [(tl.available_wall - tl.server_at) * 1000 for tl in finished if tl.server_at]
    return {"offered_rate": rate, "sent": total, "completed": len(finished), "upload_complete_traced": traced,
            "achieved_rate": len(finished) / (end - start) if end > start else 0.0,
            "send_span_s": offered_end - start, "errors": len(errors), "error_sample": errors[:3],
            "notify_ms": _pcts(notify), "create_to_delivered_ms": _pcts(e2e),
            "server_event_to_available_ms": _pcts(hub_to_dest),
            "server_cpu": cpu.get(str(server_pid)), "client_cpu": cpu.get(str(_self_pid())),
            "others_cpu": cpu.get("others"), "machine_busy": cpu.get("machine_busy")}


def _pcts(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else None}


def _self_pid() -> int:
    import os

    return os.getpid()


# -- large packets: streamed from and to files ------------------------------------------------

async def large(pairs: list[Pair], source: Path, sha: str, size: int, workdir: Path, *,
                server_pid: int) -> dict[str, Any]:
    """Each pair moves one file through the server at the same time: upload, download, ack.

    The destination's client writes the download to a file and hashes it (LgspClient.download);
    the server's resident memory is sampled all along.
    """
    results: list[dict[str, float]] = []

    async def one(pair: Pair, index: int) -> None:
        dest = workdir / f"download-{index}.bin"
        async with LgspClient(pair.source, lang="en") as src, LgspClient(pair.destination, lang="en") as dst:
            t0 = now()
            created = await src.create_packet([pair.destination_id], subject=SUBJECT, size=size, sha256=sha)
            await src.upload(created["upload"]["url"], source, sha)
            t1 = now()
            got = await dst.download(str(created["id"]), dest, resume=False)
            t2 = now()
            if got != sha:
                raise RuntimeError("downloaded content does not match")
            state = await dst.ack(str(created["id"]), got)
            t3 = now()
            if state != "delivered":
                raise RuntimeError(f"ack answered {state!r}")
        await asyncio.to_thread(dest.unlink)
        results.append({"t0": t0, "t1": t1, "t2": t2, "t3": t3})

    with ProcessMonitor(server_pid, interval=0.01) as mon:
        start = now()
        await asyncio.gather(*(one(p, i) for i, p in enumerate(pairs)))
        end = now()
    total = size * len(pairs)
    upload_span = max(r["t1"] for r in results) - start
    download_span = max(r["t2"] for r in results) - min(r["t1"] for r in results)
    return {"value": total / (end - start) / 1e6, "bytes": total, "packets": len(pairs), "seconds": end - start,
            "upload_MBps": total / upload_span / 1e6, "download_MBps": total / download_span / 1e6,
            "peak_rss_MB": mon.peak_rss / 1e6, "start_rss_MB": mon.start_rss / 1e6,
            "rss_growth_MB": (mon.peak_rss - mon.start_rss) / 1e6, "rss_samples": mon.samples,
            "server_cpu": mon.cpu_share}
