"""Support for the conformance tests: the black-box hub (``lgsp`` CLI + subprocess) and checks.

The operator side uses only the command line (``lgsp unit add``, ``app add``, ``key issue``,
``key revoke``, ``run``), the protocol side only :mod:`spec_client`. Set ``LGSP_CONFORMANCE_CLI``
to the command that runs another ``lgsp`` (e.g. ``/opt/lgsp/bin/lgsp``) to test that one; without
it the administration commands run in-process through ``main(argv)`` (a process start costs over a
second each) and only ``lgsp run`` is a subprocess.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from spec_client import PROBLEM_FIELDS, Credentials, Response, SpecClient

from tests.cli_support import CliResult, run_cli

SOURCE = "000.00.00.H23"
DEST1 = "000.00.01.H23"
DEST2 = "000.00.02.H23"
OUTSIDER = "000.00.03.H23"
UNKNOWN = "000.00.99.H23"
UNIT_NAMES = {
    SOURCE: "Sở KH&ĐT Thử nghiệm",
    DEST1: "Conformance Destination One",
    DEST2: "Conformance Destination Two",
    OUTSIDER: "Conformance Third Unit",
}
APP_NAME = "conformance"
MAX_PACKET_SIZE = 64 * 1024
# (unit, algorithm, label): the keys issued before the hub starts
KEYS = [
    (SOURCE, "HMAC-SHA256", "src"),
    (SOURCE, "HMAC-SHA1", "src-sha1"),
    (SOURCE, "RSA-SHA256", "src-rsa"),
    (SOURCE, "HMAC-SHA256", "src-to-revoke"),
    (DEST1, "HMAC-SHA256", "dst1"),
    (DEST2, "HMAC-SHA1", "dst2"),
    (OUTSIDER, "RSA-SHA256", "outsider"),
]
_KEY_TOKEN = re.compile(r"(?<![\w.-])([A-Za-z0-9_-]{16,})(?![\w.-])")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _cli_command() -> list[str]:
    override = os.environ.get("LGSP_CONFORMANCE_CLI")
    if override:
        return shlex.split(override)
    return [str(Path(sys.executable).parent / "lgsp")]


def _clean_env() -> dict[str, str]:
    """The environment without LGSP_* overrides, with English CLI messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_") or k == "LGSP_CHECK_TRANSITIONS"}
    env["LGSP_LANG"] = "en"
    return env


