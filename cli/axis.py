"""`lgsp axis ...`: the bridge to the national document axis, from the command line.

`lgsp axis sync` fills the directory with the axis's agencies now (units of the axis's zone),
with the settings of `adapters.national_axis` and its secret from the store, as the hub's
scheduled sync does; a running hub sees the new units at its next destination check.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import t
from lgsp.cli.store import on_store
from lgsp.core.i18n import render


def cmd_axis_sync(args: argparse.Namespace) -> int:
    from lgsp.adapters.national_axis.client import AxisError
    from lgsp.adapters.national_axis.directory_sync import sync_with_store
    from lgsp.adapters.national_axis.settings import SECTION, parse_settings

    async def use(hub: Any) -> Any:
        settings, issues = parse_settings(hub.config.adapters.get("national_axis"))
        if settings is None:
            raise CliError(t("{section} is not configured (see docs/national-axis.md)", section=SECTION) if not issues
                           else t("{key}: {message}", key=issues[0][0], message=issues[0][1]))
        try:
            return await sync_with_store(hub, settings), settings.zone
        except AxisError as exc:
            raise CliError(t("the national axis answered {code}: {desc}", code=exc.code, desc=exc.desc)) from None

    report, zone = on_store(args, use)
    if args.json:
        print(json.dumps({"zone": zone, "added": report.added, "updated": report.updated,
                          "suspended": report.suspended, "reactivated": report.reactivated,
                          "unchanged": report.unchanged,
                          "skipped": [{"code": c, "reason": render(r)} for c, r in report.skipped]},
                         ensure_ascii=False, indent=2))
    else:
        print(t("national axis directory synchronised into zone {zone}: {added} added, {updated} updated, "
                "{suspended} suspended, {skipped} skipped",
                zone=zone, added=report.added, updated=report.updated, suspended=report.suspended,
                skipped=len(report.skipped)))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("axis", help=t("the national document axis (VXP) bridge"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("sync", help=t("fill the directory with the axis's agencies now"))
    q.add_argument("--json", action="store_true", help=t("print the report as JSON"))
    add_config(q)
    q.set_defaults(func=cmd_axis_sync)
