"""Packaging and deployment: the systemd unit verifies and its ExecStart runs from a wheel in a fresh
venv as a non-root user; the Dockerfile and compose.yaml take the same steps; the proxy config is valid.

These machines boot no systemd and reach no container registry, so the unit runs here the way
systemd would start it (its user, umask, environment, working directory, NOTIFY_SOCKET), and the
Dockerfile is held to the steps this test proves instead of being built.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "docs" / "ops" / "lgsp.service"
RUN_AS = 65534  # nobody / nogroup on Debian
VENV = "/opt/lgsp/venv"
CONFIG = "/etc/lgsp/lgsp.yaml"
DATA = "/var/lib/lgsp"


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing (Debian's {package} package; .ci/run installs it)")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def unit_service() -> dict[str, list[str]]:
    """The [Service] section, each key with all its values in order (systemd allows repeats)."""
    values: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture(scope="module")
def area() -> Iterator[Path]:
    """A folder the unprivileged user can traverse (pytest's own tmp folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="lgsp-deploy-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def venv(area: Path) -> Path:
    """The hub's wheel, built from this tree, installed in a fresh venv (as an operator would)."""
    src = area / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", "var", ".git", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis", "build", "dist", "bench"))
    wheels = area / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("lgsp-*.whl")
    target = area / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # The wheel itself, nothing from this tree: its files, data and entry point are what is proven.
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300)
    site = Path(sysconfig.get_paths(vars={"base": str(target), "platbase": str(target)})["purelib"])
    deps = Path(sysconfig.get_paths()["purelib"])  # this test run's own, when the user can read them
    readable = subprocess.run([*as_user(), sys.executable, "-c", f"import os; os.listdir({str(deps)!r})"],
                              capture_output=True, check=False).returncode == 0
    if readable:
        (site / "lgsp-test-dependencies.pth").write_text(f"{deps}\n", encoding="utf-8")
    else:
        subprocess.run([*pip, str(wheel)], check=True, timeout=1200)
    return target


def as_user() -> list[str]:
    if os.geteuid() != 0:
        return []  # already unprivileged
    return ["setpriv", f"--reuid={RUN_AS}", f"--regid={RUN_AS}", "--clear-groups", "--"]


def test_unit_verifies(venv: Path, area: Path) -> None:
    tool = _tool("systemd-analyze", "systemd")
    copy = area / "lgsp.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(VENV, str(venv)), encoding="utf-8")
    res = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr
    service = unit_service()
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                      "CapabilityBoundingSet", "RestrictAddressFamilies", "SystemCallFilter", "UMask", "User"):
        assert hardening in service, hardening
    assert service["User"] == ["lgsp"] and service["ProtectSystem"] == ["strict"]
    assert service["Type"] == ["notify"] and service["NoNewPrivileges"] == ["yes"]
    assert service["WatchdogSec"] == ["30s"]  # the hub pings every 15 s (core/health.py)
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the supervisor alone: each worker drains once


