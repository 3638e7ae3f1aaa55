"""`lgsp notice add|list|withdraw`: maintenance notices a running hub announces to every unit."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import t
from lgsp.cli.store import on_store


def _when(text: str) -> dt.datetime:
    """An ISO 8601 time; without a zone it is Vietnam time (UTC+7), the zone operators write in."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-12-20T22:00)") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone(dt.timedelta(hours=7)))


def cmd_notice_add(args: argparse.Namespace) -> int:
    by = getpass.getuser()
    notice = on_store(args, lambda hub: hub.notices.add(args.message, args.start, args.end, by=f"cli:{by}"))
    print(t("added notice {id} ({start} → {end}); the running hub announces it to every unit", id=notice.id,
            start=output.when(notice.starts_at), end=output.when(notice.ends_at)))
    return 0


def cmd_notice_list(args: argparse.Namespace) -> int:
    found = on_store(args, lambda hub: hub.notices.list(include_past=args.all))
    if args.json:
        output.print_json([n.public() | {"created_at": output.when(n.created_at), "created_by": n.created_by,
                                         "announced": n.announced_at is not None,
                                         "withdrawn": n.withdrawn_at is not None} for n in found])
        return 0
    if not found:
        print(t("no notices"))
        return 0
    output.table([[n.id, output.when(n.starts_at), output.when(n.ends_at),
                   t("yes") if n.announced_at else t("no"), n.message if n.withdrawn_at is None
                   else "(" + t("withdrawn") + f") {n.message}"] for n in found],
                 [t("ID"), t("FROM"), t("TO"), t("ANNOUNCED"), t("MESSAGE")])
    return 0


def cmd_notice_withdraw(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.notices.withdraw(args.id)

    notice = on_store(args, use)
    if notice is None:  # pragma: no cover - withdraw raises instead
        raise CliError(t("not_found: notice {id}", id=args.id))
    print(t("withdrew notice {id}", id=notice.id))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("notice", help=t("maintenance notices sent to every unit"))
    nsub = p.add_subparsers(dest="notice_command", required=True, metavar="ACTION")
    a = nsub.add_parser("add", help=t("add a notice (the running hub announces it to every unit)"))
    a.add_argument("--from", dest="start", type=_when, required=True,
                   help=t("start, ISO 8601 (without a time zone: Vietnam time)"))
    a.add_argument("--to", dest="end", type=_when, required=True, help=t("end, ISO 8601"))
    a.add_argument("message", help=t("the notice's text (at most 1000 characters)"))
    add_config(a)
    a.set_defaults(func=cmd_notice_add)
    ls = nsub.add_parser("list", help=t("notices not yet over"))
    ls.add_argument("--all", action="store_true", help=t("also notices that are over or withdrawn"))
    ls.add_argument("--json", action="store_true", help=t("in JSON"))
    add_config(ls)
    ls.set_defaults(func=cmd_notice_list)
    w = nsub.add_parser("withdraw", help=t("withdraw a notice"))
    w.add_argument("id")
    add_config(w)
    w.set_defaults(func=cmd_notice_withdraw)
