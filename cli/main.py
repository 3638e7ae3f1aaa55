"""The `lgsp` command: run the hub, administer units and keys, and exchange packets.

Administration commands work on the store named by the config file (they need no running hub);
exchange commands talk to a hub over HTTP with the credentials of a unit. Every failure prints one
line to stderr and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from lgsp.cli.messages import lang, t
from lgsp.core.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "config/lgsp.yaml"
T = TypeVar("T")


class CliError(Exception):
    """One line for the user; exits with status 1."""


# -- helpers ----------------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("LGSP_CONFIG") or DEFAULT_CONFIG
    if not Path(path).exists() and args.config is None and "LGSP_CONFIG" not in os.environ:
        return load_config(None)
    return load_config(path)


@asynccontextmanager
async def _store(args: argparse.Namespace) -> AsyncIterator[Any]:
    from lgsp.core.hub import Hub

    hub = Hub(_config(args))
    await hub.open_store()
    try:
        yield hub
    finally:
        await hub.db.close()


def _on_store(args: argparse.Namespace, use: Callable[[Any], Awaitable[T]]) -> T:
    """Run one administration call against the store named by the config, then close it."""

    async def go() -> T:
        async with _store(args) as hub:
            return await use(hub)

    return asyncio.run(go())


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _progress(total: int, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if total < (1 << 20):
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr,
               disable=None, leave=False)
    return bar.update, bar.close


# -- server and administration ----------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from lgsp.core.hub import Hub

    config = _config(args)
    logging.basicConfig(level=config.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        hub = Hub(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await hub.start()
        print(t("listening", url=hub.url), flush=True)
        try:
            await stop.wait()
        finally:
            print(t("stopping"), file=sys.stderr, flush=True)
            await hub.stop()

    asyncio.run(serve())
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from lgsp.core.hub import Hub

    config = load_config(args.file)
    Hub(config).check_config()  # plugin names, push targets and adapter sections too
    print(t("config_ok", path=args.file))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    print(t("db_upgraded", rev=_on_store(args, lambda hub: hub.db.current_revision())))
    return 0


def cmd_unit_add(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.directory.add_unit(args.id, args.name, parent_id=args.parent, zone=args.zone,
                                      legacy=args.legacy)

    unit = _on_store(args, use)
    print(t("unit_added", id=unit.id, name=unit.name))
    return 0


def cmd_unit_list(args: argparse.Namespace) -> int:
    found = _on_store(args, lambda hub: hub.directory.search_units(args.q or "", limit=args.limit))
    if args.json:
        _print_json([u.public() | {"online": u.online, "last_seen_at": _when(u.last_seen_at)} for u in found])
        return 0
    _table([[u.id, u.name, u.parent_id or "-", u.zone, t("active") if u.status == "active" else u.status,
             t("yes") if u.online else t("no")] for u in found],
           [t("h_id"), t("h_name"), t("h_parent"), t("h_zone"), t("h_status"), t("h_online")])
    return 0


def cmd_unit_show(args: argparse.Namespace) -> int:
    async def go() -> tuple[Any, Any, Any]:
        async with _store(args) as hub:
            unit = await hub.directory.get_unit(args.id)
            if unit is None:
                raise CliError(f"not_found: unit {args.id} does not exist")
            return unit, await hub.directory.list_applications(unit.id), await hub.directory.list_keys(unit_id=unit.id)

    unit, apps, keys = asyncio.run(go())
    data = unit.public() | {
        "legacy": unit.legacy, "online": unit.online, "last_seen_at": _when(unit.last_seen_at),
        "clock_offset_seconds": unit.clock_offset_seconds, "created_at": _when(unit.created_at),
        "applications": [{"id": a.id, "name": a.name} for a in apps],
        "keys": [{"access_key": k.id, "algorithm": k.algorithm, "application": k.application_id,
                  "revoked": k.revoked_at is not None} for k in keys]}
    _print_json(data)
    return 0


def cmd_unit_status(args: argparse.Namespace) -> int:
    unit = _on_store(args, lambda hub: hub.directory.set_unit_status(args.id, args.status))
    print(t("unit_status", id=unit.id, status=unit.status))
    return 0


def cmd_app_add(args: argparse.Namespace) -> int:
    app = _on_store(args, lambda hub: hub.directory.add_application(args.unit, args.name))
    print(t("app_added", name=app.name, id=app.id, unit=app.unit_id))
    return 0


def cmd_app_list(args: argparse.Namespace) -> int:
    apps = _on_store(args, lambda hub: hub.directory.list_applications(args.unit))
    _table([[a.id, a.unit_id, a.name, _when(a.created_at)] for a in apps],
           [t("h_id"), t("h_unit"), t("h_name"), t("h_created")])
    return 0


def cmd_key_issue(args: argparse.Namespace) -> int:
    pem = Path(args.public_key).read_text(encoding="ascii") if args.public_key else None

    async def go() -> Any:
        async with _store(args) as hub:
            app = await hub.directory.find_application(args.app, args.unit)
            return await hub.directory.issue_key(app.id, args.algorithm, public_key_pem=pem)

    issued = asyncio.run(go())
    print(t("key_issued", key=issued.access_key, alg=issued.algorithm, unit=issued.unit_id))
    if issued.secret:
        print(t("secret_once"))
        print(issued.secret)
    if issued.private_key_pem and not args.private_key_out:
        print(t("private_once"))
        print(issued.private_key_pem, end="")
    if issued.private_key_pem and args.private_key_out:
        out = Path(args.private_key_out)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(issued.private_key_pem)
        print(f"-> {out}")
    if args.save_profile:
        from lgsp.client.profiles import profiles_path, save_profile

        key_file = str(Path(args.private_key_out).resolve()) if args.private_key_out else None
        if issued.private_key_pem and not key_file:
            raise CliError("--save-profile with an RSA key also needs --private-key-out FILE")
        path = profiles_path()
        save_profile(path, args.save_profile, {"url": args.url, "access_key": issued.access_key,
                                               "algorithm": issued.algorithm, "secret_key": issued.secret,
                                               "private_key_file": key_file, "unit": issued.unit_id})
        print(t("profile_saved", name=args.save_profile, path=path))
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _store(args) as hub:
            app_id = (await hub.directory.find_application(args.app, args.unit)).id if args.app else None
            return await hub.directory.list_keys(application_id=app_id, unit_id=args.unit)

    keys = asyncio.run(go())
    _table([[k.id, k.unit_id, k.application_id, k.algorithm,
             t("revoked") if k.revoked_at else t("active"), _when(k.created_at)] for k in keys],
           [t("h_key"), t("h_unit"), t("h_app"), t("h_alg"), t("h_status"), t("h_created")])
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    key = _on_store(args, lambda hub: hub.directory.revoke_key(args.key))
    print(t("key_revoked", key=key.id))
    return 0


def cmd_secret_set(args: argparse.Namespace) -> int:
    if args.from_file:
        value = Path(args.from_file).read_text(encoding="utf-8")
    elif sys.stdin.isatty():
        import getpass

        value = getpass.getpass(t("secret_prompt", name=args.name))
    else:
        value = sys.stdin.read()
    value = value.rstrip("\n") if not args.from_file else value

    _on_store(args, lambda hub: hub.secrets.set(args.name, value))
    print(t("secret_saved", name=args.name))
    return 0


def cmd_secret_list(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.secrets.names()

    _table([[name, _when(at)] for name, at in _on_store(args, use)], [t("h_name"), t("h_updated")])
    return 0


def cmd_secret_delete(args: argparse.Namespace) -> int:
    if not _on_store(args, lambda hub: hub.secrets.delete(args.name)):
        raise CliError(f"not_found: no secret named {args.name!r}")
    print(t("secret_deleted", name=args.name))
    return 0


def cmd_deliveries_list(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.exchange.list_deliveries(states=args.state, unit=args.unit, packet_id=args.packet,
                                            older_than=args.older_than, limit=args.limit)

    rows = _on_store(args, use)
    if args.json:
        _print_json(rows)
    elif not rows:
        print(t("no_deliveries"))
    else:
        _table([[r["packet"], r["unit"], r["mode"] + (f"/{r['protocol']}" if r["protocol"] else ""), r["state"],
                 str(r["attempts"]), r["next_attempt_at"] or "-", r["updated_at"],
                 (r["reason"] or r["last_error"] or "-")[:80]] for r in rows],
               [t("h_packet"), t("h_unit"), t("h_mode"), t("h_state"), t("h_attempts"), t("h_next"), t("h_updated"),
                t("h_why")])
    return 0


def _running_note(args: argparse.Namespace) -> None:
    print(t("hub_running_note", s=f"{_config(args).delivery.poll_interval_seconds:g}"), file=sys.stderr)


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    _on_store(args, lambda hub: hub.exchange.operator_retry(args.packet, args.unit))
    print(t("delivery_retried", id=args.packet, unit=args.unit))
    _running_note(args)
    return 0


def cmd_deliveries_cancel(args: argparse.Namespace) -> int:
    reason = "cancelled by an operator" + (f": {args.reason}" if args.reason else "")
    moved = _on_store(args, lambda hub: hub.exchange.operator_cancel(args.packet, args.unit, reason))
    if not moved:
        raise CliError(f"conflict: packet {args.packet} has no unfinished delivery to cancel")
    print(t("delivery_cancelled", id=args.packet, units=", ".join(moved)))
    return 0


def cmd_deliveries_reroute(args: argparse.Namespace) -> int:
    done = _on_store(args, lambda hub: hub.exchange.operator_reroute(args.packet, args.unit, args.to))
    print(t("delivery_rerouted", id=args.packet, unit=args.unit, to=args.to, mode=done["mode"]))
    _running_note(args)
    return 0


def cmd_service_add(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.services.add(args.id, args.unit, args.url, description=args.description,
                                timeout_seconds=args.timeout)

    service = _on_store(args, use)
    print(t("service_added", id=service.id, unit=service.unit_id, url=service.url))
    return 0


def cmd_service_list(args: argparse.Namespace) -> int:
    found = _on_store(args, lambda hub: hub.services.list(args.unit))
    if args.json:
        _print_json([s.public() | {"granted_to": g} for s, g in found])
        return 0
    _table([[s.id, s.unit_id, s.url, s.status, f"{s.timeout_seconds:g}", ", ".join(g) or "-"] for s, g in found],
           [t("h_id"), t("h_unit"), t("h_url"), t("h_status"), t("h_timeout"), t("h_grants")])
    return 0


def cmd_service_grant(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.services.grant(args.id, args.unit)

    print(t("service_granted" if _on_store(args, use) else "service_already", id=args.id, unit=args.unit))
    return 0


def cmd_service_revoke(args: argparse.Namespace) -> int:
    if not _on_store(args, lambda hub: hub.services.revoke(args.id, args.unit)):
        raise CliError(f"not_found: unit {args.unit} had no grant on service {args.id}")
    print(t("service_revoked", id=args.id, unit=args.unit))
    return 0


def cmd_service_remove(args: argparse.Namespace) -> int:
    _on_store(args, lambda hub: hub.services.remove(args.id))
    print(t("service_removed", id=args.id))
    return 0


def cmd_service_status(args: argparse.Namespace) -> int:
    service = _on_store(args, lambda hub: hub.services.set_status(args.id, args.status))
    print(t("service_status", id=service.id, status=service.status))
    return 0


def cmd_hub_key(args: argparse.Namespace) -> int:
    key = _on_store(args, lambda hub: hub.identity.key())
    if args.json:
        _print_json(key.public())
        return 0
    print(t("hub_key", access=key.access_key, alg="RSA-SHA256", unit=key.unit), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(key.public_key_pem, encoding="ascii")
        print(f"-> {args.out}", file=sys.stderr)
    else:
        print(key.public_key_pem, end="")
    return 0


def cmd_axis_sim(args: argparse.Namespace) -> int:
    from lgsp.adapters.national_axis.sim_config import SimConfigError, load_agencies, parse_system, read_systems_file
    from lgsp.adapters.national_axis.simulator import AxisSimulator, serve_until_signalled

    try:
        systems = [parse_system(spec) for spec in args.system]
        if args.systems_file:
            systems += read_systems_file(Path(args.systems_file))
        if not systems:
            raise CliError(t("axis_sim_no_system"))
        agencies = load_agencies(Path(args.agencies)) if args.agencies else []
        simulator = AxisSimulator(systems, agencies=agencies, state_file=Path(args.state) if args.state else None)
    except (SimConfigError, ValueError) as exc:
        raise CliError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(url: str) -> None:
        print(t("axis_sim_listening", url=url, n=len(systems)), flush=True)

    asyncio.run(serve_until_signalled(simulator, args.host, args.port, ready))
    print(t("stopping"), file=sys.stderr, flush=True)
    return 0


# -- exchange (HTTP client) -------------------------------------------------------------------

def _client(args: argparse.Namespace) -> Any:
    from lgsp.client import LgspClient, resolve_credentials

    creds = resolve_credentials(url=args.url, access_key=args.access_key, secret=args.secret_key,
                                private_key_file=args.private_key_file, algorithm=args.algorithm,
                                profile=args.profile)
    return LgspClient(creds, lang=lang())


def cmd_send(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")

    total = path.stat().st_size

    async def go() -> str:
        update, close = _progress(total, path.name)
        try:
            async with _client(args) as client:
                return await client.send(path, args.to, subject=args.subject or path.name, priority=args.priority,
                                         data_type=args.data_type, progress=update)
        finally:
            close()

    packet_id = asyncio.run(go())
    print(t("sent", id=packet_id))
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
        print(t("inbox_more", n=len(items), cursor=more), file=sys.stderr)
    if args.json:
        _print_json(items)
    elif not items:
        print(t("inbox_empty"))
    else:
        _table([[i["id"], i["from"], str(i["priority"]), _size(i["size"]), i["created_at"], i["subject"]]
                for i in items], [t("h_id"), t("h_from"), t("h_priority"), t("h_size"), t("h_created"),
                                  t("h_subject")])
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    out = Path(args.output or args.id)

    async def go() -> str:
        async with _client(args) as client:
            status = await client.status(args.id)
            update, close = _progress(int(status.get("size", 0)), args.id[:8])
            try:
                return await client.download(args.id, out, progress=update)
            finally:
                close()

    sha = asyncio.run(go())
    print(t("fetched", id=args.id, path=out, sha=sha))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from lgsp.client import file_sha256

    sha = args.sha256
    if not sha:
        path = Path(args.file or args.id)
        if not path.is_file():
            raise CliError(t("no_file_for_ack", path=path))
        sha, _ = file_sha256(path)

    async def go() -> str:
        async with _client(args) as client:
            return await client.ack(args.id, sha)

    print(t("acked", id=args.id, state=asyncio.run(go())))
    return 0


def cmd_fail(args: argparse.Namespace) -> int:
    async def go() -> str:
        async with _client(args) as client:
            return await client.fail(args.id, args.reason)

    print(t("failed", id=args.id, state=asyncio.run(go())))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _client(args) as client:
            return await client.cancel(args.id)

    print(t("cancelled", units=", ".join(asyncio.run(go())["cancelled"]) or "-"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _client(args) as client:
            return await client.status(args.id)

    _print_json(asyncio.run(go()))
    return 0


def cmd_units(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with _client(args) as client:
            return await client.units(args.q or "", limit=args.limit)

    items = asyncio.run(go())
    _table([[u["id"], u["name"], u.get("parent") or "-", u["zone"]] for u in items],
           [t("h_id"), t("h_name"), t("h_parent"), t("h_zone")])
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with _client(args) as client, client.events() as stream:
            print(t("watching"), file=sys.stderr, flush=True)
            count = 0
            async for message in stream:
                print(json.dumps(message, ensure_ascii=False), flush=True)
                count += 1
                if args.count and count >= args.count:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0


# -- argument parsing -------------------------------------------------------------------------

def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help=f"config file (default: $LGSP_CONFIG or {DEFAULT_CONFIG})")


def _add_credentials(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("credentials (else LGSP_* environment, else the profile file)")
    g.add_argument("--url", help="hub base URL (LGSP_URL)")
    g.add_argument("--access-key", help="access key (LGSP_ACCESS_KEY)")
    g.add_argument("--secret-key", help="HMAC secret key (LGSP_SECRET_KEY)")
    g.add_argument("--private-key-file", help="RSA private key PEM file (LGSP_PRIVATE_KEY_FILE)")
    g.add_argument("--algorithm", help="HMAC-SHA256, HMAC-SHA1 or RSA-SHA256 (LGSP_ALGORITHM)")
    g.add_argument("--profile", help="profile name in the profile file (LGSP_PROFILE, default: default)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other failure of the command (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{t('error')}: {self.prog}: {message} ({self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lgsp", description="lgsp — trục liên thông tỉnh")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start the hub")
    _add_config(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="configuration")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("check", help="validate a config file")
    q.add_argument("file")
    q.set_defaults(func=cmd_config_check)

    p = sub.add_parser("db", help="database")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("upgrade", help="apply migrations")
    _add_config(q)
    q.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("unit", help="units (agencies)")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help="register a unit")
    q.add_argument("id", help="electronic identifier, e.g. 000.00.00.H23")
    q.add_argument("name")
    q.add_argument("--parent", help="identifier of the parent unit")
    q.add_argument("--zone", default="local", help="deployment zone (default: local)")
    q.add_argument("--legacy", action="store_true",
                   help="accept the code of another system (e.g. 28.22.H17, vxp.saas.02)")
    _add_config(q)
    q.set_defaults(func=cmd_unit_add)
    q = s.add_parser("list", help="list units")
    q.add_argument("-q", help="identifier prefix or part of the name")
    q.add_argument("--limit", type=_positive_int, default=500)
    q.add_argument("--json", action="store_true")
    _add_config(q)
    q.set_defaults(func=cmd_unit_list)
    q = s.add_parser("show", help="show one unit")
    q.add_argument("id")
    _add_config(q)
    q.set_defaults(func=cmd_unit_show)
    for name, status in (("suspend", "suspended"), ("activate", "active")):
        q = s.add_parser(name, help=f"mark a unit {status}")
        q.add_argument("id")
        _add_config(q)
        q.set_defaults(func=cmd_unit_status, status=status)

    p = sub.add_parser("app", help="applications of units")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help="add an application to a unit")
    q.add_argument("unit")
    q.add_argument("name")
    _add_config(q)
    q.set_defaults(func=cmd_app_add)
    q = s.add_parser("list", help="list applications")
    q.add_argument("--unit")
    _add_config(q)
    q.set_defaults(func=cmd_app_list)

    p = sub.add_parser("key", help="access keys")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("issue", help="issue an access key (the secret is shown once)")
    q.add_argument("--app", required=True, help="application id, or its name with --unit")
    q.add_argument("--unit", help="unit of the application, when --app is a name")
    q.add_argument("--algorithm", default="HMAC-SHA256", help="HMAC-SHA256 (default), HMAC-SHA1 or RSA-SHA256")
    q.add_argument("--public-key", help="RSA: the unit's public key (PEM file); else a key pair is generated")
    q.add_argument("--private-key-out", help="RSA: write the generated private key to this file (0600)")
    q.add_argument("--save-profile", metavar="NAME", help="also save the credentials as a client profile")
    q.add_argument("--url", default="http://127.0.0.1:8080", help="hub URL stored in the profile")
    _add_config(q)
    q.set_defaults(func=cmd_key_issue)
    q = s.add_parser("list", help="list keys")
    q.add_argument("--app")
    q.add_argument("--unit")
    _add_config(q)
    q.set_defaults(func=cmd_key_list)
    q = s.add_parser("revoke", help="revoke a key (effective on the next request)")
    q.add_argument("key")
    _add_config(q)
    q.set_defaults(func=cmd_key_revoke)

    p = sub.add_parser("secret", help="secrets for adapters (sealed with the master key)")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("set", help="store a secret (read from a prompt, stdin or --from-file)")
    q.add_argument("name")
    q.add_argument("--from-file", help="take the value from this file (e.g. a private key)")
    _add_config(q)
    q.set_defaults(func=cmd_secret_set)
    q = s.add_parser("list", help="list secret names (never values)")
    _add_config(q)
    q.set_defaults(func=cmd_secret_list)
    q = s.add_parser("delete", help="delete a secret")
    q.add_argument("name")
    _add_config(q)
    q.set_defaults(func=cmd_secret_delete)

    p = sub.add_parser("deliveries", help="deliveries that are stuck or failed: list, retry, cancel, re-route")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("list", help="list deliveries (default: everything not yet delivered)")
    q.add_argument("--state", action="append", help="only this state (repeatable): queued, notified, fetched, "
                   "sending, retrying, failed, expired, cancelled, delivered, waiting")
    q.add_argument("--unit", help="only deliveries to this unit")
    q.add_argument("--packet", help="only this packet")
    q.add_argument("--older-than", type=float, metavar="SECONDS", help="unchanged for at least this long (stuck)")
    q.add_argument("--limit", type=_positive_int, default=200)
    q.add_argument("--json", action="store_true")
    _add_config(q)
    q.set_defaults(func=cmd_deliveries_list)
    q = s.add_parser("retry", help="queue a delivery again now (retrying, failed, expired or cancelled)")
    q.add_argument("packet")
    q.add_argument("unit")
    _add_config(q)
    q.set_defaults(func=cmd_deliveries_retry)
    q = s.add_parser("cancel", help="cancel a packet's unfinished delivery to one unit (or to all)")
    q.add_argument("packet")
    q.add_argument("unit", nargs="?")
    q.add_argument("--reason", help="told to the source with the cancellation")
    _add_config(q)
    q.set_defaults(func=cmd_deliveries_cancel)
    q = s.add_parser("reroute", help="send a packet that did not reach UNIT to another unit instead")
    q.add_argument("packet")
    q.add_argument("unit")
    q.add_argument("--to", required=True, help="the new destination")
    _add_config(q)
    q.set_defaults(func=cmd_deliveries_reroute)

    p = sub.add_parser("service", help="REST services of units callable through the hub (/v1/services/...)")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help="register a unit's service")
    q.add_argument("id", help="service id: lowercase letters, digits, . _ -")
    q.add_argument("--unit", required=True, help="the unit that runs the service")
    q.add_argument("--url", required=True, help="base URL the hub forwards to")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to connect and between reads (default 30)")
    q.add_argument("--description")
    _add_config(q)
    q.set_defaults(func=cmd_service_add)
    q = s.add_parser("list", help="list services and who may call them")
    q.add_argument("--unit")
    q.add_argument("--json", action="store_true")
    _add_config(q)
    q.set_defaults(func=cmd_service_list)
    for name, func in (("grant", cmd_service_grant), ("revoke", cmd_service_revoke)):
        q = s.add_parser(name, help=f"{name} a unit's right to call a service")
        q.add_argument("id")
        q.add_argument("unit")
        _add_config(q)
        q.set_defaults(func=func)
    q = s.add_parser("remove", help="delete a service and its grants")
    q.add_argument("id")
    _add_config(q)
    q.set_defaults(func=cmd_service_remove)
    for name, status in (("suspend", "suspended"), ("activate", "active")):
        q = s.add_parser(name, help=f"mark a service {status}")
        q.add_argument("id")
        _add_config(q)
        q.set_defaults(func=cmd_service_status, status=status)

    p = sub.add_parser("hub", help="this hub")
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("key", help="print the public key receivers verify the hub's pushes with (made on first use)")
    q.add_argument("-o", "--out", help="write the PEM to this file")
    q.add_argument("--json", action="store_true", help="print unit, access key, algorithm and PEM as JSON")
    _add_config(q)
    q.set_defaults(func=cmd_hub_key)

    p = sub.add_parser("axis-sim", help="run a national document axis (VXP) simulator in the foreground (tests)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (default 8090; 0 picks a free one)")
    p.add_argument("--system", action="append", default=[], metavar="ID:SECRET:AGENCY",
                   help="a system that may call (repeatable); SECRET may be env:NAME or file:PATH")
    p.add_argument("--systems-file", help="one ID:SECRET:AGENCY per line")
    p.add_argument("--agencies", help="JSON array of agencies (getSynchronizeUnit fields) for the directory")
    p.add_argument("--state", help="keep the simulator's state in this JSON file across restarts")
    p.set_defaults(func=cmd_axis_sim)

    p = sub.add_parser("send", help="send a file to one or more units")
    p.add_argument("file")
    p.add_argument("--to", action="append", required=True, help="destination identifier (repeatable)")
    p.add_argument("--subject", help="subject (default: the file name)")
    p.add_argument("--priority", type=int, default=0, choices=(0, 1, 2, 3))
    p.add_argument("--data-type", default="binary")
    _add_credentials(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("inbox", help="packets waiting for this unit")
    p.add_argument("--limit", type=_positive_int, default=100, help="packets per page (at most 1000)")
    pages = p.add_mutually_exclusive_group()
    pages.add_argument("--cursor", help="continue after the page that printed this cursor")
    pages.add_argument("--all", action="store_true", help="follow the cursor through every page")
    p.add_argument("--json", action="store_true")
    _add_credentials(p)
    p.set_defaults(func=cmd_inbox)

    p = sub.add_parser("fetch", help="download a packet (resumes a partial file)")
    p.add_argument("id")
    p.add_argument("-o", "--output", help="file to write (default: the packet id)")
    _add_credentials(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("ack", help="acknowledge a fetched packet")
    p.add_argument("id")
    p.add_argument("--file", help="the fetched file (default: the packet id)")
    p.add_argument("--sha256", help="acknowledge this hash instead of hashing a file")
    _add_credentials(p)
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("fail", help="refuse a packet")
    p.add_argument("id")
    p.add_argument("--reason", required=True)
    _add_credentials(p)
    p.set_defaults(func=cmd_fail)

    p = sub.add_parser("cancel", help="cancel undelivered deliveries of a sent packet")
    p.add_argument("id")
    _add_credentials(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("status", help="state and history of a packet")
    p.add_argument("id")
    _add_credentials(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("units", help="search the unit directory (via the hub)")
    p.add_argument("-q", help="identifier prefix or part of the name")
    p.add_argument("--limit", type=_positive_int, default=50)
    _add_credentials(p)
    p.set_defaults(func=cmd_units)

    p = sub.add_parser("watch", help="print events as they happen")
    p.add_argument("--count", type=int, default=0, help="stop after this many messages")
    _add_credentials(p)
    p.set_defaults(func=cmd_watch)

    # Per-unit delivery formats of edXML packets (issue 3): cli/formats.py.
    from lgsp.cli.formats import add_commands as add_format_commands

    add_format_commands(sub, _add_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import aiohttp
    import yaml
    from sqlalchemy.exc import SQLAlchemyError

    from lgsp.client.client import LgspError
    from lgsp.client.profiles import ProfileError
    from lgsp.core.errors import Problem
    from lgsp.core.masterkey import MasterKeyError
    from lgsp.plugins.manager import PluginError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{t('error')}: {issue}", file=sys.stderr)
        return 1
    except Problem as exc:
        print(f"{t('error')}: {exc.code}: {exc.detail or exc.title(lang())}", file=sys.stderr)
        return 1
    except LgspError as exc:
        print(f"{t('error')}: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    except (CliError, ProfileError, MasterKeyError, PluginError) as exc:
        print(f"{t('error')}: {exc}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(f"{t('error')}: transport: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{t('error')}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except yaml.YAMLError as exc:  # a profiles file that is not YAML
        print(f"{t('error')}: YAML: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the store cannot be reached or opened
        reason = getattr(exc, "orig", None) or exc
        print(f"{t('error')}: store: {' '.join(str(reason).split())[:300]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything else: still one line; LGSP_DEBUG=1 shows the traceback
        if os.environ.get("LGSP_DEBUG"):
            raise
        print(f"{t('error')}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
