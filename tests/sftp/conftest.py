"""A real asyncssh SFTP server on a loopback port, chrooted in a tmp dir, and a real hub beside it.

The server records what clients did (connections, authentication attempts) so tests can prove, for
example, that a hub refusing a changed host key never sent its credentials. Failure modes a real
server shows (permission denied, a disk that loses bytes) are produced by the server itself, over
the SFTP wire protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import asyncssh
import pytest
import yaml

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import Config, load_config
from lgsp.core.exchange import NewPacket, PacketInfo
from lgsp.core.hub import Hub

from ..conftest import free_port, wait_for

__all__ = ["free_port"]  # for the SFTP tests that import it from here

SOURCE = "000.00.01.H23"
DEST = "000.00.02.H23"
OTHER = "000.00.03.H23"
USERNAME = "lgsp"
PASSWORD = "mật-khẩu-SFTP-7fq2"


# -- the SFTP server ------------------------------------------------------------------------------

@dataclass
class ServerState:
    root: Path
    password: str | None = PASSWORD
    client_key: asyncssh.SSHKey | None = None
    connections: int = 0
    auth_attempts: int = 0
    logins: int = 0
    deny_write_under: set[str] = field(default_factory=set)
    deny_read_under: set[str] = field(default_factory=set)
    deny_rename_into: set[str] = field(default_factory=set)
    truncate_writes_at: int | None = None


class _SSHServer(asyncssh.SSHServer):
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.state.connections += 1

    def begin_auth(self, username: str) -> bool:
        self.state.auth_attempts += 1  # the client asked to authenticate at all
        return True

    def auth_completed(self) -> None:
        self.state.logins += 1

    def password_auth_supported(self) -> bool:
        return self.state.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        return username == USERNAME and self.state.password is not None and hmac.compare_digest(
            password.encode(), self.state.password.encode())

    def public_key_auth_supported(self) -> bool:
        return self.state.client_key is not None

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return (username == USERNAME and self.state.client_key is not None
                and key.public_data == self.state.client_key.public_data)


def _under(path: bytes, prefixes: Iterable[str]) -> bool:
    text = "/" + path.decode().lstrip("/")
    return any(text == p or text.startswith(p.rstrip("/") + "/") for p in prefixes)


class _SFTPServer(asyncssh.SFTPServer):
    """The stock chrooted server, plus refusals and a lossy disk switched on by the test."""

    state: ServerState

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & asyncssh.FXF_WRITE and _under(path, self.state.deny_write_under):
            raise asyncssh.SFTPPermissionDenied("write access denied")
        if pflags & asyncssh.FXF_READ and _under(path, self.state.deny_read_under):
            raise asyncssh.SFTPPermissionDenied("read access denied")
        return super().open(path, pflags, attrs)

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        limit = self.state.truncate_writes_at
        if limit is not None and offset + len(data) > limit:
            data = data[:max(0, limit - offset)]  # the disk silently keeps less than it was given
        super().write(file_obj, offset, data)
        return len(data)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        if _under(newpath, self.state.deny_rename_into):
            raise asyncssh.SFTPPermissionDenied("rename denied")
        super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        if _under(newpath, self.state.deny_rename_into):
            raise asyncssh.SFTPPermissionDenied("rename denied")
        super().posix_rename(oldpath, newpath)


@dataclass
class SftpServer:
    state: ServerState
    host_key: asyncssh.SSHKey
    listener: asyncssh.SSHAcceptor
    port: int

    @property
    def root(self) -> Path:
        return self.state.root

    def pin(self) -> str:
        return self.host_key.export_public_key().decode().strip()

    def close(self) -> None:
        self.listener.close()


ServerFactory = Callable[..., Awaitable[SftpServer]]


@pytest.fixture(scope="session")
def host_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="session")
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
async def sftp_server_factory(tmp_path: Path, host_key: asyncssh.SSHKey) -> AsyncIterator[ServerFactory]:
    servers: list[SftpServer] = []

    async def start(name: str = "sftp", *, key: asyncssh.SSHKey | None = None, password: str | None = PASSWORD,
                    client_key: asyncssh.SSHKey | None = None, folders: Iterable[str] = ("inbox",)) -> SftpServer:
        root = tmp_path / name
        root.mkdir()
        for folder in folders:
            (root / folder).mkdir(parents=True)
        state = ServerState(root=root, password=password, client_key=client_key)
        sftp_cls = type("BoundSFTPServer", (_SFTPServer,), {"state": state})
        listener = await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[key or host_key], server_factory=lambda: _SSHServer(state),
            sftp_factory=lambda chan: sftp_cls(chan, chroot=str(root)), allow_scp=False)
        server = SftpServer(state, key or host_key, listener, listener.get_port())
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
        await server.listener.wait_closed()


@pytest.fixture
async def sftp_server(sftp_server_factory: ServerFactory) -> SftpServer:
    return await sftp_server_factory()


# -- hub ------------------------------------------------------------------------------------------

def write_hub_config(tmp_path: Path, *, adapters: dict[str, Any] | None = None,
               targets: dict[str, Any] | None = None) -> Config:
    """A hub config written as YAML and loaded like an operator's file (so errors carry lines)."""
    data = {"plugins": {"enabled": ["rest", "sftp"]}, "adapters": adapters or {},
            "delivery": {"targets": targets or {}}}
    path = tmp_path / "lgsp.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_config(path, env={"LGSP_HUB_DATA_DIR": str(tmp_path / "var"), "LGSP_SERVER_PORT": "0",
                                  "LGSP_BLOBS_FSYNC": "false",
                                  "LGSP_LOGGING_ACCESS_LOG": "false"})


