"""Service proxy: `/v1/services/{service}/...` forwards a unit's call to another unit's REST service.

The caller signs its request as usual, under a session whose target is the service
(`POST /v1/sessions {"target": "<service id>"}`, granted by `lgsp service grant`). The hub checks
signature, session target and grant on every call (a revoked grant stops the next call), then
forwards method, the rest of the path, the query, the body and end-to-end headers to the
service's registered URL, streaming both ways, with the service's timeout applied to connecting
and to every silence while reading.

The forwarded request is signed by the hub's own key over the service-side path and the body's
declared hash (verify it with `POST /v1/verify` or the hub's public key), and says who called in
`X-LGSP-Caller-Unit` / `X-LGSP-Caller-Application` (covered, with `X-LGSP-Service`, by the signed
query parameter `lgsp_meta`, as in a push: core/signing.py `metadata_digest`). The body is checked against the caller's
`X-LGSP-Content-SHA256` while it streams; the last chunk is held back until the hash matches, so
a service never receives a complete body whose hash is wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from lgsp.core.api import H_CONTENT, META_PARAM, N_, Problem, Text, authenticate, hub_of, metadata_digest

routes = web.RouteTableDef()

#: The proxy's own problem codes, declared to the hub through `lgsp_problem_codes` (rest/__init__.py).
PROBLEM_CODES = {
    "service.unavailable": (502, N_("The service could not be reached")),
    "service.timeout": (504, N_("The service did not answer in time")),
}

H_CALLER_UNIT = "X-LGSP-Caller-Unit"
H_CALLER_APP = "X-LGSP-Caller-Application"
H_SERVICE = "X-LGSP-Service"
#: The headers naming the caller, covered by the signed `lgsp_meta` query parameter.
CALLER_HEADERS = (H_CALLER_UNIT, H_CALLER_APP, H_SERVICE)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host"}


class _Body:
    """The caller's body, hashed on the way through; the last chunk waits for the verdict."""

    def __init__(self, request: web.Request, declared: str, limit: int) -> None:
        self.request = request
        self.declared = declared
        self.limit = limit
        self.mismatch = False
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        sha = hashlib.sha256()
        size = 0
        held: bytes | None = None
        async for chunk in self.request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.limit:
                self.too_large = True
                raise ValueError("body over the limit")
            sha.update(chunk)
            if held is not None:
                yield held
            held = chunk
        if sha.hexdigest() != self.declared:
            self.mismatch = True
            raise ValueError("body hash mismatch")
        if held is not None:
            yield held


def _forward_headers(headers: Any) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in HOP_BY_HOP or low.startswith("x-lgsp-") or low == "content-length":
            continue
        out.add(name, value)
    return out


@routes.route("*", "/v1/services/{service}/{tail:.*}")
async def proxy(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request, streams_body=True)  # hashed on the way through (_Body)
    hub = hub_of(request)
    service_id = request.match_info["service"]
    service = await hub.services.get(service_id)
    if service is None:
        raise Problem("not_found", Text("no service named {service_id}", service_id=service_id))
    if principal.session_target != service_id:
        raise Problem("forbidden",
                      Text("call {service_id} under a session whose target is it (POST /v1/sessions "
                           "{{\"target\": \"{service_id}\"}})", service_id=service_id))
    if not await hub.services.may_call(principal.unit_id, service):
        raise Problem("forbidden", Text("unit {unit_id} may not call {service_id}", unit_id=principal.unit_id,
                                        service_id=service_id))
    prefix = f"/v1/services/{service_id}"
    raw = request.raw_path[len(prefix):] if request.raw_path.startswith(prefix) else "/"
    upstream = URL(service.url + (raw if raw.startswith("/") else "/" + raw), encoded=True)
    declared = request.headers.get(H_CONTENT, "")

    key = await hub.identity.key()
    caller = {H_CALLER_UNIT: principal.unit_id, H_CALLER_APP: principal.application_id, H_SERVICE: service_id}
    upstream = upstream.extend_query({META_PARAM: metadata_digest(caller, CALLER_HEADERS)})
    headers = _forward_headers(request.headers)
    headers.update(key.signer.headers(request.method, upstream.raw_path, upstream.raw_query_string, declared))
    headers.update(caller)
    body = _Body(request, declared, hub.config.limits.max_packet_size) if request.body_exists else None
    if request.content_length is not None and body is not None:
        headers["Content-Length"] = str(request.content_length)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, service.timeout_seconds),
                                    sock_read=service.timeout_seconds)
    http = hub.push_adapters["rest"].http  # type: ignore[attr-defined]
    response: web.StreamResponse | None = None
    try:
        async with http.request(request.method, upstream, data=body.chunks() if body else None, headers=headers,
                                timeout=timeout, allow_redirects=False) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
        if body is not None and body.mismatch:
            raise Problem("content.hash_mismatch",
                          Text("the body's SHA-256 differs from X-LGSP-Content-SHA256; the service did not "
                               "receive it")) from exc
        if body is not None and body.too_large:
            limit = hub.config.limits.max_packet_size
            raise Problem("content.too_large", Text("request body is larger than {limit} bytes", limit=limit),
                          limit=limit) from exc
        if response is not None:
            raise ConnectionResetError(f"{service_id} broke off its answer: {exc}") from exc
        if isinstance(exc, TimeoutError):
            raise Problem("service.timeout", Text("{service_id} did not answer within {timeout_seconds:g} s",
                                                  service_id=service_id,
                                                  timeout_seconds=service.timeout_seconds)) from exc
        raise Problem("service.unavailable", Text("{service_id} could not be reached: {exc}", service_id=service_id,
                                                  exc=exc)) from exc
