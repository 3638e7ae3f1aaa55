"""Liveness and readiness probes, the `lgsp_readiness` hook, and the SIGTERM drain with sd_notify."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from lgsp.core.config import Config, load_config
from lgsp.core.health import sd_notify, serve
from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl

from .cli_support import run_cli_serving
from .conftest import base_env, free_port, wait_for


async def probe(hub: Hub, path: str, method: str = "GET") -> tuple[int, dict[str, Any] | None, str]:
    async with aiohttp.ClientSession() as http, http.request(method, hub.url + path) as resp:
        raw = await resp.text()
        return resp.status, (json.loads(raw) if raw else None), resp.headers.get("Content-Type", "")


async def test_probes_answer_without_credentials_and_reveal_nothing(hub: Hub) -> None:
    status, body, ctype = await probe(hub, "/healthz")
    assert (status, body, ctype) == (200, {"status": "ok"}, "application/json; charset=utf-8")
    status, body, _ = await probe(hub, "/readyz")
    assert status == 200
    assert body == {"status": "ok", "checks": {"store": "ok", "blobs": "ok", "master_key": "ok"}}
    status, body, _ = await probe(hub, "/readyz", "HEAD")
    assert status == 200 and body is None
    # Nothing about the installation: no paths, identifiers, database kind, versions.
    for path in ("/healthz", "/readyz"):
        async with aiohttp.ClientSession() as http, http.get(hub.url + path) as resp:
            raw = await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
        for secret in (str(hub.config.data_dir), hub.config.hub.identifier, "sqlite", "alembic", "0006"):
            assert secret not in raw


async def ready_state(hub: Hub) -> tuple[int, dict[str, str]]:
    status, body, _ = await probe(hub, "/readyz")
    assert body is not None
    return status, body.get("checks", {})


async def test_readyz_fails_while_the_blob_folder_cannot_take_a_write(hub: Hub) -> None:
    tmp_root = hub.blobs.tmp_root
    aside = tmp_root.with_name("tmp-aside")
    tmp_root.rename(aside)
    tmp_root.write_bytes(b"not a folder")  # fails even for root, unlike a chmod
    try:
        await wait_for(lambda: _is(hub, 503, "blobs", "fail"), what="readyz failing on blobs")
        _, checks = await ready_state(hub)
        assert checks["store"] == "ok" and checks["master_key"] == "ok"
    finally:
        tmp_root.unlink()
        aside.rename(tmp_root)
    await wait_for(lambda: _is(hub, 200, "blobs", "ok"), what="readyz recovering")


async def test_readyz_fails_while_the_store_is_not_migrated_to_this_code(hub: Hub) -> None:
    head = hub.db.head_revision()
    async with hub.db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
    try:
        await wait_for(lambda: _is(hub, 503, "store", "fail"), what="readyz failing on the store")
    finally:
        async with hub.db.write() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    await wait_for(lambda: _is(hub, 200, "store", "ok"), what="readyz recovering")


async def _is(hub: Hub, want_status: int, check: str, want: str) -> bool:
    status, checks = await ready_state(hub)
    return status == want_status and checks.get(check) == want


async def test_readyz_fails_before_start_and_while_draining(hub_config: Config) -> None:
    hub = Hub(hub_config)
    ready, checks = await hub.health.readiness()
    assert (ready, checks) == (False, {"started": "fail"})
    async with hub:
        assert (await hub.health.readiness())[0] is True
        hub.health.draining = True
        status, body, _ = await probe(hub, "/readyz")
        assert (status, body) == (503, {"status": "fail", "checks": {"draining": "fail"}})
        assert (await probe(hub, "/healthz"))[0] == 200  # alive, still serving


async def test_serving_hides_what_start_up_made_from_the_garbage_collector(hub_config: Config) -> None:
    """Once started, `serve` freezes the objects alive then (modules, schema, app, pools): full
    collections under load no longer walk them (docs/performance.md)."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    ready = asyncio.Event()
    serving = asyncio.create_task(serve(Hub(hub_config), on_ready=lambda _url: ready.set()))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, frozen  # the hub's start-up, not a handful of objects
    finally:
        os.kill(os.getpid(), signal.SIGINT)  # serve's own handler: stop
        await asyncio.wait_for(serving, 30)
        gc.unfreeze()


