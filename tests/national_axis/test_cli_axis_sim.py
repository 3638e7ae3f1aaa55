"""`lgsp axis-sim` runs the simulator in the foreground, serves signed calls, stops on SIGTERM/SIGINT,
and refuses bad arguments in one line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lgsp.adapters.national_axis import AxisClient

from ..conftest import free_port

LGSP = [sys.executable, "-m", "lgsp.cli.main"]


def env(lang: str = "en", **extra: str) -> dict[str, str]:
    return {**os.environ, "LGSP_LANG": lang, **extra}


def start(*args: str, lang: str = "en", **extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*LGSP, "axis-sim", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(lang, **extra))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise AssertionError(proc.stderr.read() if proc.stderr else "no output")
    return proc, line


async def agencies_and_count(url: str, system_id: str, secret: str) -> tuple[list[str], int]:
    async with AxisClient(url, system_id, secret) as axis:
        return [a.code for a in await axis.agencies()], await axis.count_received()


@pytest.mark.parametrize(("sig", "lang"), [(signal.SIGTERM, "en"), (signal.SIGINT, "vi")])
def test_axis_sim_serves_a_signed_call_and_stops_on_a_signal(tmp_path: Path, sig: signal.Signals,
                                                              lang: str) -> None:
    agencies = tmp_path / "agencies.json"
    agencies.write_text(json.dumps([{"code": "000.00.00.G22", "name": "Văn phòng Chính phủ"}]), encoding="utf-8")
    port = free_port()
    proc, line = start("--port", str(port), "--system", "vxp.saas.45:env:AXIS_SECRET:000.00.00.H45",
                       "--agencies", str(agencies), lang=lang, AXIS_SECRET="bí-mật")
    try:
        url = f"http://127.0.0.1:{port}"
        assert url in line
        assert ("listening" if lang == "en" else "đang phục vụ") in line
        assert asyncio.run(agencies_and_count(url, "vxp.saas.45", "bí-mật")) == (["000.00.00.G22"], 0)
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ("stopping" if lang == "en" else "đang dừng") in err
    assert "bí-mật" not in out + err + line


def test_axis_sim_keeps_its_state_in_a_file(tmp_path: Path) -> None:
    systems = tmp_path / "systems"
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    systems.write_text(f"# one system\nvxp.saas.45:file:{secret}:000.00.00.H45\n", encoding="utf-8")
    state = tmp_path / "state.json"
    port = free_port()
    proc, _ = start("--port", str(port), "--systems-file", str(systems), "--state", str(state))
    try:
        async def register() -> None:
            from lgsp.adapters.national_axis import AgencyRegistration

            async with AxisClient(f"http://127.0.0.1:{port}", "vxp.saas.45", "s3cret") as axis:
                await axis.register_agency(AgencyRegistration(code="000.01.01.H45", name="Sở"))

        asyncio.run(register())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert json.loads(state.read_text(encoding="utf-8"))["agencies"][0]["code"] == "000.01.01.H45"
    assert "s3cret" not in state.read_text(encoding="utf-8")


@pytest.mark.parametrize(("args", "message"), [
    ([], "at least one system"),
    (["--system", "vxp.saas.45"], "--system: expected ID:SECRET:AGENCY"),
    (["--system", "vxp.saas.45:env:NOT_SET_ANYWHERE_AXIS:000.00.00.H45"], "NOT_SET_ANYWHERE_AXIS is not set"),
    (["--system", "a:s:000.00.00.H45", "--system", "a:t:000.00.00.H45"], "registered twice"),
    (["--system", "a:s:000.00.00.H45", "--agencies", "/no/such/agencies.json"], "No such file"),
    (["--system", "a:s:000.00.00.H45", "--port", "many"], "invalid int value"),
])
def test_bad_arguments_fail_in_one_line(args: list[str], message: str) -> None:
    env_ = env()
    env_.pop("NOT_SET_ANYWHERE_AXIS", None)
    res = subprocess.run([*LGSP, "axis-sim", *args], capture_output=True, text=True, env=env_, timeout=60,
                         check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert res.stderr.startswith("error: ")
    assert res.stdout == ""


def test_a_port_in_use_fails_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run([*LGSP, "axis-sim", "--port", str(port), "--system", "a:s:000.00.00.H45"],
                             capture_output=True, text=True, env=env(), timeout=60, check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ") and "address already in use" in res.stderr
