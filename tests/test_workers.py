"""Several worker processes on one port: `lgsp run --workers N` as real processes on PostgreSQL,
watched through a real unix datagram socket given as NOTIFY_SOCKET (what systemd does)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lgsp.core.config import ConfigError, load_config
from lgsp.core.tls import fingerprint_of_pem
from lgsp.core.workers import Supervisor, parse_notification, worker_count

from .cli_support import run_cli
from .conftest import base_env
from .test_tls import pki  # noqa: F401  (the fixture: a CA and two server certificates for 127.0.0.1)

START_LIMIT = 180.0  # a worker imports, migrates and starts a whole hub; this machine is shared


class Workers:
    """`lgsp run --workers N` in a process of its own, and what it tells the notify socket."""

    def __init__(self, tmp: Path, pg_url: str, n: int, **env: str) -> None:
        self.tmp = tmp
        self.sock_path = tmp / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LGSP_", "NOTIFY_", "WATCHDOG_"))}
        self.env = clean | base_env(tmp / "var", LGSP_DATABASE_URL=pg_url, LGSP_SERVER_DRAIN_SECONDS="1",
                                    LGSP_LOGGING_FORMAT="text", LGSP_LANG="en",
                                    NOTIFY_SOCKET=str(self.sock_path)) | env
        self.log = (tmp / "run.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "lgsp.cli.main", "run", "--workers", str(n)],
                                     cwd=tmp, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = ""

    def output(self) -> str:
        return (self.tmp / "run.log").read_text(errors="replace")

    def message(self, timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while True:
            try:
                return parse_notification(self.sock.recv(4096))
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"lgsp run exited with {self.proc.returncode}:\n"
                                         f"{self.output()[-6000:]}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"no notification within {timeout}s:\n{self.output()[-6000:]}") from None

    def read_pending(self) -> None:
        """Take what is queued (the socket holds only a few datagrams; more are dropped)."""
        self.sock.settimeout(0)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(4096)

    def wait_ready(self) -> dict[str, str]:
        deadline = time.monotonic() + START_LIMIT
        while True:
            got = self.message(max(1.0, deadline - time.monotonic()))
            if got.get("READY") == "1":
                self.url = got["STATUS"].rsplit(" ", 1)[1]
                return got

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()

    def listening(self) -> set[int]:
        """Pids of the workers with a socket listening on the port."""
        out = set()
        for child in self.workers():
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                       for c in child.net_connections(kind="tcp")):
                    out.add(child.pid)
            except psutil.NoSuchProcess:
                continue
        return out

    def wait_listening(self, n: int, without: int | None = None, timeout: float = START_LIMIT) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.listening()
            if len(pids) == n and without not in pids:
                return pids
            time.sleep(0.2)
        raise AssertionError(f"not {n} workers listening within {timeout}s ({self.listening()}):\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the supervisor and its workers
            self.proc.wait()
        self.sock.close()
        self.log.close()


@pytest.fixture
def workers_run(tmp_path: Path) -> Iterator[list[Workers]]:
    runs: list[Workers] = []
    yield runs
    for run in runs:
        run.close()


def _get(url: str, ctx: ssl.SSLContext | None = None) -> int:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
        return int(resp.status)


def _served_fingerprint(port: int) -> str:
    return fingerprint_of_pem(ssl.get_server_certificate(("127.0.0.1", port)))


async def test_workers_share_the_port_restart_reload_and_drain(
        tmp_path: Path, pg_url: str, pki: Path, workers_run: list[Workers]) -> None:  # noqa: F811
    run = Workers(tmp_path, pg_url, 2, WATCHDOG_USEC="1000000",
                  LGSP_TLS_CERT_FILE=str(pki / "server.pem"), LGSP_TLS_KEY_FILE=str(pki / "server.key"))
    workers_run.append(run)
    ready = await asyncio.to_thread(run.wait_ready)
    assert ready["MAINPID"] == str(run.proc.pid) and run.url.startswith("https://127.0.0.1:")
    first = await asyncio.to_thread(run.wait_listening, 2, None, 5.0)  # both serve once READY=1 is said
    assert first == {p.pid for p in run.workers()}
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    for _ in range(20):  # new connections, spread by the kernel over both
        assert await asyncio.to_thread(_get, run.url + "/healthz", ctx) == 200
    # The supervisor pings systemd's watchdog at half of WATCHDOG_USEC.
    pings = [m for m in [await asyncio.to_thread(run.message, 5.0) for _ in range(3)] if m.get("WATCHDOG") == "1"]
    assert len(pings) == 3

    # SIGHUP reaches every worker: each serves the renewed certificate.
    old = fingerprint_of_pem((pki / "server.pem").read_text())
    shutil.copy(pki / "server2.pem", pki / "server.pem")
    shutil.copy(pki / "server2.key", pki / "server.key")
    assert await asyncio.to_thread(_served_fingerprint, run.port) == old  # not before the signal
    run.proc.send_signal(signal.SIGHUP)
    new = fingerprint_of_pem((pki / "server2.pem").read_text())
    deadline = time.monotonic() + 30  # each worker handles the signal when its (busy) loop gets to it
    while run.output().count("TLS certificate reloaded") < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert run.output().count("TLS certificate reloaded") == 2, run.output()[-6000:]
    served = {await asyncio.to_thread(_served_fingerprint, run.port) for _ in range(24)}
    assert served == {new}
    assert {p.pid for p in run.workers()} == first  # reloaded, not restarted

    # A worker killed outright is replaced; the other serves meanwhile.
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    # (Connections the kernel queued at the dying worker are reset: SO_REUSEPORT gives each its own.)
    await asyncio.to_thread(psutil.wait_procs, [psutil.Process(victim)], 10)
    assert await asyncio.to_thread(_get, run.url + "/healthz", ctx) == 200
    now = await asyncio.to_thread(run.wait_listening, 2, victim)
    assert len(now & first) == 1
    assert "exited with signal SIGKILL; restarting it" in run.output()

    # SIGTERM: STOPPING=1, every worker drains (server.drain_seconds: 1) and all exit cleanly.
    run.read_pending()
    run.proc.send_signal(signal.SIGTERM)
    while "STOPPING" not in (got := await asyncio.to_thread(run.message)):
        pass
    assert got["STOPPING"] == "1"
    t0 = time.monotonic()
    try:
        code = await asyncio.to_thread(run.proc.wait, 60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 60 s after SIGTERM:\n{run.output()[-6000:]}") from None
    assert code == 0, run.output()[-6000:]
    assert time.monotonic() - t0 < 30, run.output()[-6000:]  # drain 1 s + stop; a loaded machine is slow
    assert not [pid for pid in now if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert run.output().count("draining: /readyz fails") == 2


async def test_a_silent_worker_is_replaced_and_workers_die_with_the_supervisor(
        tmp_path: Path, pg_url: str, workers_run: list[Workers]) -> None:
    run = Workers(tmp_path, pg_url, 2, LGSP_SERVER_WORKER_WATCHDOG_SECONDS="2")
    workers_run.append(run)
    await asyncio.to_thread(run.wait_ready)
    first = await asyncio.to_thread(run.wait_listening, 2, None, 5.0)
    # A worker whose event loop hangs (stopped here) says no WATCHDOG=1: killed and restarted.
    frozen = min(first)
    os.kill(frozen, signal.SIGSTOP)
    now = await asyncio.to_thread(run.wait_listening, 2, frozen)
    assert not psutil.pid_exists(frozen) or psutil.Process(frozen).status() == "zombie"
    assert "said nothing for 2s: killing it" in run.output()
    # The supervisor killed outright takes its workers with it: nothing keeps serving the port.
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    _gone, alive = await asyncio.to_thread(psutil.wait_procs, [psutil.Process(p) for p in now], 10)
    assert not alive


async def test_a_worker_that_cannot_start_stops_the_start(tmp_path: Path, pg_url: str,
                                                          workers_run: list[Workers]) -> None:
    """No endless restarts of a worker that never served: the start fails with a non-zero status."""
    (tmp_path / "bad.pem").write_text("not a certificate")  # the config check sees a file; the start fails
    run = Workers(tmp_path, pg_url, 2, LGSP_TLS_CERT_FILE=str(tmp_path / "bad.pem"),
                  LGSP_TLS_KEY_FILE=str(tmp_path / "bad.pem"))
    workers_run.append(run)
    code = await asyncio.to_thread(run.proc.wait, START_LIMIT)
    assert code == 1
    assert "before it served; stopping" in run.output()


def test_more_than_one_worker_on_sqlite_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_LANG", "en")  # the wording below is the English one
    path = tmp_path / "lgsp.yaml"
    path.write_text("hub:\n  data_dir: var\nserver:\n  port: 0\n  workers: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == (f"{path}:5: server.workers: more than 1 worker process needs PostgreSQL "
                              "(database.url); SQLite serves one process")
    with pytest.raises(ConfigError, match=r"environment variable LGSP_SERVER_WORKERS: server\.workers"):
        load_config(None, env={"LGSP_SERVER_WORKERS": "3"})
    res = run_cli("run", "--workers", "2", env=base_env(tmp_path / "var"), cwd=tmp_path)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--workers 2: more than 1 worker process needs PostgreSQL" in res.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was created
    res = run_cli("run", "--workers", "0", env=base_env(tmp_path / "var"), cwd=tmp_path)
    assert res.returncode == 2 and "must be a whole number of at least 1" in res.stderr


def test_default_worker_count_is_the_cores_on_postgresql_and_one_on_sqlite(tmp_path: Path) -> None:
    sqlite = load_config(None, env=base_env(tmp_path))
    assert worker_count(sqlite) == 1
    pg = load_config(None, env=base_env(tmp_path, LGSP_DATABASE_URL="postgresql+asyncpg://x@127.0.0.1/x"))
    assert worker_count(pg) == len(os.sched_getaffinity(0))
    assert worker_count(pg.replace(server={"workers": 3})) == 3
    assert worker_count(sqlite.replace(server={"workers": 1})) == 1


async def test_the_supervisor_listens_only_to_its_own_workers(tmp_path: Path) -> None:
    """A datagram from any other process (the socket is in the abstract namespace) moves nothing;
    the kernel's word on who sent it (SCM_CREDENTIALS) is what counts."""
    config = load_config(None, env=base_env(tmp_path, LGSP_DATABASE_URL="postgresql+asyncpg://x@127.0.0.1/x"))
    go = tmp_path / "go"
    script = ("import os, pathlib, socket, sys, time\n"
              "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "s.sendto(b'READY=1', '\\0' + os.environ['NOTIFY_SOCKET'][1:])\n"
              "time.sleep(60)\n")
    sup = Supervisor(config, 1, lambda: [sys.executable, "-c", script, str(go)], environ={})
    loop = asyncio.get_running_loop()
    sup._open_notify_socket(loop)
    try:
        await sup._spawn(sup.workers[0])
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
            other.sendto(b"READY=1\nWATCHDOG=1", "\0" + sup._notify_name)
        await asyncio.sleep(0.5)
        assert not sup.workers[0].ready
        go.touch()
        deadline = time.monotonic() + 20
        while not sup.workers[0].ready and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sup.workers[0].ready
    finally:
        for w in sup.workers:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.kill()
                await w.proc.wait()
        assert sup._notify is not None
        loop.remove_reader(sup._notify.fileno())
        sup._notify.close()
