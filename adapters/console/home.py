"""The home page: the hub's health and what needs attention, for the person's units."""

from __future__ import annotations

from aiohttp import web

from lgsp.adapters.console.base import PREFIX, WHO, console_of, page

routes = web.RouteTableDef()


@routes.get(PREFIX + "/")
@page()
async def home(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    hub = console.hub
    scope = who.scope
    seen = await hub.exchange.attention(scope, waiting_longer_than=3600)
    unit_rows, stuck, waiting = seen.units, seen.stuck, seen.waiting
    db_ok = True
    offline_waiting = [(r, waiting[r.id]) for r in unit_rows if not r.online and waiting.get(r.id)]
    adapters = [name for name in hub.plugin_names() if name not in ("signatures",)]
    overdue = await _overdue(request)
    return console.render(
        request, "home.html", units_total=len(unit_rows), units_online=sum(1 for r in unit_rows if r.online),
        stuck=stuck, offline_waiting=offline_waiting, adapters=adapters, db_ok=db_ok,
        node=hub.config.hub.identifier, store=hub.db.dialect, overdue=overdue,
        changed=request.query.get("changed") == "1", totp_on=request.query.get("totp") == "1")


async def _overdue(request: web.Request) -> list[object]:
    """Registration requests past their due date (the registration pages fill this in)."""
    from lgsp.adapters.console import requests as registration_pages

    return await registration_pages.overdue_for(request)
