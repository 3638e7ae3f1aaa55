"""The home page: the hub's health and what needs attention, for the person's units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import func, select

from lgsp.adapters.console.base import PREFIX, WHO, console_of, page
from lgsp.core.store.tables import deliveries, units

routes = web.RouteTableDef()

STUCK_STATES = ("failed", "expired", "retrying")


@routes.get(PREFIX + "/")
@page()
async def home(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    hub = console.hub
    scope = who.scope
    async with hub.db.read() as conn:
        unit_q = select(units.c.id, units.c.name, units.c.online, units.c.last_seen_at)
        if scope is not None:
            unit_q = unit_q.where(units.c.id.in_(scope))
        unit_rows = (await conn.execute(unit_q.order_by(units.c.id))).all()
        stuck_q = select(deliveries.c.state, func.count()).where(deliveries.c.state.in_(STUCK_STATES))
        waiting_q = select(deliveries.c.unit_id, func.count()).where(
            deliveries.c.state.in_(("queued", "notified", "retrying")),
            deliveries.c.packet_created_at < datetime.now(UTC) - timedelta(hours=1))
        if scope is not None:
            stuck_q = stuck_q.where(deliveries.c.unit_id.in_(scope))
            waiting_q = waiting_q.where(deliveries.c.unit_id.in_(scope))
        stuck = dict((r[0], r[1]) for r in await conn.execute(stuck_q.group_by(deliveries.c.state)))
        waiting = dict((r[0], r[1]) for r in await conn.execute(waiting_q.group_by(deliveries.c.unit_id)))
        db_ok = True
    offline_waiting = [(r, waiting[r.id]) for r in unit_rows if not r.online and waiting.get(r.id)]
    adapters = sorted(name for name, _ in hub.pm.list_name_plugin() if name not in ("signatures",))
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
