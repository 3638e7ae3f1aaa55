"""The `/v1` JSON API: thin handlers that authenticate, parse, and call core's Exchange.

Documented in schemas/openapi.yaml (served at /v1/openapi.yaml); a test checks every route here
appears there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

from aiohttp import web

from lgsp.core.api import (
    H_CONTENT,
    InboxPosition,
    Problem,
    Text,
    authenticate,
    base_url,
    bounded_int,
    check_range,
    check_text,
    content_response,
    hub_of,
    iso,
    json_response,
    read_json,
)

from . import render

routes = web.RouteTableDef()
MAX_VERIFIED_URL = 8190  # longest path or query /v1/verify takes: aiohttp's own request-line limit


@routes.get("/v1/time")
async def get_time(request: web.Request) -> web.Response:
    now = datetime.now(UTC)
    notices = [n.public() for n in hub_of(request).notices.active()]
    return json_response({"now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "precise": iso(now), "notices": notices})


@routes.get("/v1/openapi.yaml")
async def get_openapi(request: web.Request) -> web.Response:
    text = (resources.files("lgsp.schemas") / "openapi.yaml").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/yaml", charset="utf-8")


# -- packets ----------------------------------------------------------------------------------

@routes.post("/v1/packets")
async def create_packet(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await read_json(request)
    info, transfer = await hub_of(request).exchange.create(principal, body)
    return json_response(render.created(info, transfer, base_url(request)), status=201)


@routes.put("/v1/packets/{id}/content")
async def upload_content(request: web.Request) -> web.Response:
    principal = await authenticate(request, streams_body=True)  # Exchange.upload checks it as it streams
    exchange = hub_of(request).exchange
    info = await exchange.upload(principal, request.match_info["id"], request.headers.get(H_CONTENT, ""),
                                 request.content.iter_any(), expires=request.query.get("expires"),
                                 token=request.query.get("token"))
    return json_response(render.uploaded(info))


@routes.get("/v1/packets/{id}/content")
async def download_content(request: web.Request) -> web.StreamResponse:
    """The content; a HEAD gets the same answer without its body and leaves the delivery as it was."""
    principal = await authenticate(request)
    hub = hub_of(request)
    packet_id, expires, token = request.match_info["id"], request.query.get("expires"), request.query.get("token")
    # A range that cannot be served is refused before the delivery is marked fetched (a refused GET
    # is no download).
    found = await hub.exchange.open_content(principal, packet_id, expires=expires, token=token,
                                            peek=request.method == "HEAD",
                                            admit=lambda info: check_range(request, info.size))
    # Content no longer held (no file, no row) is answered `content.gone` by the read itself.
    info, path = found.info, found.path
    return await content_response(request, path, info.size, {
        H_CONTENT: info.sha256, "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{info.id}"'}, data_key=found.data_key)


@routes.get("/v1/inbox")
async def inbox(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    limit = bounded_int(request.query.get("limit"), "limit", 100, 1, 1000)
    cursor = request.query.get("cursor")
    after = InboxPosition.decode(cursor) if cursor else None
    page = await hub_of(request).exchange.inbox_page(principal, limit=limit, after=after)
    return json_response(render.inbox_page(page))


@routes.post("/v1/packets/{id}/ready")
async def ready(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    await read_json(request, required=False)
    transfer = await hub_of(request).exchange.ready(principal, request.match_info["id"])
    return json_response({"download": render.transfer(transfer, base_url(request))})


@routes.post("/v1/packets/{id}/ack")
async def ack(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = _object(await read_json(request))
    state = await hub_of(request).exchange.ack(principal, request.match_info["id"], body.get("sha256"))
    return json_response({"state": state})


@routes.post("/v1/packets/{id}/fail")
async def fail(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = _object(await read_json(request))
    state = await hub_of(request).exchange.fail(principal, request.match_info["id"], body.get("reason"))
    return json_response({"state": state})


@routes.post("/v1/packets/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    await read_json(request, required=False)
    return json_response(render.cancelled(await hub_of(request).exchange.cancel(principal, request.match_info["id"])))


@routes.get("/v1/packets/{id}")
async def get_packet(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return json_response(render.packet_view(await hub_of(request).exchange.view(principal, request.match_info["id"])))


# -- directory, sessions, verification --------------------------------------------------------

@routes.get("/v1/units")
async def search_units(request: web.Request) -> web.Response:
    await authenticate(request)
    limit = bounded_int(request.query.get("limit"), "limit", 50, 1, 500)
    found = await hub_of(request).directory.search_units(request.query.get("q", ""), limit=limit)
    return json_response({"items": [u.public() for u in found]})


@routes.get("/v1/units/{id}/presence")
async def unit_presence(request: web.Request) -> web.Response:
    await authenticate(request)
    hub = hub_of(request)
    unit = request.match_info["id"]
    view = await hub.presence.view(unit)
    if view is None:
        raise Problem("not_found", Text("no unit {unit}", unit=unit))
    protocol = hub.exchange.push_protocol(unit)
    view["mode"] = "push" if protocol else "pull"
    if protocol:
        view["protocol"] = protocol
    return json_response(view)


@routes.get("/v1/hub")
async def hub_info(request: web.Request) -> web.Response:
    """Who the hub is and the public key it signs pushes and proxied calls with."""
    await authenticate(request)
    hub = hub_of(request)
    key = await hub.identity.key()
    return json_response({"identifier": hub.config.hub.identifier, "name": hub.config.hub.name, **key.public()})


@routes.post("/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = _object(await read_json(request, required=False))
    target = body.get("target")
    if target is not None:
        target = check_text(target, "target", max_length=128)
    session = await hub_of(request).auth.create_session(principal, target)
    return json_response(session.public(), status=201)


@routes.post("/v1/verify")
async def verify(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = _object(await read_json(request))
    method, path, query, headers = body.get("method"), body.get("path"), body.get("query", ""), body.get("headers")
    method = check_text(method, "method", max_length=32)
    if not isinstance(path, str) or not path.startswith("/"):
        raise Problem("request.invalid", Text("path: must be the request's path, starting with /"), field="path")
    check_text(path, "path", max_length=MAX_VERIFIED_URL)
    if not isinstance(query, str):
        raise Problem("request.invalid", Text("query: must be the raw query string"), field="query")
    check_text(query, "query", max_length=MAX_VERIFIED_URL, min_length=0)
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise Problem("request.invalid", Text("headers: must map X-LGSP-* names to string values"), field="headers")
    canonical = {k.lower(): v for k, v in headers.items()}
    lookup = _CaseInsensitive(canonical)
    result = await hub_of(request).auth.verify_for(principal, method, path, query, lookup)
    return json_response(result)


class _CaseInsensitive(dict[str, str]):
    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


def _object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise Problem("request.invalid", Text("body must be a JSON object"))
    return body
