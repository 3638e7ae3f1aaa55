"""`lgsp audit verify|export|sign`: check, hand over and seal the tamper-evident audit log.

A command group of its own (registered in cli/main.py); the commands work on the store named by
the config file. `verify` exits 2 when it finds the chain altered, with the first finding.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import MESSAGES, t
from lgsp.cli.store import on_store

MESSAGES.update({
    "audit_ok": ("chuỗi nhật ký toàn vẹn: {checked} mục (seq {first}–{last}), {seals} dấu niêm phong hợp lệ",
                 "the audit chain is intact: {checked} entries (seq {first}–{last}), {seals} valid seals"),
    "audit_empty": ("nhật ký chưa có mục nào đã liên kết", "the audit log has no chained entry yet"),
    "audit_last_seal": ("dấu niêm phong gần nhất: seq {seq} lúc {at}", "last seal: seq {seq} at {at}"),
    "audit_no_seal": ("chưa có dấu niêm phong nào (lgsp audit sign)", "no seal yet (lgsp audit sign)"),
    "audit_unsealed": ("{n} mục sau dấu niêm phong gần nhất chưa được ký",
                       "{n} entries after the last seal are not signed yet"),
    "audit_pending": ("{n} mục đang chờ liên kết", "{n} entries wait to be chained"),
    "audit_bad": ("PHÁT HIỆN SAI LỆCH ({kind}) tại seq {seq}: {detail}",
                  "TAMPERING FOUND ({kind}) at seq {seq}: {detail}"),
    "audit_signed": ("đã ký đầu chuỗi: seq {seq}, {hash} lúc {at}", "signed the chain head: seq {seq}, {hash} at {at}"),
    "audit_unchanged": ("đầu chuỗi không đổi từ lần ký trước", "the chain head has not moved since the last seal"),
    "audit_exported": ("đã xuất {n} mục vào {path}", "exported {n} entries to {path}"),
    "audit_bad_date": ("{value}: ngày phải viết YYYY-MM-DD hoặc YYYY-MM-DDTHH:MM:SSZ",
                       "{value}: a date is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"),
})


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    for shape in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, shape).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CliError(t("audit_bad_date", value=value))


def cmd_audit_verify(args: argparse.Namespace) -> int:
    since = _date(args.since)

    async def use(hub: Any) -> Any:
        await hub.audit.chain()
        return await hub.audit.verify(since)

    report = on_store(args, use)
    if args.json:
        output.print_json(report.public())
        return 0 if report.ok else 2
    if report.findings:
        f = report.findings[0]
        print(t("audit_bad", kind=f.kind, seq=f.seq, detail=f.detail))
        return 2
    if not report.checked:
        print(t("audit_empty"))
        return 0
    print(t("audit_ok", checked=report.checked, first=report.first_seq, last=report.last_seq,
            seals=report.seals_checked))
    if report.last_seal_seq is None:
        print(t("audit_no_seal"))
    else:
        print(t("audit_last_seal", seq=report.last_seal_seq, at=report.last_seal_at))
        if report.last_seq and report.last_seq > report.last_seal_seq:
            print(t("audit_unsealed", n=report.last_seq - report.last_seal_seq))
    if report.pending:
        print(t("audit_pending", n=report.pending))
    return 0


def cmd_audit_sign(args: argparse.Namespace) -> int:
    seal = on_store(args, lambda hub: hub.audit.seal(force=args.force))
    if seal is None:
        print(t("audit_unchanged"))
    else:
        print(t("audit_signed", seq=seal["seq"], hash=seal["hash"], at=seal["signed_at"]))
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    since, until = _date(args.since), _date(args.until)
    doc = on_store(args, lambda hub: hub.audit.export(since, until))
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if args.output == "-":
        print(text, end="")
        return 0
    path = Path(args.output)
    tmp = path.with_name(path.name + ".part")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
    print(t("audit_exported", n=len(doc["entries"]), path=path))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("audit", help="the tamper-evident audit log: verify, export, sign")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("verify", help="recompute the chain and check the seals (exit 2: tampering found)")
    q.add_argument("--from", dest="since", help="start at the first entry of this date (YYYY-MM-DD)")
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_audit_verify)
    q = s.add_parser("export", help="write a range of entries with their proof, for an auditor")
    q.add_argument("--from", dest="since", help="first date (YYYY-MM-DD, included)")
    q.add_argument("--to", dest="until", help="end date (YYYY-MM-DD, excluded)")
    q.add_argument("-o", "--output", required=True, help="file to write (- for standard output)")
    add_config(q)
    q.set_defaults(func=cmd_audit_export)
    q = s.add_parser("sign", help="sign the chain head now with the hub's key")
    q.add_argument("--force", action="store_true", help="sign even if the head has not moved")
    add_config(q)
    q.set_defaults(func=cmd_audit_sign)
