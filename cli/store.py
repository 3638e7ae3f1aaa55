"""The store administration commands work on: the one the config file names, opened for one call."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from lgsp.cli.args import DEFAULT_CONFIG
from lgsp.core.config import Config, load_config

T = TypeVar("T")


def cli_config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("LGSP_CONFIG") or DEFAULT_CONFIG
    if not Path(path).exists() and args.config is None and "LGSP_CONFIG" not in os.environ:
        return load_config(None)
    return load_config(path)


@asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[Any]:
    """A hub with only its store open (no server), closed on the way out."""
    from lgsp.core.hub import Hub

    hub = Hub(cli_config(args))
    await hub.open_store()
    try:
        yield hub
    finally:
        await hub.db.close()


def on_store(args: argparse.Namespace, use: Callable[[Any], Awaitable[T]]) -> T:
    """Run one administration call against the store named by the config, then close it."""

    async def go() -> T:
        async with open_store(args) as hub:
            return await use(hub)

    return asyncio.run(go())
