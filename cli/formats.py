"""`lgsp format ...`: which format a unit takes for edXML packets (edxml as sent, or the JSON form).

A command group of its own (registered in cli/main.py); the commands work on the store named by
the config file, like the other administration commands, and need the `edxml` plugin enabled in
that config (it says which formats exist).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.messages import t
from lgsp.cli.store import on_store


def _default(hub: Any, family: str) -> str:
    inspector = hub.content.families.get(family)
    return inspector.default_format if inspector is not None else "-"


def cmd_format_set(args: argparse.Namespace) -> int:
    fmt = None if args.format == "default" else args.format

    async def use(hub: Any) -> str:
        await hub.content.set_format(args.unit, args.family, fmt)
        return fmt or _default(hub, args.family)

    shown = on_store(args, use)
    print(t("unit {unit} takes {family} packets as {format}", unit=args.unit, family=args.family, format=shown) if fmt
          else t("unit {unit} takes {family} packets in the default format ({format})", unit=args.unit,
                 family=args.family, format=shown))
    return 0


def cmd_format_list(args: argparse.Namespace) -> int:
    async def use(hub: Any) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
        known = {f: sorted(hub.content.known_formats(f)) for f in hub.content.families}
        return await hub.content.list_formats(args.family), known

    rows, known = on_store(args, use)
    if args.json:
        print(json.dumps({"formats": known, "units": rows}, ensure_ascii=False, indent=2))
    elif not rows:
        print(t("no unit has a format of its own"))
    else:
        output.table([[r["unit"], r["family"], r["format"], r["updated_at"]] for r in rows],
               [t("UNIT"), t("FAMILY"), t("FORMAT"), t("UPDATED")])
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("format", help=t("the format a unit takes for edXML packets (edxml or json)"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("set", help=t("set a unit's format ('default' removes its own setting)"))
    q.add_argument("unit", help=t("unit identifier"))
    q.add_argument("format", help=t("edxml, json, or default"))
    q.add_argument("--family", default="edxml", help=t("data-type family (default: edxml)"))
    add_config(q)
    q.set_defaults(func=cmd_format_set)
    q = s.add_parser("list", help=t("units with a format of their own, and the formats that exist"))
    q.add_argument("--family", help=t("only this family"))
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_format_list)
