"""The servers under test, each started as its own process: the hub (as in production) and the relay.

The hub gets a config file of its own in a temporary folder with production settings (only the
data folder and the port differ from config/lgsp.yaml), and its units, applications and HMAC keys
are created through the hub's own directory before the server starts, as an operator would with
`lgsp unit add / app add / key issue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO
from lgsp.client.client import Credentials

LISTENING = re.compile(r"listening on (http://[^\s\"'}]+)")  # also inside a JSON log line
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench process that started us dies.

    The servers run in sessions of their own (so a terminal's Ctrl-C reaches only the bench, which
    stops them in order); without this, a bench killed outright (SIGKILL, an OOM kill, a CI
    timeout) would leave its hubs and relays running and holding their ports and databases."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() == 1:               # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class Pair:
    """One source → destination pair of units, with the credentials of each."""

    source: Credentials
    destination: Credentials
    source_id: str
    destination_id: str


def unit_ids(index: int) -> tuple[str, str]:
    """QCVN 102:2016 identifiers for pair `index` (0-based, below 100)."""
    return f"000.01.{index:02d}.H23", f"000.02.{index:02d}.H23"


class ServerProcess:
    """A child process that prints `... listening on URL` once it serves; stopped by SIGTERM."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LGSP_LANG"] = "en"
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    async def start(self, limit_s: float = 60.0) -> None:
        await asyncio.to_thread(self.workdir.mkdir, parents=True, exist_ok=True)
        log = await asyncio.to_thread(self.log_path.open, "wb")
        # Output goes to a file, never a pipe: a full pipe would stall the server mid-benchmark.
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), cwd=self.workdir, env=self.env(), stdout=log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent if sys.platform == "linux" else None)
        finally:
            log.close()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            text = self.log_tail(1_000_000)
            match = LISTENING.search(text)
            if match:
                self.url = match.group(1).rstrip("/")
                return
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before listening:\n"
                                   f"{text[-3000:]}")
            await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"{self.name} did not report its URL within {limit_s:.0f} s:\n{self.log_tail(3000)}")

    async def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM this child (by its pid only), then SIGKILL if it will not go."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


class HubProcess(ServerProcess):
    """`lgsp run -c <config>` in its own process, on its embedded store (SQLite + blob folder)."""

    name = "hub"

    def __init__(self, workdir: Path, *, overrides: dict[str, Any] | None = None) -> None:
        super().__init__(workdir)
        self.config_path = workdir / "lgsp.yaml"
        self.data_dir = workdir / "var"
        self.overrides = overrides or {}
        self.pairs: list[Pair] = []

    def config_data(self) -> dict[str, Any]:
        """Production settings: defaults of config/lgsp.yaml (fsync on, WAL, access log) but our paths."""
        data: dict[str, Any] = {"hub": {"data_dir": str(self.data_dir)},
                                "server": {"host": "127.0.0.1", "port": 0}}
        for section, values in self.overrides.items():
            data.setdefault(section, {}).update(values)
        return data

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config_data(), sort_keys=False), encoding="utf-8")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "lgsp.cli.main", "run", "-c", str(self.config_path)]

    async def provision(self, n_pairs: int) -> list[Pair]:
        """Register 2·n units with one application and one HMAC-SHA256 key each (before the start)."""
        from lgsp.core.config import load_config
        from lgsp.core.hub import Hub

        self.write_config()
        hub = Hub(load_config(self.config_path))
        await hub.open_store()
        pairs: list[Pair] = []
        try:
            for i in range(n_pairs):
                creds = []
                for unit in unit_ids(i):
                    await hub.directory.add_unit(unit, f"Bench unit {unit}")
                    app = await hub.directory.add_application(unit, "bench")
                    issued = await hub.directory.issue_key(app.id, "HMAC-SHA256")
                    creds.append(Credentials(url="", access_key=issued.access_key, algorithm="HMAC-SHA256",
                                             secret=issued.secret))
                pairs.append(Pair(creds[0], creds[1], *unit_ids(i)))
        finally:
            await hub.db.close()
        self.pairs = pairs
        return pairs

    def bound_pairs(self) -> list[Pair]:
        """The pairs with the URL the hub reported filled in."""
        return [Pair(_with_url(p.source, self.url), _with_url(p.destination, self.url), p.source_id,
                     p.destination_id) for p in self.pairs]


class RelayProcess(ServerProcess):
    """bench/relay.py in its own process; credentials are dummies (it checks nothing)."""

    name = "relay"

    def __init__(self, workdir: Path, *, push: dict[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.push = push or {}

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "bench.relay", "--host", "127.0.0.1", "--port", "0"]
        for unit, url in self.push.items():
            cmd += ["--push", f"{unit}={url}"]
        return cmd

    def bound_pairs(self, n_pairs: int) -> list[Pair]:
        # The relay takes the access key as the unit's name, so the key *is* the identifier.
        out = []
        for i in range(n_pairs):
            src, dst = unit_ids(i)
            out.append(Pair(Credentials(self.url, src, "HMAC-SHA256", secret="relay"),
                            Credentials(self.url, dst, "HMAC-SHA256", secret="relay"), src, dst))
        return out


def _with_url(creds: Credentials, url: str) -> Credentials:
    return Credentials(url=url, access_key=creds.access_key, algorithm=creds.algorithm, secret=creds.secret,
                       private_key_pem=creds.private_key_pem)
