"""Traffic (a unit's sent and received packets), connection history, statistics and report exports.

A unit admin picks only among its units; any other unit answers 404. Packets are listed by their
metadata only: the console never shows content.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from lgsp.adapters.console import timeline
from lgsp.adapters.console.base import PREFIX, WHO, BadFilter, console_of, filter_day, forbidden, language_of, page
from lgsp.core.api import (
    DELIVERY_STATES,
    N_,
    VIETNAM_TZ,
    Text,
    period_bounds,
    presence_history,
    to_csv,
    to_xlsx,
    traffic_report,
    unit_report,
)

routes = web.RouteTableDef()

# The report periods as a person reads them (translated where shown).
PERIODS = {"day": N_("Day"), "month": N_("Month"), "quarter": N_("Quarter"), "year": N_("Year")}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: The date filters, by query parameter, named as the form labels them (the reader's language).
DATE_FIELDS = {"from": N_("From date"), "to": N_("To date"), "day": N_("Containing the day")}


def _date(request: web.Request, name: str, default: dt.date) -> dt.date:
    """The day the filter `name` asks for, `default` when empty. A value that is no day the page
    can use (`2026-12-01garbage`, 2026-13-01, year 1) raises `BadFilter`: the page says so and shows
    nothing, rather than the numbers of a day nobody asked for."""
    day = filter_day(request.query.get(name), DATE_FIELDS[name])
    return default if day is None else day


def _now(request: web.Request) -> dt.datetime:
    """The hub's "now" (core/clock.py): the default periods and the end of a current one follow it."""
    return console_of(request).hub.clock()


def _today(request: web.Request) -> dt.date:
    return _now(request).astimezone(VIETNAM_TZ).date()


def _as_typed(request: web.Request) -> dict[str, str]:
    """The period's fields as the form shows them again after a `BadFilter`: as typed (a date field
    shows a value that is no date as empty, and sends an empty one as "the default")."""
    return {"first": request.query.get("from", ""), "last": request.query.get("to", "")}


def _span(request: web.Request) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    today = _today(request)
    first = _date(request, "from", today - dt.timedelta(days=30))
    last = _date(request, "to", today)
    if last < first:
        first, last = last, first
    since = dt.datetime.combine(first, dt.time(), tzinfo=VIETNAM_TZ).astimezone(dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=VIETNAM_TZ).astimezone(dt.UTC)
    return first, last, since, until


async def _unit_choice(request: web.Request) -> tuple[list[Any], str | None]:
    console = console_of(request)
    who = request[WHO]
    units = [u for u in await console.hub.directory.search_units("", limit=5000) if who.can_see(u.id)]
    wanted = request.query.get("unit") or (units[0].id if len(units) == 1 else None)
    return units, wanted


@routes.get(PREFIX + "/traffic")
@page()
async def traffic(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    units, unit_id = await _unit_choice(request)
    if unit_id is not None and not who.can_see(unit_id):
        return forbidden(request)
    role = request.query.get("role") if request.query.get("role") in ("sent", "received") else "sent"
    partner = request.query.get("partner", "").strip()[:40]
    state = request.query.get("state", "").strip()
    state = state if state in DELIVERY_STATES else ""  # chosen from a list; anything else filters nothing
    data_type = request.query.get("data_type", "").strip()[:64]
    subject = request.query.get("subject", "").strip()[:200]
    rows: list[Any] = []
    error: Text | None
    try:
        first, last, since, until = _span(request)
    except BadFilter as exc:   # nothing is listed rather than another period's packets
        error, dates = exc.message, _as_typed(request)
    else:
        error, dates = None, {"first": first.isoformat(), "last": last.isoformat()}
        if unit_id:
            rows = await traffic_report(console.hub.db, unit_id, since, until, role=role or "sent", partner=partner,
                                        state=state, data_type=data_type, subject=subject)
    return console.render(request, "traffic.html", status=422 if error else 200, error=error, units=units,
                          unit_id=unit_id or "", role=role, rows=rows, **dates,
                          partner=partner, state=state, states=DELIVERY_STATES, data_type=data_type, subject=subject)


@routes.get(PREFIX + "/connections")
@page()
async def connections(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    units, unit_id = await _unit_choice(request)
    if unit_id is not None and not who.can_see(unit_id):
        return forbidden(request)
    try:
        first, last, since, until = _span(request)
    except BadFilter as exc:
        return console.render(request, "connections.html", status=422, error=exc.message, units=units,
                              unit_id=unit_id or "", changes=[], offsets=[], bucket=None, chart=None, unit=None,
                              **_as_typed(request))
    found = await presence_history(console.hub.db, unit_id, since, until, now=_now(request)) if unit_id else None
    unit = await console.hub.directory.get_unit(unit_id) if unit_id else None
    chart = timeline.build(found["periods"], found["offsets"], since, until) if found else None
    return console.render(request, "connections.html", error=None, units=units, unit_id=unit_id or "",
                          changes=found["changes"] if found else [], offsets=found["offsets"] if found else [],
                          bucket=found["offset_bucket_seconds"] if found else None, chart=chart,
                          unit=unit, first=first.isoformat(), last=last.isoformat())


async def _report_of(request: web.Request) -> tuple[Any, list[Any], str | None, str, str]:
    console = console_of(request)
    units, unit_id = await _unit_choice(request)
    asked = request.query.get("period", "")
    period = asked if asked in PERIODS else "month"
    day = _date(request, "day", _today(request))
    report = None
    if unit_id:
        since, until = period_bounds(period, day)
        report = await unit_report(console.hub.db, unit_id, since, until, now=_now(request))
    return report, units, unit_id, period, day.isoformat()


@routes.get(PREFIX + "/reports")
@page()
async def reports(request: web.Request) -> web.StreamResponse:
    who = request[WHO]
    try:
        report, units, unit_id, period, day = await _report_of(request)
    except BadFilter as exc:
        units, unit_id = await _unit_choice(request)
        asked = request.query.get("period", "")
        return console_of(request).render(
            request, "reports.html", status=422, error=exc.message, report=None, units=units,
            unit_id=unit_id or "", period=asked if asked in PERIODS else "month", periods=PERIODS,
            day=request.query.get("day", ""), partners_max=0)
    if unit_id is not None and not who.can_see(unit_id):
        return forbidden(request)
    partners_max = max((v.get("sent", 0) + v.get("received", 0) for v in report.by_partner.values()),
                       default=0) if report else 0
    return console_of(request).render(request, "reports.html", error=None, report=report, units=units,
                                      unit_id=unit_id or "", period=period, periods=PERIODS, day=day,
                                      partners_max=partners_max)


@routes.get(PREFIX + r"/reports/export.{fmt:xlsx|csv}")
@page()
async def report_export(request: web.Request) -> web.StreamResponse:
    who = request[WHO]
    try:
        report, _units, unit_id, period, day = await _report_of(request)
    except BadFilter as exc:   # no file of another period: the reason, in the reader's language
        return console_of(request).render(request, "error.html", status=422, message=exc.message)
    if report is None or unit_id is None or not who.can_see(unit_id):
        return forbidden(request)
    fmt = request.match_info["fmt"]
    lang = language_of(request)  # the rows' names in the reader's language, like the page
    body = to_xlsx(report, lang) if fmt == "xlsx" else to_csv(report, lang)
    name = f"bao-cao-{unit_id}-{period}-{day}.{fmt}"
    return web.Response(body=body, content_type=XLSX if fmt == "xlsx" else "text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
