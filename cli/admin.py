"""Administration commands: units, applications, keys, secrets, deliveries, services, the hub's key.

They work on the store named by the config file and need no running hub; a running hub picks up
what they change on its next poll.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from lgsp.cli import output
from lgsp.cli.args import Subparsers, add_config, positive_int
from lgsp.cli.errors import CliError
from lgsp.cli.messages import N_, t
from lgsp.cli.store import cli_config, on_store, open_store
from lgsp.core.api import DeliveryRecord, iso
from lgsp.core.config import Config, ConfigError, load_config
from lgsp.core.i18n import Text, render_stored
from lgsp.core.names import mode_name, state_name


def cmd_config_check(args: argparse.Namespace) -> int:
    from lgsp.core.hub import Hub

    config = load_config(args.file)
    hub = Hub(config)
    hub.check_config()  # plugin names, push targets and adapter sections too
    unregistered = asyncio.run(unregistered_targets(hub, store_exists(config)))
    if unregistered:
        raise ConfigError(unregistered)
    print(t("{path}: configuration is valid", path=args.file))
    return 0


def store_exists(config: Config) -> bool:
    """False for a SQLite store whose file is not there yet (another database is asked)."""
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    return not (url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists())


async def unregistered_targets(hub: Any, exists: bool) -> list[Any]:
    """Push targets naming no registered unit, read from the config's store without changing it
    (no store yet, or one never migrated, holds no unit)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from lgsp.core.store.database import Database

    config = hub.config
    if not config.delivery.targets:
        return []
    if not exists:
        return [hub.unregistered_target(unit) for unit in config.delivery.targets]
    hub.db = Database(config.database_url, pool_size=1)
    try:
        return list(await hub.unregistered_targets())
    except (OperationalError, ProgrammingError) as exc:
        if "units" not in str(exc):  # anything but "no such table": the store cannot be read
            raise
        return [hub.unregistered_target(unit) for unit in config.delivery.targets]
    finally:
        await hub.db.close()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    print(t("database is at revision {rev}", rev=on_store(args, lambda hub: hub.db.current_revision())))
    return 0


