"""A minimal lgsp client written from the protocol specification alone (sections 5 and 6).

It deliberately imports nothing from ``lgsp``: it is the "someone else's client" of the conformance
test. Every knob a test needs to break a request on purpose (date, nonce, session, declared hash,
algorithm, omitted or malformed headers) is a keyword argument of :meth:`SpecClient.request`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHMS = ("HMAC-SHA256", "HMAC-SHA1", "RSA-SHA256")
SIGNED_HEADERS = ("X-LGSP-Key", "X-LGSP-Date", "X-LGSP-Nonce", "X-LGSP-Content-SHA256", "X-LGSP-Signature")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PROBLEM_FIELDS = ("type", "title", "status", "code", "detail")
DELIVERY_STATES = ("waiting", "queued", "notified", "fetched", "delivered", "failed", "expired", "cancelled")
_UNRESERVED = "-._~"  # plus ALPHA / DIGIT, which quote() always keeps


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def format_date(moment: datetime | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC (now when ``moment`` is None)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    """A fresh nonce: 22 characters of ``[A-Za-z0-9_-]``."""
    return secrets.token_urlsafe(16)


def _rfc3986(raw: str) -> str:
    """Percent-decode (``+`` stays ``+``) and re-encode with RFC 3986 unreserved characters kept."""
    return urllib.parse.quote(urllib.parse.unquote_to_bytes(raw), safe=_UNRESERVED)


def canonical_query(raw_query: str) -> str:
    """Spec §5 line 4: the canonical form of a raw query string (without the ``?``).

    Sorting is done on the re-encoded names and values (the spec says "sort by name then value"
    right after re-encoding; see the report for this ambiguity).
    """
    if not raw_query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((_rfc3986(name), _rfc3986(value)))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def string_to_sign(
    algorithm: str,
    method: str,
    path: str,
    raw_query: str,
    key: str,
    date: str,
    nonce: str,
    session: str | None,
    content_sha256: str,
) -> str:
    """Spec §5: the nine lines joined by ``\\n`` (no trailing newline)."""
    return "\n".join(
        [
            f"LGSP1-{algorithm}",
            method.upper(),
            path,
            canonical_query(raw_query),
            key,
            date,
            nonce,
            session or "",
            content_sha256,
        ]
    )


def sign(algorithm: str, secret: str | rsa.RSAPrivateKey, text: str) -> str:
    """Base64 signature of ``text`` (UTF-8) with ``algorithm``."""
    message = text.encode("utf-8")
    if algorithm in ("HMAC-SHA256", "HMAC-SHA1"):
        if not isinstance(secret, str):
            raise TypeError("HMAC needs the secret string")
        digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
        raw = hmac.new(secret.encode("utf-8"), message, digest).digest()
    elif algorithm == "RSA-SHA256":
        if not isinstance(secret, rsa.RSAPrivateKey):
            raise TypeError("RSA-SHA256 needs the private key")
        raw = secret.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError(f"unknown algorithm {algorithm}")
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Credentials:
    """An access key with either its HMAC secret or the unit's RSA private key."""

    key: str
    algorithm: str
    secret: str | None = None
    private_key: rsa.RSAPrivateKey | None = None
    unit: str = ""

    def signing_material(self) -> str | rsa.RSAPrivateKey:
        """What :func:`sign` needs for this key's own algorithm."""
        material = self.private_key if self.algorithm == "RSA-SHA256" else self.secret
        if material is None:
            raise ValueError(f"no signing material for {self.key}")
        return material


