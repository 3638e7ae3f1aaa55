"""The master key: seals secrets at rest (AES-256-GCM) — HMAC secrets, adapter secrets, data keys.

The key lives in a file readable only by the hub's user (mode 0600), created on first start, never
in the database and never in the repository. Each ciphertext is bound to what it belongs to
(associated data), so a secret copied onto another row does not decrypt.

The file is a *keyring*: one key per line, the first seals, the others (keys being retired by
`lgsp masterkey rotate`) only unseal. Each sealed value names the key that sealed it (an 8-byte
key id), so a node meeting a value sealed under a key it does not hold re-reads the file: nodes
sharing the file follow a rotation without a restart. Before sealing or unsealing, the file's
identity (inode, size, time) is checked, so new values are sealed under the newest key on every
node and a retired key is dropped from memory too.

Optionally the whole keyring is itself sealed under a key-encryption key (KEK) kept elsewhere:
a file (e.g. on removable or separately mounted storage), an environment variable (set by the
service manager from a vault), or an AES key that never leaves a PKCS#11 token (an HSM, a smart
card); see docs/encryption.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lgsp.core.i18n import Text

_V1 = b"\x01"  # nonce | ciphertext (which key: try them in turn)
_V2 = b"\x02"  # key id (8) | nonce | ciphertext
_HEADER = "lgsp-master-key-v1:"
_WRAPPED = "lgsp-master-keyring-kek-v1:"
KEY_ID_LEN = 8
T = TypeVar("T")


class MasterKeyError(Exception):
    """Its message is a `Text` (`str()` is the English; the CLI prints it with `said`)."""


def _readable_by_others(path: Path, mode: int) -> MasterKeyError:
    return MasterKeyError(Text("{path} is readable by other users (mode {mode}); run: chmod 600 {path}", path=path,
                               mode=format(stat.S_IMODE(mode), "o")))


def joined(parts: Sequence[str]) -> str:
    """Messages joined with "; ", each in the reader's language when it is a `Text`."""
    out: str = parts[0] if parts else ""
    for part in parts[1:]:
        out = Text("{first}; {then}", first=out, then=part)
    return out


def key_id(key: bytes) -> bytes:
    """A short public name of a key (reveals nothing of it)."""
    return hmac.new(key, b"lgsp/master-key-id", hashlib.sha256).digest()[:KEY_ID_LEN]


class Kek:
    """A key-encryption key: seals the keyring file's content, so the file alone is not enough."""

    def __init__(self, key: bytes, source: str) -> None:
        if len(key) != 32:
            raise MasterKeyError(Text("the key-encryption key from {source} must be 32 bytes (Base64 of them)",
                                      source=source))
        self._aead = AESGCM(key)
        self.source = source

    def __repr__(self) -> str:
        return f"Kek(<hidden>, from {self.source})"

    @classmethod
    def from_setting(cls, setting: str, env: dict[str, str] | None = None) -> Kek | None:
        """`file:/path`, `env:NAME`, or empty (no KEK). PKCS#11 is documented, not implemented."""
        setting = setting.strip()
        if not setting:
            return None
        kind, _, where = setting.partition(":")
        if kind == "file":
            path = Path(where)
            try:
                mode = path.stat().st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise _readable_by_others(path, mode)
                text = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise MasterKeyError(Text("cannot read the key-encryption key file {path}: {reason}",
                                          path=path, reason=exc)) from exc
            return cls(_b64(text, Text("file {path}", path=path)), Text("file {path}", path=path))
        if kind == "env":
            value = (os.environ if env is None else env).get(where)
            if not value:
                raise MasterKeyError(Text("the environment variable {name} (key-encryption key) is not set",
                                          name=where))
            return cls(_b64(value.strip(), Text("variable {name}", name=where)), Text("variable {name}", name=where))
        if kind == "pkcs11":
            return Pkcs11Kek.from_uri(setting, env)
        raise MasterKeyError(Text("security.master_key_kek must be file:/path, env:NAME, pkcs11:… or empty"))

    def wrap(self, text: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, text, b"lgsp/master-keyring")

    def unwrap(self, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], b"lgsp/master-keyring")
        except InvalidTag as exc:
            raise MasterKeyError(Text("the master key file does not open with the key-encryption key from {source}",
                                      source=self.source)) from exc


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise MasterKeyError(Text("the key from {source} is not Base64", source=where)) from exc


