"""Structured logs: formats, UTC, the request id end to end (into pushes), and no secret in any log."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from lgsp.client import Credentials, LgspClient, LgspError
from lgsp.core import logs
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .conftest import base_env, free_port, wait_for
from .delivery.helpers import fast_retries, with_delivery

ROOT = Path(__file__).resolve().parents[1]
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _record(message: str = "hello %s", *args: Any, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("lgsp.test", logging.WARNING, __file__, 1, message, args or ("world",), exc_info)
    logs.ContextFilter().filter(record)
    return record


def test_json_lines_carry_utc_time_level_logger_and_context() -> None:
    with logs.bound(request_id="req-1", unit="000.00.01.H23", packet_id="p-1", code="auth.replay"):
        line = logs.JsonFormatter().format(_record())
    data = json.loads(line)
    assert UTC_TIME.match(data["time"]), data["time"]
    assert data == {"time": data["time"], "level": "WARNING", "logger": "lgsp.test", "message": "hello world",
                    "request_id": "req-1", "unit": "000.00.01.H23", "packet_id": "p-1", "code": "auth.replay"}
    # Outside any request: no context keys at all; an exception is one JSON string, still one line.
    data = json.loads(logs.JsonFormatter().format(_record(exc=True)))
    assert set(data) == {"time", "level", "logger", "message", "error"}
    assert "ValueError: boom" in data["error"]
    assert "\n" not in logs.JsonFormatter().format(_record(exc=True))


def test_text_lines_are_utc_with_the_context_in_brackets() -> None:
    with logs.bound(request_id="req-2", unit="000.00.01.H23"):
        line = logs.TextFormatter().format(_record())
    stamp, level, logger, rest = line.split(" ", 3)
    assert UTC_TIME.match(stamp) and (level, logger) == ("WARNING", "lgsp.test")
    assert rest == "[request_id=req-2 unit=000.00.01.H23] hello world"
    assert logs.TextFormatter().format(_record()).split(" ", 3)[3] == "hello world"


def test_configure_installs_one_handler_in_the_chosen_format(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        out = io.StringIO()
        cfg = load_config(None, env={"LGSP_LOGGING_FORMAT": "json", "LGSP_LOGGING_LEVEL": "WARNING"})
        logs.configure(cfg.logging, io.StringIO())
        logs.configure(cfg.logging, out)  # replaces its own handler, keeps everyone else's
        assert sum(h.get_name() == "lgsp" for h in root.handlers) == 1
        assert all(h in root.handlers for h in saved[0] if h.get_name() != "lgsp")
        logging.getLogger("lgsp.x").info("not shown")
        logging.getLogger("lgsp.x").warning("shown")
        lines = out.getvalue().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["message"] == "shown"
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as resp:
        await resp.read()
        return resp.status, CIMultiDict(resp.headers)


def test_utc_time_formats_each_moment_though_it_keeps_the_last_second() -> None:
    """The whole second's text is kept between lines; moments in, across and back to other seconds
    (and a thread's older record after a newer one) still read as their own time."""
    moments = [1_796_000_000.0, 1_796_000_000.999, 1_796_000_001.001, 1_796_000_000.5, 1_796_003_600.25, 0.0,
               1_796_000_059.9994]
    for moment in moments + moments[::-1]:
        seconds = int(moment)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((moment - seconds) * 1000):03d}Z"
        assert logs.utc_time(moment) == expected


def test_made_request_ids_are_distinct_hex() -> None:
    made = {logs.new_request_id() for _ in range(10_000)}
    assert len(made) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made)


async def test_request_id_is_taken_or_made_and_always_returned(hub: Hub) -> None:
    status, headers = await _get(hub.url + "/v1/time", {"X-Request-Id": "lb-7f3a:42"})
    assert status == 200 and headers["X-Request-Id"] == "lb-7f3a:42"
    for bad in ("with space", "x" * 129, "é-id", ""):
        status, headers = await _get(hub.url + "/v1/time", {"X-Request-Id": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"]), bad
    # Problems carry it too: an unknown route, an unsigned call, the probes.
    for path, want in (("/nowhere", 404), ("/v1/inbox", 401), ("/healthz", 200)):
        status, headers = await _get(hub.url + path, {"X-Request-Id": "trace-9"})
        assert (status, headers["X-Request-Id"]) == (want, "trace-9"), path


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(logs.ContextFilter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(logs.JsonFormatter().format(record)))


async def test_access_lines_name_the_request_unit_packet_and_problem(tmp_path: Path) -> None:
    capture = Capture()
    logging.getLogger().addHandler(capture)
    previous = logging.getLogger("lgsp.access").level
    logging.getLogger("lgsp.access").setLevel(logging.INFO)
    try:
        cfg = load_config(None, env=base_env(tmp_path / "var", LGSP_LOGGING_ACCESS_LOG="true"))
        async with Hub(cfg) as hub:
            await hub.directory.add_unit("000.00.01.H23", "Nguồn")
            app = await hub.directory.add_application("000.00.01.H23", "vbql")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            session = aiohttp.ClientSession(headers={"X-Request-Id": "trace-access"})
            async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret),
                                  session=session) as client:
                await client.inbox()
                missing = "0b6c5a40-0000-4000-8000-000000000000"
                with contextlib.suppress(LgspError):  # the 404 is what is logged
                    await client.status(missing)
            await session.close()
            await wait_for(lambda: len(_access(capture)) >= 2, what="two access lines")
    finally:
        logging.getLogger().removeHandler(capture)
        logging.getLogger("lgsp.access").setLevel(previous)
    inbox, status = _access(capture)[:2]
    assert inbox["request_id"] == "trace-access" and inbox["unit"] == "000.00.01.H23" and "code" not in inbox
    assert status["packet_id"] == missing and status["code"] == "not_found"
    assert status["unit"] == "000.00.01.H23"
    assert key.secret is not None and not any(key.secret in json.dumps(line) for line in capture.lines)