class Worker:
    """A plugin reporting its own machinery through the readiness hook."""

    def __init__(self) -> None:
        self.ready: Any = True
        self.calls = 0

    @hookimpl
    async def lgsp_readiness(self, hub: Hub) -> dict[str, Any]:
        self.calls += 1
        if isinstance(self.ready, Exception):
            raise self.ready
        return {"demo.worker": self.ready, "bad name/../\n": True}


async def test_lgsp_readiness_hook_decides_readiness(tmp_path: Path) -> None:
    worker = Worker()
    config = load_config(None, env=base_env(tmp_path / "var"))
    async with Hub(config, extra_plugins=(worker,)) as hub:
        status, checks = await ready_state(hub)
        assert status == 200
        assert checks["demo.worker"] == "ok"
        assert checks["badname.."] == "ok"  # names are cut to letters, digits and ._-
        worker.ready = False
        await wait_for(lambda: _is(hub, 503, "demo.worker", "fail"), what="the plugin's failure")
        worker.ready = "yes"  # anything but True is not ready
        await wait_for(lambda: _is(hub, 503, "demo.worker", "fail"), what="a non-boolean answer")
        worker.ready = RuntimeError("secret detail /etc/x")
        await wait_for(lambda: _is(hub, 503, "plugins", "fail"), what="a raising hook")
        async with aiohttp.ClientSession() as http, http.get(hub.url + "/readyz") as resp:
            assert "secret detail" not in await resp.text()
        worker.ready = True
        await wait_for(lambda: _is(hub, 200, "demo.worker", "ok"), what="recovery")


async def test_concurrent_probes_share_one_round(tmp_path: Path) -> None:
    worker = Worker()
    config = load_config(None, env=base_env(tmp_path / "var"))
    async with Hub(config, extra_plugins=(worker,)) as hub:
        hub.health._round = None
        before = worker.calls
        results = await asyncio.gather(*(hub.health.readiness() for _ in range(50)))
        assert all(ready for ready, _ in results)
        assert worker.calls - before == 1


async def test_sftp_plugin_reports_its_inbound_pollers(tmp_path: Path) -> None:
    config = load_config(None, env=base_env(tmp_path / "var", LGSP_PLUGINS_ENABLED="[rest, sftp]"))
    async with Hub(config) as hub:
        status, checks = await ready_state(hub)
        assert status == 200 and checks["sftp.inbound"] == "ok"


# -- the process: SIGTERM drain and sd_notify ----------------------------------------------------

@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    yield sock
    sock.close()