def _secret_from(source: str, env: dict[str, str] | None, what: str) -> str:
    """`file:/path` (mode 0600) or `env:NAME`: where a secret such as a token PIN is read from."""
    kind, _, where = source.partition(":")
    if kind == "env" and where:
        value = (os.environ if env is None else env).get(where)
        if not value:
            raise MasterKeyError(Text("the environment variable {name} ({what}) is not set", name=where, what=what))
        return value.strip()
    if kind == "file" and where:
        path = Path(where)
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise _readable_by_others(path, mode)
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise MasterKeyError(Text("cannot read {what} from {path}: {reason}",
                                      what=what, path=path, reason=exc)) from exc
    raise MasterKeyError(Text("{what}: must be file:/path or env:NAME", what=what))


def parse_pkcs11_uri(uri: str) -> dict[str, str]:
    """The attributes of a PKCS#11 URI (RFC 7512): `pkcs11:token=T;object=K?module-path=M&pin-source=S`.
    Path attributes are separated by `;`, query attributes by `&`, values percent-encoded."""
    from urllib.parse import unquote

    if not uri.startswith("pkcs11:"):
        raise MasterKeyError(Text("a PKCS#11 URI starts with pkcs11:"))
    path, _, query = uri[len("pkcs11:"):].partition("?")
    out: dict[str, str] = {}
    for part in [p for p in path.split(";") if p] + [q for q in query.split("&") if q]:
        name, eq, value = part.partition("=")
        if not eq or not name:
            raise MasterKeyError(Text("security.master_key_kek: {part!r} is not name=value", part=part))
        out[name.strip()] = unquote(value)
    return out