def _access(capture: Capture) -> list[dict[str, Any]]:
    return [line for line in capture.lines if line["logger"] == "lgsp.access"]


async def test_pushes_carry_the_request_id_of_the_upload(tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Request-Id"))
        await request.read()
        return web.Response(status=503)  # retried: the next attempt carries the same id

    receiver = web.Application()
    receiver.router.add_post("/in", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    dst = "000.00.02.H23"
    cfg = load_config(None, env=base_env(tmp_path / "var"))
    cfg = fast_retries(with_delivery(cfg, targets={dst: {"protocol": "rest", "url": f"http://127.0.0.1:{port}/in"}},
                                     probe_interval_seconds=0))
    try:
        async with Hub(cfg) as hub:
            for unit in ("000.00.01.H23", dst):
                await hub.directory.add_unit(unit, unit)
            app = await hub.directory.add_application("000.00.01.H23", "vbql")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            session = aiohttp.ClientSession(headers={"X-Request-Id": "trace-push"})
            async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret),
                                  session=session) as client:
                await client.send(b"noi dung", [dst], subject="đẩy")
            await session.close()
            await wait_for(lambda: len(seen) >= 2, timeout=20, what="two push attempts")
    finally:
        await runner.cleanup()
    assert seen[:2] == ["trace-push", "trace-push"]


def test_lgsp_run_logs_json_lines_in_utc(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("LGSP_") or k == "LGSP_CHECK_TRANSITIONS") and k != "NOTIFY_SOCKET"}
    env.update(base_env(tmp_path / "var", LGSP_SERVER_PORT=str(port), LGSP_SERVER_DRAIN_SECONDS="0"))
    proc = subprocess.Popen([sys.executable, "-m", "lgsp.cli.main", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and f":{port}" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    started = [line for line in lines if line["logger"] == "lgsp.hub" and "listening" in line["message"]]
    assert started and UTC_TIME.match(started[0]["time"]) and started[0]["level"] == "INFO"


# -- secrets never logged -------------------------------------------------------------------------

def leaks(log_text: str, secrets: list[str]) -> list[str]:
    """The recorded secrets found in the log (shown shortened)."""
    return [f"{s[:6]}…({len(s)} chars)" for s in secrets if s in log_text]


def test_the_scanner_finds_a_secret_that_was_logged() -> None:
    assert leaks('{"message": "key abcdefghijklmnopqrstuvwxyz0123456789 used"}',
                 ["abcdefghijklmnopqrstuvwxyz0123456789", "not-there-0000000000000000000000000"]) == \
        ["abcdef…(36 chars)"]


#: In-process suites that create keys, sessions, tickets, transfer URLs, pushes and failures.
SCANNED = ["tests/test_exchange.py", "tests/test_auth.py", "tests/test_sessions.py",
           "tests/test_stream_tickets.py", "tests/delivery/test_rest_push.py"]


def test_secrets_never_reach_the_log_of_a_test_run(tmp_path: Path) -> None:
    env = {**os.environ, "LGSP_SECRET_SCAN_DIR": str(tmp_path), "LGSP_TEST_ACCESS_LOG": "true"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "tests.secret_scan",
                          "-p", "no:cacheprovider", *SCANNED], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=1200, check=False)
    assert res.returncode == 0, res.stdout[-3000:]
    log_text = (tmp_path / "log.jsonl").read_text(encoding="utf-8")
    secrets = json.loads((tmp_path / "secrets.json").read_text(encoding="utf-8"))
    assert len(log_text.splitlines()) > 500, "the run logged too little to prove anything"
    assert '"logger": "lgsp.access"' in log_text and '"request_id"' in log_text
    assert len(secrets) > 50, "the run created too few secrets to prove anything"
    assert leaks(log_text, secrets) == []
