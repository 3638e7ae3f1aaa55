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
from lgsp.cli.messages import t
from lgsp.cli.store import on_store


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    for shape in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, shape).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CliError(t("{value}: a date is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ", value=value))


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
        print(t("TAMPERING FOUND ({kind}) at seq {seq}: {detail}", kind=f.kind, seq=f.seq, detail=f.detail))
        return 2
    if not report.checked:
        print(t("the audit log has no chained entry yet"))
        return 0
    print(t("the audit chain is intact: {checked} entries (seq {first}–{last}), {seals} valid seals",
            checked=report.checked, first=report.first_seq, last=report.last_seq,
            seals=report.seals_checked))
    if report.last_seal_seq is None:
        print(t("no seal yet (lgsp audit sign)"))
    else:
        print(t("last seal: seq {seq} at {at}", seq=report.last_seal_seq, at=report.last_seal_at))
        if report.last_seq and report.last_seq > report.last_seal_seq:
            print(t("{n} entries after the last seal are not signed yet", n=report.last_seq - report.last_seal_seq))
    if report.pending:
        print(t("{n} entries wait to be chained", n=report.pending))
    return 0


def cmd_audit_sign(args: argparse.Namespace) -> int:
    seal = on_store(args, lambda hub: hub.audit.seal(force=args.force))
    if seal is None:
        print(t("the chain head has not moved since the last seal"))
    else:
        print(t("signed the chain head: seq {seq}, {hash} at {at}", seq=seal["seq"], hash=seal["hash"],
                at=seal["signed_at"]))
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
    print(t("exported {n} entries to {path}", n=len(doc["entries"]), path=path))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("audit", help=t("the tamper-evident audit log: verify, export, sign"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("verify", help=t("recompute the chain and check the seals (exit 2: tampering found)"))
    q.add_argument("--from", dest="since", help=t("start at the first entry of this date (YYYY-MM-DD)"))
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_audit_verify)
    q = s.add_parser("export", help=t("write a range of entries with their proof, for an auditor"))
    q.add_argument("--from", dest="since", help=t("first date (YYYY-MM-DD, included)"))
    q.add_argument("--to", dest="until", help=t("end date (YYYY-MM-DD, excluded)"))
    q.add_argument("-o", "--output", required=True, help=t("file to write (- for standard output)"))
    add_config(q)
    q.set_defaults(func=cmd_audit_export)
    q = s.add_parser("sign", help=t("sign the chain head now with the hub's key"))
    q.add_argument("--force", action="store_true", help=t("sign even if the head has not moved"))
    add_config(q)
    q.set_defaults(func=cmd_audit_sign)