class Pkcs11Kek(Kek):
    """A KEK that never leaves a PKCS#11 token: an AES key (by label) on a token (by label).

    Envelope: each write draws a fresh 32-byte key that seals the keyring locally with AES-256-GCM,
    and the token encrypts that key (CKM_AES_CBC_PAD, a random IV from the token). Reading asks the
    token to decrypt it; a wrong or altered blob fails the local GCM tag. So the token is used only
    when the key file is read or written (start, rotation), never on the request path, and any
    token offering AES with CBC_PAD works (SoftHSM2, most HSMs and smart cards).

    The PIN comes from `pin-source` (file:/path, 0600, or env:NAME): never from the YAML itself.
    """

    _MAGIC = b"P11\x01"

    def __init__(self, module: str, token: str, key_label: str, pin: str, source: str) -> None:
        self.module, self.token_label, self.key_label = module, token, key_label
        self._pin = pin
        self.source = source

    def __repr__(self) -> str:
        return f"Pkcs11Kek(token {self.token_label!r}, key {self.key_label!r})"

    @classmethod
    def from_uri(cls, uri: str, env: dict[str, str] | None = None) -> Pkcs11Kek:
        attrs = parse_pkcs11_uri(uri)
        problems = pkcs11_uri_problems(attrs)
        if problems:
            raise MasterKeyError(Text("{where}: {why}", where="security.master_key_kek", why=joined(problems)))
        pin = _secret_from(attrs["pin-source"], env, Text("the PKCS#11 token PIN"))
        source = Text("PKCS#11 token {token!r}, key {key!r}", token=attrs["token"], key=attrs["object"])
        kek = cls(attrs["module-path"], attrs["token"], attrs["object"], pin, source)
        kek._session(lambda key: None)  # fail at start, in one line, rather than at the first read
        return kek

    def _session(self, use: Callable[[Any], T]) -> T:
        try:
            import pkcs11
            from pkcs11 import KeyType, ObjectClass
            from pkcs11.exceptions import PKCS11Error
        except ImportError as exc:
            raise MasterKeyError(Text("a PKCS#11 key-encryption key needs python-pkcs11: pip install 'lgsp[pkcs11]'")
                                 ) from exc
        try:
            lib = pkcs11.lib(self.module)
        except Exception as exc:  # the library raises several kinds for a module it cannot load
            raise MasterKeyError(Text("cannot load the PKCS#11 module {module}: {reason}",
                                      module=self.module, reason=exc)) from exc
        try:
            token = lib.get_token(token_label=self.token_label)
            with token.open(user_pin=self._pin) as session:
                key = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                                      label=self.key_label)
                return use((session, key))
        except PKCS11Error as exc:
            what = type(exc).__name__
            reason = f"{what}: {exc}" if str(exc) else what
            raise MasterKeyError(Text("{source}: {reason} (module, token label, key label or PIN?)",
                                      source=self.source, reason=reason)) from exc

    def wrap(self, text: bytes) -> bytes:
        local = os.urandom(32)

        def seal(found: Any) -> bytes:
            session, key = found
            iv = bytes(session.generate_random(128))
            return iv + bytes(key.encrypt(local, mechanism_param=iv))

        sealed = self._session(seal)
        nonce = os.urandom(12)
        body = AESGCM(local).encrypt(nonce, text, b"lgsp/master-keyring/pkcs11")
        return self._MAGIC + len(sealed).to_bytes(2, "big") + sealed + nonce + body

    def unwrap(self, blob: bytes) -> bytes:
        if blob[:4] != self._MAGIC or len(blob) < 6:
            raise MasterKeyError(Text("the master key file was not sealed by a PKCS#11 key ({source} is set)",
                                      source=self.source))
        n = int.from_bytes(blob[4:6], "big")
        sealed, rest = blob[6:6 + n], blob[6 + n:]
        failed = MasterKeyError(Text("the master key file does not open with the key-encryption key from {source}",
                                     source=self.source))

        def open_(found: Any) -> bytes:
            from pkcs11.exceptions import PKCS11Error

            _, key = found
            try:
                return bytes(key.decrypt(sealed[16:], mechanism_param=sealed[:16]))
            except PKCS11Error as exc:  # bad padding: another key sealed it
                raise failed from exc

        local = self._session(open_)
        if len(local) != 32 or len(rest) < 12 + 16:
            raise failed
        try:
            return AESGCM(local).decrypt(rest[:12], rest[12:], b"lgsp/master-keyring/pkcs11")
        except InvalidTag as exc:
            raise failed from exc


def pkcs11_uri_problems(attrs: dict[str, str]) -> list[str]:
    """What a PKCS#11 KEK setting lacks or must not carry (checked with the config too)."""
    out: list[str] = [Text("{name} is missing ({hint})", name=name, hint=hint) for name, hint in (
        ("module-path", "?module-path=/usr/lib/softhsm/libsofthsm2.so"), ("token", "token=LABEL"),
        ("object", "object=KEY-LABEL"), ("pin-source", Text("&pin-source=file:/path or env:NAME")))
        if not attrs.get(name)]
    if "pin-value" in attrs:
        out.append(Text("pin-value is refused: the PIN must not sit in the config; use pin-source=file:/path or "
                        "env:NAME"))
    ps = attrs.get("pin-source", "")
    if ps and not (ps.startswith(("file:", "env:")) and len(ps) > 5):
        out.append(Text("pin-source must be file:/path or env:NAME"))
    return out


