"""SFTP settings: push targets (`delivery.targets.<unit>`) and inbound sources (`adapters.sftp.inbound.<unit>`).

Both share the connection keys. Parsing never stops at the first mistake and names each key, so
`lgsp config check` reports everything wrong in one pass. The host key is always pinned: there is
no setting that makes the hub accept a server key it was not told about.
"""

from __future__ import annotations

import base64
import difflib
import hmac
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncssh

from lgsp.core.api import SECRET_NAME_RE as NAME_RE
from lgsp.core.api import InvalidIdentifier, Text, check_identifier

Issues = list[tuple[str, str]]

# Keys every SFTP connection understands (push target and inbound source alike).
CONNECTION_KEYS = frozenset({
    "host", "port", "username", "password_secret", "client_key_secret", "client_key_passphrase_secret",
    "host_key", "connect_timeout_seconds", "timeout_seconds",
})
# Keys of a push target that belong to the hub, not to this adapter.
COMMON_TARGET_KEYS = frozenset({"protocol"})
TARGET_KEYS = CONNECTION_KEYS | COMMON_TARGET_KEYS | {"directory"}
INBOUND_KEYS = CONNECTION_KEYS | {"enabled", "outbox", "done", "failed", "poll_interval_seconds",
                                  "max_files_per_poll"}
ADAPTER_KEYS = frozenset({"inbound"})

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_TIMEOUT = 60.0
DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_MAX_FILES = 100

HOST_KEY_HELP = Text("the server's public key as an OpenSSH line (e.g. from `ssh-keyscan -t ed25519 HOST`) or its "
                     "SHA256: fingerprint; lgsp never trusts a host key it was not given")


class HostKeyPin:
    """The host keys a unit's server may present: full public keys and/or SHA-256 fingerprints."""

    def __init__(self, keys: tuple[asyncssh.SSHKey, ...], fingerprints: tuple[str, ...]) -> None:
        self.keys = keys
        self._fingerprints = tuple(fingerprints) + tuple(k.get_fingerprint("sha256") for k in keys)

    def matches(self, key: asyncssh.SSHKey) -> bool:
        presented = key.get_fingerprint("sha256").encode()
        found = False
        for expected in self._fingerprints:  # no early exit: the comparison time does not depend on the pin
            found |= hmac.compare_digest(presented, expected.encode())
        return found

    def __repr__(self) -> str:
        return f"HostKeyPin({', '.join(self._fingerprints)})"


@dataclass(frozen=True)
class Connection:
    unit: str
    host: str
    port: int
    username: str
    password_secret: str | None
    client_key_secret: str | None
    client_key_passphrase_secret: str | None
    host_key: HostKeyPin
    connect_timeout: float
    timeout: float

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.username}@{host}:{self.port}"


@dataclass(frozen=True)
class PushTarget:
    connection: Connection
    directory: str


@dataclass(frozen=True)
class InboundSource:
    connection: Connection
    enabled: bool
    outbox: str
    done: str
    failed: str
    poll_interval: float
    max_files_per_poll: int


# -- host keys ------------------------------------------------------------------------------------

def parse_host_key_entry(entry: str) -> asyncssh.SSHKey | str:
    """One pinned entry: an SSHKey for an OpenSSH public key line, or a normalised `SHA256:` fingerprint."""
    text = entry.strip()
    if text.upper().startswith("SHA256:"):
        b64 = text[7:].rstrip("=")
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except ValueError:
            raise ValueError(Text("the SHA256: fingerprint is not valid base64")) from None
        if len(raw) != 32:
            raise ValueError(Text("a SHA256: fingerprint holds 32 bytes (43 base64 characters)"))
        return "SHA256:" + base64.b64encode(raw).decode().rstrip("=")
    if text.upper().startswith("MD5:"):
        raise ValueError(Text("MD5 fingerprints are too weak to pin; give the public key or its SHA256: fingerprint"))
    parts = text.split()
    candidates = [text]
    if len(parts) >= 3:  # a known_hosts / ssh-keyscan line: "host[,ip] keytype base64"
        candidates.append(" ".join(parts[1:]))
    for candidate in candidates:
        try:
            key = asyncssh.import_public_key(candidate)
        except (asyncssh.KeyImportError, ValueError):
            continue
        if isinstance(key, asyncssh.SSHCertificate):  # pragma: no cover - import_public_key never returns one
            break
        return key
    raise ValueError(Text("not a public key line or SHA256: fingerprint: {text!r}", text=text[:40]))


