"""`lgsp account ...`: console accounts on the hub machine (the first operator starts here).

A command group of its own (registered in cli/main.py). The commands work on the store named
by the config file, like the other administration commands; each is recorded in the audit trail as
done from the CLI. A password is read from a hidden prompt (twice) or one line of stdin, never
from the command line; `--generate` makes a temporary one, shown once, to change at first sign-in.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import N_, lang, t
from lgsp.cli.store import on_store

#: Account states as the CLI shows them.
ACCOUNT_STATUS = {"active": N_("active"), "disabled": N_("disabled")}


def _accounts(hub: Any) -> Any:
    from lgsp.core.accounts import Accounts

    return Accounts(hub.db, hub.master_key)


def _run(args: argparse.Namespace, use: Callable[[Any], Any]) -> Any:
    """One call on the account store; an AccountError becomes the CLI's one-line error."""
    from lgsp.core.accounts import AccountError

    async def go(hub: Any) -> Any:
        return await use(_accounts(hub))

    try:
        return on_store(args, go)
    except AccountError as exc:
        raise CliError(exc.message(lang())) from None


def _read_password(username: str) -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(t("password for {username}: ", username=username))
        if getpass.getpass(t("repeat the password: ")) != first:
            raise CliError(t("the two passwords differ"))
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CliError(t("no password given (the first line of stdin is empty)"))
    return line


def cmd_account_add(args: argparse.Namespace) -> int:
    from lgsp.core.accounts import AccountError, check_username, new_password

    try:
        username = check_username(args.username)
    except AccountError as exc:
        raise CliError(exc.message(lang())) from None
    password = new_password() if args.generate else _read_password(username)
    account = _run(args, lambda accounts: accounts.add(
        username, password, args.role, unit_id=args.unit, include_children=args.include_children,
        display_name=args.name or "", must_change_password=args.generate))
    print(t("created account {username} ({role})", username=account.username, role=account.role))
    if args.generate:
        print(t("temporary password (shown ONCE; must be changed at first sign-in):"))
        print(password)
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    rows = _run(args, lambda accounts: accounts.list_accounts())
    if args.json:
        print(json.dumps([{"username": a.username, "name": a.display_name, "role": a.role, "unit": a.unit_id,
                           "include_children": a.include_children, "status": a.status, "totp": a.totp_enabled,
                           "last_login_at": a.last_login_at.isoformat() if a.last_login_at else None}
                          for a in rows], ensure_ascii=False, indent=2))
    elif not rows:
        print(t("no accounts yet"))
    else:
        output.table([[a.username, a.role, (a.unit_id or "-") + ("+" if a.include_children else ""),
                     t(ACCOUNT_STATUS.get(a.status, a.status)),
                 t("yes") if a.totp_enabled else t("no"), output.when(a.last_login_at)] for a in rows],
               [t("USERNAME"), t("ROLE"), t("UNIT"), t("STATUS"), t("2FA"), t("LAST SIGN-IN")])
    return 0


def cmd_account_role(args: argparse.Namespace) -> int:
    account = _run(args, lambda accounts: accounts.set_role(
        args.username, args.role, unit_id=args.unit, include_children=args.include_children))
    print(t("account {username}: role {role}", username=account.username, role=account.role))
    return 0


def cmd_account_status(args: argparse.Namespace) -> int:
    account = _run(args, lambda accounts: accounts.set_status(args.username, args.status))
    print(t("account {username}: {status}", username=account.username, status=t(ACCOUNT_STATUS.get(account.status,
                                                                                                   account.status))))
    return 0


def cmd_account_unlock(args: argparse.Namespace) -> int:
    account = _run(args, lambda accounts: accounts.unlock(args.username))
    print(t("unlocked account {username}", username=account.username))
    return 0


def cmd_account_reset(args: argparse.Namespace) -> int:
    temporary = _run(args, lambda accounts: accounts.reset_password(args.username))
    print(t("reset the password of {username}; temporary password (shown ONCE):", username=args.username))
    print(temporary)
    return 0


def cmd_account_totp_off(args: argparse.Namespace) -> int:
    from lgsp.core.accounts import CLI

    _run(args, lambda accounts: accounts.disable_totp(args.username, actor=CLI))
    print(t("turned off two-factor sign-in for {username}", username=args.username))
    return 0


def cmd_account_audit(args: argparse.Namespace) -> int:
    rows = _run(args, lambda accounts: accounts.audit_entries(actor=args.actor, limit=args.limit))
    if args.json:
        print(json.dumps([{"at": e.at.isoformat(), "actor": e.actor, "address": e.address, "action": e.action,
                           "target": e.target, "unit": e.unit_id, "detail": e.detail} for e in rows],
                         ensure_ascii=False, indent=2))
    elif not rows:
        print(t("the audit trail is empty"))
    else:
        output.table([[output.when(e.at), e.actor or "-", e.address or "-", e.action, e.target or "-"] for e in rows],
               [t("AT"), t("ACTOR"), t("ADDRESS"), t("ACTION"), t("TARGET")])
    return 0


def add_commands(sub: Subparsers) -> None:
    from lgsp.core.accounts import ROLES

    p = sub.add_parser("account", help=t("console accounts: add, list, roles, lock, password reset, audit trail"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help=t("create an account (password from a prompt or one line of stdin)"))
    q.add_argument("username")
    q.add_argument("--role", required=True, choices=ROLES)
    q.add_argument("--unit", help=t("the unit of a unit_admin"))
    q.add_argument("--include-children", action="store_true", help=t("a unit_admin also sees the unit's children"))
    q.add_argument("--name", help=t("the person's full name"))
    q.add_argument("--generate", action="store_true",
                   help=t("make a temporary password (printed once, changed at first sign-in)"))
    add_config(q)
    q.set_defaults(func=cmd_account_add)
    q = s.add_parser("list", help=t("list accounts"))
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_account_list)
    q = s.add_parser("role", help=t("change an account's role"))
    q.add_argument("username")
    q.add_argument("role", choices=ROLES)
    q.add_argument("--unit")
    q.add_argument("--include-children", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_account_role)
    for name, status, text in (("disable", "disabled", N_("mark an account disabled (this ends its sessions)")),
                               ("enable", "active", N_("mark an account active"))):
        q = s.add_parser(name, help=t(text))
        q.add_argument("username")
        add_config(q)
        q.set_defaults(func=cmd_account_status, status=status)
    q = s.add_parser("unlock", help=t("lift a lockout after failed sign-ins"))
    q.add_argument("username")
    add_config(q)
    q.set_defaults(func=cmd_account_unlock)
    q = s.add_parser("reset-password", help=t("a new temporary password (printed once; changed at next sign-in)"))
    q.add_argument("username")
    add_config(q)
    q.set_defaults(func=cmd_account_reset)
    q = s.add_parser("totp-off", help=t("turn off an account's two-factor sign-in (a lost authenticator)"))
    q.add_argument("username")
    add_config(q)
    q.set_defaults(func=cmd_account_totp_off)
    q = s.add_parser("audit", help=t("the audit trail: who did what, when, from where (newest first)"))
    q.add_argument("--actor", help=t("only this username"))
    q.add_argument("--limit", type=int, default=200)
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_account_audit)
