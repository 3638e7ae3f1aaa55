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
    print(t("notice_added", id=notice.id, start=output.when(notice.starts_at), end=output.when(notice.ends_at)))
    return 0


def cmd_notice_list(args: argparse.Namespace) -> int:
    found = on_store(args, lambda hub: hub.notices.list(include_past=args.all))
    if args.json:
        output.print_json([n.public() | {"created_at": output.when(n.created_at), "created_by": n.created_by,
                                         "announced": n.announced_at is not None,
                                         "withdrawn": n.withdrawn_at is not None} for n in found])
        return 0
    if not found:
        print(t("notice_none"))
        return 0
    output.table([[n.id, output.when(n.starts_at), output.when(n.ends_at),
                   t("yes") if n.announced_at else t("no"), n.message if n.withdrawn_at is None
                   else f"({t('notice_withdrawn_mark')}) {n.message}"] for n in found],
                 [t("h_id"), t("h_from"), t("h_to"), t("h_announced"), t("h_message")])
    return 0


def cmd_notice_withdraw(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.notices.withdraw(args.id)

    notice = on_store(args, use)
    if notice is None:  # pragma: no cover - withdraw raises instead
        raise CliError(f"not_found: notice {args.id}")
    print(t("notice_withdrawn", id=notice.id))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("notice", help="thông báo bảo trì gửi mọi đơn vị")
    nsub = p.add_subparsers(dest="notice_command", required=True, metavar="ACTION")
    a = nsub.add_parser("add", help="thêm thông báo (hub đang chạy gửi tới mọi đơn vị)")
    a.add_argument("--from", dest="start", type=_when, required=True,
                   help="bắt đầu, ISO 8601 (không ghi múi giờ: giờ Việt Nam)")
    a.add_argument("--to", dest="end", type=_when, required=True, help="kết thúc, ISO 8601")
    a.add_argument("message", help="nội dung thông báo (tối đa 1000 ký tự)")
    add_config(a)
    a.set_defaults(func=cmd_notice_add)
    ls = nsub.add_parser("list", help="các thông báo chưa kết thúc")
    ls.add_argument("--all", action="store_true", help="kể cả thông báo đã qua hoặc đã rút")
    ls.add_argument("--json", action="store_true", help="in JSON")
    add_config(ls)
    ls.set_defaults(func=cmd_notice_list)
    w = nsub.add_parser("withdraw", help="rút một thông báo")
    w.add_argument("id")
    add_config(w)
    w.set_defaults(func=cmd_notice_withdraw)