def _messages(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_sigterm_drains_then_stops_and_systemd_is_told(tmp_path: Path, notify_socket: socket.socket,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """`lgsp run` in this process (tests/cli_support.py); the signals are real, sent to this process."""
    port = free_port()
    env = base_env(tmp_path / "var", LGSP_SERVER_PORT=str(port), LGSP_SERVER_DRAIN_SECONDS="120")
    env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    base = f"http://127.0.0.1:{port}"

    def work(line: str) -> None:
        ready = _messages(notify_socket)
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(os.getpid())
        assert _get(base + "/readyz")[0] == 200
        os.kill(os.getpid(), signal.SIGTERM)
        assert _messages(notify_socket)["STOPPING"] == "1"
        # Draining: not ready, yet alive and serving everything else.
        status, body = _get(base + "/readyz")
        assert (status, json.loads(body)["checks"]) == (503, {"draining": "fail"})
        assert _get(base + "/healthz")[0] == 200
        assert _get(base + "/v1/time")[0] == 200
        # run_cli_serving then sends a second SIGTERM: it stops at once, not after 120 s

    with caplog.at_level(logging.INFO, logger="lgsp.health"):
        res, _ = run_cli_serving("run", work=work, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "draining" in caplog.text


def test_watchdog_pings_at_half_the_interval_systemd_asks_for(tmp_path: Path, notify_socket: socket.socket) -> None:
    """WatchdogSec=1 (WATCHDOG_USEC=1000000): WATCHDOG=1 about every 0.5 s from the event loop."""
    env = base_env(tmp_path / "var", LGSP_SERVER_DRAIN_SECONDS="0", NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
                   WATCHDOG_USEC="1000000", WATCHDOG_PID=str(os.getpid()))
    pings: list[float] = []

    def work(line: str) -> None:
        assert _messages(notify_socket)["READY"] == "1"
        deadline = time.monotonic() + 10
        while len(pings) < 4 and time.monotonic() < deadline:
            if _messages(notify_socket).get("WATCHDOG") == "1":
                pings.append(time.monotonic())

    res, _ = run_cli_serving("run", work=work, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(pings) == 4, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert all(gap > 0.3 for gap in gaps) and statistics.median(gaps) < 1.0, gaps  # a busy machine lags a bit


def test_a_notify_socket_nobody_reads_never_blocks(tmp_path: Path, notify_socket: socket.socket) -> None:
    """Its queue fills after a few datagrams; more are dropped rather than stalling the event loop."""
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    sent: list[bool] = []
    # A blocking send would wait forever on the full queue: the sends run in a thread the test stops
    # waiting for, so that such a regression fails here instead of hanging the run (a wall-clock bound
    # of a few seconds failed on a machine loaded to six times its cores, with nothing blocked).
    sender = threading.Thread(target=lambda: sent.extend(sd_notify("WATCHDOG=1", env) for _ in range(2000)),
                              daemon=True)
    sender.start()
    sender.join(60)
    assert not sender.is_alive(), "sd_notify blocked on a notify socket nobody reads"
    assert len(sent) == 2000
    assert sent[0] and not sent[-1]
    assert _messages(notify_socket) == {"WATCHDOG": "1"}


def test_no_watchdog_pings_meant_for_another_process(tmp_path: Path, notify_socket: socket.socket) -> None:
    """WATCHDOG_PID names the process systemd watches: a child that inherited the variables stays quiet."""
    env = base_env(tmp_path / "var", LGSP_SERVER_DRAIN_SECONDS="0", NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
                   WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid() + 1))
    seen: list[dict[str, str]] = []

    def work(line: str) -> None:
        notify_socket.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            while True:
                seen.append(_messages(notify_socket))

    res, _ = run_cli_serving("run", work=work, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert seen and seen[0]["READY"] == "1"
    assert not [m for m in seen if "WATCHDOG" in m], seen


def test_drain_ends_by_itself_and_sigint_skips_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    for sig, drain in ((signal.SIGTERM, "0.2"), (signal.SIGINT, "600")):
        port = free_port()
        env = base_env(tmp_path / "var", LGSP_SERVER_PORT=str(port), LGSP_SERVER_DRAIN_SECONDS=drain)

        def work(line: str, port: int = port) -> None:
            assert f":{port}" in line

        res, _ = run_cli_serving("run", work=work, sig=sig, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        shutil.rmtree(tmp_path / "var")


async def test_readyz_fails_while_postgresql_refuses_connections_and_metrics_still_answer(
        tmp_path: Path, pg_url: str) -> None:
    import asyncpg

    from .conftest import PG_ADMIN_URL

    name = pg_url.rsplit("/", 1)[1]
    config = load_config(None, env=base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url))
    async with Hub(config) as hub:
        assert (await ready_state(hub))[0] == 200
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            await wait_for(lambda: _is(hub, 503, "store", "fail"), what="readyz failing on the store")
            hub.metrics.snapshot.max_age = 0
            async with aiohttp.ClientSession() as http, http.get(hub.url + "/metrics") as resp:
                text = await resp.text()
            assert resp.status == 200 and "lgsp_http_requests_total" in text
            assert "lgsp_blob_bytes" not in text  # the store part is left out, not made up
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
        await wait_for(lambda: _is(hub, 200, "store", "ok"), timeout=30, what="readyz recovering")
