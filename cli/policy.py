"""`lgsp policy add|list|remove|explain`: the communication policy (who may reach whom).

A command group of its own (registered in cli/main.py); like the other administration
commands they work on the store named by the config file. Every change is recorded with who made
it: `--by`, else $LGSP_OPERATOR, else the login name (cli/store.py).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.messages import t
from lgsp.cli.store import on_store, operator_name


def cmd_policy_add(args: argparse.Namespace) -> int:
    async def use(hub: Any) -> Any:
        return await hub.policy.add(args.action, args.source, args.destination, args.data_type,
                                    by=operator_name(args), note=args.note)

    rule = on_store(args, use)
    print(t("added rule #{id}: {rule}", id=rule.id, rule=rule.text()))
    return 0


def cmd_policy_remove(args: argparse.Namespace) -> int:
    async def use(hub: Any) -> Any:
        return await hub.policy.remove(args.id, by=operator_name(args))

    rule = on_store(args, use)
    print(t("removed rule #{id}: {rule}", id=rule.id, rule=rule.text()))
    return 0


def cmd_policy_list(args: argparse.Namespace) -> int:
    async def use(hub: Any) -> tuple[list[Any], str]:
        return await hub.policy.rules(include_removed=args.all), hub.policy.default

    rules, default = on_store(args, use)
    if args.json:
        print(json.dumps({"default": default, "rules": [r.public() for r in rules]}, ensure_ascii=False, indent=2))
        return 0
    if not rules:
        print(t("no rules; default: {default}", default=default))
        return 0
    rows = []
    for r in rules:
        who = r.created_by or "-"
        when = output.when(r.created_at)
        if r.removed_at is not None:
            who, when = f"{who} / -{r.removed_by}", f"{when} / -{output.when(r.removed_at)}"
        rows.append([r.label, r.action, str(r.source), str(r.destination), r.data_type or "*", who, when])
    output.table(rows, [t("RULE"), t("ACTION"), t("SOURCE"), t("DESTINATION"), t("DATA TYPE"), t("BY"),
                        t("WHEN")])
    print(t("default when no rule matches: {default}", default=default))
    return 0


def cmd_policy_explain(args: argparse.Namespace) -> int:
    unit, _, app_name = args.source.partition("/")

    async def use(hub: Any) -> tuple[Any, list[Any]]:
        application = None
        if app_name:
            application = (await hub.directory.find_application(app_name, unit)).id
        if args.data_type:
            return await hub.policy.decide(unit, application, args.destination, args.data_type), []
        return None, await hub.policy.decide_any(unit, application, args.destination)

    one, many = on_store(args, use)

    def verdict(decision: Any) -> str:
        return t("ALLOWED") if decision.allowed else t("REFUSED")

    def reason(decision: Any) -> str:
        return f"{decision.rule.label} {decision.rule.text()}" if decision.rule else decision.reason()

    if one is not None:
        data_type = " [" + args.data_type + "]" if args.data_type else ""
        print(t("{source} → {dest}{dt}: {verdict}, by {reason}", source=args.source, dest=args.destination,
                dt=data_type,
                verdict=verdict(one), reason=reason(one)))
        if len(one.matching) > 1:
            print(t("  other matching rules (by precedence):"))
            for rule in one.matching[1:]:
                print(f"    {rule.label} {rule.text()}")
        return 0 if one.allowed else 3
    first, *typed = many
    print(t("{source} → {dest}{dt}: {verdict}, by {reason}", source=args.source, dest=args.destination, dt="",
            verdict=verdict(first),
            reason=reason(first)))
    for decision in typed:
        if decision.allowed != first.allowed or decision.rule is not first.rule:
            print(t("  for data type {dt}: {verdict}, by {reason}", dt=decision.data_type, verdict=verdict(decision),
                    reason=reason(decision)))
    session = any(d.allowed for d in many)
    print(t("opening a session to {dest}: {verdict}", dest=args.destination,
            verdict=t("ALLOWED") if session else t("REFUSED")))
    return 0 if session else 3


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("policy", help=t("who may reach whom (communication policy)"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help=t("add a rule: allow|deny SOURCE DESTINATION"))
    q.add_argument("action", choices=("allow", "deny"))
    q.add_argument("source", help=t("*, zone:NAME, under:UNIT, UNIT or app:UNIT/NAME"))
    q.add_argument("destination", help=t("*, zone:NAME, under:UNIT or UNIT"))
    q.add_argument("--data-type", help=t("only packets of this data type (default: any)"))
    q.add_argument("--note", help=t("why the rule exists"))
    q.add_argument("--by", help=t("who makes the change (default: $LGSP_OPERATOR or the login name)"))
    add_config(q)
    q.set_defaults(func=cmd_policy_add)
    q = s.add_parser("remove", help=t("remove a rule by its number (it stays in the history)"))
    q.add_argument("id", type=int)
    q.add_argument("--by", help=t("who makes the change (default: $LGSP_OPERATOR or the login name)"))
    add_config(q)
    q.set_defaults(func=cmd_policy_remove)
    q = s.add_parser("list", help=t("the rules in force (--all: removed ones too)"))
    q.add_argument("--all", action="store_true")
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_policy_list)
    q = s.add_parser("explain", help=t("which rule decides whether SOURCE may reach DEST (exit 3: refused)"))
    q.add_argument("source", help=t("UNIT or UNIT/APPLICATION"))
    q.add_argument("destination", help=t("UNIT"))
    q.add_argument("--data-type", help=t("decide for this data type (default: every data type that matters)"))
    add_config(q)
    q.set_defaults(func=cmd_policy_explain)
