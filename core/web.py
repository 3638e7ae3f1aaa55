"""The hub's HTTP server: the aiohttp application adapters mount their routes on.

Holds what every HTTP adapter shares: problem+json errors (also for the malformed HTTP aiohttp's
parser refuses), the edge checks of path and query text, the signed-request check over aiohttp
requests with the body checked against its declared hash, bounded JSON bodies, Range checks, and
the public base URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler

from lgsp.core import health, logs, metrics
from lgsp.core.auth import Principal
from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.signing import EMPTY_SHA256, H_CONTENT
from lgsp.core.store.database import store_unavailable
from lgsp.core.text import load_json, printable, text_problem, url_text
from lgsp.core.tls import peer_fingerprint

if TYPE_CHECKING:
    from lgsp.core.hub import Hub

log = logging.getLogger("lgsp.web")

HUB: web.AppKey[Hub] = web.AppKey("lgsp_hub")
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("lgsp_principal")
BODY: web.RequestKey[bytes] = web.RequestKey("lgsp_body")
PROBLEM_CODE: web.RequestKey[str] = web.RequestKey("lgsp_problem_code", str)
PROBLEM_JSON = "application/problem+json"
#: JSON bodies at least this large are parsed in a worker thread, off the event loop.
JSON_IN_THREAD = 64 * 1024

_HTTP_CODES = {400: "request.malformed", 401: "auth.missing", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "content.too_large", 503: "unavailable"}


def hub_of(request: web.Request) -> Hub:
    return request.app[HUB]


def language(request: web.Request) -> str:
    accept = request.headers.get("Accept-Language", "")
    return "en" if accept.strip().lower().startswith("en") else "vi"


def problem_response(problem: Problem, lang: str = "vi") -> web.Response:
    # A detail may repeat what a client sent: nothing in it may stop the answer from being encoded.
    body = problem.to_dict(lang)
    body["detail"] = printable(str(body.get("detail", "")))
    return web.Response(status=problem.status, content_type=PROBLEM_JSON, charset="utf-8",
                        body=json.dumps(body, ensure_ascii=False).encode("utf-8", "replace"))


def check_url_text(request: web.Request) -> None:
    """The path and query, checked by `authenticate` before anything else: UTF-8 once
    percent-decoded (`request.malformed` otherwise), no control character in a path parameter or a
    query parameter's name, none but tab and line breaks in a query value (`request.invalid`
    naming it). Unsigned routes (time, OpenAPI, WSDL) read no parameters.
    """
    path, query = raw_path_and_query(request)
    if url_text(path) is None:
        raise Problem("request.malformed", Text("the path is not UTF-8 once percent-decoded"))
    for name, value in request.match_info.items():
        why = text_problem(value)
        if why is not None:
            raise Problem("request.invalid", Text("{name} (in the path): {why}", name=name, why=why), field=name)
    for part in query.split("&") if query else ():
        raw_name, _, raw_value = part.partition("=")
        decoded_name, decoded_value = url_text(raw_name), url_text(raw_value)
        if decoded_name is None or decoded_value is None:
            raise Problem("request.malformed", Text("a query parameter is not UTF-8 once percent-decoded"))
        why = text_problem(decoded_name) or text_problem(decoded_value, multiline=True)
        if why is not None:
            shown = printable(decoded_name)[:64]
            raise Problem("request.invalid", Text("{shown} (in the query): {why}", shown=shown, why=why), field=shown)


#: A Host header (RFC 9110 7.2): an IP literal or a registered name, an optional port.
_HOST_RE = re.compile(r"(\[[0-9A-Za-z:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(:[0-9]{0,5})?")


def check_host(request: web.Request) -> None:
    """One well-formed Host header, or none (HTTP/1.0): checked before any handler runs, since the
    URLs the hub answers with (`base_url`) are made of it; one that is not ASCII could not be encoded
    into the answer after the request had been served (a packet created, then a 500)."""
    hosts = request.headers.getall("Host", ())
    if len(hosts) > 1 or (hosts and not _HOST_RE.fullmatch(hosts[0])):
        raise Problem("request.malformed", Text("the Host header must be one host name, with an optional port"))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_host(request)
        return await handler(request)
    except Problem as problem:
        request[PROBLEM_CODE] = problem.code
        logs.bind(code=problem.code)
        if problem.code.startswith("auth."):
            hub_of(request).metrics.auth_failed(problem.code)
        return problem_response(problem, language(request))
    except (web.RequestPayloadError, HttpProcessingError):  # the body's framing broke mid-way (a bad chunk)
        return problem_response(Problem("request.malformed", Text("the request body's framing is malformed")),
                                language(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "request.malformed" if exc.status < 500 else "internal")
        detail = (Text("no route for {method} {path}", method=request.method, path=request.path) if exc.status == 404
                  else Text("{method} is not allowed on {path}", method=request.method, path=request.path)
                  if exc.status == 405 else Text("the request was refused ({reason})", reason=exc.reason))
        response = problem_response(Problem(code, detail), language(request))
        if "Allow" in exc.headers:  # a 405 says which methods the resource has (RFC 9110 15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception as exc:
        if store_unavailable(exc):
            request[PROBLEM_CODE] = "unavailable"
            logs.bind(code="unavailable")
            log.warning("the store cannot serve %s %s now: %s", request.method, request.path, exc.__class__.__name__)
            response = problem_response(Problem("unavailable", Text("the hub's store cannot take the request now; "
                                                                     "retry shortly")), language(request))
            response.headers["Retry-After"] = "5"
            return response
        request[PROBLEM_CODE] = "internal"
        logs.bind(code="internal")
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(Problem("internal", Text("an internal error occurred; it has been logged")),
                                language(request))


class AccessLogger(AbstractAccessLogger):
    """One line per request: never headers, bodies or query strings (transfer tokens live there).

    The record is made directly (`makeRecord` + `handle`): `Logger.info` would also walk the stack
    for the caller's file and line, which no formatter of the hub prints."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        principal = request.get(PRINCIPAL)
        unit = principal.unit_id if principal else None
        path = request.path
        context = {"request_id": request.get(logs.REQUEST_ID), "unit": unit, "code": request.get(PROBLEM_CODE),
                   "packet_id": request.match_info.get("id") if isinstance(request, web.Request)
                   and path.startswith("/v1/packets/") else None}
        logger.handle(logger.makeRecord(
            logger.name, logging.INFO, __file__, 0, "%s %s %s %s %d %d %.1fms",
            (request.remote, unit or "-", request.method, path, response.status, response.body_length, time * 1000),
            None, "log", context))