async def prepare_store(cfg: Config, *, units: Iterable[str] = (SOURCE, DEST, OTHER),
                        secrets: dict[str, str] | None = None) -> None:
    """What an operator does before starting the hub: register units, `lgsp secret set ...`."""
    hub = Hub(cfg)
    await hub.open_store()
    try:
        for unit in units:
            if await hub.directory.get_unit(unit) is None:
                await hub.directory.add_unit(unit, f"Đơn vị {unit}")
        for name, value in (secrets or {}).items():
            await hub.secrets.set(name, value)
    finally:
        await hub.db.close()


async def client_for(hub: Hub, unit: str) -> LgspClient:
    app = await hub.directory.add_application(unit, f"app {token_hex(4)} of {unit}")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    assert key.secret is not None
    return LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))


async def stored_packet(hub: Hub, content: bytes, *, to: tuple[str, ...] = (DEST,), subject: str = "Công văn 12",
                        data_type: str = "edxml", meta: dict[str, Any] | None = None) -> PacketInfo:
    """A real packet with its content in the blob store, made through the hub's own submit."""
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(content), 65536):
            yield content[i:i + 65536]

    new = NewPacket(to=to, subject=subject, priority=1, data_type=data_type, protocol=None, size=len(content),
                    sha256=hashlib.sha256(content).hexdigest(), deadline=None, policy=None, meta=meta or {})
    return await hub.exchange.submit(SOURCE, new, chunks())


def target(server: SftpServer, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"protocol": "sftp", "host": "127.0.0.1", "port": server.port, "username": USERNAME,
                                "password_secret": "sftp-dest", "host_key": server.pin(), "directory": "/inbox",
                                "connect_timeout_seconds": 5, "timeout_seconds": 10}
    settings.update(overrides)
    return {k: v for k, v in settings.items() if v is not None}


def write_submission(folder: Path, name: str, content: bytes, *, manifest: dict[str, Any] | None = None,
                     raw_manifest: bytes | None = None) -> None:
    """What a unit's system does: the data file first, then its manifest (temp name, then rename)."""
    (folder / name).write_bytes(content)
    body = raw_manifest if raw_manifest is not None else json.dumps(
        manifest if manifest is not None else {"to": [DEST], "subject": f"Gửi {name}",
                                               "sha256": hashlib.sha256(content).hexdigest()},
        ensure_ascii=False).encode()
    temporary = folder / f".{name}.manifest.json.tmp"
    temporary.write_bytes(body)
    temporary.rename(folder / f"{name}.manifest.json")


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout: float = 15.0,
                     what: str = "condition") -> None:
    await wait_for(check, timeout=timeout, what=what)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
