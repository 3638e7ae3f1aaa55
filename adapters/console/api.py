"""`GET /v1/stats` and `GET /v1/presence`: a unit's own statistics for a period and its connection
history (online/offline periods, clock offsets over the period and the last one), for its systems
(the signed-request protocol, like every /v1 call). The same numbers as the console's report and
connection pages and `lgsp report`. A unit reads only itself: naming another unit is refused."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from lgsp.core.api import (
    FIRST_REPORT_DAY,
    LAST_REPORT_DAY,
    VIETNAM_TZ,
    Problem,
    Text,
    authenticate,
    hub_of,
    iso,
    json_response,
    parse_report_day,
    period_bounds,
    presence_history,
    unit_report,
)

routes = web.RouteTableDef()


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    hub = hub_of(request)
    now = hub.clock()   # the hub's "now" (core/clock.py), as every time rule of the hub reads it
    period = request.query.get("period", "month")
    if period not in ("day", "month", "quarter", "year"):
        raise Problem("request.invalid", Text("period must be day, month, quarter or year"), field="period")
    text = request.query.get("day")
    try:
        day = parse_report_day(text) if text else now.astimezone(VIETNAM_TZ).date()
    except ValueError:
        raise Problem("request.invalid", Text("day must be YYYY-MM-DD"), field="day") from None
    if not FIRST_REPORT_DAY <= day <= LAST_REPORT_DAY:  # a period past the calendar's ends overflows
        raise Problem("request.invalid", Text("{name} must be between {first} and {last}", name="day",
                                              first=FIRST_REPORT_DAY.isoformat(), last=LAST_REPORT_DAY.isoformat()),
                      field="day")
    since, until = period_bounds(period, day)
    report = await unit_report(hub.db, principal.unit_id, since, until, now=now)
    return web.json_response({"period": period, **report.as_dict()})


MAX_PRESENCE_DAYS = 366
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def _moment(text: str | None, name: str, default: dt.datetime) -> dt.datetime:
    """A date (a Vietnam midnight) or a date-time with its offset."""
    if not text:
        return default
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time(), tzinfo=VIETNAM_TZ)
        else:
            moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise Problem("request.invalid", Text("{name} needs a time zone offset (e.g. +07:00 or Z)", name=name),
                          field=name)
        moment = moment.astimezone(dt.UTC)   # OverflowError at the calendar's ends (0001-01-01+14:00)
    except (ValueError, OverflowError):
        raise Problem("request.invalid", Text("{name} must be YYYY-MM-DD or a date-time with its offset", name=name),
                      field=name) from None
    if not EARLIEST <= moment <= LATEST:  # and no default period reaches past the calendar
        raise Problem("request.invalid", Text("{name} must be between {first} and {last}", name=name,
                                              first=EARLIEST.date().isoformat(), last=LATEST.date().isoformat()),
                      field=name)
    return moment


@routes.get("/v1/presence")
async def presence(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    unit_id = request.query.get("unit") or principal.unit_id
    if unit_id != principal.unit_id:
        raise Problem("forbidden", Text("a unit reads only its own connection history"), field="unit")
    hub = hub_of(request)
    now = hub.clock()
    until = _moment(request.query.get("to"), "to", now)
    since = _moment(request.query.get("from"), "from", until - dt.timedelta(days=7))
    if since >= until:
        raise Problem("request.invalid", Text("from must be before to"), field="from")
    if until - since > dt.timedelta(days=MAX_PRESENCE_DAYS):
        raise Problem("request.invalid", Text("the period is at most {MAX_PRESENCE_DAYS} days",
                                              MAX_PRESENCE_DAYS=MAX_PRESENCE_DAYS), field="from")
    found = await presence_history(hub.db, unit_id, since, until, now=now)
    if found is None:
        raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
    # The store lags this node's own observations by up to a second (the presence flush).
    online, last_seen = hub.presence.overlay(unit_id, found["online"], found["last_seen_at"])
    return json_response({
        "unit": unit_id, "from": iso(since), "to": iso(until), "online": online,
        "last_seen_at": iso(last_seen) if last_seen else None,
        "clock_offset_seconds": found["clock_offset_seconds"],
        "periods": [{"from": iso(p["from"]), "to": iso(p["to"]), "online": p["online"], "cause": p["cause"]}
                    for p in found["periods"]],
        "changes": [{"at": iso(c["at"]), "online": c["online"], "cause": c["cause"]} for c in found["changes"]],
        "clock_offsets": [{"at": iso(o["at"]), "offset_seconds": o["offset_seconds"], "min_seconds": o["min_seconds"],
                           "max_seconds": o["max_seconds"], "requests": o["requests"]} for o in found["offsets"]],
        "clock_offsets_bucket_seconds": found["offset_bucket_seconds"]})
