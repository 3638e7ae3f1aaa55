"""Hook `lgsp_shutdown`: called once when the hub stops, awaited, with the store still usable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl

from .support import config


class Worker:
    """Starts a background task at start-up and stops it at shutdown, as the hook asks."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.stopped: list[int] = []

    @hookimpl
    def lgsp_startup(self, hub: Hub) -> None:
        self.task = asyncio.create_task(asyncio.sleep(3600))

    @hookimpl
    async def lgsp_shutdown(self, hub: Hub) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.sleep(0)
        self.stopped.append(len(await hub.directory.search_units("")))  # the store is still open


async def test_shutdown_is_awaited_once_and_stops_what_startup_started(tmp_path: Path) -> None:
    worker = Worker()
    async with Hub(config(tmp_path), extra_plugins=(worker,)) as hub:
        await hub.directory.add_unit("000.00.00.H23", "A")
        assert worker.stopped == []
    assert worker.stopped == [1]
    assert worker.task is not None and worker.task.cancelled()
