"""Liveness, readiness and the graceful drain: what a load balancer and systemd ask of the hub.

`GET /healthz` answers while the process serves HTTP at all. `GET /readyz` answers 200 only when
the hub can do its work: the store answers and is migrated to this code's head, the blob folder
takes a write, the master key is loaded, and every plugin implementing `lgsp_readiness` says ready.
Both are unauthenticated, so they say nothing but check names and `ok`/`fail` (no paths, versions,
identifiers or error text); the reasons go to the log. Concurrent probes share one round of checks
and a round is reused for `READY_CACHE_SECONDS`, so a flood of probes costs one store query.

On SIGTERM the hub drains: `/readyz` fails at once (the proxy stops sending new requests) while
everything else keeps serving for `server.drain_seconds`, then the hub stops. A second signal stops
at once. When started by systemd with `Type=notify`, the hub says READY=1 once it listens and
STOPPING=1 when the drain starts (`sd_notify`); with `WatchdogSec=` it says WATCHDOG=1 at half that
interval from its event loop, so a hub whose loop hangs is killed and restarted. A worker process
(core/workers.py) says the same to its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from lgsp.core.hub import Hub

log = logging.getLogger("lgsp.health")

#: How long one round of readiness checks is reused (probes every second cost one round).
READY_CACHE_SECONDS = 1.0
#: Longest a single check (store query, plugin hook) may take before it counts as failed.
CHECK_TIMEOUT_SECONDS = 5.0
#: A plugin's check names are shown to anyone: short identifiers only.
_NAME_MAX = 64


class Health:
    """Readiness state of one hub: the draining flag and the shared, briefly cached check round."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.draining = False
        self._round: asyncio.Task[tuple[bool, dict[str, str]]] | None = None
        self._round_at = 0.0

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check: "ok" | "fail"}); draining overrides everything."""
        if self.draining:
            return False, {"draining": "fail"}
        if not self.hub.started:
            return False, {"started": "fail"}
        now = time.monotonic()
        if self._round is None or (self._round.done() and now - self._round_at > READY_CACHE_SECONDS):
            self._round_at = now
            self._round = asyncio.create_task(self._check_all(), name="lgsp-readiness")
        ready, checks = await asyncio.shield(self._round)
        if self.draining:
            return False, {"draining": "fail"}
        return ready, dict(checks)

    async def _check_all(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        for name, check in (("store", self._store), ("blobs", self._blobs), ("master_key", self._master_key)):
            checks[name] = "ok" if await _guarded(name, check) else "fail"
        for name, ok in (await self._plugins()).items():
            checks[name] = "ok" if ok else "fail"
        return all(v == "ok" for v in checks.values()), checks

    async def _store(self) -> bool:
        db = getattr(self.hub, "db", None)
        if db is None:
            return False
        current = await db.current_revision()
        head = db.head_revision()
        if current != head:
            log.warning("readiness: the store is at revision %s, this code needs %s (run lgsp db upgrade)",
                        current, head)
            return False
        return True

    async def _blobs(self) -> bool:
        blobs = getattr(self.hub, "blobs", None)
        if blobs is None:
            return False
        return await asyncio.to_thread(_writable, blobs.tmp_root, blobs.objects)

    async def _master_key(self) -> bool:
        key = getattr(self.hub, "master_key", None)
        if key is None:
            return False
        sealed = key.encrypt("readiness", "lgsp/readiness")
        return bool(key.decrypt(sealed, "lgsp/readiness") == "readiness")

    async def _plugins(self) -> dict[str, bool]:
        """`lgsp_readiness` of every plugin; a hook that raises or hangs counts as one failed check."""
        out: dict[str, bool] = {}
        try:
            results = self.hub.pm.hook.lgsp_readiness(hub=self.hub)
        except Exception:
            log.exception("readiness: a plugin's lgsp_readiness failed")
            return {"plugins": False}
        for result in results:
            if result is None:
                continue

            async def value(result: Any = result) -> Any:
                return await result if inspect.isawaitable(result) else result

            try:
                got = await asyncio.wait_for(value(), CHECK_TIMEOUT_SECONDS)
            except Exception:
                log.warning("readiness: a plugin's lgsp_readiness failed or took over %gs",
                            CHECK_TIMEOUT_SECONDS, exc_info=True)
                out["plugins"] = False
                continue
            if not isinstance(got, Mapping):
                log.warning("readiness: lgsp_readiness returned %s, not a mapping", type(got).__name__)
                out["plugins"] = False
                continue
            for name, ok in got.items():
                key = _check_name(name)
                out[key] = out.get(key, True) and ok is True
                if ok is not True:
                    log.warning("readiness: %s is not ready", key)
        return out


def _check_name(name: Any) -> str:
    text = "".join(c for c in str(name) if c.isalnum() or c in "._-")[:_NAME_MAX]
    return text or "plugin"


async def _guarded(name: str, check: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        # The reason goes to the log only: the probe endpoints are unauthenticated.
        log.warning("readiness: %s check failed: %s", name, type(exc).__name__, exc_info=log.isEnabledFor(10))
        return False


def _writable(*folders: os.PathLike[str] | str) -> bool:
    """A real write in the first folder (catches a full or read-only disk), access to the others."""
    first, *rest = folders
    with tempfile.NamedTemporaryFile(dir=first, prefix=".readyz-", suffix=".probe") as probe:
        probe.write(b"lgsp")
        probe.flush()
    return all(os.access(folder, os.W_OK | os.X_OK) for folder in rest)


# -- HTTP ----------------------------------------------------------------------------------------

def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"}, text=json.dumps(body))


async def healthz(request: web.Request) -> web.Response:
    return _answer(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    health: Health = request.app[HEALTH]
    ready, checks = await health.readiness()
    return _answer(200 if ready else 503, {"status": "ok" if ready else "fail", "checks": checks})


HEALTH: web.AppKey[Health] = web.AppKey("lgsp_health", Health)


def mount(app: web.Application, health: Health) -> None:
    """Add /healthz and /readyz (GET and HEAD) to the hub's application."""
    app[HEALTH] = health
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


