"""`lgsp doctor`: run on each node; every line must be ✓ and the fingerprints equal on all nodes."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError, said
from lgsp.cli.messages import N_, t
from lgsp.cli.store import cli_config, open_store
from lgsp.core.i18n import Text, render

if TYPE_CHECKING:
    from lgsp.core.doctor import Check


def cmd_doctor(args: argparse.Namespace) -> int:
    from lgsp.core.doctor import node_checks

    config = cli_config(args)
    if not config.master_key_path.exists():
        # Opening the store would create a fresh key: a node added to a cluster needs the others' key.
        raise CliError(t("no master key at {path}: copy the other nodes' master key here first (opening the "
                         "store would create a new, different one)", path=config.master_key_path))

    async def go() -> list[Check]:
        async with open_store(args) as hub:
            return await node_checks(hub)

    from lgsp.core.doctor import Check as Found
    from lgsp.core.masterkey import MasterKeyError

    try:
        checks = asyncio.run(go())
    except MasterKeyError as exc:  # the store holds values this key cannot open: another installation's key
        checks = [Found(N_("master key"), False, Text("{path}: {reason}; copy the master key of the other nodes",
                                                      path=config.master_key_path, reason=said(exc)))]
    for check in checks:
        print(f"{'✓' if check.ok else '✗'} {t(check.name)}: {render(check.detail)}")
    failed = [c for c in checks if not c.ok]
    if failed:
        print(t("{n} checks failed: fix them and run lgsp doctor again", n=len(failed)))
        return 1
    print(t("this node shares the store, blob folder, master key and signing key with the cluster; compare "
            "the master key fingerprint across nodes"))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("doctor", help=t("check that this node shares the database, blob folder, master key "
                                      "and signing key with the other nodes"))
    add_config(p)
    p.set_defaults(func=cmd_doctor)
