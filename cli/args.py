"""Argument helpers every command group shares: the parser class, --config, credentials, numbers."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from lgsp.cli.messages import t

DEFAULT_CONFIG = "config/lgsp.yaml"

# What `add_commands(subparsers)` receives: the object `add_subparsers()` returns.
Subparsers = Any


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other failure of the command (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{t('error')}: {self.prog}: {message} ({self.prog} --help)\n")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help=f"config file (default: $LGSP_CONFIG or {DEFAULT_CONFIG})")


def add_credentials(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("credentials (else LGSP_* environment, else the profile file)")
    g.add_argument("--url", help="hub base URL (LGSP_URL); several nodes of a cluster separated by commas, "
                                 "tried in turn when one cannot be reached")
    g.add_argument("--access-key", help="access key (LGSP_ACCESS_KEY)")
    g.add_argument("--secret-key", help="HMAC secret key (LGSP_SECRET_KEY)")
    g.add_argument("--private-key-file", help="RSA private key PEM file (LGSP_PRIVATE_KEY_FILE)")
    g.add_argument("--algorithm", help="HMAC-SHA256, HMAC-SHA1 or RSA-SHA256 (LGSP_ALGORITHM)")
    g.add_argument("--profile", help="profile name in the profile file (LGSP_PROFILE, default: default)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value