# -- systemd and signals -------------------------------------------------------------------------

def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd (or whatever set NOTIFY_SOCKET) about our state; False when nobody listens."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # Never wait: a listener that stopped reading (its queue holds a few datagrams) must not
            # stall the event loop that sends these (watchdog pings come every few seconds).
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except BlockingIOError:
        log.warning("the service manager reads no notifications: dropped %s", state.split("\n", 1)[0])
        return False
    except OSError as exc:
        log.warning("could not notify the service manager: %s", exc.strerror or exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC) when the service manager asks this
    process for them; None when it does not (no WATCHDOG_USEC, or WATCHDOG_PID names another process)."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


async def ping_watchdog(interval: float, environ: Mapping[str, str] | None = None) -> None:
    """Say WATCHDOG=1 every `interval` seconds for as long as this event loop turns."""
    while True:
        sd_notify("WATCHDOG=1", environ)
        await asyncio.sleep(interval)


def freeze_startup_objects() -> None:
    """Move every object alive once the hub has started out of the garbage collector's sight.

    Modules, the schema, the app and its routes, compiled statements and pools live as long as the
    process; without this each full collection walks all of them again (about half of the
    collector's time under load, docs/performance.md). Frozen objects are still freed by reference
    counting; only cycles among them would stay, and start-up makes none that must go.
    """
    gc.collect()
    gc.freeze()


async def serve(hub: Hub, *, on_ready: Callable[[str], None] | None = None,
                on_stopping: Callable[[], None] | None = None) -> None:
    """Run `hub` until SIGTERM or SIGINT; SIGTERM drains first (`server.drain_seconds`)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    drain = asyncio.Event()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if sig == signal.SIGTERM and signals == 1 and hub.config.server.drain_seconds > 0:
            drain.set()
        else:
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, hub.reload_tls)  # a renewed certificate, without a restart
    await hub.start()
    freeze_startup_objects()
    watchdog: asyncio.Task[None] | None = None
    try:
        sd_notify(f"READY=1\nSTATUS=listening on {hub.url}\nMAINPID={os.getpid()}")
        interval = watchdog_interval()
        if interval is not None:  # systemd's WatchdogSec (or a supervisor's): kill us if the loop hangs
            watchdog = asyncio.create_task(ping_watchdog(interval), name="lgsp-watchdog")
        if on_ready is not None:
            on_ready(hub.url)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(drain.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if drain.is_set() and not stop.is_set():
            seconds = hub.config.server.drain_seconds
            hub.health.draining = True
            sd_notify(f"STOPPING=1\nSTATUS=draining for {seconds:g}s")
            log.info("draining: /readyz fails; stopping in %gs (a second signal stops at once)", seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        for waiter in waiters:
            waiter.cancel()
        sd_notify("STOPPING=1\nSTATUS=stopping")
        if on_stopping is not None:
            on_stopping()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        try:
            await hub.stop()
        finally:
            if watchdog is not None:  # pings go on while the hub stops: a long stop is not a hang
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
