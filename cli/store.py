"""The store administration commands work on: the one the config file names, opened for one call.

An administration command run outside the project folder used to find no config, fall back to the
defaults and quietly create a new database and master key in `./var` (then issue keys no running
hub knows). Now it refuses unless a config is found or the store is named on purpose (--config,
LGSP_CONFIG, or LGSP_HUB_DATA_DIR / LGSP_DATABASE_URL), and every command that used a store says
on stderr which one.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from lgsp.cli.args import DEFAULT_CONFIG
from lgsp.cli.errors import CliError
from lgsp.cli.messages import t
from lgsp.core.config import Config, load_config

T = TypeVar("T")

#: Environment variables that name a store without a config file (containers configure this way).
STORE_VARIABLES = ("LGSP_HUB_DATA_DIR", "LGSP_DATABASE_URL")


def config_path(args: argparse.Namespace) -> str | None:
    """The config file a command reads: --config, else LGSP_CONFIG, else config/lgsp.yaml if it exists."""
    explicit = getattr(args, "config", None) or os.environ.get("LGSP_CONFIG")
    if explicit:
        return str(explicit)
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None


def cli_config(args: argparse.Namespace, *, admin: bool = True) -> Config:
    """The config of this command. `admin`: refuse to guess a store (see the module docstring)."""
    path = config_path(args)
    if path is None and admin and not any(os.environ.get(name) for name in STORE_VARIABLES):
        raise CliError(t("no config file {path}: an administration command must know which store to use; run "
                         "it in the hub's folder, or give --config FILE (or LGSP_CONFIG)", path=DEFAULT_CONFIG))
    return load_config(path)


def describe_store(config: Config) -> str:
    """The store as a person can check it: the SQLite file, or the database URL without its password."""
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return f"SQLite {Path(url.database).resolve()}"
    return url.render_as_string(hide_password=True)


@asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[Any]:
    """A hub with only its store open (no server), closed on the way out; then says which store.
    What is changed through it is recorded in the audit log as done from the CLI, by the operator
    named with --by or $LGSP_OPERATOR (else no name, as console accounts record the CLI)."""
    from lgsp.core.audit import acting_as
    from lgsp.core.hub import Hub

    config = cli_config(args)
    hub = Hub(config)
    with acting_as(getattr(args, "by", None) or os.environ.get("LGSP_OPERATOR") or None, "cli"):
        await hub.open_store()
        try:
            yield hub
        finally:
            await hub.db.close()
    # Reached only when the command succeeded: a failure stays one line on stderr.
    source = config_path(args) or t("LGSP_* environment")
    print(t("store: {store} (config: {config})", store=describe_store(config), config=source), file=sys.stderr)


def operator_name(args: argparse.Namespace | None = None) -> str:
    """Who makes an administrative change, for the audit log: --by, $LGSP_OPERATOR or the login name."""
    by = getattr(args, "by", None) or os.environ.get("LGSP_OPERATOR")
    if not by:
        try:
            by = f"os:{getpass.getuser()}"
        except (OSError, KeyError):
            by = "os:unknown"
    return str(by)[:64]


def on_store(args: argparse.Namespace, use: Callable[[Any], Awaitable[T]]) -> T:
    """Run one administration call against the store named by the config, then close it."""

    async def go() -> T:
        async with open_store(args) as hub:
            return await use(hub)

    return asyncio.run(go())
