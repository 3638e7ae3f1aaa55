"""The `lgsp` command: run the hub, administer units and keys, and exchange packets.

This module only assembles the parser from the command groups and dispatches; each group lives in
its own module with an `add_commands(subparsers)` function (cli/server.py, cli/admin.py,
cli/exchange.py, cli/formats.py). A new group is one module and one entry in `COMMAND_GROUPS`.
Every failure prints one line to stderr and exits non-zero (cli/errors.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lgsp.cli import (
    account,
    admin,
    audit,
    axis,
    backup,
    certs,
    doctor,
    exchange,
    formats,
    masterkey,
    notices,
    policy,
    report,
    route,
    server,
)
from lgsp.cli.args import Parser, Subparsers, argparse_speaks_our_language, values_joined
from lgsp.cli.errors import run_command
from lgsp.cli.messages import LANGUAGES, t, unknown_language

# The command groups, in the order `lgsp --help` lists them.
COMMAND_GROUPS: list[Callable[[Subparsers], None]] = [
    server.add_commands,
    admin.add_commands,
    exchange.add_commands,
    formats.add_commands,
    account.add_commands,
    report.add_commands,
    backup.add_commands,
    notices.add_commands,
    doctor.add_commands,
    masterkey.add_commands,
    axis.add_commands,
    policy.add_commands,
    audit.add_commands,
    route.add_commands,
    certs.add_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lgsp", description=t("lgsp — the provincial integration gateway"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    wrong = unknown_language()
    if wrong is not None:
        print(f"lỗi: LGSP_LANG={wrong!r} không được hỗ trợ; dùng {' hoặc '.join(LANGUAGES)} "
              f"(error: unsupported LGSP_LANG; use {' or '.join(LANGUAGES)})", file=sys.stderr)
        return 2
    with argparse_speaks_our_language():
        parser = build_parser()
        args = parser.parse_args(values_joined(parser, sys.argv[1:] if argv is None else argv))
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