class MasterKey:
    def __init__(self, key: bytes, *, older: Sequence[bytes] = (), path: Path | None = None,
                 kek: Kek | None = None) -> None:
        self._lock = threading.Lock()
        self.path = path
        self.kek = kek
        self._stamp: tuple[int, int, int] | None = None
        self._allow_plain = False
        self._set([key, *older])

    def _set(self, keys: Sequence[bytes]) -> None:
        for k in keys:
            if len(k) != 32:
                raise MasterKeyError(Text("master key must be 32 bytes"))
        self._keys = list(keys)
        self._by_id = {key_id(k): AESGCM(k) for k in keys}
        self._primary_id = key_id(keys[0])
        # After `_keys` (see `derive_all`): what was derived from the keys held before goes with them.
        self._derived: dict[str, tuple[list[bytes], tuple[bytes, ...]]] = {}

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    @property
    def primary_id(self) -> str:
        return self._primary_id.hex()

    @property
    def key_ids(self) -> list[str]:
        """Ids of the keys held, the sealing one first."""
        return [key_id(k).hex() for k in self._keys]

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (e.g. transfer URLs), from the sealing key."""
        return self.derive_all(purpose)[0]

    def derive_all(self, purpose: str) -> list[bytes]:
        """The purpose's key from every key held (sealing key first): what was derived before a
        rotation still checks until the old key is retired. Follows the file (see `refresh`).

        Derived once per purpose and key set (transfer URLs ask on every make and check), and
        forgotten whenever the key set changes (the file re-read, a rotation, a retirement): a key
        derived from a retired key goes from memory with it. Keeping them does not widen what a
        reader of this process's memory gets: the master keys they derive from are held too.
        """
        self.refresh()
        cache = self._derived  # read before `_keys` (`_set` writes them the other way round), so
        keys = self._keys      # a new key set's cache never receives keys derived from the old one
        found = cache.get(purpose)
        if found is None or found[0] is not keys:
            info = f"lgsp/{purpose}".encode()
            found = cache[purpose] = (keys, tuple(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                                       info=info).derive(k) for k in keys))
        return list(found[1])

    # -- sealing -------------------------------------------------------------------------------
    def seal(self, secret: bytes, context: str) -> bytes:
        """Seal raw bytes bound to `context`, under the newest key of the file."""
        self.refresh()
        nonce = os.urandom(12)
        aead = self._by_id[self._primary_id]
        return _V2 + self._primary_id + nonce + aead.encrypt(nonce, secret, context.encode("utf-8"))

    def unseal(self, blob: bytes, context: str) -> bytes:
        blob = bytes(blob)
        self.refresh()  # a stat: a key retired in the file is dropped from memory too
        if blob[:1] == _V2 and len(blob) >= 1 + KEY_ID_LEN + 12 + 16:
            kid = blob[1:1 + KEY_ID_LEN]
            aead = self._by_id.get(kid)
            if aead is None and self.refresh(force=True):
                aead = self._by_id.get(kid)
            if aead is None:
                raise MasterKeyError(Text("secret sealed under master key {id}, which this hub does not hold (retired, "
                                          "or the wrong key file?)", id=kid.hex()))
            try:
                return aead.decrypt(blob[9:21], blob[21:], context.encode("utf-8"))
            except InvalidTag as exc:
                raise MasterKeyError(Text("secret does not decrypt with its master key (altered, or moved?)")) from exc
        if blob[:1] == _V1 and len(blob) >= 29:
            for aead in self._by_id.values():
                try:
                    return aead.decrypt(blob[1:13], blob[13:], context.encode("utf-8"))
                except InvalidTag:
                    continue
            raise MasterKeyError(Text("secret does not decrypt with this master key (wrong key file?)"))
        raise MasterKeyError(Text("not a sealed secret of a known version"))

    def sealed_under_primary(self, blob: bytes) -> bool:
        """Does this sealed value already use the sealing key (nothing to re-seal)?"""
        blob = bytes(blob)
        return blob[:1] == _V2 and blob[1:1 + KEY_ID_LEN] == self._primary_id

    def encrypt(self, plaintext: str, context: str) -> bytes:
        return self.seal(plaintext.encode("utf-8"), context)

    def decrypt(self, blob: bytes, context: str) -> str:
        return self.unseal(blob, context).decode("utf-8")

    # -- the file ------------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the key file if it changed (another node or `lgsp masterkey rotate` wrote it).
        True when the keys changed."""
        if self.path is None:
            return False
        try:
            st = self.path.stat()
        except OSError:
            return False
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp and not force:
            return False
        with self._lock:
            keys = _read_keys(self.path, self.kek, allow_plain=self._allow_plain)
            changed = keys != self._keys
            if changed:
                self._set(keys)
            self._stamp = stamp
        return changed

    @classmethod
    def load_or_create(cls, path: Path, kek: Kek | None = None) -> MasterKey:
        """Read the key file, creating it (0600, never overwritten) if it does not exist."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load(path, kek)
        key = os.urandom(32)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_render([key], kek))
            fh.flush()
            os.fsync(fh.fileno())
        found = cls(key, path=path, kek=kek)
        found.refresh()
        return found

    @classmethod
    def load(cls, path: Path, kek: Kek | None = None, *, allow_plain: bool = False) -> MasterKey:
        """Read the key file. With a KEK the file must be sealed under it, except with `allow_plain`
        (`lgsp masterkey rotate`, which then writes it sealed)."""
        keys = _read_keys(path, kek, allow_plain=allow_plain)
        found = cls(keys[0], older=keys[1:], path=path, kek=kek)
        found._allow_plain = allow_plain
        found.refresh()
        return found

    def write(self, keys: Sequence[bytes]) -> None:
        """Replace the key file atomically (0600) with these keys, the first sealing; then use them."""
        assert self.path is not None
        write_keyring(self.path, keys, self.kek)
        self.refresh(force=True)

    def new_primary(self) -> bytes:
        """Rotation, step 1: a fresh key seals from now on; the current ones stay to unseal."""
        fresh = os.urandom(32)
        self.write([fresh, *self._keys])
        return key_id(fresh)

    def retire_older(self) -> list[str]:
        """Rotation, last step: keep only the sealing key. Returns the ids of the keys removed."""
        gone = [key_id(k).hex() for k in self._keys[1:]]
        self.write(self._keys[:1])
        return gone


def _render(keys: Sequence[bytes], kek: Kek | None) -> bytes:
    text = "".join(_HEADER + base64.b64encode(k).decode("ascii") + "\n" for k in keys).encode("ascii")
    if kek is None:
        return text
    return (_WRAPPED + base64.b64encode(kek.wrap(text)).decode("ascii") + "\n").encode("ascii")


def write_keyring(path: Path, keys: Sequence[bytes], kek: Kek | None) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_render(keys, kek))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_keys(path: Path, kek: Kek | None, *, allow_plain: bool = False) -> list[bytes]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _readable_by_others(path, mode)
    text = path.read_text(encoding="ascii").strip()
    if text.startswith(_WRAPPED):
        if kek is None:
            raise MasterKeyError(Text("{path} is sealed under a key-encryption key; set security.master_key_kek",
                                      path=path))
        try:
            blob = base64.b64decode(text[len(_WRAPPED):], validate=True)
        except ValueError as exc:
            raise MasterKeyError(Text("{path} is damaged (bad base64)", path=path)) from exc
        text = kek.unwrap(blob).decode("ascii").strip()
    elif kek is not None and not allow_plain:
        raise MasterKeyError(Text("{path} is not sealed under the key-encryption key; run: lgsp masterkey rotate (it "
                                  "writes the file sealed)", path=path))
    keys: list[bytes] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith(_HEADER):
            raise MasterKeyError(Text("{path} is not an lgsp master key file", path=path))
        try:
            keys.append(base64.b64decode(line[len(_HEADER):], validate=True))
        except ValueError as exc:
            raise MasterKeyError(Text("{path} is damaged (bad base64)", path=path)) from exc
    if not keys:
        raise MasterKeyError(Text("{path} holds no key", path=path))
    for k in keys:
        if len(k) != 32:
            raise MasterKeyError(Text("master key must be 32 bytes"))
    return keys
