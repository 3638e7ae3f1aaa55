"""The hub's HTTP server: the aiohttp application adapters mount their routes on.

Holds what every HTTP adapter shares: problem+json errors, the signed-request check over aiohttp
requests, bounded JSON bodies checked against their declared hash, and the public base URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from lgsp.core.auth import Principal
from lgsp.core.errors import Problem
from lgsp.core.signing import EMPTY_SHA256, H_CONTENT

if TYPE_CHECKING:
    from lgsp.core.hub import Hub

log = logging.getLogger("lgsp.web")

HUB: web.AppKey[Hub] = web.AppKey("lgsp_hub")
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("lgsp_principal")
PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {400: "request.malformed", 401: "auth.missing", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "content.too_large", 503: "unavailable"}


def hub_of(request: web.Request) -> Hub:
    return request.app[HUB]


def language(request: web.Request) -> str:
    accept = request.headers.get("Accept-Language", "")
    return "en" if accept.strip().lower().startswith("en") else "vi"


def problem_response(problem: Problem, lang: str = "vi") -> web.Response:
    return web.Response(status=problem.status, content_type=PROBLEM_JSON,
                        text=json.dumps(problem.to_dict(lang), ensure_ascii=False))


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, language(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "request.malformed" if exc.status < 500 else "internal")
        detail = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        return problem_response(Problem(code, detail), language(request))
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(Problem("internal", "an internal error occurred; it has been logged"),
                                language(request))


class AccessLogger(AbstractAccessLogger):
    """One line per request: never headers, bodies or query strings (transfer tokens live there)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        principal = request.get(PRINCIPAL)
        self.logger.info("%s %s %s %s %d %d %.1fms", request.remote, principal.unit_id if principal else "-",
                         request.method, request.path, response.status, response.body_length, time * 1000)


def make_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=hub.config.limits.max_json_body)
    app[HUB] = hub
    for routes in hub.pm.hook.lgsp_web_routes(hub=hub):
        if routes:
            app.router.add_routes(routes)
    return app


def raw_path_and_query(request: web.Request) -> tuple[str, str]:
    """The path and query exactly as in the request line (what the client signed)."""
    path, _, query = request.raw_path.partition("?")
    return path, query


async def authenticate(request: web.Request) -> Principal:
    """Verify the signed request; also checks the declared hash of an empty body."""
    cached = request.get(PRINCIPAL)
    if cached is not None:
        return cached
    path, query = raw_path_and_query(request)
    principal = await hub_of(request).auth.authenticate(request.method, path, query, request.headers)
    if not request.body_exists and request.headers.get(H_CONTENT) != EMPTY_SHA256:
        raise Problem("content.hash_mismatch", "the request has no body but declares the hash of one")
    request[PRINCIPAL] = principal
    return principal


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole (small) body, checked against X-LGSP-Content-SHA256; 413 beyond the limit."""
    limit = limit or hub_of(request).config.limits.max_json_body
    if request.content_length is not None and request.content_length > limit:
        raise Problem("content.too_large", f"request body is larger than {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    sha = hashlib.sha256()
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise Problem("content.too_large", f"request body is larger than {limit} bytes", limit=limit)
        sha.update(chunk)
        chunks.append(chunk)
    if sha.hexdigest() != request.headers.get(H_CONTENT):
        raise Problem("content.hash_mismatch", "the body's SHA-256 differs from X-LGSP-Content-SHA256")
    return b"".join(chunks)


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    body = await read_body(request)
    if not body.strip():
        if required:
            raise Problem("request.malformed", "a JSON body is required")
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem("request.malformed", f"body is not valid JSON: {exc}") from exc


def bounded_int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole-number request parameter within [low, high]; `request.invalid` naming it otherwise."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem("request.invalid", f"{name}: must be an integer", field=name) from None
    if not low <= value <= high:
        raise Problem("request.invalid", f"{name}: must be between {low} and {high}", field=name)
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps(data, ensure_ascii=False))


def base_url(request: web.Request) -> str:
    configured = hub_of(request).config.server.public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}"
