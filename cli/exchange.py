"""Exchange commands: a unit's side of the hub over HTTP (send, inbox, fetch, ack, ..., watch).

They sign with the unit's credentials (flags, LGSP_* environment, or a saved profile) and need a
running hub; they never touch the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_credentials, positive_int
from lgsp.cli.errors import CliError, said
from lgsp.cli.messages import lang, t
from lgsp.cli.timeline import render_status


def _client(args: argparse.Namespace) -> Any:
    from lgsp.client import LgspClient, resolve_credentials

    creds = resolve_credentials(url=args.url, access_key=args.access_key, secret=args.secret_key,
                                private_key_file=args.private_key_file, algorithm=args.algorithm,
                                profile=args.profile)
    try:
        return LgspClient(creds, lang=lang())
    except ValueError as exc:  # a hub URL (or one of several, comma-separated) that is not http(s)
        raise CliError(t("{where}: {why}", where="--url / LGSP_URL", why=said(exc))) from exc


def cmd_send(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(t("{file}: no such file", file=path))

    total = path.stat().st_size

    async def go() -> str:
        update, close = output.progress(total, path.name)
        try:
            async with _client(args) as client:
                return await client.send(path, args.to, subject=args.subject or path.name, priority=args.priority,
                                         data_type=args.data_type, progress=update)
        finally:
            close()

    packet_id = asyncio.run(go())
    print(t("sent packet {id}", id=packet_id))
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    async def go() -> tuple[list[dict[str, Any]], str | None]:
        async with _client(args) as client:
            if args.all:
                return await client.inbox_all(page_size=args.limit), None
            page = await client.inbox_page(limit=args.limit, cursor=args.cursor)
            return page["items"], page.get("next")

    items, more = asyncio.run(go())
    if more:  # on stderr, so stdout stays the list alone (--json pipes)
        print(t("more packets after these {n}; continue with: lgsp inbox --cursor {cursor}", n=len(items),
                cursor=more), file=sys.stderr)
    if args.json:
        output.print_json(items)
    elif not items:
        print(t("inbox is empty"))
    else:
        output.table([[i["id"], i["from"], str(i["priority"]), output.size(i["size"]), i["created_at"], i["subject"]]
                      for i in items], [t("ID"), t("FROM"), t("PRIORITY"), t("SIZE"), t("CREATED"),
                                        t("SUBJECT")])
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    out = Path(args.output or args.id)

    async def go() -> str:
        async with _client(args) as client:
            status = await client.status(args.id)
            update, close = output.progress(int(status.get("size", 0)), args.id[:8])
            try:
                return await client.download(args.id, out, progress=update)
            finally:
                close()

    sha = asyncio.run(go())
    print(t("fetched packet {id} into {path} (SHA-256 {sha})", id=args.id, path=out, sha=sha))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from lgsp.client import file_sha256

    sha = args.sha256
    if not sha:
        path = Path(args.file or args.id)
        if not path.is_file():
            raise CliError(t("no file {path}: fetch the packet first (lgsp fetch) or pass --file/--sha256", path=path))
        sha, _ = file_sha256(path)

    async def go() -> str:
        async with _client(args) as client:
            return await client.ack(args.id, sha)

    print(t("acknowledged packet {id}: {state}", id=args.id, state=asyncio.run(go())))
    return 0


def cmd_fail(args: argparse.Namespace) -> int:
    async def go() -> str:
        async with _client(args) as client:
            return await client.fail(args.id, args.reason)

    print(t("refused packet {id}: {state}", id=args.id, state=asyncio.run(go())))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _client(args) as client:
            return await client.cancel(args.id)

    print(t("cancelled deliveries to: {units}", units=", ".join(asyncio.run(go())["cancelled"]) or "-"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _client(args) as client:
            return await client.status(args.id)

    view = asyncio.run(go())
    if args.json:
        output.print_json(view)
    else:
        print(render_status(view))
    return 0


def cmd_units(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _client(args) as client:
            return await client.units(args.q or "", limit=args.limit)

    items = asyncio.run(go())
    output.table([[u["id"], u["name"], u.get("parent") or "-", u["zone"]] for u in items],
                 [t("ID"), t("NAME"), t("PARENT"), t("ZONE")])
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with _client(args) as client, client.events() as stream:
            print(t("watching events (Ctrl+C to stop)…"), file=sys.stderr, flush=True)
            count = 0
            async for message in stream:
                print(json.dumps(message, ensure_ascii=False), flush=True)
                count += 1
                if args.count and count >= args.count:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("send", help=t("send a file to one or more units"))
    p.add_argument("file")
    p.add_argument("--to", action="append", required=True, help=t("destination identifier (repeatable)"))
    p.add_argument("--subject", help=t("subject (default: the file name)"))
    p.add_argument("--priority", type=int, default=0, choices=(0, 1, 2, 3))
    p.add_argument("--data-type", default="binary")
    add_credentials(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("inbox", help=t("packets waiting for this unit"))
    p.add_argument("--limit", type=positive_int, default=100, help=t("packets per page (at most 1000)"))
    pages = p.add_mutually_exclusive_group()
    pages.add_argument("--cursor", help=t("continue after the page that printed this cursor"))
    pages.add_argument("--all", action="store_true", help=t("follow the cursor through every page"))
    p.add_argument("--json", action="store_true")
    add_credentials(p)
    p.set_defaults(func=cmd_inbox)

    p = sub.add_parser("fetch", help=t("download a packet (resumes a partial file)"))
    p.add_argument("id")
    p.add_argument("-o", "--output", help=t("file to write (default: the packet id)"))
    add_credentials(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("ack", help=t("acknowledge a fetched packet"))
    p.add_argument("id")
    p.add_argument("--file", help=t("the fetched file (default: the packet id)"))
    p.add_argument("--sha256", help=t("acknowledge this hash instead of hashing a file"))
    add_credentials(p)
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("fail", help=t("refuse a packet"))
    p.add_argument("id")
    p.add_argument("--reason", required=True)
    add_credentials(p)
    p.set_defaults(func=cmd_fail)

    p = sub.add_parser("cancel", help=t("cancel undelivered deliveries of a sent packet"))
    p.add_argument("id")
    add_credentials(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("status", help=t("a packet's state and timeline"))
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help=t("print the hub's raw JSON"))
    add_credentials(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("units", help=t("search the unit directory (via the hub)"))
    p.add_argument("-q", help=t("identifier prefix or part of the name"))
    p.add_argument("--limit", type=positive_int, default=50)
    add_credentials(p)
    p.set_defaults(func=cmd_units)

    p = sub.add_parser("watch", help=t("print events as they happen"))
    p.add_argument("--count", type=int, default=0, help=t("stop after this many messages"))
    add_credentials(p)
    p.set_defaults(func=cmd_watch)
