"""Several worker processes serving one port (`server.workers`, `lgsp run --workers N`).

One Python process uses one core; a machine with more is used by more processes. Each worker is a
whole hub and a node of the cluster in the sense of docs/cluster.md: its own node name and store
pool, the cluster's live events and singleton work shared through PostgreSQL exactly as between
machines. The port is shared with `SO_REUSEPORT`: the kernel spreads new connections over the
workers' listening sockets. On SQLite there is one worker: nothing of the cluster runs there (every
process would think it leads, and live events would not cross processes), so more is refused.

The supervisor here holds no hub. It reserves the port, starts the workers and learns from each,
over the sd_notify protocol on a private datagram socket (the worker's `NOTIFY_SOCKET`; the kernel
tells who sent each message), when it serves (READY=1) and that its event loop still turns
(WATCHDOG=1). It restarts a worker that exits or falls silent, waiting longer after each quick death;
on SIGTERM it tells systemd STOPPING=1 and passes the signal on, so every worker drains as it would
alone; SIGHUP (a renewed TLS certificate) and SIGINT are passed on too. A worker dies with its
supervisor (`PR_SET_PDEATHSIG`), so a killed supervisor leaves nothing serving the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lgsp.core.health import ping_watchdog, sd_notify, watchdog_interval
from lgsp.core.i18n import Text, os_reason

if TYPE_CHECKING:
    from lgsp.core.config import Config

log = logging.getLogger("lgsp.workers")

#: The first restart waits this long, each quick death after it twice as long, up to BACKOFF_MAX.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: A worker that served this long before dying counts as healthy: its restart waits BACKOFF_FIRST again.
HEALTHY_AFTER = 60.0
#: Beyond drain and shutdown, how long stopping workers get before they are killed.
STOP_MARGIN = 10.0
_PR_SET_PDEATHSIG = 1
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class WorkersError(Exception):
    """The workers cannot be started (the port is taken, the platform lacks SO_REUSEPORT)."""


def worker_count(config: Config) -> int:
    """`server.workers`, where 0 means one per usable core on PostgreSQL and one on SQLite."""
    if config.server.workers:
        return int(config.server.workers)
    if not config.database_url.startswith("postgresql"):
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))  # the cores this process may use (cpusets, taskset)
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def bind_to_supervisor(supervisor_pid: int) -> None:
    """In a worker: die (SIGKILL) when the supervisor dies, and stop now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.warning("could not tie this worker's life to its supervisor (prctl errno %d)", ctypes.get_errno())
    if os.getppid() != supervisor_pid:
        raise WorkersError(Text("the supervisor (pid {pid}) is gone", pid=supervisor_pid))


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening SO_REUSEPORT socket holding the port the workers listen on together
    (the kernel hands connections only to listening sockets); it also picks the port when 0."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise WorkersError(Text("more than one worker needs SO_REUSEPORT, which this platform lacks"))
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except OSError as exc:
        raise WorkersError(Text("cannot resolve server.host {host!r}: {reason}", host=host,
                                reason=os_reason(exc))) from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise WorkersError(Text("cannot listen on {host}:{port}: {reason}", host=host, port=port,
                                reason=os_reason(exc))) from exc
    return sock


