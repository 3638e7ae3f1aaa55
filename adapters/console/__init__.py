"""The web console (plugin `console`): Vietnamese pages served by the hub under /console.

Accounts and roles (core/accounts.py), the registration workflow of forms Mẫu 01–07, units,
applications and keys, traffic, connection history, statistics and reports. Pages are rendered on
the server with Jinja2 (templates/), work without scripts, and carry a CSRF token in every form.
Settings under `adapters.console` (positive integers): session_idle_seconds, session_absolute_seconds,
max_failed_signins, lockout_seconds; and secure_cookie (auto|always|never) with trusted_fronts (IP
addresses or networks of reverse proxies whose X-Forwarded-Proto counts); smtp (mail.py: e-mail on
registration state changes). docs/console.md describes the pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from lgsp.adapters.console import home, people, signin
from lgsp.adapters.console.base import DEFAULTS, PREFIX, SECURITY_HEADERS, TEXT_SETTINGS, check_text_settings
from lgsp.core.api import positive_int_settings
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.api import Hub

_STATIC = {"console.css": "text/css"}


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    body = (resources.files("lgsp.adapters.console") / "static" / name).read_bytes()
    response = web.Response(body=body, content_type=_STATIC[name], charset="utf-8")
    response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"})
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def route_tables() -> list[web.RouteTableDef]:
    from lgsp.adapters.console import api, packet, services, traffic, units
    from lgsp.adapters.console import requests as registration

    return [signin.routes, home.routes, people.routes, registration.routes, units.routes, traffic.routes,
            packet.routes, services.routes, api.routes]


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    out: list[web.AbstractRouteDef] = [web.get(PREFIX + "/static/{name}", static)]
    for table in route_tables():
        out.extend(table)
    return out


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    raw = hub.config.adapters.get("console")
    if not isinstance(raw, dict):
        return positive_int_settings("adapters.console", raw, DEFAULTS)
    ints = {k: v for k, v in raw.items() if k not in TEXT_SETTINGS}
    from lgsp.adapters.console.mail import check_smtp

    return [*positive_int_settings("adapters.console", ints, [*DEFAULTS, *TEXT_SETTINGS]), *check_text_settings(raw),
            *check_smtp(raw.get("smtp"))]
