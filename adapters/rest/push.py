"""REST push: POST a packet's content to a unit's receive endpoint, signed with the hub's own key.

The request is an ordinary LGSP1 signed request made by the hub (its unit and RSA key, see
core/identity.py): `X-LGSP-Key/Date/Nonce/Signature`, `X-LGSP-Content-SHA256` = the packet's hash,
`X-LGSP-Idempotency-Key` = `packet_id:unit` (the same on every attempt), and the packet's
metadata in `X-LGSP-Packet-Id`, `X-LGSP-From`, `X-LGSP-Subject` (UTF-8, percent-encoded),
`X-LGSP-Priority`, `X-LGSP-Data-Type`, `X-LGSP-Attempt`. Those headers are not lines of the
string to sign, so the URL carries `lgsp_meta=<SHA-256 of them>` (`core/signing.py: metadata_digest`) in its query,
which is signed: a receiver that checks the digest knows the metadata is the hub's too. The body is
streamed from the blob store.

Delivered iff the receiver answers 2xx and echoes `X-LGSP-Content-SHA256` with the same hash (it
hashed what it stored). 5xx, 408, 425, 429 (Retry-After honoured), connection errors and timeouts
are retried by the engine; other 4xx, redirects and a 2xx without the echo are final.

Target settings (`delivery.targets.<unit>`): `url` (required), `timeout_seconds` (60; longest
silence while sending or waiting for the answer), `connect_timeout_seconds` (10), `probe_url`
(optional: GET it, 2xx = up; without it the probe is a HEAD on `url`, any answer below 500 = up),
`verify_tls` (true), `tls_ca_file` (the CA that signed the receiver's certificate), `tls_fingerprint`
(its certificate's SHA-256, pinned instead of a CA check); see core/tls.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from lgsp.core.api import (
    H_CONTENT,
    META_PARAM,
    PushFailure,
    PushJob,
    PushReceipt,
    Text,
    client_ssl,
    http_failure,
    logs,
    metadata_digest,
)
from lgsp.core.api import TLS_TARGET_KEYS as TLS_KEYS
from lgsp.core.api import tls_target_problems as tls_problems

if TYPE_CHECKING:
    from lgsp.core.api import Hub

H_IDEMPOTENCY = "X-LGSP-Idempotency-Key"
H_PACKET = "X-LGSP-Packet-Id"
H_FROM = "X-LGSP-From"
H_TO = "X-LGSP-To"
H_SUBJECT = "X-LGSP-Subject"
H_PRIORITY = "X-LGSP-Priority"
H_DATA_TYPE = "X-LGSP-Data-Type"
H_ATTEMPT = "X-LGSP-Attempt"
H_RECEIPT = "X-LGSP-Receipt-Id"

#: The metadata headers the signed `lgsp_meta` query parameter covers, in this order.
META_HEADERS = (H_IDEMPOTENCY, H_PACKET, H_FROM, H_TO, H_SUBJECT, H_PRIORITY, H_DATA_TYPE, H_ATTEMPT)


KEYS = {"protocol", "url", "timeout_seconds", "connect_timeout_seconds", "probe_url", *TLS_KEYS}
_URL_RE = re.compile(r"^https?://[^/\s?#]+(/[^\s#]*)?$")


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


class RestPushAdapter:
    protocol = "rest"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._http: aiohttp.ClientSession | None = None

    # -- configuration ------------------------------------------------------------------------
    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for key in sorted(set(target) - KEYS):
            problems.append((key, Text("unknown key for a rest target (known: {known})",
                                      known=", ".join(sorted(KEYS - {"protocol"})))))
        url = target.get("url")
        if not isinstance(url, str) or not _URL_RE.match(url):
            problems.append(("url", Text("required: the http(s) URL the hub POSTs packets to")))
        probe = target.get("probe_url")
        if probe is not None and (not isinstance(probe, str) or not _URL_RE.match(probe)):
            problems.append(("probe_url", Text("must be an http(s) URL")))
        for key in ("timeout_seconds", "connect_timeout_seconds"):
            if key in target and not _positive_number(target[key]):
                problems.append((key, Text("must be a number of seconds greater than 0")))
        problems.extend(tls_problems(target))
        return problems

    # -- HTTP ---------------------------------------------------------------------------------
    @property
    def http(self) -> aiohttp.ClientSession:
        """One connection per request (force_close).

        aiohttp arms a connection's read timer when it finishes writing a streamed body; when the
        receiver answered before that moment (it has all the bytes it needs), the timer fires later
        on the idle pooled connection and the next request on it fails at once with a bogus
        timeout. Not reusing connections avoids that, at the price of one TCP (and TLS) handshake
        per packet, which the benchmark shows is small next to the rest of a push.
        """
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=True), auto_decompress=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @staticmethod
    def _timeout(target: Mapping[str, Any]) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, sock_connect=float(target.get("connect_timeout_seconds", 10)),
                                     sock_read=float(target.get("timeout_seconds", 60)))

    # -- the contract -------------------------------------------------------------------------
    async def push(self, job: PushJob) -> PushReceipt:
        key = await self.hub.identity.key()
        target = job.target
        packet = job.packet
        meta = {H_IDEMPOTENCY: job.idempotency_key, H_PACKET: packet.id, H_FROM: packet.source, H_TO: job.unit,
                H_SUBJECT: quote(packet.subject, safe=""), H_PRIORITY: str(packet.priority),
                H_DATA_TYPE: packet.data_type, H_ATTEMPT: str(job.attempt)}
        url = URL(str(target["url"]), encoded=True).extend_query({META_PARAM: metadata_digest(meta, META_HEADERS)})
        headers = key.signer.headers("POST", url.raw_path, url.raw_query_string, packet.sha256)
        headers.update(meta)
        headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(packet.size)})
        # Unsigned: it only ties the receiver's log to the hub's (the request that accepted the packet).
        headers[logs.REQUEST_ID_HEADER] = logs.request_id.get() or logs.request_id_for(packet.id)
        try:
            async with self.http.post(url, data=job.content(self.hub.config.limits.io_chunk_size), headers=headers,
                                      timeout=self._timeout(target), allow_redirects=False,
                                      ssl=_ssl(target)) as resp:
                if 200 <= resp.status < 300:
                    echo = resp.headers.get(H_CONTENT)
                    await _body(resp)
                    if echo is None:
                        raise PushFailure(Text("HTTP {status} without the {header} echo: the endpoint does not "
                                               "speak the LGSP receive protocol", status=resp.status,
                                               header=H_CONTENT), retryable=False)
                    if echo.strip().lower() != packet.sha256:
                        raise PushFailure(Text("the receiver hashed {echo}, not {sha256} (content damaged on the "
                                               "way?)", echo=echo[:64], sha256=packet.sha256), retryable=True)
                    return PushReceipt(detail=Text("HTTP {status}", status=resp.status),
                                       remote_id=resp.headers.get(H_RECEIPT))
                detail = await _snippet(resp)
                if 300 <= resp.status < 400:
                    raise PushFailure(Text("HTTP {status} redirect to {location}; set the target's url to the final "
                                           "address", status=resp.status, location=resp.headers.get('Location', '?')),
                                      retryable=False)
                raise http_failure(resp.status, detail, resp.headers.get("Retry-After"))
        except PushFailure:
            raise
        except TimeoutError as exc:
            raise PushFailure(Text("timed out talking to {host}: {exc}", host=url.host, exc=exc or Text("no answer")),
                              retryable=True) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise PushFailure(Text("connection to {host}:{port} failed: {exc}", host=url.host, port=url.port, exc=exc),
                              retryable=True) from exc

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        timeout = aiohttp.ClientTimeout(total=float(target.get("connect_timeout_seconds", 10)) + 5)
        ssl = _ssl(target)
        try:
            if target.get("probe_url"):
                async with self.http.get(URL(str(target["probe_url"]), encoded=True), timeout=timeout,
                                         allow_redirects=False, ssl=ssl) as resp:
                    return 200 <= resp.status < 300
            async with self.http.head(URL(str(target["url"]), encoded=True), timeout=timeout,
                                      allow_redirects=False, ssl=ssl) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False


async def _body(resp: aiohttp.ClientResponse, limit: int = 64 << 10) -> bytes:
    """Read an answer to its end (at most `limit` bytes; beyond that the connection is dropped).

    Reading to the end matters: a response left half-read goes back to the pool with its read
    timer still armed, and the next request on that connection fails at once with a timeout.
    """
    chunks: list[bytes] = []
    size = 0
    while not resp.content.at_eof():
        chunk = await resp.content.read(limit - size + 1)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            resp.close()
            break
    return b"".join(chunks)[:limit]


async def _snippet(resp: aiohttp.ClientResponse, limit: int = 300) -> str:
    """A short, single-line excerpt of an error answer (a problem's detail when there is one)."""
    try:
        raw = await _body(resp)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    text = raw[:4096].decode("utf-8", "replace")
    if "json" in resp.headers.get("Content-Type", ""):
        try:
            body = json.loads(text)
            if isinstance(body, dict):
                text = " ".join(str(body[k]) for k in ("code", "detail") if body.get(k)) or text
        except ValueError:
            pass
    return " ".join(text.split())[:limit]


def _ssl(target: Mapping[str, Any]) -> Any:
    """aiohttp's `ssl` argument: the system's CAs, the target's own CA or pinned certificate, or no
    check at all only with an explicit `verify_tls: false` (core/tls.py)."""
    return client_ssl(target)
