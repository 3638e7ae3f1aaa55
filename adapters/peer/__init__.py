"""The `peer` plugin: hub-to-hub peering with another lgsp (another province, another ministry).

A zone whose route is `adapter: peer` (docs/national-axis.md, "Hub-to-hub peering") is another
lgsp: packets for its units are handed to it over the ordinary signed REST protocol, on behalf of
their source (:mod:`.push`), and followed until its delivery ends (:mod:`.tracking`); packets it
hands over for this hub's units are taken here (:mod:`.receiver`). The two hubs register each
other as units with keys; nothing else is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lgsp.plugins.hookspecs import hookimpl

from .push import PeerPushAdapter
from .receiver import PROBLEM_CODES
from .receiver import routes as peer_routes_table
from .settings import PROTOCOL, peer_routes
from .tracking import track_once

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.peer")
_trackers: dict[int, asyncio.Task[None]] = {}


@hookimpl
def lgsp_problem_codes() -> Mapping[str, tuple[int, str]]:
    return PROBLEM_CODES


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    return list(peer_routes_table)


@hookimpl
def lgsp_push_adapters(hub: Hub) -> Iterable[Any]:
    return [PeerPushAdapter(hub)]


async def _track_forever(hub: Hub, adapter: PeerPushAdapter, interval: float) -> None:
    while True:
        try:
            async with hub.db.single_node("peer:track") as mine:
                if mine:
                    await track_once(hub, adapter)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("peer tracking round failed")
        await asyncio.sleep(interval)


@hookimpl
async def lgsp_startup(hub: Hub) -> None:
    routes = peer_routes(hub.config.routes)
    adapter = hub.push_adapters.get(PROTOCOL)
    if not routes or not isinstance(adapter, PeerPushAdapter):
        return
    interval = min(r.track_interval for r in routes.values())
    _trackers[id(hub)] = asyncio.create_task(_track_forever(hub, adapter, interval), name="lgsp-peer-track")


@hookimpl
async def lgsp_shutdown(hub: Hub) -> None:
    task = _trackers.pop(id(hub), None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    adapter = hub.push_adapters.get(PROTOCOL)
    if isinstance(adapter, PeerPushAdapter):
        await adapter.close()