def parse_notification(data: bytes) -> dict[str, str]:
    """The KEY=VALUE lines of one sd_notify datagram."""
    text = data.decode("utf-8", "replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    ready: bool = False
    last_ping: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int | None] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """Starts `count` workers with `command()` (a full `lgsp run` of its own), keeps them running,
    and stops them on a signal; `run()` returns the process's exit status."""

    def __init__(self, config: Config, count: int, command: Callable[[], Sequence[str]], *,
                 on_ready: Callable[[str], None] | None = None,
                 on_stopping: Callable[[], None] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.count = count
        self.command = command
        self.on_ready = on_ready
        self.on_stopping = on_stopping
        self.environ = dict(os.environ if environ is None else environ)
        self.worker_watchdog = config.server.worker_watchdog_seconds
        self.workers = [Worker(i) for i in range(count)]
        self.port = 0
        self.url = ""
        self._notify: socket.socket | None = None
        self._notify_name = f"lgsp-workers-{os.getpid()}-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._stop_signal: signal.Signals | None = None
        self._signals: list[signal.Signals] = []

    # -- life ------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        server = self.config.server
        reservation = reserve_port(server.host, server.port)
        self.port = reservation.getsockname()[1]
        host = f"[{server.host}]" if ":" in server.host else server.host
        self.url = f"{'https' if self.config.tls.cert_file else 'http'}://{host}:{self.port}"
        self._open_notify_socket(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        watchdog: asyncio.Task[None] | None = None
        try:
            if not await self._start_all():
                await self._stop_all(signal.SIGTERM)
                return 1
            sd_notify(f"READY=1\nSTATUS={self.count} workers listening on {self.url}\nMAINPID={os.getpid()}",
                      self.environ)
            log.info("%d workers listening on %s", self.count, self.url)
            if self.on_ready is not None:
                self.on_ready(self.url)
            interval = watchdog_interval(self.environ)
            if interval is not None:
                watchdog = asyncio.create_task(ping_watchdog(interval, self.environ), name="lgsp-watchdog")
            await self._supervise()
            return await self._stop_all(self._stop_signal or signal.SIGTERM)
        finally:
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self._notify is not None:
                loop.remove_reader(self._notify.fileno())
                self._notify.close()
            reservation.close()
            for worker in self.workers:  # only on an error of our own: never leave a worker behind
                if worker.alive and worker.proc is not None:
                    worker.proc.kill()
                    await worker.proc.wait()

    async def _start_all(self) -> bool:
        """The first worker alone (it migrates the store and creates what a first start creates),
        then the others together; False when one exits before it serves or a signal comes first."""
        for batch in (self.workers[:1], self.workers[1:]):
            for worker in batch:
                await self._spawn(worker)
            while not all(w.ready for w in batch):
                if self._stop_signal is not None:
                    return False
                for worker in batch:
                    if worker.proc is not None and worker.proc.returncode is not None:
                        log.error("worker %d exited with %s before it served; stopping", worker.index,
                                  _status(worker.proc.returncode))
                        return False
                await self._pause(0.2)
        return True

    async def _supervise(self) -> None:
        """Until a stop signal: restart workers that died or fell silent."""
        while self._stop_signal is None:
            now = time.monotonic()
            for worker in self.workers:
                self._check(worker, now)
                if worker.restart_at is not None and now >= worker.restart_at:
                    worker.restart_at = None
                    worker.restarts += 1
                    log.warning("restarting worker %d (restart %d)", worker.index, worker.restarts)
                    await self._spawn(worker)
            await self._pause(0.2)

    def _check(self, worker: Worker, now: float) -> None:
        proc = worker.proc
        if proc is None or worker.restart_at is not None:
            return
        if proc.returncode is None:
            if worker.ready and now - worker.last_ping > self.worker_watchdog:
                log.error("worker %d (pid %d) said nothing for %gs: killing it", worker.index, proc.pid,
                          self.worker_watchdog)
                proc.kill()
            return
        worker.exits.append(proc.returncode)
        worker.quick_deaths = worker.quick_deaths + 1 if now - worker.started_at < HEALTHY_AFTER else 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (worker.quick_deaths - 1))
        worker.restart_at = now + delay
        worker.ready = False
        log.error("worker %d (pid %d) exited with %s; restarting it in %gs", worker.index, proc.pid,
                  _status(proc.returncode), delay)
        sd_notify(f"STATUS=worker {worker.index} exited with {_status(proc.returncode)}; restarting",
                  self.environ)

    async def _stop_all(self, sig: signal.Signals) -> int:
        """Pass the stop signal on and wait for every worker (each drains on SIGTERM, as alone)."""
        server = self.config.server
        sd_notify(f"STOPPING=1\nSTATUS=stopping {self.count} workers", self.environ)
        log.info("stopping %d workers (%s)", self.count, sig.name)
        self._forward(sig)
        deadline = time.monotonic() + server.drain_seconds + server.shutdown_timeout_seconds + STOP_MARGIN
        while any(w.alive for w in self.workers) and time.monotonic() < deadline:
            await self._pause(0.1)
        status = 0
        for worker in self.workers:
            if worker.alive and worker.proc is not None:
                log.error("worker %d (pid %d) did not stop in time: killing it", worker.index, worker.proc.pid)
                worker.proc.kill()
                await worker.proc.wait()
                status = 1
            elif worker.proc is not None and worker.proc.returncode not in (0, None) and worker.restart_at is None:
                log.warning("worker %d exited with %s", worker.index, _status(worker.proc.returncode))
                status = 1
        if self.on_stopping is not None:
            self.on_stopping()
        return status

    # -- workers ---------------------------------------------------------------------------------
    async def _spawn(self, worker: Worker) -> None:
        env = dict(self.environ)
        env["NOTIFY_SOCKET"] = "@" + self._notify_name
        env["WATCHDOG_USEC"] = str(int(self.worker_watchdog * 1e6))
        env.pop("WATCHDOG_PID", None)  # the worker pings us, not systemd
        env["LGSP_SERVER_PORT"] = str(self.port)  # a port 0 was resolved once, for all
        worker.ready = False
        worker.started_at = worker.last_ping = time.monotonic()
        worker.proc = await asyncio.create_subprocess_exec(*self.command(), env=env)
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _forward(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if worker.alive and worker.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        if self._stop_signal is None:
            self._stop_signal = sig
            self._wake.set()
        else:
            self._forward(sig)  # a second signal: every worker stops at once, as alone

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # -- what the workers say --------------------------------------------------------------------
    def _open_notify_socket(self, loop: asyncio.AbstractEventLoop) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind("\0" + self._notify_name)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the kernel names each sender
        self._notify = sock
        loop.add_reader(sock.fileno(), self._on_notification)

    def _on_notification(self) -> None:
        assert self._notify is not None
        while True:
            try:
                data, ancillary, _, _ = self._notify.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
            except (BlockingIOError, InterruptedError):
                return
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDENTIALS.unpack(payload[:_CREDENTIALS.size])[0]
            worker = next((w for w in self.workers if pid is not None and w.pid == pid and w.alive), None)
            if worker is None:
                continue  # not one of ours: nobody else may speak for a worker
            fields = parse_notification(data)
            now = time.monotonic()
            if fields.get("READY") == "1" and not worker.ready:
                worker.ready = True
                log.info("worker %d (pid %d) serves", worker.index, pid)
                self._wake.set()
            if fields.get("READY") == "1" or fields.get("WATCHDOG") == "1":
                worker.last_ping = now


def _status(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
    return f"status {returncode}"