@dataclass
class Response:
    """Status, headers and body of one hub answer."""

    status: int
    headers: dict[str, str]
    body: bytes
    sent_headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        """Media type without parameters, lowercase."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None

    @property
    def code(self) -> str | None:
        """The ``code`` of a problem response, if any."""
        data = self.json if self.content_type.endswith("json") else None
        return data.get("code") if isinstance(data, dict) else None

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.content_type}, {self.body[:300]!r})"


_DEFAULT = object()


class SpecClient:
    """Signs and sends lgsp requests; one instance per access key."""

    def __init__(self, base_url: str, credentials: Credentials, *, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.session: str | None = None

    # -- transport -------------------------------------------------------------------------------

    def _split(self, target: str) -> tuple[str, str, str]:
        """(netloc, path, raw query) of a relative or absolute URL."""
        url = urllib.parse.urlsplit(urllib.parse.urljoin(self.base_url + "/", target))
        return url.netloc, url.path, url.query

    def signed_headers(
        self,
        method: str,
        path: str,
        raw_query: str,
        body: bytes,
        *,
        date: str | None = None,
        nonce: str | None = None,
        session: Any = _DEFAULT,
        content_sha256: str | None = None,
        algorithm: str | None = None,
        material: str | rsa.RSAPrivateKey | None = None,
        key: str | None = None,
    ) -> dict[str, str]:
        """The ``X-LGSP-*`` headers for one request (overrides let tests forge bad ones)."""
        creds = self.credentials
        key = key or creds.key
        algorithm = algorithm or creds.algorithm
        date = date or format_date()
        nonce = nonce or new_nonce()
        session_value: str | None = self.session if session is _DEFAULT else session
        content_sha256 = content_sha256 or sha256_hex(body)
        text = string_to_sign(algorithm, method, path, raw_query, key, date, nonce, session_value, content_sha256)
        signature = sign(algorithm, material if material is not None else creds.signing_material(), text)
        headers = {
            "X-LGSP-Key": key,
            "X-LGSP-Date": date,
            "X-LGSP-Nonce": nonce,
            "X-LGSP-Content-SHA256": content_sha256,
            "X-LGSP-Signature": f"{algorithm} {signature}",
        }
        if session_value:
            headers["X-LGSP-Session"] = session_value
        return headers

    def request(
        self,
        method: str,
        target: str,
        body: bytes | Any = None,
        *,
        signed: bool = True,
        omit: Iterable[str] = (),
        replace: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
        read_limit: int | None = None,
        **sign_options: Any,
    ) -> Response:
        """Send one request; ``body`` is bytes or a JSON-able value (sent as UTF-8 JSON).

        ``omit`` drops headers, ``replace`` overwrites them after signing, ``extra`` adds plain
        headers (e.g. ``Range``); ``read_limit`` reads only that many body bytes and drops the
        connection (an interrupted download); ``sign_options`` go to :meth:`signed_headers`.
        """
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        netloc, path, raw_query = self._split(target)
        headers: dict[str, str] = {}
        if signed:
            headers.update(self.signed_headers(method, path, raw_query, payload, **sign_options))
        if body is not None and not isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
        omitted = {name.lower() for name in omit}
        headers = {k: v for k, v in headers.items() if k.lower() not in omitted}
        headers.update(replace or {})
        headers.update(extra or {})
        target = path + (f"?{raw_query}" if raw_query else "")
        return self._send(netloc, method, target, payload, headers, read_limit)

    def _send(
        self,
        netloc: str,
        method: str,
        request_target: str,
        payload: bytes,
        headers: dict[str, str],
        read_limit: int | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        try:
            if payload or method in ("POST", "PUT"):
                headers = {**headers, "Content-Length": str(len(payload))}
            conn.request(method, request_target, body=payload or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read(read_limit) if read_limit is not None else answer.read()
            received = {name.lower(): value for name, value in answer.getheaders()}
            return Response(answer.status, received, data, headers)
        finally:
            conn.close()

    def interrupted(self, method: str, url: str, body: bytes, sent: int) -> None:
        """Sign a request for ``body`` but send only its first ``sent`` bytes, then drop the connection."""
        netloc, path, raw_query = self._split(url)
        headers = self.signed_headers(method, path, raw_query, body)
        conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        try:
            conn.putrequest(method, path + (f"?{raw_query}" if raw_query else ""))
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                conn.putheader(name, value)
            conn.endheaders()
            conn.send(body[:sent])
        finally:
            conn.close()

    # -- section 6 calls -------------------------------------------------------------------------

    def time(self) -> Response:
        """``GET /v1/time`` (unsigned)."""
        return self.request("GET", "/v1/time", signed=False)

    def create_packet(
        self,
        to: list[str],
        content: bytes,
        *,
        subject: str = "Conformance",
        priority: int = 0,
        data_type: str = "binary",
        **fields: Any,
    ) -> Response:
        """``POST /v1/packets`` describing ``content``; extra body fields override the defaults."""
        body = {
            "to": to,
            "subject": subject,
            "priority": priority,
            "data_type": data_type,
            "size": len(content),
            "sha256": sha256_hex(content),
        }
        body.update(fields)
        return self.request("POST", "/v1/packets", body)

    def upload(self, url: str, content: bytes, **options: Any) -> Response:
        """``PUT <upload url>`` with the content."""
        return self.request("PUT", url, content, **options)

    def inbox(self) -> Response:
        """``GET /v1/inbox``."""
        return self.request("GET", "/v1/inbox")

    def ready(self, packet_id: str) -> Response:
        """``POST /v1/packets/{id}/ready`` (no body)."""
        return self.request("POST", f"/v1/packets/{packet_id}/ready")

    def download(self, url: str, *, start: int | None = None, **options: Any) -> Response:
        """``GET <download url>``, from byte ``start`` on when given (``Range: bytes=N-``)."""
        extra = {"Range": f"bytes={start}-"} if start is not None else None
        return self.request("GET", url, extra=extra, **options)

    def ack(self, packet_id: str, sha256: str) -> Response:
        """``POST /v1/packets/{id}/ack`` with the hash of what was received."""
        return self.request("POST", f"/v1/packets/{packet_id}/ack", {"sha256": sha256})

    def fail(self, packet_id: str, reason: str) -> Response:
        """``POST /v1/packets/{id}/fail`` with a reason."""
        return self.request("POST", f"/v1/packets/{packet_id}/fail", {"reason": reason})

    def packet(self, packet_id: str) -> Response:
        """``GET /v1/packets/{id}``."""
        return self.request("GET", f"/v1/packets/{packet_id}")

    def cancel(self, packet_id: str) -> Response:
        """``POST /v1/packets/{id}/cancel`` (no body)."""
        return self.request("POST", f"/v1/packets/{packet_id}/cancel")

    def units(self, q: str = "", limit: int | None = None) -> Response:
        """``GET /v1/units?q=&limit=``."""
        params: dict[str, Any] = {"q": q}
        if limit is not None:
            params["limit"] = limit
        return self.request("GET", "/v1/units?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote))

    def open_session(self, target: str | None = None) -> Response:
        """``POST /v1/sessions``; on 201 the token is used for the following requests."""
        answer = self.request("POST", "/v1/sessions", {"target": target} if target is not None else {})
        if answer.status == 201:
            self.session = answer.json["token"]
        return answer

    def verify(self, method: str, path: str, raw_query: str, headers: Mapping[str, str]) -> Response:
        """``POST /v1/verify`` about a request this (destination) client received."""
        lgsp_headers = {name: value for name, value in headers.items() if name.lower().startswith("x-lgsp-")}
        body = {"method": method, "path": path, "query": raw_query, "headers": lgsp_headers}
        return self.request("POST", "/v1/verify", body)
