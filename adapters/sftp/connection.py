"""Opening an SFTP session to a unit's server: pinned host key, credentials from the secret store.

Everything asyncssh would otherwise pick up from the machine (~/.ssh/config, default keys, the SSH
agent, known_hosts files, GSS/Kerberos) is switched off, so a session authenticates exactly as the
YAML says and nothing else. The host key is checked during key exchange, before any credential is
sent: a server presenting another key never sees the password or a signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncssh

from lgsp.adapters.sftp.manifest import temporary_name
from lgsp.adapters.sftp.settings import Connection, HostKeyPin
from lgsp.core.api import Problem

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.sftp")
T = TypeVar("T")


class SftpError(Exception):
    """A failed SFTP step, already classified: `retryable` says whether trying later can help."""

    def __init__(self, reason: str, *, retryable: bool, host_key_mismatch: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.host_key_mismatch = host_key_mismatch


class SftpTooLarge(SftpError):
    """A file expected to be small (a manifest) is not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


class _PinnedClient(asyncssh.SSHClient):
    """Accepts the server only if its key is pinned; remembers what it was shown, for the report."""

    def __init__(self, pin: HostKeyPin) -> None:
        self.pin = pin
        self.presented: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key.get_fingerprint("sha256")
        return self.pin.matches(key)


async def _credentials(hub: Hub, conn: Connection) -> tuple[str | None, list[asyncssh.SSHKey] | None]:
    async def reveal(name: str, what: str) -> str:
        try:
            return await hub.secrets.reveal(name)
        except Problem:
            raise SftpError(f"the {what} secret {name!r} of unit {conn.unit} is not stored "
                            f"(store it with: lgsp secret set {name})", retryable=False) from None

    password = await reveal(conn.password_secret, "password") if conn.password_secret else None
    keys = None
    if conn.client_key_secret:
        text = await reveal(conn.client_key_secret, "client key")
        passphrase = (await reveal(conn.client_key_passphrase_secret, "key passphrase")
                      if conn.client_key_passphrase_secret else None)
        try:
            keys = [asyncssh.import_private_key(text, passphrase)]
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
            # The message names the format problem, never the key material.
            raise SftpError(f"the client key secret {conn.client_key_secret!r} cannot be used: {exc}",
                            retryable=False) from None
    return password, keys


def classify(exc: BaseException, conn: Connection, stage: str, presented: str | None = None) -> SftpError:
    """Turn what asyncssh or the network raised into a reason an operator can act on."""
    where = f"{conn.address}"
    if isinstance(exc, SftpError):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        shown = f" (it presented {presented})" if presented else ""
        return SftpError(
            f"{stage}: the host key of {where} is not the pinned one{shown}; refusing to connect and no "
            f"credentials were sent. If the server was legitimately re-keyed, verify the new key out of band "
            f"and update host_key of unit {conn.unit}", retryable=False, host_key_mismatch=True)
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        return SftpError(f"{stage}: key exchange with {where} failed ({exc.reason}); does the server offer "
                         f"the pinned host key type?", retryable=False)
    if isinstance(exc, asyncssh.PermissionDenied):
        return SftpError(f"{stage}: {where} rejected the credentials of unit {conn.unit} "
                         f"(check username and the stored secret)", retryable=False)
    if isinstance(exc, asyncssh.ChannelOpenError):
        return SftpError(f"{stage}: {where} refused the SFTP subsystem ({exc.reason})", retryable=False)
    if isinstance(exc, (asyncssh.SFTPPermissionDenied, asyncssh.SFTPWriteProtect)):
        return SftpError(f"{stage}: permission denied on {where} ({exc.reason})", retryable=False)
    if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath, asyncssh.SFTPNotADirectory)):
        return SftpError(f"{stage}: no such file or folder on {where} ({exc.reason})", retryable=False)
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return SftpError(f"{stage}: {where} is out of space ({exc.reason})", retryable=True)
    if isinstance(exc, asyncssh.SFTPError):
        return SftpError(f"{stage}: SFTP error from {where}: {exc.reason}", retryable=True)
    if isinstance(exc, asyncssh.DisconnectError):
        return SftpError(f"{stage}: {where} closed the connection ({exc.reason})", retryable=True)
    if isinstance(exc, TimeoutError):
        return SftpError(f"{stage}: {where} did not answer in time", retryable=True)
    if isinstance(exc, ConnectionRefusedError):
        return SftpError(f"{stage}: {where} refused the connection", retryable=True)
    if isinstance(exc, OSError):
        return SftpError(f"{stage}: cannot reach {where}: {exc.strerror or exc}", retryable=True)
    return SftpError(f"{stage}: {type(exc).__name__} talking to {where}", retryable=True)


