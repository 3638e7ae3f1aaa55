"""`lgsp format ...`: which format a unit takes for edXML packets (edxml as sent, or the JSON form).

Kept apart from cli/main.py, which only calls `add_commands`; the commands work on the store named
by the config file, like the other administration commands, and need the `edxml` plugin enabled
in that config (it says which formats exist).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from lgsp.cli.messages import lang

_TEXT: dict[str, tuple[str, str]] = {
    "set": ("đơn vị {unit} nhận gói tin {family} ở định dạng {format}",
            "unit {unit} takes {family} packets as {format}"),
    "reset": ("đơn vị {unit} nhận gói tin {family} ở định dạng mặc định ({format})",
              "unit {unit} takes {family} packets in the default format ({format})"),
    "none": ("chưa đơn vị nào đặt định dạng riêng", "no unit has a format of its own"),
}


def _t(key: str, **kw: Any) -> str:
    vi, en = _TEXT[key]
    return (en if lang() == "en" else vi).format(**kw)


def _default(hub: Any, family: str) -> str:
    inspector = hub.content.families.get(family)
    return inspector.default_format if inspector is not None else "-"


def cmd_format_set(args: argparse.Namespace) -> int:
    from lgsp.cli.main import _store

    fmt = None if args.format == "default" else args.format

    async def go() -> str:
        async with _store(args) as hub:
            await hub.content.set_format(args.unit, args.family, fmt)
            return fmt or _default(hub, args.family)

    shown = asyncio.run(go())
    print(_t("set" if fmt else "reset", unit=args.unit, family=args.family, format=shown))
    return 0


def cmd_format_list(args: argparse.Namespace) -> int:
    from lgsp.cli.main import _store, _table

    async def go() -> tuple[list[dict[str, str]], dict[str, list[str]]]:
        async with _store(args) as hub:
            known = {f: sorted(hub.content.known_formats(f)) for f in hub.content.families}
            return await hub.content.list_formats(args.family), known

    rows, known = asyncio.run(go())
    if args.json:
        print(json.dumps({"formats": known, "units": rows}, ensure_ascii=False, indent=2))
    elif not rows:
        print(_t("none"))
    else:
        _table([[r["unit"], r["family"], r["format"], r["updated_at"]] for r in rows],
               ["unit", "family", "format", "updated"])
    return 0


def add_commands(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("format", help="the format a unit takes for edXML packets (edxml or json)")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("set", help="set a unit's format ('default' removes its own setting)")
    q.add_argument("unit", help="unit identifier")
    q.add_argument("format", help="edxml, json, or default")
    q.add_argument("--family", default="edxml", help="data-type family (default: edxml)")
    add_config(q)
    q.set_defaults(func=cmd_format_set)
    q = s.add_parser("list", help="units with a format of their own, and the formats that exist")
    q.add_argument("--family", help="only this family")
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_format_list)
