"""`lgsp route explain ID`: where a packet for this destination would go, and why (core/routing.py).

Reads the store and the config like the other administration commands; changes nothing (an
unknown identifier is only added to its zone when a packet is really sent to it).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import lang, t
from lgsp.cli.store import on_store


def cmd_route_explain(args: argparse.Namespace) -> int:
    async def use(hub: Any) -> Any:
        return await hub.router.explain(args.unit)

    decision = on_store(args, use)
    if args.json:
        print(json.dumps(decision.as_dict(), ensure_ascii=False, indent=2))
    else:
        reason = decision.reason_en if lang() == "en" else decision.reason_vi
        if decision.route is None:
            raise CliError(t("{unit}: no route — {reason}", unit=decision.unit, reason=reason))
        print(t("{unit}: zone {zone}, route {route} — {reason}", unit=decision.unit, zone=decision.zone,
                route=decision.route, reason=reason))
    return 0 if decision.route is not None else 1


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("route", help=t("how destinations are routed"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("explain", help=t("where a packet for this destination goes, and why"))
    q.add_argument("unit", help=t("destination identifier"))
    q.add_argument("--json", action="store_true", help=t("print the decision as JSON"))
    add_config(q)
    q.set_defaults(func=cmd_route_explain)