class Session:
    """An open SFTP session; each remote call is bounded by the unit's `timeout_seconds`."""

    def __init__(self, conn: Connection, ssh: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient) -> None:
        self.conn = conn
        self.ssh = ssh
        self.sftp = sftp

    async def call(self, stage: str, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.conn.timeout):
                return await awaitable
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc

    async def stat(self, stage: str, path: str) -> asyncssh.SFTPAttrs | None:
        """The attributes of `path`, or None when it does not exist."""
        try:
            async with asyncio.timeout(self.conn.timeout):
                return await self.sftp.stat(path)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return None
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc

    async def is_dir(self, path: str) -> bool:
        attrs = await self.stat(f"check folder {path}", path)
        return attrs is not None and attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY

    async def read_small(self, stage: str, path: str, limit: int) -> bytes | None:
        """A small file whole (manifests): None when absent; SftpError when larger than `limit`."""
        attrs = await self.stat(stage, path)
        if attrs is None:
            return None
        if attrs.size is not None and attrs.size > limit:
            raise SftpTooLarge(f"{stage}: {path} is larger than {limit} bytes")
        try:
            async with asyncio.timeout(self.conn.timeout):
                async with self.sftp.open(path, "rb", encoding=None) as fh:
                    data = await fh.read(limit + 1)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return None
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc
        if len(data) > limit:
            raise SftpTooLarge(f"{stage}: {path} is larger than {limit} bytes")
        return cast(bytes, data)  # opened with encoding=None: asyncssh returns bytes

    async def replace(self, stage: str, source: str, target: str) -> None:
        """Rename `source` onto `target`, replacing it: atomic where the server offers POSIX rename."""
        try:
            async with asyncio.timeout(self.conn.timeout):
                try:
                    await self.sftp.posix_rename(source, target)
                except asyncssh.SFTPOpUnsupported:
                    # Plain SFTP v3 rename refuses an existing target: remove it first (a short window
                    # without the file, never a half-written one).
                    with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                        await self.sftp.remove(target)
                    await self.sftp.rename(source, target)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc

    async def remove(self, stage: str, path: str) -> None:
        """Delete `path`; already gone is fine."""
        try:
            async with asyncio.timeout(self.conn.timeout):
                await self.sftp.remove(path)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc

    async def write_small(self, stage: str, path: str, data: bytes) -> None:
        """Write a small file atomically: a hidden `.part` name first, then the rename into place."""
        folder, name = posixpath.split(path)
        temporary = posixpath.join(folder, temporary_name(name))
        try:
            async with asyncio.timeout(self.conn.timeout):
                async with self.sftp.open(temporary, "wb", encoding=None) as fh:
                    await fh.write(data)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc
        await self.replace(stage, temporary, path)

    async def ensure_dir(self, stage: str, path: str) -> None:
        if await self.is_dir(path):
            return
        try:
            async with asyncio.timeout(self.conn.timeout):
                await self.sftp.makedirs(path, exist_ok=True)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc


@contextlib.asynccontextmanager
async def open_session(hub: Hub, conn: Connection) -> AsyncIterator[Session]:
    password, keys = await _credentials(hub, conn)
    client = _PinnedClient(conn.host_key)
    options: dict[str, Any] = {
        "username": conn.username,
        "known_hosts": (list(conn.host_key.keys), [], []),
        "client_factory": lambda: client,
        "config": [],
        "client_keys": keys,
        "agent_path": None,
        "agent_forwarding": False,
        "password": password,
        "password_auth": password is not None,
        "kbdint_auth": password is not None,
        "public_key_auth": keys is not None,
        "host_based_auth": False,
        "gss_auth": False,
        "gss_kex": False,
        "x509_trusted_certs": None,
        "x509_trusted_cert_paths": [],
        "connect_timeout": conn.connect_timeout,
        "login_timeout": conn.connect_timeout,
        "keepalive_interval": min(30.0, conn.timeout),
    }
    ssh: asyncssh.SSHClientConnection | None = None
    try:
        async with asyncio.timeout(conn.connect_timeout):
            ssh = await asyncssh.connect(conn.host, conn.port, **options)
            sftp = await ssh.start_sftp_client()
    except (asyncssh.Error, OSError, TimeoutError) as exc:
        if ssh is not None:
            ssh.abort()
        error = classify(exc, conn, "connect", client.presented)
        if error.host_key_mismatch:
            log.error("sftp %s (unit %s): %s", conn.address, conn.unit, error.reason)
        raise error from None
    try:
        yield Session(conn, ssh, sftp)
    finally:
        sftp.exit()
        ssh.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await ssh.wait_closed()
