"""`lgsp report`: a unit's statistics for a day, month, quarter or year (the console's report page),
printed, as JSON, or written to a .xlsx or .csv file. Works on the store named by the config."""

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
    from lgsp.core.reports import period_bounds, to_csv, to_xlsx, unit_report

    try:
        day = dt.date.fromisoformat(args.day) if args.day else dt.date.today()
    except ValueError:
        raise CliError(t("the day is YYYY-MM-DD: {day}", day=args.day)) from None
    since, until = period_bounds(args.period, day)

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
