"""The REST adapter: the `/v1` JSON API, the event stream, the service proxy and REST push."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lgsp.adapters.rest.events import routes as event_routes
from lgsp.adapters.rest.proxy import PROBLEM_CODES
from lgsp.adapters.rest.proxy import routes as proxy_routes
from lgsp.adapters.rest.push import RestPushAdapter
from lgsp.adapters.rest.routes import routes as api_routes
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.api import Hub


@hookimpl
def lgsp_problem_codes() -> Mapping[str, tuple[int, str]]:
    return PROBLEM_CODES


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    return [*api_routes, *event_routes, *proxy_routes]


@hookimpl
def lgsp_push_adapters(hub: Hub) -> Iterable[Any]:
    return [RestPushAdapter(hub)]


@hookimpl
async def lgsp_shutdown(hub: Hub) -> None:
    adapter = hub.push_adapters.get("rest")
    if isinstance(adapter, RestPushAdapter):
        await adapter.close()