def _receive(sock: socket.socket, proc: subprocess.Popen[str], timeout: float = 120.0) -> dict[str, str]:
    """The next sd_notify message; fails with the hub's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while True:
        try:
            data = sock.recv(4096).decode()
            return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        except TimeoutError:
            if proc.poll() is not None:
                raise AssertionError(f"the hub exited with {proc.returncode}: "
                                     f"{proc.stderr.read()[-3000:] if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                raise


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_exec_start_runs_from_the_wheel_as_a_non_root_user(venv: Path, area: Path) -> None:
    service = unit_service()
    data = area / "data"
    data.mkdir()
    etc = area / "etc"
    etc.mkdir()
    shutil.copy(ROOT / "config" / "lgsp.yaml", etc / "lgsp.yaml")
    (etc / "lgsp.yaml").chmod(0o644)
    if os.geteuid() == 0:
        os.chown(data, RUN_AS, RUN_AS)  # what StateDirectory= does
    data.chmod(0o700)
    paths = {VENV: str(venv), CONFIG: str(etc / "lgsp.yaml"), DATA: str(data)}

    def local(text: str) -> str:
        for deployed, here in paths.items():
            text = text.replace(deployed, here)
        return text

    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    for assignment in service.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = local(value)
    # What an operator's /etc/lgsp/lgsp.env would hold here: a free port, quick keys for the test.
    env.update({"LGSP_SERVER_PORT": str(port), "LGSP_SECURITY_RSA_KEY_BITS": "2048", "LGSP_BLOBS_FSYNC": "false"})
    notify = area / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    notify.chmod(0o777)
    env["NOTIFY_SOCKET"] = str(notify)
    (exec_start,) = service["ExecStart"]
    argv = [local(arg) for arg in shlex.split(exec_start)]
    assert argv[0] == str(venv / "bin" / "lgsp")
    umask = int(service["UMask"][0], 8)
    proc = subprocess.Popen([*as_user(), *argv], cwd=local(service["WorkingDirectory"][0]), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=umask)
    try:
        ready = _receive(sock, proc)
        assert ready.get("READY") == "1", (ready, proc.poll())
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/healthz") == 200
        assert _get(base + "/readyz") == 200
        uid = int(next(line.split()[1] for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                       if line.startswith("Uid:")))
        assert uid != 0
        key = data / "master.key"
        assert key.stat().st_uid == uid and key.stat().st_mode & 0o777 == 0o600
        assert (data / "lgsp.db").stat().st_mode & 0o077 == 0  # UMask=0077: nothing for others
        # The code ran from the wheel, not from this tree.
        where = subprocess.run([*as_user(), str(venv / "bin" / "python"), "-c",
                                "import lgsp.core.hub as m; print(m.__file__)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert where.startswith(str(venv)), where
        proc.send_signal(signal.SIGTERM)
        assert _receive(sock, proc).get("STOPPING") == "1"
        _, err = proc.communicate(timeout=int(service["TimeoutStopSec"][0]))
        assert proc.returncode == 0, err[-3000:]
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("listening" in line["message"] for line in lines)  # JSON lines, the default format


# -- the container files take the same steps --------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    out = []
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_takes_the_steps_the_unit_test_proves() -> None:
    steps = dockerfile()
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM"):]
    words = [word for word, _ in final]
    user = [rest for word, rest in final if word == "USER"]
    assert user and user[-1] not in ("root", "0", "0:0")
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert "pip wheel" in run and f"{VENV}/bin/pip install" in run and "useradd" in run
    (cmd,) = [rest for word, rest in final if word == "CMD"]
    (exec_start,) = unit_service()["ExecStart"]
    assert json.loads(cmd) == shlex.split(exec_start)  # the same command as the systemd unit
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/healthz" in health
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert f"LGSP_HUB_DATA_DIR={DATA}" in env and "LGSP_SERVER_HOST=0.0.0.0" in env
    assert words.index("USER") < words.index("CMD")
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "var", ".git"} <= set(ignore)


def test_compose_runs_two_nodes_behind_a_proxy_on_postgresql() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    hubs = sorted(name for name, s in services.items() if s.get("build") or s.get("image") == "lgsp")
    hubs = [name for name in hubs if "run" in json.dumps(services[name].get("command", "run"))
            and name.startswith("hub")]
    assert len(hubs) == 2
    for name in hubs:
        env = services[name]["environment"]
        assert env["LGSP_DATABASE_URL"].startswith("postgresql+asyncpg://") and "@db:5432/" in env["LGSP_DATABASE_URL"]
        assert env["LGSP_SERVER_MAX_CONNECTIONS_PER_ADDRESS"] == "0"  # behind the proxy
        assert any(v.endswith(f":{DATA}") for v in services[name]["volumes"])  # blobs and key shared
        assert "db" in services[name]["depends_on"]
    assert services["db"]["image"].startswith("postgres:")
    proxy = services["proxy"]
    assert any("docs/ops/haproxy.cfg" in v for v in proxy["volumes"])
    cfg = (ROOT / "docs" / "ops" / "haproxy.cfg").read_text(encoding="utf-8")
    for name in hubs:
        assert f"server {name} {name}:8080 check" in cfg
    assert "option httpchk GET /readyz" in cfg.replace("  ", " ")


def test_haproxy_config_is_valid(area: Path) -> None:
    tool = _tool("haproxy", "haproxy")
    res = subprocess.run([tool, "-c", "-f", str(ROOT / "docs" / "ops" / "haproxy.cfg")], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_config_parser_reads_the_unit() -> None:
    """The unit is plain INI as systemd reads it (no duplicate sections, every line key=value)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_the_language_catalogues_ship_in_the_wheel(venv: Path) -> None:
    """Vietnamese by default and English on request, read from the catalogues the wheel installed."""
    code = ("import lgsp.core.i18n as i; print(i.catalogue_path('vi')); "
            "print(i.gettext('no notices', 'vi')); print(i.gettext('no notices', 'en'))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True,
                         cwd=venv, timeout=120).stdout.splitlines()
    assert out[0].startswith(str(venv)), out
    assert out[1:] == ["không có thông báo nào", "no notices"]
