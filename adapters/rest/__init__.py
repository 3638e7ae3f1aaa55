"""The REST adapter: the `/v1` JSON API and the event stream, mounted on the hub's HTTP server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from lgsp.adapters.rest.events import routes as event_routes
from lgsp.adapters.rest.routes import routes as api_routes
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.hub import Hub


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    return [*api_routes, *event_routes]
