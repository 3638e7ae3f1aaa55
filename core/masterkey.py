"""The master key: encrypts HMAC secrets at rest (AES-256-GCM).

The key lives in a file readable only by the hub's user (mode 0600), created on first start, never
in the database and never in the repository. Each ciphertext is bound to the access key it belongs
to (associated data), so a secret copied onto another key row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_HEADER = "lgsp-master-key-v1:"


class MasterKeyError(Exception):
    pass


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise MasterKeyError("master key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (e.g. transfer URLs), independent of the sealing key."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=f"lgsp/{purpose}".encode()).derive(self._key)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))

    def seal(self, secret: bytes, context: str) -> bytes:
        """Seal raw bytes (a data key) bound to `context`; same format as `encrypt`."""
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret, context.encode("utf-8"))

    def unseal(self, blob: bytes, context: str) -> bytes:
        if len(blob) < 29 or blob[:1] != _VERSION:
            raise MasterKeyError("not a sealed secret of this version")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context.encode("utf-8"))
        except InvalidTag as exc:
            raise MasterKeyError("secret does not decrypt with this master key (wrong key file?)") from exc

    def decrypt(self, blob: bytes, context: str) -> str:
        if len(blob) < 29 or blob[:1] != _VERSION:
            raise MasterKeyError("not a sealed secret of this version")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag as exc:
            raise MasterKeyError("secret does not decrypt with this master key (wrong key file?)") from exc

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read the key file, creating it (0600, never overwritten) if it does not exist."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load(path)
        key = os.urandom(32)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(_HEADER + base64.b64encode(key).decode("ascii") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(
                f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")
        text = path.read_text(encoding="ascii").strip()
        if not text.startswith(_HEADER):
            raise MasterKeyError(f"{path} is not an lgsp master key file")
        try:
            key = base64.b64decode(text[len(_HEADER):], validate=True)
        except ValueError as exc:
            raise MasterKeyError(f"{path} is damaged (bad base64)") from exc
        return cls(key)
