"""Hook `lgsp_startup`: called once the store is open and the server listens; a failure aborts the start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl

from ..conftest import raw_request
from .support import config


class Starter:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    @hookimpl
    async def lgsp_startup(self, hub: Hub) -> None:
        await asyncio.sleep(0)  # an awaitable: the hub waits for it
        status, _, _ = await raw_request(hub.url, "GET", "/v1/time")  # already serving
        units = len(await hub.directory.search_units(""))  # the store is open
        self.seen.append((status, units))


async def test_startup_runs_once_with_the_store_open_and_the_server_listening(tmp_path: Path) -> None:
    starter = Starter()
    async with Hub(config(tmp_path), extra_plugins=(starter,)):
        assert starter.seen == [(200, 0)]
    assert starter.seen == [(200, 0)]


async def test_a_failing_startup_aborts_the_start(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def lgsp_startup(self, hub: Hub) -> None:
            raise RuntimeError("listener could not bind")

    hub = Hub(config(tmp_path), extra_plugins=(Broken(),))
    with pytest.raises(RuntimeError, match="could not bind"):
        await hub.start()
    assert not hub.started
    await hub.stop()
