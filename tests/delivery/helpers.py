"""Helpers for the delivery tests: real hubs, real receivers and services on loopback ports.

Everything here is a real server: the hub (in-process, or `lgsp run` as a subprocess for the crash
test), the reference REST receiver (adapters/rest/receiver.py) and plain aiohttp services. Fault
injection (down, slow, 5xx, 4xx, 429) is an aiohttp middleware in front of the real receiver, so the
hub always talks HTTP to a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from lgsp.adapters.rest.receiver import HubVerifier, Receiver
from lgsp.client import Credentials, LgspClient
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from ..conftest import free_port, wait_for

__all__ = ["free_port", "wait_for"]  # shared test helpers, re-exported for the delivery tests

UNITS = ["000.00.01.H23", "000.00.02.H23", "000.00.03.H23", "000.00.04.H23", "000.00.05.H23", "000.00.06.H23"]


def base_config(tmp_path: Path, **env: str) -> Config:
    values = {"LGSP_HUB_DATA_DIR": str(tmp_path / "hub"), "LGSP_SERVER_PORT": "0", "LGSP_BLOBS_FSYNC": "false",
              "LGSP_SECURITY_RSA_KEY_BITS": "2048", "LGSP_LOGGING_ACCESS_LOG": "false"}
    values.update(env)
    return load_config(None, env=values)


def with_delivery(cfg: Config, **changes: Any) -> Config:
    """`cfg` with delivery settings changed; nested sections as dicts, e.g. retry={"factor": 1.5}."""
    delivery = cfg.delivery
    flat = {}
    for name, value in changes.items():
        current = getattr(delivery, name)
        flat[name] = dataclasses.replace(current, **value) if isinstance(value, dict) and \
            dataclasses.is_dataclass(current) else value
    return cfg.replace(delivery=flat)


def fast_retries(cfg: Config, *, base: float = 0.2, factor: float = 2.0, cap: float = 1.0, jitter: float = 0.1,
                 attempts: int = 10, poll: float = 60.0) -> Config:
    """Short backoff for tests; the queue poll is slow so that retries prove the scheduler fires them."""
    pr = cfg.delivery.priorities
    priorities = dataclasses.replace(pr, **{name: dataclasses.replace(getattr(pr, name), max_attempts=attempts)
                                            for name in ("normal", "urgent", "very_urgent", "flash")})
    return with_delivery(cfg, retry={"base_delay_seconds": base, "factor": factor, "max_delay_seconds": cap,
                                     "jitter": jitter}, priorities=priorities, poll_interval_seconds=poll)


@dataclass
class UnitCreds:
    unit: str
    access_key: str
    secret: str

    def client(self, url: str) -> LgspClient:
        return LgspClient(Credentials(url, self.access_key, "HMAC-SHA256", secret=self.secret))


async def add_units(hub: Hub, ids: list[str]) -> dict[str, UnitCreds]:
    out = {}
    for unit in ids:
        if await hub.directory.get_unit(unit) is None:
            await hub.directory.add_unit(unit, f"Đơn vị {unit}")
        app = await hub.directory.add_application(unit, f"app-{uuid.uuid4().hex[:6]}")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        assert key.secret is not None
        out[unit] = UnitCreds(unit, key.access_key, key.secret)
    return out


# -- receivers with fault injection ----------------------------------------------------------

@dataclass
class Script:
    """What the receiver does with the next POSTs: a list of steps, then normal behaviour."""

    steps: list[Callable[[web.Request], Awaitable[web.StreamResponse | None]]] = field(default_factory=list)
    hits: list[tuple[float, str, int]] = field(default_factory=list)  # (time, idempotency key, status)
    hold: asyncio.Event | None = None


def status(code: int, headers: dict[str, str] | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def step(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"code": f"test.{code}", "detail": f"scripted {code}"}, status=code,
                                 headers=headers)
    return step


def slow(seconds: float) -> Callable[[web.Request], Awaitable[None]]:
    async def step(request: web.Request) -> None:
        await asyncio.sleep(seconds)
        return None  # then answers normally (too late for the hub's timeout)
    return step


@dataclass
class RunningReceiver:
    receiver: Receiver
    script: Script
    url: str
    port: int
    runner: web.AppRunner | None

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def start(self) -> None:
        self.runner = await _run_app(self._app(), self.port)

    def _app(self) -> web.Application:
        script = self.script

        @web.middleware
        async def faults(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.method != "POST":
                return await handler(request)
            key = request.headers.get("X-LGSP-Idempotency-Key", "")
            if script.hold is not None:
                await script.hold.wait()
            if script.steps:
                step = script.steps.pop(0)
                answer = await step(request)
                if answer is not None:
                    script.hits.append((time.time(), key, answer.status))
                    return answer
            answer = await handler(request)
            script.hits.append((time.time(), key, answer.status))
            return answer

        return self.receiver.app(middlewares=(faults,))


async def _run_app(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    return runner


@contextlib.asynccontextmanager
async def receiver_server(verify: Any = None, *, directory: Path | None = None, start: bool = True,
                          port: int | None = None) -> AsyncIterator[RunningReceiver]:
    port = port or free_port()
    rr = RunningReceiver(Receiver(directory, verify), Script(), f"http://127.0.0.1:{port}/lgsp/receive", port, None)
    if start:
        await rr.start()
    try:
        yield rr
    finally:
        await rr.stop()


async def hub_verifier(hub: Hub) -> HubVerifier:
    key = await hub.identity.key()
    return HubVerifier(key.access_key, key.public_key_pem)


async def delivery_state(hub: Hub, packet_id: str, unit: str) -> Any:
    from lgsp.core import deliveries as dv

    async with hub.db.read() as conn:
        return await dv.row_of(conn, packet_id, unit)


async def has_state(hub: Hub, packet_id: str, unit: str, state: str) -> bool:
    """Whether the delivery of `packet_id` to `unit` is in `state` now (for wait_for)."""
    row = await delivery_state(hub, packet_id, unit)
    return row is not None and row.state == state




# -- a pull destination fetching and acknowledging through failures --------------------------

@dataclass
class Puller:
    """A pull destination's fetch-and-acknowledge loop, for the crash and failover tests.

    Each `round` re-sends the acknowledgements whose answer was lost (a repeat is harmless), then
    fetches what the inbox lists, checks its hash and acknowledges it. `acked` counts confirmed
    acknowledgements per packet; `violations` records a packet shown again after its acknowledgement
    or whose content does not match its hash. Connection failures propagate to the caller's loop.
    """

    client: LgspClient
    acked: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    to_ack: dict[str, str] = field(default_factory=dict)  # fetched and checked; acknowledgement unconfirmed

    async def round(self, limit: int = 50) -> None:
        for pid, sha in list(self.to_ack.items()):
            if await self.client.ack(pid, sha) == "delivered":
                self.acked[pid] += 1
                del self.to_ack[pid]
        for item in await self.client.inbox(limit=limit):
            pid = item["id"]
            if self.acked[pid]:
                self.violations.append(f"{pid} shown again after its acknowledgement")
                continue
            if pid in self.to_ack:
                continue
            data = await self.client.fetch_bytes(pid)
            if hashlib.sha256(data).hexdigest() != item["sha256"]:
                self.violations.append(f"{pid}: wrong content")
                continue
            self.to_ack[pid] = item["sha256"]
            if await self.client.ack(pid, item["sha256"]) == "delivered":
                self.acked[pid] += 1
                del self.to_ack[pid]
