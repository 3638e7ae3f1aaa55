"""Services and grants: the REST services units expose through the hub (/v1/services/{id}/...) and
which units may call them. Operators grant and revoke (the same core use cases as `lgsp service
grant|revoke`, effective on the next call); a unit admin sees the services its units own or may
call; everyone else reads. Every grant and revocation is recorded with who did it and from where.
"""

from __future__ import annotations

from aiohttp import web

from lgsp.adapters.console.base import PREFIX, WHO, actor_of, console_of, forbidden, page, read_form, redirect
from lgsp.core.api import Problem, Text

routes = web.RouteTableDef()


async def _services_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    console = console_of(request)
    who = request[WHO]
    rows = await console.hub.services.list()
    if who.scope is not None:
        scope = set(who.scope)
        rows = [(s, [u for u in granted if u in scope] if s.unit_id not in scope else granted)
                for s, granted in rows if s.unit_id in scope or scope & set(granted)]
    units = await console.hub.directory.search_units("", limit=5000) if who.account.is_operator else []
    return console.render(request, "services.html", status=status, services=rows, units=units, error=error,
                          can_grant=who.account.is_operator)


@routes.get(PREFIX + "/services")
@page()
async def services_list(request: web.Request) -> web.StreamResponse:
    return await _services_page(request)


@routes.post(PREFIX + "/services/{id}/{action:grant|revoke}")
@page("operator")
async def service_grant(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    service_id, action = request.match_info["id"], request.match_info["action"]
    form = await read_form(request)
    unit_id = (form.get("unit") or "").strip()[:64]
    registry = console.hub.services
    if await registry.get(service_id) is None:
        return forbidden(request)
    if not unit_id:
        return await _services_page(request, error=Text("Choose the unit."), status=422)
    try:
        changed = await (registry.grant if action == "grant" else registry.revoke)(service_id, unit_id)
    except Problem as exc:
        return await _services_page(request, error=exc.detail or exc.title(), status=422)
    if changed:
        await console.accounts.audit(actor_of(request), f"service.{action}", target=service_id, unit_id=unit_id)
    raise redirect(f"{PREFIX}/services")
