"""Push-mode throughput: deliveries per second from the hub to a REST receiver.

The destination units are configured as push targets (`delivery.targets: {unit: {protocol: rest,
url: ...}}`), so the hub POSTs each packet to the receiver below instead of notifying. The raw
relay, started with `--push`, is the baseline: it POSTs the body on upload with no retry engine,
no signing, no store. One packet in flight per pair; a delivery counts when the receiver has it.

The row is skipped, with the reason, when the hub has no `rest` push adapter (a hub without the push delivery feature).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import fractional_rate
from bench.procs import HubProcess, Pair, RelayProcess
from lgsp.client.client import LgspClient

H_CONTENT = "X-LGSP-Content-SHA256"


def target_settings(unit: str, receiver_url: str) -> dict[str, Any]:
    return {"protocol": "rest", "url": f"{receiver_url}/receive/{unit}"}


def unavailable_reason(config_path: Path | None = None) -> str | None:
    """None when the hub can push over REST, else why the row is skipped."""
    from lgsp.core.config import load_config
    from lgsp.core.hub import Hub

    try:
        hub = Hub(load_config(config_path))
    except Exception as exc:
        return f"cannot build a hub to look for push adapters: {exc}"
    if "rest" not in hub.push_adapters:
        known = ", ".join(sorted(hub.push_adapters)) or "none"
        return f"the rest plugin is not enabled (push adapters: {known})"
    return None


class Receiver:
    """A destination system's REST endpoint: checks the hash, echoes it, wakes the waiting sender."""

    def __init__(self) -> None:
        self.waiters: dict[str, list[asyncio.Future[float]]] = defaultdict(list)
        self.received = 0
        self.errors: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        unit = request.match_info["unit"]
        body = await request.read()
        sha = hashlib.sha256(body).hexdigest()
        declared = request.headers.get(H_CONTENT)
        if declared and declared != sha:
            self.errors.append(f"hash mismatch for {unit}")
            return web.Response(status=400)
        self.received += 1
        queue = self.waiters.get(unit)
        if queue:
            waiter = queue.pop(0)
            if not waiter.done():
                waiter.set_result(asyncio.get_running_loop().time())
        return web.json_response({"received": True}, headers={H_CONTENT: sha})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Receiver]:
        app = web.Application(client_max_size=2 * 1024**3)
        app.router.add_post("/receive/{unit}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await self._runner.cleanup()


async def closed_loop(pairs: list[Pair], receiver: Receiver, data: bytes, *, warmup: float, window: float,
                      stall_s: float = 60.0) -> dict[str, Any]:
    done: list[float] = []
    spans: list[tuple[float, float]] = []
    failures: list[str] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def one_pair(pair: Pair) -> None:
        async with LgspClient(pair.source, lang="en") as src:
            while not stop.is_set():
                waiter: asyncio.Future[float] = loop.create_future()
                receiver.waiters[pair.destination_id].append(waiter)
                try:
                    start = loop.time()
                    await src.send(data, [pair.destination_id], subject="lgsp bench push")
                    end = await asyncio.wait_for(waiter, stall_s)
                    done.append(end)
                    spans.append((start, end))
                except Exception as exc:
                    failures.append(repr(exc))
                    await asyncio.sleep(0.05)
                finally:  # a waiter left behind would be handed the next delivery of this unit
                    with contextlib.suppress(ValueError):
                        receiver.waiters[pair.destination_id].remove(waiter)

    tasks = [asyncio.create_task(one_pair(p)) for p in pairs]
    await asyncio.sleep(warmup)
    t0 = loop.time()
    await asyncio.sleep(window)
    t1 = loop.time()
    stop.set()
    await asyncio.wait(tasks, timeout=stall_s)
    count = sum(1 for t in done if t0 <= t < t1)
    errors = failures + receiver.errors
    return {"value": fractional_rate(spans, t0, t1), "completed": count, "window_s": t1 - t0,
            "whole_completions_rate": count / (t1 - t0), "errors": len(errors),
            "error_sample": errors[:3]}


async def prime(pairs: list[Pair], receiver: Receiver, data: bytes, stall_s: float = 60.0) -> float:
    """One packet per pair, delivered, before anything is timed: the first push creates the hub's
    signing key and opens connections. Returns how long that took."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(pair: Pair) -> None:
        waiter: asyncio.Future[float] = loop.create_future()
        receiver.waiters[pair.destination_id].append(waiter)
        async with LgspClient(pair.source, lang="en") as src:
            await src.send(data, [pair.destination_id], subject="lgsp bench push (warm-up)")
        await asyncio.wait_for(waiter, stall_s)

    await asyncio.gather(*(one(p) for p in pairs))
    return loop.time() - t0


async def run(workdir: Path, *, n_pairs: int, size: int, reps: int, warmup: float, window: float,
              data: bytes) -> dict[str, Any]:
    """Both systems, interleaved repetitions; returns {"hub": [...], "relay": [...]} run details."""
    results: dict[str, list[dict[str, Any]]] = {"hub": [], "relay": []}
    async with Receiver().running() as receiver:
        hub = HubProcess(workdir / "push-hub")
        hub.overrides = {"delivery": {"targets": {}}}
        pairs = await hub.provision(n_pairs)
        hub.overrides["delivery"]["targets"] = {p.destination_id: target_settings(p.destination_id, receiver.url)
                                                for p in pairs}
        hub.write_config()
        relay = RelayProcess(workdir / "push-relay",
                             push={p.destination_id: f"{receiver.url}/receive/{p.destination_id}" for p in pairs})
        await hub.start()
        await relay.start()
        try:
            results["warmup_s"] = [{"hub": await prime(hub.bound_pairs(), receiver, data),
                                    "relay": await prime(relay.bound_pairs(n_pairs), receiver, data)}]
            for _ in range(reps):
                results["hub"].append(await closed_loop(hub.bound_pairs(), receiver, data, warmup=warmup,
                                                        window=window))
                results["relay"].append(await closed_loop(relay.bound_pairs(n_pairs), receiver, data,
                                                          warmup=warmup, window=window))
        finally:
            await relay.stop()
            await hub.stop()
    return results
