"""`GET /v1/stats`: a unit's own statistics for a period, for its systems (the signed-request
protocol, like every /v1 call). The same numbers as the console's report page and `lgsp report`."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from lgsp.core.api import VIETNAM_TZ, Problem, authenticate, hub_of, period_bounds, unit_report

routes = web.RouteTableDef()


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    period = request.query.get("period", "month")
    if period not in ("day", "month", "quarter", "year"):
        raise Problem("request.invalid", "period must be day, month, quarter or year", field="period")
    text = request.query.get("day")
    try:
        day = dt.date.fromisoformat(text) if text else dt.datetime.now(VIETNAM_TZ).date()
    except ValueError:
        raise Problem("request.invalid", "day must be YYYY-MM-DD", field="day") from None
    since, until = period_bounds(period, day)
    report = await unit_report(hub_of(request).db, principal.unit_id, since, until)
    return web.json_response({"period": period, **report.as_dict()})