def _host_key(value: Any, issues: Issues, prefix: str) -> HostKeyPin | None:
    entries: list[Any]
    if isinstance(value, str):
        entries = [value]
    elif isinstance(value, list):
        entries = value
    else:
        issues.append((f"{prefix}host_key", Text("required: {what}", what=HOST_KEY_HELP)))
        return None
    if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        issues.append((f"{prefix}host_key", Text("required: {what}", what=HOST_KEY_HELP)))
        return None
    keys: list[asyncssh.SSHKey] = []
    prints: list[str] = []
    for i, entry in enumerate(entries):
        key = f"{prefix}host_key" if isinstance(value, str) else f"{prefix}host_key[{i}]"
        if entry.strip() in ("*", "any", "none", "ignore", "false", "no"):
            issues.append((key, Text("blind trust is not allowed: {what}", what=HOST_KEY_HELP)))
            continue
        try:
            parsed = parse_host_key_entry(entry)
        except ValueError as exc:
            issues.append((key, exc.args[0]))
            continue
        if isinstance(parsed, str):
            prints.append(parsed)
        else:
            keys.append(parsed)
    if len(keys) + len(prints) != len(entries):
        return None
    return HostKeyPin(tuple(keys), tuple(prints))


# -- connection -----------------------------------------------------------------------------------

class _Reporter:
    """Names each problem by its key path; a missing key (no line of its own) can be reported at its block."""

    def __init__(self, raw: Mapping[str, Any], issues: Issues, prefix: str, missing_at: str | None) -> None:
        self.raw = raw
        self.issues = issues
        self.prefix = prefix
        self.missing_at = missing_at

    def bad(self, name: str, message: str) -> None:
        self.issues.append((f"{self.prefix}{name}", message))

    def missing(self, name: str, message: str) -> None:
        if self.missing_at is None:
            self.issues.append((f"{self.prefix}{name}", Text("required: {what}", what=message)))
        else:
            self.issues.append((self.missing_at,
                                Text("missing required key {name!r}: {what}", name=name, what=message)))

    def number(self, name: str, default: float) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.bad(name, Text("must be a number of seconds greater than 0 (got {value!r})", value=value))
            return default
        return float(value)

    def folder(self, name: str, default: str | None = None) -> str:
        if name not in self.raw and default is None:
            self.missing(name, Text("a folder on the SFTP server, e.g. /lgsp/outbox"))
            return ""
        value = self.raw.get(name, default)
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            self.bad(name, Text("must be a folder path on the SFTP server (got {value!r})", value=value))
            return ""
        return posixpath.normpath(value.strip())

    def unknown(self, allowed: frozenset[str]) -> None:
        for key in sorted(set(self.raw) - allowed, key=str):
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            self.bad(str(key), Text("unknown key (did you mean {close!r}?)", close=close[0]) if close
                     else Text("unknown key"))


