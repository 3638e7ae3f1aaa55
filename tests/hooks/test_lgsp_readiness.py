"""Hook `lgsp_readiness`: a plugin's own checks decide `GET /readyz`, by name, without details."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl

from .support import config


class Poller:
    def __init__(self) -> None:
        self.ready = True

    @hookimpl
    async def lgsp_readiness(self, hub: Hub) -> dict[str, bool]:
        return {"demo.poller": self.ready}


async def readyz(hub: Hub) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(hub.url + "/readyz") as resp:
        return resp.status, json.loads(await resp.text())["checks"]


async def test_a_plugin_check_makes_the_hub_ready_or_not(tmp_path: Path) -> None:
    poller = Poller()
    async with Hub(config(tmp_path), extra_plugins=(poller,)) as hub:
        status, checks = await readyz(hub)
        assert status == 200 and checks["demo.poller"] == "ok"
        poller.ready = False
        hub.health._round = None  # the next probe asks again instead of reusing the last second's answer
        status, checks = await readyz(hub)
        assert status == 503 and checks["demo.poller"] == "fail"
