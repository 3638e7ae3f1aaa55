"""One packet: its deliveries and timeline (metadata only, never content), and the operator's
retry, cancel and re-route of a delivery (the same use cases as `lgsp deliveries ...`, so the policy
is checked the same way). A unit admin sees a packet only when its unit sent or receives it;
otherwise the answer is 404, the same as for a packet that does not exist."""

from __future__ import annotations

from aiohttp import web

from lgsp.adapters.console.base import PREFIX, WHO, actor_of, console_of, forbidden, page, read_form, redirect
from lgsp.core.api import Problem, Text

routes = web.RouteTableDef()


async def _packet_page(request: web.Request, packet_id: str, *, error: str | None = None,
                       status: int = 200) -> web.Response:
    console = console_of(request)
    who = request[WHO]
    seen = await console.hub.exchange.operator_view(packet_id)
    if seen is None:
        return forbidden(request)
    rows, events = list(seen.deliveries), list(seen.events)
    involved = {seen.source, *(d.unit for d in rows)}
    if who.scope is not None and not involved & set(who.scope):
        return forbidden(request)
    if who.scope is not None and seen.source not in who.scope:  # a destination sees only its own row
        rows = [d for d in rows if d.unit in who.scope]
        events = [e for e in events if e.unit in who.scope or e.audience in who.scope]
    return console.render(request, "packet.html", status=status, packet=seen, deliveries=rows, events=events,
                          error=error, can_operate=who.account.is_operator)


@routes.get(PREFIX + "/packets/{id}")
@page()
async def packet_detail(request: web.Request) -> web.StreamResponse:
    return await _packet_page(request, request.match_info["id"])


@routes.post(PREFIX + "/packets/{id}/{action:retry|cancel}/{unit}")
@page("operator")
async def packet_operate(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    packet_id, action, unit = (request.match_info[k] for k in ("id", "action", "unit"))
    form = await read_form(request)
    exchange = console.hub.exchange
    try:
        if action == "retry":
            await exchange.operator_retry(packet_id, unit)
        else:
            said = (form.get("reason") or "").strip()[:500]
            await exchange.operator_cancel(packet_id, unit, Text("cancelled by an operator: {reason}", reason=said)
                                           if said else Text("cancelled by an operator"))
    except Problem as exc:
        return await _packet_page(request, packet_id, error=exc.detail or exc.title(), status=422)
    await console.accounts.audit(actor_of(request), f"delivery.{action}", target=f"{packet_id}:{unit}",
                                 unit_id=unit)
    raise redirect(f"{PREFIX}/packets/{packet_id}")


@routes.post(PREFIX + "/packets/{id}/reroute/{unit}")
@page("operator")
async def packet_reroute(request: web.Request) -> web.StreamResponse:
    """Send the packet that did not reach `unit` to another unit instead: the core use case checks the
    destination exists, the policy lets the source send there, and the delivery was not completed."""
    console = console_of(request)
    packet_id, unit = request.match_info["id"], request.match_info["unit"]
    form = await read_form(request)
    to = (form.get("to") or "").strip()[:64]
    if not to:
        return await _packet_page(request, packet_id, error=Text("Enter the code of the new receiving unit."),
                                  status=422)
    try:
        await console.hub.exchange.operator_reroute(packet_id, unit, to)
    except Problem as exc:
        return await _packet_page(request, packet_id, error=exc.detail or exc.title(), status=422)
    await console.accounts.audit(actor_of(request), "delivery.reroute", target=f"{packet_id}:{unit}",
                                 unit_id=unit, detail={"to": to})
    raise redirect(f"{PREFIX}/packets/{packet_id}")
