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
from lgsp.core.api import Problem, Text, i18n

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.sftp")
T = TypeVar("T")


class SftpError(Exception):
    """A failed SFTP step, already classified: `retryable` says whether trying later can help.

    `code` names the kind of failure for logs and code (`sftp.host_key`, `sftp.timeout`, ...);
    `reason` is a `Text` (its own value the English text, which is what a delivery stores), so each
    reader sees it in their language (docs/i18n.md)."""

    def __init__(self, reason: str, *, retryable: bool, host_key_mismatch: bool = False,
                 code: str = "sftp.failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.host_key_mismatch = host_key_mismatch
        self.code = code


class SftpTooLarge(SftpError):
    """A file expected to be small (a manifest) is not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False, code="sftp.too_large")


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
            raise SftpError(Text("the {what} secret {name!r} of unit {unit} is not stored (store it with: lgsp "
                                 "secret set {name})", what=what, name=name, unit=conn.unit),
                            retryable=False, code="sftp.secret_missing") from None

    password = await reveal(conn.password_secret, Text("password")) if conn.password_secret else None
    keys = None
    if conn.client_key_secret:
        text = await reveal(conn.client_key_secret, Text("client key"))
        passphrase = (await reveal(conn.client_key_passphrase_secret, Text("key passphrase"))
                      if conn.client_key_passphrase_secret else None)
        try:
            keys = [asyncssh.import_private_key(text, passphrase)]
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
            # The message names the format problem, never the key material.
            raise SftpError(Text("the client key secret {client_key_secret!r} cannot be used: {exc}",
                                 client_key_secret=conn.client_key_secret, exc=exc),
                            retryable=False, code="sftp.client_key") from None
    return password, keys


def classify(exc: BaseException, conn: Connection, stage: str, presented: str | None = None) -> SftpError:
    """Turn what asyncssh or the network raised into a reason an operator can act on."""
    where = f"{conn.address}"
    if isinstance(exc, SftpError):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        shown = Text(" (it presented {key})", key=presented) if presented else ""
        return SftpError(
            Text("{stage}: the host key of {where} is not the pinned one{shown}; refusing to connect and no "
                 "credentials were sent. If the server was legitimately re-keyed, verify the new key out of band and "
                 "update host_key of unit {unit}", stage=stage, where=where, shown=shown, unit=conn.unit),
            retryable=False, host_key_mismatch=True, code="sftp.host_key")
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        return SftpError(Text("{stage}: key exchange with {where} failed ({reason}); does the server offer the "
                              "pinned host key type?", stage=stage, where=where, reason=exc.reason),
                         retryable=False, code="sftp.key_exchange")
    if isinstance(exc, asyncssh.PermissionDenied):
        return SftpError(Text("{stage}: {where} rejected the credentials of unit {unit} (check username and the "
                              "stored secret)", stage=stage, where=where, unit=conn.unit),
                         retryable=False, code="sftp.credentials")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return SftpError(Text("{stage}: {where} refused the SFTP subsystem ({reason})", stage=stage, where=where,
                              reason=exc.reason), retryable=False, code="sftp.subsystem")
    if isinstance(exc, (asyncssh.SFTPPermissionDenied, asyncssh.SFTPWriteProtect)):
        return SftpError(Text("{stage}: permission denied on {where} ({reason})", stage=stage, where=where,
                              reason=exc.reason), retryable=False, code="sftp.permission")
    if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath, asyncssh.SFTPNotADirectory)):
        return SftpError(Text("{stage}: no such file or folder on {where} ({reason})", stage=stage, where=where,
                              reason=exc.reason), retryable=False, code="sftp.no_such_file")
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return SftpError(Text("{stage}: {where} is out of space ({reason})", stage=stage, where=where,
                              reason=exc.reason), retryable=True, code="sftp.no_space")
    if isinstance(exc, asyncssh.SFTPError):
        return SftpError(Text("{stage}: SFTP error from {where}: {reason}", stage=stage, where=where,
                              reason=exc.reason), retryable=True, code="sftp.protocol")
    if isinstance(exc, asyncssh.DisconnectError):
        return SftpError(Text("{stage}: {where} closed the connection ({reason})", stage=stage, where=where,
                              reason=exc.reason), retryable=True, code="sftp.closed")
    if isinstance(exc, TimeoutError):
        return SftpError(Text("{stage}: {where} did not answer in time", stage=stage, where=where),
                         retryable=True, code="sftp.timeout")
    if isinstance(exc, ConnectionRefusedError):
        return SftpError(Text("{stage}: {where} refused the connection", stage=stage, where=where),
                         retryable=True, code="sftp.refused")
    if isinstance(exc, OSError):
        return SftpError(Text("{stage}: cannot reach {where}: {strerror}", stage=stage, where=where,
                              strerror=i18n.os_reason(exc)), retryable=True, code="sftp.unreachable")
    return SftpError(Text("{stage}: {error} talking to {where}", stage=stage, error=type(exc).__name__, where=where),
                     retryable=True, code="sftp.broken")


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
        attrs = await self.stat(Text("check folder {path}", path=path), path)
        return attrs is not None and attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY

    async def read_small(self, stage: str, path: str, limit: int) -> bytes | None:
        """A small file whole (manifests): None when absent; SftpError when larger than `limit`."""
        attrs = await self.stat(stage, path)
        if attrs is None:
            return None
        if attrs.size is not None and attrs.size > limit:
            raise SftpTooLarge(Text("{stage}: {path} is larger than {limit} bytes", stage=stage, path=path,
                                    limit=limit))
        try:
            async with asyncio.timeout(self.conn.timeout):
                async with self.sftp.open(path, "rb", encoding=None) as fh:
                    data = await fh.read(limit + 1)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return None
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, self.conn, stage) from exc
        if len(data) > limit:
            raise SftpTooLarge(Text("{stage}: {path} is larger than {limit} bytes", stage=stage, path=path,
                                    limit=limit))
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
        error = classify(exc, conn, Text("connect"), client.presented)
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