def parse_connection(unit: str, r: _Reporter) -> Connection | None:
    raw = r.raw
    before = len(r.issues)
    host = raw.get("host")
    if "host" not in raw:
        r.missing("host", Text("the SFTP server's host name or IP address"))
    elif not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
        r.bad("host", Text("must be the SFTP server's host name or IP address (got {value!r})", value=host))
    port = raw.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        r.bad("port", Text("must be a TCP port between 1 and 65535 (got {value!r})", value=port))
    username = raw.get("username")
    if "username" not in raw:
        r.missing("username", Text("the account the hub logs in as"))
    elif not isinstance(username, str) or not username.strip():
        r.bad("username", Text("must be the account the hub logs in as (got {value!r})", value=username))
    secrets: dict[str, str | None] = {}
    for name in ("password_secret", "client_key_secret", "client_key_passphrase_secret"):
        value = raw.get(name)
        if name in raw and (not isinstance(value, str) or not NAME_RE.match(value)):
            r.bad(name, Text("must name a secret stored with `lgsp secret set NAME` (1-64 characters of "
                             "a-z 0-9 . _ -), never the secret itself"))
            value = None
        secrets[name] = value
    if "password_secret" not in raw and "client_key_secret" not in raw:
        r.missing("password_secret", Text("give password_secret or client_key_secret (or both): the name of a "
                                          "secret stored with `lgsp secret set NAME`"))
    if "client_key_passphrase_secret" in raw and "client_key_secret" not in raw:
        r.bad("client_key_passphrase_secret", Text("only meaningful together with client_key_secret"))
    pin = None
    if "host_key" not in raw:
        r.missing("host_key", HOST_KEY_HELP)
    else:
        pin = _host_key(raw["host_key"], r.issues, r.prefix)
    connect_timeout = r.number("connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT)
    timeout = r.number("timeout_seconds", DEFAULT_TIMEOUT)
    if len(r.issues) > before or pin is None:
        return None
    return Connection(unit=unit, host=str(host).strip(), port=int(port), username=str(username),
                      password_secret=secrets["password_secret"], client_key_secret=secrets["client_key_secret"],
                      client_key_passphrase_secret=secrets["client_key_passphrase_secret"], host_key=pin,
                      connect_timeout=connect_timeout, timeout=timeout)


# -- push targets ---------------------------------------------------------------------------------

def parse_target(unit: str, raw: Mapping[str, Any]) -> tuple[PushTarget | None, Issues]:
    """A `delivery.targets.<unit>` entry with `protocol: sftp`; issues use keys relative to it."""
    issues: Issues = []
    if not isinstance(raw, Mapping):
        return None, [("", Text("must be a mapping of settings"))]
    r = _Reporter(raw, issues, "", None)
    r.unknown(TARGET_KEYS)
    connection = parse_connection(unit, r)
    directory = r.folder("directory")
    if issues or connection is None:
        return None, issues
    return PushTarget(connection, directory), []


# -- inbound sources ------------------------------------------------------------------------------

def parse_adapter_section(section: Any) -> tuple[dict[str, InboundSource], Issues]:
    """The whole `adapters.sftp` section; issues carry full key paths from `adapters.sftp`."""
    base = "adapters.sftp"
    issues: Issues = []
    sources: dict[str, InboundSource] = {}
    if section is None:
        return sources, issues
    if not isinstance(section, Mapping):
        return sources, [(base, Text("must be a mapping whose inbound key maps units to their SFTP settings"))]
    _Reporter(section, issues, f"{base}.", None).unknown(ADAPTER_KEYS)
    inbound = section.get("inbound") or {}
    if not isinstance(inbound, Mapping):
        return sources, [*issues, (f"{base}.inbound", Text("must map unit identifiers to their SFTP settings"))]
    for unit, raw in inbound.items():
        block = f"{base}.inbound.{unit}"
        try:
            check_identifier(str(unit), legacy=True)
        except InvalidIdentifier as exc:
            issues.append((block, exc.reason))
            continue
        if not isinstance(raw, Mapping):
            issues.append((block, Text("must be a mapping of settings (host, username, host_key, outbox, ...)")))
            continue
        before = len(issues)
        # A missing key has no YAML line of its own, so it is reported at the unit's block.
        r = _Reporter(raw, issues, f"{block}.", block)
        r.unknown(INBOUND_KEYS)
        connection = parse_connection(str(unit), r)
        outbox = r.folder("outbox")
        done = r.folder("done", posixpath.join(outbox or ".", "done"))
        failed = r.folder("failed", posixpath.join(outbox or ".", "failed"))
        if outbox and done and failed and len({outbox, done, failed}) != 3:
            r.bad("done" if done in (outbox, failed) else "failed",
                  Text("outbox, done and failed must be three different folders"))
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            r.bad("enabled", Text("must be true or false (got {value!r})", value=enabled))
        interval = r.number("poll_interval_seconds", DEFAULT_POLL_INTERVAL)
        max_files = raw.get("max_files_per_poll", DEFAULT_MAX_FILES)
        if isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1:
            r.bad("max_files_per_poll", Text("must be an integer of 1 or more (got {value!r})", value=max_files))
        if len(issues) > before or connection is None:
            continue
        sources[str(unit)] = InboundSource(connection=connection, enabled=bool(enabled), outbox=outbox, done=done,
                                           failed=failed, poll_interval=interval, max_files_per_poll=int(max_files))
    return sources, issues
