"""Built-in signature algorithms: HMAC-SHA256, HMAC-SHA1, RSA-SHA256 (registered as a plugin).

They come through the same hook a fourth algorithm would, so the hub has no special case for them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lgsp.plugins.hookspecs import hookimpl


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


class HmacAlgorithm:
    shared_secret = True

    def __init__(self, name: str, digest: Any) -> None:
        self.name = name
        self._digest = digest

    def new_secret(self) -> str:
        return secrets.token_urlsafe(30)  # 40 characters, 240 bits

    def sign(self, signing_key: str | bytes, message: bytes) -> bytes:
        return hmac.new(_as_bytes(signing_key), message, self._digest).digest()

    def verify(self, verification_key: str | bytes, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(verification_key, message), signature)


@lru_cache(maxsize=4096)
def _public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


@lru_cache(maxsize=64)
def _private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


class RsaSha256:
    """RSASSA-PKCS1-v1_5 with SHA-256: units keep the private key, the hub only the public one."""

    name = "RSA-SHA256"
    shared_secret = False
    min_bits = 2048

    def sign(self, signing_key: str | bytes, message: bytes) -> bytes:
        return _private_key(_as_bytes(signing_key)).sign(message, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, verification_key: str | bytes, message: bytes, signature: bytes) -> bool:
        try:
            _public_key(_as_bytes(verification_key)).verify(signature, message, padding.PKCS1v15(),
                                                            hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def generate_keypair(self, bits: int) -> tuple[str, str]:
        """(private PEM, public PEM) for a unit that has no key pair of its own."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
        return private, self._public_pem(key.public_key())

    def check_public_key(self, pem: str) -> str:
        """Normalised PEM of a unit-supplied public key; ValueError if unusable."""
        try:
            key = serialization.load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError) as exc:
            raise ValueError("not a PEM-encoded public key") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("not an RSA public key")
        if key.key_size < self.min_bits:
            raise ValueError(f"RSA key of {key.key_size} bits is too short (at least {self.min_bits})")
        return self._public_pem(key)

    @staticmethod
    def _public_pem(key: rsa.RSAPublicKey) -> str:
        return key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


HMAC_SHA256 = HmacAlgorithm("HMAC-SHA256", hashlib.sha256)
HMAC_SHA1 = HmacAlgorithm("HMAC-SHA1", hashlib.sha1)
RSA_SHA256 = RsaSha256()
BUILTIN_ALGORITHMS = (HMAC_SHA256, HMAC_SHA1, RSA_SHA256)


@hookimpl
def lgsp_signature_algorithms() -> list[Any]:
    return list(BUILTIN_ALGORITHMS)
