"""`lgsp masterkey ...`: see which master keys the hub holds, rotate the master key, retire old keys.

Rotation runs against the store and key file named by the config while the hub keeps serving
(core/keyrotation.py says how no request fails meanwhile). With `security.master_key_kek` set,
the key file is written sealed under that key-encryption key (a plain file is sealed on the way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.messages import t
from lgsp.cli.store import cli_config, operator_name


async def _record(db: Any, action: str, detail: dict[str, Any]) -> None:
    """The rotation in the audit log, as done by the operator from the CLI."""
    from lgsp.core import audit

    with audit.acting_as(operator_name(), "cli"):
        async with db.write() as conn:
            await audit.append(conn, action, detail=detail)


def _open_key(args: argparse.Namespace) -> tuple[Any, Any]:
    from lgsp.core.masterkey import Kek, MasterKey

    cfg = cli_config(args)
    kek = Kek.from_setting(cfg.security.master_key_kek)
    return cfg, MasterKey.load(cfg.master_key_path, kek, allow_plain=True)


async def _with_db(cfg: Any, use: Any) -> Any:
    from lgsp.core.store.database import Database

    db = Database(cfg.database_url, pool_size=2, sqlite_synchronous=cfg.database.sqlite_synchronous)
    try:
        await db.upgrade()
        return await use(db)
    finally:
        await db.close()


def cmd_status(args: argparse.Namespace) -> int:
    from lgsp.core.keyrotation import count_not_primary

    cfg, key = _open_key(args)
    left = asyncio.run(_with_db(cfg, lambda db: count_not_primary(db, key)))
    info = {"file": str(cfg.master_key_path), "sealing_key": key.primary_id, "keys": key.key_ids,
            "kek": key.kek.source if key.kek is not None else None, "values_under_older_keys": left}
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        print(t("master key file {file}: sealing key {primary}; older keys held: {older}; values still "
                "sealed under older keys: {left}; key-encryption key: {kek}",
                file=info["file"], primary=key.primary_id, older=", ".join(key.key_ids[1:]) or "-",
                left=left, kek=info["kek"] or "-"))
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from lgsp.core.keyrotation import count_not_primary, reseal_all

    cfg, key = _open_key(args)

    async def go(db: Any) -> tuple[str, dict[str, int], int, list[str]]:
        new_id = key.new_primary().hex()  # step 1: every node seals under it from now on
        counts = await reseal_all(db, key)  # step 2
        again = await reseal_all(db, key)  # step 3: what a node sealed before it saw the new file
        for name, n in again.items():
            counts[name] = counts.get(name, 0) + n
        left = await count_not_primary(db, key)
        retired: list[str] = []
        if not args.keep_old and left == 0:
            retired = key.retire_older()  # step 4
        await _record(db, "masterkey.rotated", {"sealing_key": new_id, "resealed": counts, "left": left,
                                                "retired": retired,
                                                "kek": key.kek.source if key.kek is not None else None})
        return new_id, counts, left, retired

    new_id, counts, left, retired = asyncio.run(_with_db(cfg, go))
    if args.json:
        print(json.dumps({"sealing_key": new_id, "resealed": counts, "left": left, "retired": retired}, indent=2))
        return 0 if left == 0 else 1
    print(t("new master key {new}; re-sealed {n} values ({detail})", new=new_id, n=sum(counts.values()),
            detail=", ".join(f"{k} {v}" for k, v in counts.items())))
    if retired:
        print(t("retired the old master keys: {ids}. Backups taken before the rotation need the old key file",
                ids=", ".join(retired)))
    elif left:
        print(t("{left} values are still sealed under an old key; the old key was not retired, run the "
                "command again", left=left))
        return 1
    else:
        print(t("the old key is kept for transfer URLs already issued; retire it later with: lgsp masterkey retire"))
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    from lgsp.cli.errors import CliError
    from lgsp.core.keyrotation import count_not_primary, reseal_all

    cfg, key = _open_key(args)

    async def go(db: Any) -> tuple[int, list[str]]:
        await reseal_all(db, key)
        left = await count_not_primary(db, key)
        if left:
            return left, []
        retired = key.retire_older()
        await _record(db, "masterkey.retired", {"sealing_key": key.primary_id, "retired": retired})
        return 0, retired

    left, retired = asyncio.run(_with_db(cfg, go))
    if left:
        raise CliError(t("{left} values are still sealed under an old key; the old key was not retired, run "
                         "the command again", left=left))
    print(t("retired the old master keys: {ids}. Backups taken before the rotation need the old key file",
            ids=", ".join(retired) or "-"))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("masterkey", help=t("the master key: status, rotation, retiring old keys"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("status", help=t("keys held, the sealing one, values still sealed under older keys"))
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_status)
    q = s.add_parser("rotate", help=t("a new master key; re-seal every secret and data key; retire the old key"))
    q.add_argument("--keep-old", action="store_true",
                   help=t("keep the old key to unseal (transfer URLs issued before stay valid); "
                        "retire it later with: lgsp masterkey retire"))
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_rotate)
    q = s.add_parser("retire", help=t("remove every key but the sealing one (after re-sealing what is left)"))
    add_config(q)
    q.set_defaults(func=cmd_retire)