def make_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=hub.config.limits.max_json_body)
    app[HUB] = hub
    health.mount(app, hub.health)
    metrics.mount(app, hub.metrics)  # counts every request: placed before problem_middleware
    logs.mount(app)  # the request id, before everything (every answer carries it)
    for routes in hub.pm.hook.lgsp_web_routes(hub=hub):
        if routes:
            app.router.add_routes(routes)
    return app


def raw_path_and_query(request: web.Request) -> tuple[str, str]:
    """The path and query exactly as in the request line (what the client signed)."""
    path, _, query = request.raw_path.partition("?")
    return path, query


async def authenticate(request: web.Request, *, streams_body: bool = False) -> Principal:
    """Check the URL's text, verify the signed request, then its body against
    X-LGSP-Content-SHA256, on every method.

    The body is read here (up to `limits.max_json_body`) whether or not the handler wants it, so no
    request is served whose bytes are not the ones signed; `read_body`/`read_json` then return it.
    A handler that streams a large body itself (content upload, service proxy, SOAP) passes
    `streams_body` and checks the hash as it reads; then only a missing body is checked here.
    """
    cached: Principal | None = request.get(PRINCIPAL)
    if cached is not None:
        return cached
    check_url_text(request)
    path, query = raw_path_and_query(request)
    principal = await hub_of(request).auth.authenticate(request.method, path, query, request.headers,
                                                        client_cert=peer_fingerprint(request.transport))
    if not streams_body:
        request[BODY] = await _read_checked_body(request, hub_of(request).config.limits.max_json_body)
    elif not request.body_exists and request.headers.get(H_CONTENT) != EMPTY_SHA256:
        raise Problem("content.hash_mismatch", Text("the request has no body but declares the hash of one"))
    request[PRINCIPAL] = principal
    logs.bind(unit=principal.unit_id)
    return principal


async def _read_checked_body(request: web.Request, limit: int) -> bytes:
    if not request.body_exists:  # most GETs: nothing to read, only the declared hash to check
        if request.headers.get(H_CONTENT) != EMPTY_SHA256:
            raise Problem("content.hash_mismatch", Text("the body's SHA-256 differs from X-LGSP-Content-SHA256"))
        return b""
    if request.content_length is not None and request.content_length > limit:
        raise Problem("content.too_large", Text("request body is larger than {limit} bytes", limit=limit), limit=limit)
    chunks: list[bytes] = []
    size = 0
    sha = hashlib.sha256()
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise Problem("content.too_large", Text("request body is larger than {limit} bytes", limit=limit),
                          limit=limit)
        sha.update(chunk)
        chunks.append(chunk)
    if sha.hexdigest() != request.headers.get(H_CONTENT):
        raise Problem("content.hash_mismatch", Text("the body's SHA-256 differs from X-LGSP-Content-SHA256"))
    return b"".join(chunks)


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole (small) body, checked against X-LGSP-Content-SHA256; 413 beyond the limit.

    Already read by `authenticate` for a signed request; read (and checked) here otherwise.
    """
    cached: bytes | None = request.get(BODY)
    if cached is not None:
        return cached
    body = await _read_checked_body(request, limit or hub_of(request).config.limits.max_json_body)
    request[BODY] = body
    return body


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """The body as JSON, parsed by the bounded loader (core/text.py); large bodies off the loop."""
    body = await read_body(request)
    if not body.strip():
        if required:
            raise Problem("request.malformed", Text("a JSON body is required"))
        return {}
    if len(body) >= JSON_IN_THREAD:
        return await asyncio.to_thread(load_json, body)
    return load_json(body)


_DIGITS = re.compile(r"^[0-9]{1,18}$")


def bounded_int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole-number request parameter within [low, high]; `request.invalid` naming it otherwise."""
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not _DIGITS.match(text.removeprefix("-")):
        raise Problem("request.invalid", Text("{name}: must be an integer between {low} and {high}", name=name,
                                              low=low, high=high), field=name)
    value = int(text)
    if not low <= value <= high:
        raise Problem("request.invalid", Text("{name}: must be between {low} and {high}", name=name, low=low,
                                              high=high), field=name)
    return value


