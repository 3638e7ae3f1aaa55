"""`lgsp cert pin|unpin|show`: the client certificates a unit's requests must come with (mutual TLS).

A command group of its own (registered in cli/main.py), on the store named by the config file.
A certificate is given as a PEM file or as its SHA-256 fingerprint; `pin` adds (keep the old one
while a unit renews its certificate), `unpin` removes one or all.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lgsp.cli.args import Subparsers, add_config
from lgsp.cli.errors import CliError, said
from lgsp.cli.messages import N_, t
from lgsp.cli.store import on_store


def _fingerprint(args: argparse.Namespace) -> str | None:
    from lgsp.core.tls import TlsError, fingerprint_of_pem, normalise_fingerprint

    try:
        if args.cert:
            return fingerprint_of_pem(Path(args.cert).read_text(encoding="ascii", errors="replace"))
        if args.sha256:
            return normalise_fingerprint(args.sha256)
    except TlsError as exc:
        raise CliError(f"{args.cert or args.sha256}: {said(exc)}") from exc
    return None


def _print(unit: str, fps: list[str]) -> None:
    print(t("unit {unit} must use a client certificate: {fps}", unit=unit, fps=", ".join(fps)) if fps else t("unit "
        "{unit} needs no client certificate", unit=unit))


def cmd_cert_pin(args: argparse.Namespace) -> int:
    fp = _fingerprint(args)
    if fp is None:
        raise CliError(t("give a certificate file (--cert) or its SHA-256 fingerprint (--sha256)"))

    async def use(hub: Any) -> list[str]:
        current = await hub.directory.pinned_certificates(args.unit)
        return list(await hub.directory.pin_certificates(args.unit, [*current, fp]))

    _print(args.unit, on_store(args, use))
    return 0


def cmd_cert_unpin(args: argparse.Namespace) -> int:
    fp = _fingerprint(args)

    async def use(hub: Any) -> list[str]:
        current = await hub.directory.pinned_certificates(args.unit)
        keep = [] if fp is None else [c for c in current if c != fp]
        return list(await hub.directory.pin_certificates(args.unit, keep))

    _print(args.unit, on_store(args, use))
    return 0


def cmd_cert_show(args: argparse.Namespace) -> int:
    _print(args.unit, on_store(args, lambda hub: hub.directory.pinned_certificates(args.unit)))
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("cert", help=t("client certificates a unit must connect with (mutual TLS)"))
    s = p.add_subparsers(dest="action", required=True)
    for name, func, text in (("pin", cmd_cert_pin, N_("require this certificate of the unit (adds to those pinned)")),
                             ("unpin", cmd_cert_unpin, N_("stop requiring one certificate (none given: all)"))):
        q = s.add_parser(name, help=t(text))
        q.add_argument("unit", help=t("unit identifier"))
        q.add_argument("--cert", help=t("the unit's client certificate (PEM file)"))
        q.add_argument("--sha256", help=t("or its SHA-256 fingerprint (hex, colons allowed)"))
        add_config(q)
        q.set_defaults(func=func)
    q = s.add_parser("show", help=t("the certificates a unit must use"))
    q.add_argument("unit", help=t("unit identifier"))
    add_config(q)
    q.set_defaults(func=cmd_cert_show)
