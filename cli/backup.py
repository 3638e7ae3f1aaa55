"""`lgsp backup DIR` and `lgsp restore DIR`: an online backup of the store and blobs, and its return.

The work is in lgsp.core.backup; this module parses, renders and turns a refusal into one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError
from lgsp.cli.messages import t
from lgsp.cli.store import cli_config


def cmd_backup(args: argparse.Namespace) -> int:
    from lgsp.core.backup import BackupError, backup

    try:
        report = backup(cli_config(args), Path(args.dir))
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    mib = format(report.blob_bytes / 2**20, ".1f")
    print(t("backed up into {dir}: {db} database, {n} blob files ({mib} MiB)", dir=report.folder, db=report.database,
            n=report.blob_files, mib=mib))
    if report.missing:
        print(t("{n} blob files of packets delivered and purged during the backup are not in it (see "
                "backup.json, missing)", n=len(report.missing)))
    print(t("the master key is NOT in the backup: keep {path} separately", path=report.master_key_path))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from lgsp.core.backup import BackupError, restore

    try:
        report = restore(cli_config(args), Path(args.dir),
                         master_key_file=Path(args.master_key) if args.master_key else None)
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    print(t("restored backup {dir} (taken {at}) into {db}, {n} blob files", dir=report.folder, at=report.created_at,
            db=report.database_url,
            n=report.blob_files))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("backup", help=t("back up the database and blobs online (without the master key)"))
    p.add_argument("dir", help=t("the target folder (new or empty)"))
    add_config(p)
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help=t("restore a backup into an empty database and blob folder"))
    p.add_argument("dir", help=t("the backup folder"))
    p.add_argument("--master-key", help=t("the master key file kept apart (copied to the configured place, mode 0600)"))
    add_config(p)
    p.set_defaults(func=cmd_restore)