# One range of ASCII digits, each side at most 19 of them (the largest 64-bit size has 19).
_RANGE_RE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$", re.IGNORECASE)


def check_range(request: web.Request, size: int) -> None:
    """Refuse a Range that cannot be served, as a problem, before `web.FileResponse` answers it.

    Served: `bytes=N-`, `bytes=N-M` (N within the content) and `bytes=-N` (the last N bytes,
    N > 0). Anything else, including `bytes=-0` (which FileResponse would answer with the whole
    content) and digit strings too long for any size, is `416 content.range_not_satisfiable`.
    """
    header = request.headers.get("Range")
    if header is None:
        return
    match = _RANGE_RE.match(header.strip())
    if match is None:
        raise Problem("content.range_not_satisfiable",
                      Text("only one range of the form bytes=N-, bytes=N-M or bytes=-N is served"), size=size)
    start, end = match.groups()
    if not start and not end:
        raise Problem("content.range_not_satisfiable", Text("the range names neither start nor end"), size=size)
    if not start:  # a suffix: the last `end` bytes
        if int(end) == 0 or size == 0:
            raise Problem("content.range_not_satisfiable",
                          Text("the last {end} bytes of a {size}-byte content is no range", end=int(end),
                               size=size), size=size)
        return
    if int(start) >= size or (end and int(end) < int(start)):
        raise Problem("content.range_not_satisfiable", Text("the content is {size} bytes long", size=size), size=size)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps(data, ensure_ascii=False))


def base_url(request: web.Request) -> str:
    configured = hub_of(request).config.server.public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}"


# -- aiohttp's own errors ------------------------------------------------------------------------

def _parser_detail(exc: BaseException | None) -> str:
    """What was wrong with a request aiohttp's parser refused, without echoing its bytes."""
    if isinstance(exc, BadHttpMethod):
        return "the request does not start with an HTTP method (is this TLS sent to a plain HTTP port?)"
    if isinstance(exc, LineTooLong):
        return "the request line or a header is longer than the hub accepts"
    if isinstance(exc, HttpProcessingError):
        first = (exc.message or "").splitlines()[0] if exc.message else ""
        reason = printable(first.partition(":")[0].strip())[:100]
        return f"the request is not valid HTTP ({reason})" if reason else "the request is not valid HTTP"
    return "the request is not valid HTTP"


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering the errors it raises itself as problem+json.

    aiohttp answers a request its parser refuses (bad request line, forbidden header bytes, a line
    over `max_line_size`/`max_field_size`, broken chunked framing before the handler runs) through
    `handle_error`, by default with `text/plain` that echoes the offending bytes and a logged
    traceback. Here: `request.malformed` (or `internal` for a 5xx), one debug line, no traceback for
    bad input; the connection is closed as aiohttp does. `log_exception` keeps what bad input causes
    (a client gone mid-body, a body whose framing broke) out of the error log.
    """

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # the answer has started: the connection can only be dropped
            raise ConnectionError("the response has started; the error cannot be answered")
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            problem = Problem("internal", Text("an internal error occurred; it has been logged"))
        else:
            problem = Problem("content.too_large" if status == 413 else "request.malformed", _parser_detail(exc))
            log.debug("refused malformed HTTP from %s: %s", request.remote, problem.detail)
        response = problem_response(problem, language(request) if isinstance(request, web.Request) else "vi")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp logs a traceback when a client goes away mid-body, or when the rest of a broken body
        cannot be drained after the answer (`Unhandled exception`): bad input, worth a debug line only."""
        exc = kw.get("exc_info")
        if isinstance(exc, (web.RequestPayloadError, HttpProcessingError, ConnectionError)):
            log.debug("connection closed on bad input: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)


class _ProblemServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class HubRunner(web.AppRunner):
    """`web.AppRunner` whose connections use `ProblemRequestHandler`.

    aiohttp offers no setting for the connection handler's class: the server `AppRunner` builds is
    given the class that creates `ProblemRequestHandler`s (relies on `Server._loop`/`_kwargs`,
    stable through aiohttp 3.x; tests/hostile/test_http.py fails if that changes).
    """

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if type(server) is web.Server:
            server.__class__ = _ProblemServer
        return server