@dataclass
class Hub:
    """A running hub, its config and the credentials issued for the tests."""

    directory: Path
    config: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    credentials: dict[str, Credentials] = field(default_factory=dict)
    app_ids: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        """Run ``lgsp ARGS -c CONFIG``; fail the test with the output when it exits non-zero."""
        done: subprocess.CompletedProcess[str] | CliResult
        if os.environ.get("LGSP_CONFORMANCE_CLI"):
            command = [*_cli_command(), *args, "-c", str(self.config)]
            done = subprocess.run(command, capture_output=True, text=True, env=_clean_env(), timeout=60, check=False)
        else:
            done = run_cli(*args, "-c", str(self.config))
        if done.returncode != 0:
            command_line = " ".join(args)
            pytest.fail(
                f"`lgsp {command_line}` exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr[-2000:]}"
            )
        return done.stdout

    def client(self, label: str) -> SpecClient:
        """A fresh client (no session) for the key issued under ``label``."""
        return SpecClient(self.url, self.credentials[label])

    def stored_files_containing(self, data: bytes) -> list[Path]:
        """Files under the hub's data directory whose bytes contain ``data`` (a black-box look)."""
        return [path for path in (self.directory / "var").rglob("*") if path.is_file() and data in path.read_bytes()]

    # -- operator set-up -------------------------------------------------------------------------

    def issue_key(self, unit: str, algorithm: str, label: str) -> tuple[list[str], Credentials]:
        """``lgsp key issue`` for the unit's test application.

        Returns the candidate access keys seen in the output (resolved against ``lgsp key list`` by
        :meth:`set_up`) and the credentials with the secret (the last line) or the RSA private key.
        """
        args = ["key", "issue", "--app", APP_NAME, "--unit", unit, "--algorithm", algorithm]
        private_key: rsa.RSAPrivateKey | None = None
        if algorithm == "RSA-SHA256":
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = self.directory / f"{label}.pub.pem"
            pem.write_bytes(
                private_key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            args += ["--public-key", str(pem)]
        lines = [line.strip() for line in self.cli(*args).splitlines() if line.strip()]
        secret = None if private_key else lines[-1]
        searched = lines if private_key else lines[:-1]
        candidates = [match for line in searched for match in _KEY_TOKEN.findall(line)]
        return candidates, Credentials("", algorithm, secret=secret, private_key=private_key, unit=unit)

    def set_up(self) -> None:
        """Add the units, one application each, then the keys (each stage in parallel).

        There is no separate ``lgsp config check``: every command below loads the config and fails
        loudly on a bad one.
        """
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda unit: self.cli("unit", "add", unit, UNIT_NAMES[unit]), UNIT_NAMES))
            outputs = list(pool.map(lambda unit: self.cli("app", "add", unit, APP_NAME), UNIT_NAMES))
            for unit, output in zip(UNIT_NAMES, outputs, strict=True):
                found = _UUID.search(output)
                self.app_ids[unit] = found.group(0) if found else ""
            issued = list(pool.map(lambda spec: self.issue_key(*spec), KEYS))
        listed: set[str] = set()
        if any(len(candidates) != 1 for candidates, _ in issued):  # ambiguous output: ask the key list
            listed = set(self.cli("key", "list").split())
        for (_, _, label), (candidates, creds) in zip(KEYS, issued, strict=True):
            keys = candidates if len(candidates) == 1 else [key for key in candidates if key in listed]
            assert len(keys) == 1, f"cannot tell the access key of {label} from {candidates}"
            self.credentials[label] = replace(creds, key=keys[0])

    def start(self) -> None:
        """``lgsp run``; wait for the line with the URL on stdout."""
        with (self.directory / "hub.stdout").open("wb") as out, (self.directory / "hub.stderr").open("wb") as err:
            self.process = subprocess.Popen(
                [*_cli_command(), "run", "-c", str(self.config)], stdout=out, stderr=err, env=_clean_env()
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"https?://[^\s)]+", (self.directory / "hub.stdout").read_text(errors="replace"))
            if found:
                self.url = found.group(0).rstrip(".,;")
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"hub did not start:\n{(self.directory / 'hub.stderr').read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then kill if it does not exit within 15 s."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_config(directory: Path) -> Path:
    """A config for a hub in ``directory`` (port 0: the hub picks a free one)."""
    config = directory / "lgsp.yaml"
    config.write_text(
        f"hub: {{data_dir: {directory / 'var'}}}\n"
        "server: {host: 127.0.0.1, port: 0}\n"
        "blobs: {fsync: false}\n"
        f"limits: {{max_packet_size: {MAX_PACKET_SIZE}B}}\n",
        encoding="utf-8",
    )
    return config


def assert_problem(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an ``application/problem+json`` error with the spec's members; return its body."""
    assert response.status == status, response
    assert response.content_type == "application/problem+json", response
    body = response.json
    missing = [name for name in PROBLEM_FIELDS if name not in body]
    assert not missing, f"problem body lacks {missing}: {body}"
    assert body["status"] == status, body
    if code is not None:
        assert body["code"] == code, body
    return body


PACKET_FIELDS = ("id", "from", "subject", "priority", "data_type", "size", "sha256", "created_at")
FINAL_STATES = ("delivered", "failed", "expired", "cancelled")


def parse_time(value: str) -> datetime:
    """An RFC 3339 UTC time ending in ``Z`` (fractions allowed)."""
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


def send(source: SpecClient, to: list[str], content: bytes, **fields: Any) -> str:
    """Create a packet and upload its content; return the packet id."""
    created = source.create_packet(to, content, **fields)
    assert created.status == 201, created
    upload = created.json["upload"]
    assert upload["method"] == "PUT"
    assert parse_time(upload["expires_at"]) > datetime.now(UTC)
    uploaded = source.upload(upload["url"], content)
    assert 200 <= uploaded.status < 300, uploaded
    return created.json["id"]


def ready(destination: SpecClient, packet_id: str) -> str:
    """``ready`` as a destination; return the download URL."""
    answer = destination.ready(packet_id)
    assert 200 <= answer.status < 300, answer
    download = answer.json["download"]
    assert download["method"] == "GET"
    assert parse_time(download["expires_at"]) > datetime.now(UTC)
    return download["url"]
