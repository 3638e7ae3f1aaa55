"""Shared fixtures: a real hub on a loopback port, units with keys, clients, PostgreSQL when present."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import Config, load_config
from lgsp.core.directory import IssuedKey
from lgsp.core.hub import Hub
from lgsp.core.signing import Signer
from lgsp.plugins.signatures import BUILTIN_ALGORITHMS

ALGS = {a.name: a for a in BUILTIN_ALGORITHMS}
#: Every SQLite store the suite opens (and every hub process it starts) refuses a state change that
#: core/states.py does not allow, so each test that drives the hub also checks its transitions.
os.environ.setdefault("LGSP_CHECK_TRANSITIONS", "1")
PG_ADMIN_URL = os.environ.get("LGSP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def base_env(tmp: Any, **extra: str) -> dict[str, str]:
    env = {"LGSP_HUB_DATA_DIR": str(tmp), "LGSP_SERVER_PORT": "0", "LGSP_BLOBS_FSYNC": "false",
           "LGSP_LOGGING_ACCESS_LOG": os.environ.get("LGSP_TEST_ACCESS_LOG", "false"),  # true: tests/test_logs.py
           "LGSP_SECURITY_RSA_KEY_BITS": "2048"}
    env.update(extra)
    return env



def _ephemeral_low() -> int:
    """The first port of the range outgoing connections take their local port from (Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on loopback right now (for servers a test starts), chosen below the range
    outgoing connections take their local ports from: a test that starts its server on it later
    (after finding the port closed first) cannot lose it to a client socket of a parallel test."""
    low = _ephemeral_low()
    for _ in range(200):
        port = secrets.randbelow(min(12000, low - 1025)) + max(1025, low - 12000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # pragma: no cover - the whole range is taken
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0,
                   interval: float = 0.05, what: str = "condition") -> None:
    """Poll until `predicate` (sync or async) holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)

@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    return load_config(None, env=base_env(tmp_path / "var"))


@pytest.fixture
async def hub(hub_config: Config) -> AsyncIterator[Hub]:
    async with Hub(hub_config) as h:
        yield h


@dataclass
class Actor:
    """A unit with one application and one key, and a client signing as it."""

    unit: str
    key: IssuedKey
    client: LgspClient
    hub: Hub

    @property
    def signer(self) -> Signer:
        return self.client.signer

    async def raw(self, method: str, path: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
                  content_sha256: str | None = None, sign: bool = True) -> tuple[int, dict[str, str], Any]:
        """A hand-made signed request (for checking the hub's answers byte by byte)."""
        return await raw_request(self.hub.url, method, path, body, signer=self.signer if sign else None,
                                 headers=headers, content_sha256=content_sha256)


async def raw_request(base: str, method: str, path: str, body: bytes | None = None, *, signer: Signer | None = None,
                      headers: dict[str, str] | None = None, content_sha256: str | None = None,
                      session_token: str | None = None) -> tuple[int, dict[str, str], Any]:
    url = URL(base + path if path.startswith("/") else path, encoded=True)
    data = body or b""
    all_headers: dict[str, str] = {}
    if signer is not None:
        all_headers.update(signer.headers(method, url.raw_path, url.raw_query_string,
                                          content_sha256 or hashlib.sha256(data).hexdigest(), session=session_token))
    all_headers.update(headers or {})
    all_headers = {k: v for k, v in all_headers.items() if v is not None}
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data or None,
                                                             headers=all_headers) as resp:
        text = await resp.read()
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return resp.status, dict(resp.headers), parsed


MakeActor = Callable[..., Awaitable[Actor]]


@pytest.fixture
async def make_actor(hub: Hub) -> AsyncIterator[MakeActor]:
    clients: list[LgspClient] = []

    async def make(unit: str, name: str | None = None, *, algorithm: str = "HMAC-SHA256", legacy: bool = False,
                   existing: bool = False) -> Actor:
        if not existing:
            await hub.directory.add_unit(unit, name or f"Đơn vị {unit}", legacy=legacy)
        app = await hub.directory.add_application(unit, f"app-{secrets.token_hex(3)}")
        key = await hub.directory.issue_key(app.id, algorithm)
        creds = Credentials(hub.url, key.access_key, algorithm, secret=key.secret, private_key_pem=key.private_key_pem)
        client = LgspClient(creds)
        clients.append(client)
        return Actor(unit, key, client, hub)

    yield make
    await asyncio.gather(*(c.close() for c in clients))


# -- PostgreSQL --------------------------------------------------------------------------------

_PG_REASON: list[str | None] = []


async def pg_skip_reason() -> str | None:
    """None when the PostgreSQL server answers, else why the PostgreSQL tests are skipped."""
    if not _PG_REASON:
        try:
            import asyncpg

            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
            await conn.close()
            _PG_REASON.append(None)
        except Exception as exc:
            _PG_REASON.append(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    return _PG_REASON[0]


@asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database's URL (dropped afterwards); skips the test when there is no server."""
    reason = await pg_skip_reason()
    if reason:
        pytest.skip(reason)
    import asyncpg

    name = f"lgsp_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield str(URL(PG_ADMIN_URL).with_scheme("postgresql+asyncpg").with_path("/" + name))
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test (dropped afterwards); skips when there is no server."""
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh store's URL, once per store: a SQLite file under tmp_path, a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'lgsp.db'}"
        return
    async with fresh_pg_database() as url:
        yield url


async def start_raw_upload(url: str, signer: Signer, size: int, sha256: str, first: bytes
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A signed PUT of `size` bytes to an upload URL, over a raw socket, of which only `first` is
    sent: the connection stays open (the caller sends more, stalls or closes it)."""
    target = URL(url, encoded=True)
    headers = signer.headers("PUT", target.raw_path, target.raw_query_string, sha256)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    head = f"PUT {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    writer.write(head.encode("latin-1") + first)
    await writer.drain()
    return reader, writer


async def read_raw_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from a raw connection: status, headers, body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.rstrip("\r\n").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body
