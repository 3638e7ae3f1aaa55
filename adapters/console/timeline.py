"""The connection page's timeline: online/offline periods as a strip and clock offsets as a line
over the chosen period, drawn as inline SVG by the server (no script; the page's CSP allows no
inline style, so every colour is a class in console.css). The numbers here carry no words: the
template adds the title, the description and the tables that say the same in text."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from lgsp.core.api import VIETNAM_TZ

WIDTH, HEIGHT = 1000, 270
LEFT, RIGHT = 70, 990          # the plot's horizontal extent
STRIP_TOP, STRIP_BOTTOM = 8, 32
PLOT_TOP, PLOT_BOTTOM = 52, 240
DOTS_UP_TO = 120               # each point gets a marker (with its own tooltip) up to this many


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = RIGHT
    strip_top: int = STRIP_TOP
    strip_height: int = STRIP_BOTTOM - STRIP_TOP
    plot_top: int = PLOT_TOP
    plot_bottom: int = PLOT_BOTTOM
    periods: list[dict[str, Any]] = field(default_factory=list)   # x, w, online, from, to
    line: str = ""                                                 # polyline points
    ranges: list[dict[str, float]] = field(default_factory=list)   # x, y1, y2 (lowest to highest)
    dots: list[dict[str, Any]] = field(default_factory=list)       # x, y, point
    x_ticks: list[dict[str, Any]] = field(default_factory=list)    # x, label, anchor
    y_ticks: list[dict[str, Any]] = field(default_factory=list)    # y, label
    zero: float | None = None
    low: float | None = None
    high: float | None = None
    latest: float | None = None
    online_share: float | None = None                              # of the known part of the period


def _nice_step(span: float) -> float:
    raw = span / 4
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def build(periods: list[dict[str, Any]], offsets: list[dict[str, Any]], since: dt.datetime,
          until: dt.datetime) -> Chart:
    chart = Chart()
    total = max(1.0, (until - since).total_seconds())

    def x(moment: dt.datetime) -> float:
        share = min(1.0, max(0.0, (moment - since).total_seconds() / total))
        return round(LEFT + share * (RIGHT - LEFT), 1)

    known = online = 0.0
    for p in periods:
        x1, x2 = x(p["from"]), x(p["to"])
        chart.periods.append({"x": x1, "w": max(0.5, round(x2 - x1, 1)), "online": p["online"],
                              "from": p["from"], "to": p["to"]})
        seconds = (p["to"] - p["from"]).total_seconds()
        known += seconds
        online += seconds if p["online"] else 0.0
    chart.online_share = round(online / known, 4) if known else None

    days = total / 86400
    fmt = "%H:%M" if days <= 1 else "%d/%m %H:%M" if days <= 4 else "%d/%m" if days <= 400 else "%m/%Y"
    for i in range(6):
        moment = since + dt.timedelta(seconds=total * i / 5)
        chart.x_ticks.append({"x": x(moment), "label": moment.astimezone(VIETNAM_TZ).strftime(fmt),
                              "anchor": "end" if i == 5 else "middle"})

    if not offsets:
        return chart
    chart.low = min(float(o["min_seconds"]) for o in offsets)
    chart.high = max(float(o["max_seconds"]) for o in offsets)
    chart.latest = float(offsets[-1]["offset_seconds"])
    bottom, top = min(0.0, chart.low), max(0.0, chart.high)
    if top - bottom < 1.0:
        bottom, top = bottom - 0.5, top + 0.5
    step = _nice_step(top - bottom)
    bottom, top = math.floor(bottom / step) * step, math.ceil(top / step) * step

    def y(seconds: float) -> float:
        return round(PLOT_BOTTOM - (seconds - bottom) / (top - bottom) * (PLOT_BOTTOM - PLOT_TOP), 1)

    value = bottom
    while value <= top + step / 2:
        chart.y_ticks.append({"y": y(value), "label": f"{value:+g} s" if value else "0 s"})
        value += step
    chart.zero = y(0.0)
    points = []
    for o in offsets:
        px, py = x(o["at"]), y(float(o["offset_seconds"]))
        points.append(f"{px},{py}")
        if o["max_seconds"] > o["min_seconds"]:
            chart.ranges.append({"x": px, "y1": y(float(o["max_seconds"])), "y2": y(float(o["min_seconds"]))})
        if len(offsets) <= DOTS_UP_TO:
            chart.dots.append({"x": px, "y": py, "point": o})
    chart.line = " ".join(points)
    return chart
