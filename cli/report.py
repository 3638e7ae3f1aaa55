"""`lgsp report`: a unit's statistics for a day, month, quarter or year (the console's report page),
printed, as JSON, or written to a .xlsx or .csv file. `lgsp connections`: a unit's connection history
(online/offline periods and clock offsets; the console's connection page). Both work on the store
named by the config."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import t
from lgsp.cli.store import on_store


def cmd_report(args: argparse.Namespace) -> int:
    from lgsp.core.reports import parse_report_day, period_bounds, to_csv, to_xlsx, unit_report

    try:
        day = parse_report_day(args.day) if args.day else dt.date.today()
        since, until = period_bounds(args.period, day)  # ValueError past the calendar's ends
    except ValueError:
        raise CliError(t("the day is YYYY-MM-DD: {day}", day=args.day)) from None

    async def use(hub: Any) -> Any:
        if await hub.directory.get_unit(args.unit) is None:
            raise CliError(t("no unit {unit}", unit=args.unit))
        return await unit_report(hub.db, args.unit, since, until)

    report = on_store(args, use)
    if args.output:
        path = Path(args.output)
        path.write_bytes(to_xlsx(report) if path.suffix.lower() == ".xlsx" else to_csv(report))
        print(t("wrote the report to {path}", path=path))
    elif args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        output.table([[s, i, "-" if v is None else str(v)] for s, i, v in report.rows()],
                     [t("SECTION"), t("ITEM"), t("VALUE")])
    return 0


def _day(text: str | None, default: dt.date) -> dt.date:
    try:
        day = dt.date.fromisoformat(text) if text else default
    except ValueError:
        raise CliError(t("the day is YYYY-MM-DD: {day}", day=text)) from None
    if not dt.date(1970, 1, 1) <= day <= dt.date(9000, 12, 31):
        raise CliError(t("the day is between 1970-01-01 and 9000-12-31: {day}", day=text))
    return day


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def cmd_connections(args: argparse.Namespace) -> int:
    from lgsp.core.registration.workdays import VIETNAM_TZ
    from lgsp.core.reports import presence_history

    today = dt.datetime.now(VIETNAM_TZ).date()
    last = _day(args.to, today)
    first = _day(args.from_, last - dt.timedelta(days=6))
    if last < first:
        raise CliError(t("--from {first} is after --to {last}", first=first, last=last))
    since = dt.datetime.combine(first, dt.time(), tzinfo=VIETNAM_TZ).astimezone(dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=VIETNAM_TZ).astimezone(dt.UTC)

    async def use(hub: Any) -> Any:
        found = await presence_history(hub.db, args.unit, since, until)
        if found is None:
            raise CliError(t("no unit {unit}", unit=args.unit))
        return found

    found = on_store(args, use)
    if args.json:
        def iso(moment: dt.datetime) -> str:
            return moment.isoformat()
        print(json.dumps({
            "unit": args.unit, "from": iso(since), "to": iso(until), "online": found["online"],
            "last_seen_at": iso(found["last_seen_at"]) if found["last_seen_at"] else None,
            "clock_offset_seconds": found["clock_offset_seconds"],
            "periods": [{**p, "from": iso(p["from"]), "to": iso(p["to"])} for p in found["periods"]],
            "clock_offsets": [{**o, "at": iso(o["at"])} for o in found["offsets"]],
            "clock_offsets_bucket_seconds": found["offset_bucket_seconds"]}, ensure_ascii=False, indent=2))
        return 0

    def local(moment: dt.datetime) -> str:
        return output.when(moment.astimezone(VIETNAM_TZ))

    print(t("Unit {unit}, {first} to {last} (Vietnam time)", unit=args.unit, first=first, last=last))
    print()
    output.table([[local(p["from"]), local(p["to"]), t("online") if p["online"] else t("offline"), p["cause"] or "-"]
                  for p in found["periods"]], [t("FROM"), t("TO"), t("STATE"), t("CAUSE")])
    print()
    if found["offset_bucket_seconds"]:
        print(t("Clock offsets (seconds the unit's clock was ahead), one line per {seconds} s: the mean",
                seconds=found["offset_bucket_seconds"]))
    else:
        print(t("Clock offsets (seconds the unit's clock was ahead), one line per sample"))
    output.table([[local(o["at"]), _seconds(o["offset_seconds"]), _seconds(o["min_seconds"]),
                   _seconds(o["max_seconds"]), str(o["requests"])] for o in found["offsets"]],
                 [t("AT"), t("OFFSET"), t("MIN"), t("MAX"), t("REQUESTS")])
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("report",
                       help=t("a unit's statistics for a period (packets, bytes, delivery times, online ratio)"))
    p.add_argument("--unit", required=True)
    p.add_argument("--period", choices=("day", "month", "quarter", "year"), default="month")
    p.add_argument("--day", help=t("a day inside the period, YYYY-MM-DD (default: today)"))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true")
    g.add_argument("-o", "--output", help=t("write FILE.xlsx or FILE.csv"))
    add_config(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("connections",
                       help=t("a unit's connection history: online/offline periods and clock offsets"))
    p.add_argument("--unit", required=True)
    p.add_argument("--from", dest="from_", help=t("the first day, YYYY-MM-DD (default: 6 days before --to)"))
    p.add_argument("--to", help=t("the last day, YYYY-MM-DD, included (default: today)"))
    p.add_argument("--json", action="store_true")
    add_config(p)
    p.set_defaults(func=cmd_connections)
