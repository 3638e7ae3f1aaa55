"""The `national_axis` plugin: the hub's bridge to the national document axis (VXP).

Enable it with `plugins.enabled: [rest, edxml, national_axis]` and configure `adapters.national_axis`
(docs/national-axis.md). It provides:

* the push protocol `national_axis`, the route of the axis's zone (`national` by default): every
  unit of that zone is reached by sendEdoc (:mod:`.push`), followed until received (:mod:`.tracking`);
* the inbound poller: documents and statuses for the province become packets (:mod:`.inbound`);
* the directory sync: the axis's agencies as units of the zone (:mod:`.directory_sync`);
* presence: the axis is probed; when it does not answer, every unit of the zone is offline and
  their sources are told as for any offline destination.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lgsp.plugins.hookspecs import hookimpl

from .bridge import Job, close_bridge, open_bridge
from .directory_sync import sync_once
from .inbound import poll_once
from .push import AxisPushAdapter
from .settings import SECTION, parse_settings
from .tracking import track_once

if TYPE_CHECKING:
    from lgsp.core.api import Hub, PushAdapter

NAME = "national_axis"
log = logging.getLogger("lgsp.adapters.national_axis")


@hookimpl
def lgsp_push_adapters(hub: Hub) -> Iterable[PushAdapter]:
    settings, _ = parse_settings(hub.config.adapters.get(NAME))
    if settings is None:  # not configured (idle), or reported by lgsp_check_config
        return [AxisPushAdapter(hub, None, concurrency=2, probe_interval_seconds=60.0)]
    return [AxisPushAdapter(hub, settings.zone, concurrency=settings.concurrency,
                            probe_interval_seconds=settings.probe_interval)]


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    return parse_settings(hub.config.adapters.get(NAME))[1]


@hookimpl
async def lgsp_startup(hub: Hub) -> None:
    section = hub.config.adapters.get(NAME)
    if section is None:
        log.warning("plugin national_axis is enabled but %s is not configured: the axis is not bridged", SECTION)
        return
    settings, issues = parse_settings(section)
    if settings is None:
        where = f"{issues[0][0]}: {issues[0][1]}" if issues else SECTION
        raise RuntimeError(f"invalid {SECTION} settings: {where}")
    bridge = await open_bridge(hub, settings)
    jobs: dict[str, tuple[float, Job]] = {"track": (settings.track_interval, track_once),
                                          "sync": (settings.sync_interval, sync_once)}
    if settings.inbound:
        jobs["poll"] = (settings.poll_interval, poll_once)
    bridge.start_jobs(jobs)


@hookimpl
async def lgsp_shutdown(hub: Hub) -> None:
    bridge = close_bridge(hub)
    if bridge is not None:
        await bridge.stop()