def cmd_unit_add(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.directory.add_unit(args.id, args.name, parent_id=args.parent, zone=args.zone,
                                      legacy=args.legacy)

    unit = on_store(args, use)
    print(t("added unit {id} — {name}", id=unit.id, name=unit.name))
    return 0


def cmd_unit_list(args: argparse.Namespace) -> int:
    found = on_store(args, lambda hub: hub.directory.search_units(args.q or "", limit=args.limit))
    if args.json:
        output.print_json([u.public() | {"online": u.online, "last_seen_at": output.when(u.last_seen_at)}
                           for u in found])
        return 0
    output.table([[u.id, u.name, u.parent_id or "-", u.zone, t("active") if u.status == "active" else u.status,
                   t("yes") if u.online else t("no")] for u in found],
                 [t("ID"), t("NAME"), t("PARENT"), t("ZONE"), t("STATUS"), t("ONLINE")])
    return 0


def cmd_unit_show(args: argparse.Namespace) -> int:
    async def go() -> tuple[Any, Any, Any]:
        async with open_store(args) as hub:
            unit = await hub.directory.get_unit(args.id)
            if unit is None:
                raise CliError(t("not_found: unit {unit} does not exist", unit=args.id))
            return unit, await hub.directory.list_applications(unit.id), await hub.directory.list_keys(unit_id=unit.id)

    unit, apps, keys = asyncio.run(go())
    data = unit.public() | {
        "legacy": unit.legacy, "online": unit.online, "last_seen_at": output.when(unit.last_seen_at),
        "clock_offset_seconds": unit.clock_offset_seconds, "created_at": output.when(unit.created_at),
        "applications": [{"id": a.id, "name": a.name} for a in apps],
        "keys": [{"access_key": k.id, "algorithm": k.algorithm, "application": k.application_id,
                  "revoked": k.revoked_at is not None} for k in keys]}
    output.print_json(data)
    return 0


def cmd_unit_status(args: argparse.Namespace) -> int:
    unit = on_store(args, lambda hub: hub.directory.set_unit_status(args.id, args.status))
    print(t("unit {id}: {status}", id=unit.id, status=unit.status))
    return 0


def cmd_app_add(args: argparse.Namespace) -> int:
    app = on_store(args, lambda hub: hub.directory.add_application(args.unit, args.name))
    print(t("added application {name} (id {id}) to unit {unit}", name=app.name, id=app.id, unit=app.unit_id))
    return 0


def cmd_app_list(args: argparse.Namespace) -> int:
    apps = on_store(args, lambda hub: hub.directory.list_applications(args.unit))
    output.table([[a.id, a.unit_id, a.name, output.when(a.created_at)] for a in apps],
                 [t("ID"), t("UNIT"), t("NAME"), t("CREATED")])
    return 0


def cmd_key_issue(args: argparse.Namespace) -> int:
    pem = Path(args.public_key).read_text(encoding="ascii") if args.public_key else None

    async def go() -> tuple[Any, str]:
        async with open_store(args) as hub:
            app = await hub.directory.find_application(args.app, args.unit)
            return await hub.directory.issue_key(app.id, args.algorithm, public_key_pem=pem), hub_url(hub.config)

    issued, configured_url = asyncio.run(go())
    print(t("issued access key {key} ({alg}) to unit {unit}", key=issued.access_key, alg=issued.algorithm,
            unit=issued.unit_id))
    if issued.secret:
        print(t("secret key (shown ONCE, store it safely):"))
        print(issued.secret)
    if issued.private_key_pem and not args.private_key_out:
        print(t("RSA private key (shown ONCE, store it safely):"))
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
            raise CliError(t("--save-profile with an RSA key also needs --private-key-out FILE"))
        path = profiles_path()
        save_profile(path, args.save_profile, {"url": args.url or configured_url, "access_key": issued.access_key,
                                               "algorithm": issued.algorithm, "secret_key": issued.secret,
                                               "private_key_file": key_file, "unit": issued.unit_id})
        print(t("saved profile {name} to {path}", name=args.save_profile, path=path))
    return 0


def hub_url(config: Config) -> str:
    """Where the hub of `config` is reached: its public URL, else its listening address (an address
    that listens everywhere is reached through the loopback one)."""
    server = config.server
    if server.public_url:
        return server.public_url.rstrip("/")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(server.host, server.host)  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{server.port}"


def cmd_key_list(args: argparse.Namespace) -> int:
    async def go() -> Any:
        async with open_store(args) as hub:
            app_id = (await hub.directory.find_application(args.app, args.unit)).id if args.app else None
            return await hub.directory.list_keys(application_id=app_id, unit_id=args.unit)

    keys = asyncio.run(go())
    output.table([[k.id, k.unit_id, k.application_id, k.algorithm,
                   t("revoked") if k.revoked_at else t("active"), output.when(k.created_at)] for k in keys],
                 [t("KEY"), t("UNIT"), t("APPLICATION"), t("ALGORITHM"), t("STATUS"), t("CREATED")])
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    key = on_store(args, lambda hub: hub.directory.revoke_key(args.key))
    print(t("revoked key {key}", key=key.id))
    return 0


def cmd_secret_set(args: argparse.Namespace) -> int:
    if args.from_file:
        value = Path(args.from_file).read_text(encoding="utf-8")
    elif sys.stdin.isatty():
        import getpass

        value = getpass.getpass(t("value of secret {name}: ", name=args.name))
    else:
        value = sys.stdin.read()
    value = value.rstrip("\n") if not args.from_file else value

    on_store(args, lambda hub: hub.secrets.set(args.name, value))
    print(t("stored secret {name} (encrypted)", name=args.name))
    return 0


def cmd_secret_list(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.secrets.names()

    output.table([[name, output.when(at)] for name, at in on_store(args, use)], [t("NAME"), t("UPDATED")])
    return 0


def cmd_secret_delete(args: argparse.Namespace) -> int:
    if not on_store(args, lambda hub: hub.secrets.delete(args.name)):
        raise CliError(t("not_found: no secret named {name!r}", name=args.name))
    print(t("deleted secret {name}", name=args.name))
    return 0


def cmd_deliveries_list(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.exchange.list_deliveries(states=args.state, unit=args.unit, packet_id=args.packet,
                                            older_than=args.older_than, limit=args.limit)

    records = on_store(args, use)
    rows = [_delivery_json(r) for r in records]
    if args.json:
        output.print_json(rows)
    elif not rows:
        print(t("no matching deliveries"))
    else:
        output.table([[r["packet"], r["unit"], mode_name(r["mode"]) + (f"/{r['protocol']}" if r["protocol"] else ""),
                       state_name(r["state"]),
                       str(r["attempts"]), r["next_attempt_at"] or "-", r["updated_at"],
                       render_stored(r["reason"] or r["last_error"])[:80] or "-"] for r in rows],
                     [t("PACKET"), t("UNIT"), t("MODE"), t("STATE"), t("ATTEMPTS"), t("NEXT TRY"),
                      t("UPDATED"), t("REASON")])
    return 0


def _delivery_json(record: DeliveryRecord) -> dict[str, Any]:
    """A line of `deliveries list` as its --json prints it."""
    d = record.delivery
    return {"packet": record.packet_id, "unit": d.unit, "from": record.source, "subject": record.subject,
            "mode": d.mode, "protocol": d.protocol, "state": d.state, "priority": record.priority,
            "attempts": d.attempts, "updated_at": iso(d.updated_at),
            "next_attempt_at": iso(d.next_attempt_at) if d.next_attempt_at else None,
            "reason": d.reason, "last_error": d.last_error, "content": record.content_state}


def _running_note(args: argparse.Namespace) -> None:
    seconds = format(cli_config(args).delivery.poll_interval_seconds, "g")
    print(t("a running hub picks this up within {s} seconds", s=seconds), file=sys.stderr)


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    on_store(args, lambda hub: hub.exchange.operator_retry(args.packet, args.unit))
    print(t("queued packet {id} again for {unit}", id=args.packet, unit=args.unit))
    _running_note(args)
    return 0


def cmd_deliveries_cancel(args: argparse.Namespace) -> int:
    reason = (Text("cancelled by an operator: {reason}", reason=args.reason) if args.reason
              else Text("cancelled by an operator"))
    moved = on_store(args, lambda hub: hub.exchange.operator_cancel(args.packet, args.unit, reason))
    if not moved:
        raise CliError(t("conflict: packet {id} has no unfinished delivery to cancel", id=args.packet))
    print(t("cancelled packet {id} for: {units}", id=args.packet, units=", ".join(moved)))
    return 0


def cmd_deliveries_reroute(args: argparse.Namespace) -> int:
    done = on_store(args, lambda hub: hub.exchange.operator_reroute(args.packet, args.unit, args.to))
    print(t("re-routed packet {id}: {unit} → {to} ({mode})", id=args.packet, unit=args.unit, to=args.to,
            mode=done.mode))
    _running_note(args)
    return 0


def cmd_service_add(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.services.add(args.id, args.unit, args.url, description=args.description,
                                timeout_seconds=args.timeout)

    service = on_store(args, use)
    print(t("registered service {id} of unit {unit} at {url}", id=service.id, unit=service.unit_id, url=service.url))
    return 0


def cmd_service_list(args: argparse.Namespace) -> int:
    found = on_store(args, lambda hub: hub.services.list(args.unit))
    if args.json:
        output.print_json([s.public() | {"granted_to": g} for s, g in found])
        return 0
    output.table([[s.id, s.unit_id, s.url, s.status, f"{s.timeout_seconds:g}", ", ".join(g) or "-"] for s, g in found],
                 [t("ID"), t("UNIT"), t("URL"), t("STATUS"), t("TIMEOUT (s)"), t("GRANTED TO")])
    return 0


def cmd_service_grant(args: argparse.Namespace) -> int:
    def use(hub: Any) -> Any:
        return hub.services.grant(args.id, args.unit)

    granted = on_store(args, use)
    print(t("unit {unit} may call service {id}", id=args.id, unit=args.unit) if granted
          else t("unit {unit} could already call service {id}", id=args.id, unit=args.unit))
    return 0


def cmd_service_revoke(args: argparse.Namespace) -> int:
    if not on_store(args, lambda hub: hub.services.revoke(args.id, args.unit)):
        raise CliError(t("not_found: unit {unit} had no grant on service {id}", unit=args.unit, id=args.id))
    print(t("unit {unit} may no longer call {id}", id=args.id, unit=args.unit))
    return 0


def cmd_service_remove(args: argparse.Namespace) -> int:
    on_store(args, lambda hub: hub.services.remove(args.id))
    print(t("removed service {id}", id=args.id))
    return 0


def cmd_service_status(args: argparse.Namespace) -> int:
    service = on_store(args, lambda hub: hub.services.set_status(args.id, args.status))
    print(t("service {id}: {status}", id=service.id, status=service.status))
    return 0


def cmd_hub_key(args: argparse.Namespace) -> int:
    key = on_store(args, lambda hub: hub.identity.key())
    if args.json:
        output.print_json(key.public())
        return 0
    print(t("hub signing key: {access} ({alg}, unit {unit})", access=key.access_key, alg="RSA-SHA256", unit=key.unit),
          file=sys.stderr)
    if args.out:
        Path(args.out).write_text(key.public_key_pem, encoding="ascii")
        print(f"-> {args.out}", file=sys.stderr)
    else:
        print(key.public_key_pem, end="")
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("config", help=t("configuration"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("check", help=t("validate a config file"))
    q.add_argument("file")
    q.set_defaults(func=cmd_config_check)

    p = sub.add_parser("db", help=t("database"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("upgrade", help=t("apply migrations"))
    add_config(q)
    q.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("unit", help=t("units (agencies)"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help=t("register a unit"))
    q.add_argument("id", help=t("electronic identifier, e.g. 000.00.00.H23"))
    q.add_argument("name")
    q.add_argument("--parent", help=t("identifier of the parent unit"))
    q.add_argument("--zone", default="local", help=t("deployment zone (default: local)"))
    q.add_argument("--legacy", action="store_true",
                   help=t("accept the code of another system (e.g. 28.22.H17, vxp.saas.02)"))
    add_config(q)
    q.set_defaults(func=cmd_unit_add)
    q = s.add_parser("list", help=t("list units"))
    q.add_argument("-q", help=t("identifier prefix or part of the name"))
    q.add_argument("--limit", type=positive_int, default=500)
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_unit_list)
    q = s.add_parser("show", help=t("show one unit"))
    q.add_argument("id")
    add_config(q)
    q.set_defaults(func=cmd_unit_show)
    for name, status, text in (("suspend", "suspended", N_("mark a unit suspended")),
                               ("activate", "active", N_("mark a unit active"))):
        q = s.add_parser(name, help=t(text))
        q.add_argument("id")
        add_config(q)
        q.set_defaults(func=cmd_unit_status, status=status)

    p = sub.add_parser("app", help=t("applications of units"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help=t("add an application to a unit"))
    q.add_argument("unit")
    q.add_argument("name")
    add_config(q)
    q.set_defaults(func=cmd_app_add)
    q = s.add_parser("list", help=t("list applications"))
    q.add_argument("--unit")
    add_config(q)
    q.set_defaults(func=cmd_app_list)

    p = sub.add_parser("key", help=t("access keys"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("issue", help=t("issue an access key (the secret is shown once)"))
    q.add_argument("--app", required=True, help=t("application id, or its name with --unit"))
    q.add_argument("--unit", help=t("unit of the application, when --app is a name"))
    q.add_argument("--algorithm", default="HMAC-SHA256", help=t("HMAC-SHA256 (default), HMAC-SHA1 or RSA-SHA256"))
    q.add_argument("--public-key", help=t("RSA: the unit's public key (PEM file); else a key pair is generated"))
    q.add_argument("--private-key-out", help=t("RSA: write the generated private key to this file (0600)"))
    q.add_argument("--save-profile", metavar="NAME", help=t("also save the credentials as a client profile"))
    q.add_argument("--url", help=t("hub URL stored in the profile (default: the config's server.public_url, "
                   "else http://HOST:PORT of server.host and server.port)"))
    add_config(q)
    q.set_defaults(func=cmd_key_issue)
    q = s.add_parser("list", help=t("list keys"))
    q.add_argument("--app")
    q.add_argument("--unit")
    add_config(q)
    q.set_defaults(func=cmd_key_list)
    q = s.add_parser("revoke", help=t("revoke a key (effective on the next request)"))
    q.add_argument("key")
    add_config(q)
    q.set_defaults(func=cmd_key_revoke)

    p = sub.add_parser("secret", help=t("secrets for adapters (sealed with the master key)"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("set", help=t("store a secret (read from a prompt, stdin or --from-file)"))
    q.add_argument("name")
    q.add_argument("--from-file", help=t("take the value from this file (e.g. a private key)"))
    add_config(q)
    q.set_defaults(func=cmd_secret_set)
    q = s.add_parser("list", help=t("list secret names (never values)"))
    add_config(q)
    q.set_defaults(func=cmd_secret_list)
    q = s.add_parser("delete", help=t("delete a secret"))
    q.add_argument("name")
    add_config(q)
    q.set_defaults(func=cmd_secret_delete)

    p = sub.add_parser("deliveries", help=t("deliveries that are stuck or failed: list, retry, cancel, re-route"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("list", help=t("list deliveries (default: everything not yet delivered)"))
    q.add_argument("--state", action="append", help=t("only this state (repeatable): queued, notified, fetched, "
                   "sending, retrying, failed, expired, cancelled, delivered, waiting"))
    q.add_argument("--unit", help=t("only deliveries to this unit"))
    q.add_argument("--packet", help=t("only this packet"))
    q.add_argument("--older-than", type=float, metavar="SECONDS", help=t("unchanged for at least this long (stuck)"))
    q.add_argument("--limit", type=positive_int, default=200)
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_deliveries_list)
    q = s.add_parser("retry", help=t("queue a delivery again now (retrying, failed, expired or cancelled)"))
    q.add_argument("packet")
    q.add_argument("unit")
    add_config(q)
    q.set_defaults(func=cmd_deliveries_retry)
    q = s.add_parser("cancel", help=t("cancel a packet's unfinished delivery to one unit (or to all)"))
    q.add_argument("packet")
    q.add_argument("unit", nargs="?")
    q.add_argument("--reason", help=t("told to the source with the cancellation"))
    add_config(q)
    q.set_defaults(func=cmd_deliveries_cancel)
    q = s.add_parser("reroute", help=t("send a packet that did not reach UNIT to another unit instead"))
    q.add_argument("packet")
    q.add_argument("unit")
    q.add_argument("--to", required=True, help=t("the new destination"))
    add_config(q)
    q.set_defaults(func=cmd_deliveries_reroute)

    p = sub.add_parser("service", help=t("REST services of units callable through the hub (/v1/services/...)"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("add", help=t("register a unit's service"))
    q.add_argument("id", help=t("service id: lowercase letters, digits, . _ -"))
    q.add_argument("--unit", required=True, help=t("the unit that runs the service"))
    q.add_argument("--url", required=True, help=t("base URL the hub forwards to"))
    q.add_argument("--timeout", type=float, default=30.0, help=t("seconds to connect and between reads (default 30)"))
    q.add_argument("--description")
    add_config(q)
    q.set_defaults(func=cmd_service_add)
    q = s.add_parser("list", help=t("list services and who may call them"))
    q.add_argument("--unit")
    q.add_argument("--json", action="store_true")
    add_config(q)
    q.set_defaults(func=cmd_service_list)
    for name, func, text in (("grant", cmd_service_grant, N_("grant a unit the right to call a service")),
                             ("revoke", cmd_service_revoke, N_("revoke a unit's right to call a service"))):
        q = s.add_parser(name, help=t(text))
        q.add_argument("id")
        q.add_argument("unit")
        add_config(q)
        q.set_defaults(func=func)
    q = s.add_parser("remove", help=t("delete a service and its grants"))
    q.add_argument("id")
    add_config(q)
    q.set_defaults(func=cmd_service_remove)
    for name, status, text in (("suspend", "suspended", N_("mark a service suspended")),
                               ("activate", "active", N_("mark a service active"))):
        q = s.add_parser(name, help=t(text))
        q.add_argument("id")
        add_config(q)
        q.set_defaults(func=cmd_service_status, status=status)

    p = sub.add_parser("hub", help=t("this hub"))
    s = p.add_subparsers(dest="action", required=True)
    q = s.add_parser("key", help=t("print the public key receivers verify the hub's pushes with (made on first use)"))
    q.add_argument("-o", "--out", help=t("write the PEM to this file"))
    q.add_argument("--json", action="store_true", help=t("print unit, access key, algorithm and PEM as JSON"))
    add_config(q)
    q.set_defaults(func=cmd_hub_key)
