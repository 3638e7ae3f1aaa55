"""The signed-request protocol (LGSP1): the one place the string to sign is built.

The hub verifies with it, the Python client and the hub's own outgoing pushes sign with it, and
every adapter (REST, SOAP, ...) shares it. docs/integrator-guide.md describes the same rules for
people writing clients in other languages; tests/test_signing.py holds the worked examples.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote_to_bytes

H_KEY = "X-LGSP-Key"
H_DATE = "X-LGSP-Date"
H_NONCE = "X-LGSP-Nonce"
H_CONTENT = "X-LGSP-Content-SHA256"
H_SESSION = "X-LGSP-Session"
H_SIGNATURE = "X-LGSP-Signature"
SIGNED_HEADERS = (H_KEY, H_DATE, H_NONCE, H_CONTENT, H_SESSION, H_SIGNATURE)

SCHEME = "LGSP1"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: `YYYY-MM-DDTHH:MM:SSZ`, optionally with 1-9 fractional digits before the Z (what JavaScript's
#: `Date.toISOString()` and Java's `Instant.toString()` write). ASCII digits only, nothing after the Z.
DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z")
DATE_SHAPE = "YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS.fffZ (1 to 9 fractional digits)"
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ALG_RE = re.compile(r"^[A-Z0-9-]{1,32}$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_UNRESERVED = "-._~"  # with ASCII letters and digits, which quote() always keeps


def canonical_query(raw_query: str) -> str:
    """Canonical form of a raw query string (LGSP1 line 4).

    Split on `&`, split each part at the first `=`, percent-decode (a `+` stays `+`), re-encode
    with RFC 3986 rules (uppercase hex), sort by encoded name then encoded value, join.
    """
    if not raw_query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((_encode(name), _encode(value)))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _encode(component: str) -> str:
    return quote(unquote_to_bytes(component), safe=_UNRESERVED)


def string_to_sign(algorithm: str, method: str, path: str, raw_query: str, access_key: str, date: str,
                   nonce: str, session: str, content_sha256: str) -> bytes:
    lines = (f"{SCHEME}-{algorithm}", method.upper(), path, canonical_query(raw_query), access_key, date,
             nonce, session, content_sha256)
    return "\n".join(lines).encode("utf-8")


def format_date(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(DATE_FORMAT)


def parse_date(value: str) -> datetime:
    """The moment an `X-LGSP-Date` names; ValueError unless it has one of the accepted shapes.

    Only the time is read here: the string to sign always carries the header value as sent, so a
    client never has to re-format a date it took from its platform's clock.
    """
    match = DATE_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"date must be {DATE_SHAPE}")
    year, month, day, hour, minute, second, fraction = match.groups()
    # Beyond microseconds the digits only make the date more precise than we compare. The fields are
    # given to datetime() directly (every request parses one date; strptime costs ten times more and
    # refuses exactly the same moments: tests/test_dates.py compares the two over every month and day).
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
    except ValueError:  # the right shape but no such moment (month 13, 25 o'clock, ...)
        raise ValueError(f"date must be {DATE_SHAPE}; {value!r} is not a valid time") from None


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters of [A-Za-z0-9_-]


def parse_signature_header(value: str) -> tuple[str, bytes]:
    """`<ALG> <base64>` → (ALG, raw signature); ValueError when malformed."""
    alg, sep, b64 = value.strip().partition(" ")
    if not sep or not ALG_RE.match(alg):
        raise ValueError("signature must be '<ALG> <base64 signature>'")
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError("signature is not valid base64") from exc
    if not raw:
        raise ValueError("signature is empty")
    return alg, raw


@runtime_checkable
class SignatureAlgorithm(Protocol):
    """One algorithm of the protocol; built-ins and plugins implement it.

    `shared_secret` algorithms sign and verify with the same secret (the hub stores it encrypted);
    the others sign with a private key and verify with the public key the hub stores.
    """

    name: str
    shared_secret: bool

    def sign(self, signing_key: str | bytes, message: bytes) -> bytes: ...

    def verify(self, verification_key: str | bytes, message: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class SignedRequest:
    """The header values of one signed request, as the hub receives them."""

    method: str
    path: str
    raw_query: str
    access_key: str
    date: str
    nonce: str
    session: str
    content_sha256: str
    algorithm: str
    signature: bytes

    @cached_property
    def sent_at(self) -> datetime:
        """The moment `date` names (parsed once per request; ValueError if it names none)."""
        return parse_date(self.date)

    def message(self) -> bytes:
        return string_to_sign(self.algorithm, self.method, self.path, self.raw_query, self.access_key,
                              self.date, self.nonce, self.session, self.content_sha256)


class Signer:
    """Signs outgoing requests with one access key (used by clients and by the hub's pushes)."""

    def __init__(self, access_key: str, algorithm: SignatureAlgorithm, signing_key: str | bytes) -> None:
        self.access_key = access_key
        self.algorithm = algorithm
        self._signing_key = signing_key

    def __repr__(self) -> str:  # never show the key material
        return f"Signer({self.access_key!r}, {self.algorithm.name})"

    def sign_bytes(self, message: bytes) -> bytes:
        """A raw signature of `message` (e.g. the audit chain's seals), with the same key."""
        return self.algorithm.sign(self._signing_key, message)

    def headers(self, method: str, path: str, raw_query: str = "", content_sha256: str = EMPTY_SHA256,
                *, session: str | None = None, date: str | None = None,
                nonce: str | None = None) -> dict[str, str]:
        date = date or format_date()
        nonce = nonce or new_nonce()
        message = string_to_sign(self.algorithm.name, method, path, raw_query, self.access_key, date, nonce,
                                 session or "", content_sha256)
        signature = base64.b64encode(self.algorithm.sign(self._signing_key, message)).decode("ascii")
        out = {H_KEY: self.access_key, H_DATE: date, H_NONCE: nonce, H_CONTENT: content_sha256,
               H_SIGNATURE: f"{self.algorithm.name} {signature}"}
        if session:
            out[H_SESSION] = session
        return out


#: Query parameter by which a request the hub makes (a push, a proxied call) signs metadata headers
#: that are not lines of the string to sign.
META_PARAM = "lgsp_meta"


def metadata_digest(headers: Mapping[str, str], names: Sequence[str]) -> str:
    """Hex SHA-256 of the lines `name:value` (lowercase name, value as sent, empty when absent) of
    `names`, in that order, joined by newlines. Sent as `lgsp_meta` in the signed query."""
    lines = "\n".join(f"{name.lower()}:{headers.get(name, '')}" for name in names)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()
