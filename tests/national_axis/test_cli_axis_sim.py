"""`lgsp axis-sim` runs the simulator in the foreground, serves signed calls, stops on SIGTERM/SIGINT,
and refuses bad arguments in one line (in-process through `main(argv)`; tests/test_cli_smoke.py
runs it once as a real process)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from lgsp.adapters.national_axis import AxisClient

from ..cli_support import run_cli, run_cli_serving
from ..conftest import free_port


async def agencies_and_count(url: str, system_id: str, secret: str) -> tuple[list[str], int]:
    async with AxisClient(url, system_id, secret) as axis:
        return [a.code for a in await axis.agencies()], await axis.count_received()


@pytest.mark.parametrize(("sig", "lang"), [(signal.SIGTERM, "en"), (signal.SIGINT, "vi")])
def test_axis_sim_serves_a_signed_call_and_stops_on_a_signal(tmp_path: Path, sig: signal.Signals,
                                                              lang: str) -> None:
    agencies = tmp_path / "agencies.json"
    agencies.write_text(json.dumps([{"code": "000.00.00.G22", "name": "Văn phòng Chính phủ"}]), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def work(line: str) -> None:
        assert url in line
        assert ("listening" if lang == "en" else "đang phục vụ") in line
        assert asyncio.run(agencies_and_count(url, "vxp.saas.45", "bí-mật")) == (["000.00.00.G22"], 0)

    res, line = run_cli_serving("axis-sim", "--port", str(port), "--system",
                                "vxp.saas.45:env:AXIS_SECRET:000.00.00.H45", "--agencies", str(agencies),
                                work=work, sig=sig, lang=lang, env={"AXIS_SECRET": "bí-mật"})
    assert res.returncode == 0, res.stderr
    assert ("stopping" if lang == "en" else "đang dừng") in res.stderr
    assert "bí-mật" not in res.stdout + res.stderr + line


def test_axis_sim_keeps_its_state_in_a_file(tmp_path: Path) -> None:
    systems = tmp_path / "systems"
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    systems.write_text(f"# one system\nvxp.saas.45:file:{secret}:000.00.00.H45\n", encoding="utf-8")
    state = tmp_path / "state.json"
    port = free_port()

    async def register() -> None:
        from lgsp.adapters.national_axis import AgencyRegistration

        async with AxisClient(f"http://127.0.0.1:{port}", "vxp.saas.45", "s3cret") as axis:
            await axis.register_agency(AgencyRegistration(code="000.01.01.H45", name="Sở"))

    res, _ = run_cli_serving("axis-sim", "--port", str(port), "--systems-file", str(systems), "--state", str(state),
                             work=lambda _: asyncio.run(register()))
    assert res.returncode == 0, res.stderr
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
    assert "NOT_SET_ANYWHERE_AXIS" not in os.environ
    res = run_cli("axis-sim", *args)
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert res.stderr.startswith("error: ")
    assert res.stdout == ""


def test_a_port_in_use_fails_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli("axis-sim", "--port", str(port), "--system", "a:s:000.00.00.H45")
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ") and "address already in use" in res.stderr
