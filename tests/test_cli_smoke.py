"""The only two tests that start `lgsp` as a real process; every other CLI test calls `main(argv)`.

What only a process shows: the installed entry point and `python -m lgsp.cli.main` start at all,
the hub and the simulator stop cleanly on a real SIGTERM/SIGINT sent from outside, and what they
print reaches the real stdout/stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from lgsp.adapters.national_axis import AxisClient

from .conftest import free_port


def clean_env(tmp: Path, lang: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_") or k == "LGSP_CHECK_TRANSITIONS"}
    return env | {"LGSP_LANG": lang, "LGSP_PROFILES_FILE": str(tmp / "profiles.yaml")}


def test_installed_lgsp_runs_the_hub_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "lgsp.yaml"
    config.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\nserver:\n  port: {port}\nblobs:\n  fsync: false\n",
                      encoding="utf-8")
    lgsp = Path(sys.executable).parent / "lgsp"  # the console script pip installed
    proc = subprocess.Popen([str(lgsp), "run", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(tmp_path, "en"), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/time", timeout=10) as resp:
            assert json.loads(resp.read())["now"].endswith("Z")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping" in err and "Traceback" not in err
    var = tmp_path / "var"
    assert (var / "lgsp.db").is_file() and (var / "blobs" / "objects").is_dir()
    assert oct((var / "master.key").stat().st_mode & 0o777) == "0o600"


def test_module_runs_the_axis_simulator_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, "vi") | {"AXIS_SECRET": "bí-mật"}
    proc = subprocess.Popen([sys.executable, "-m", "lgsp.cli.main", "axis-sim", "--port", str(port),
                             "--system", "vxp.saas.45:env:AXIS_SECRET:000.00.00.H45"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line and "đang phục vụ" in line, line

        async def count() -> int:
            async with AxisClient(f"http://127.0.0.1:{port}", "vxp.saas.45", "bí-mật") as axis:
                return await axis.count_received()

        assert asyncio.run(count()) == 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "đang dừng" in err and "Traceback" not in err
    assert "bí-mật" not in out + err + line
