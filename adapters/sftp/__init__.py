"""The SFTP adapter: push packets to units' SFTP servers, and poll units' outboxes for packets to send.

Enable it with `plugins.enabled: [rest, sftp]`. Push targets are `delivery.targets.<unit>` entries
with `protocol: sftp`; inbound units are listed under `adapters.sftp.inbound`. docs/sftp.md
describes the settings, the manifest format and the folder lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from lgsp.adapters.sftp.inbound import Poller
from lgsp.adapters.sftp.push import SftpPushAdapter
from lgsp.adapters.sftp.settings import parse_adapter_section
from lgsp.core.api import Text
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.api import Hub, PushAdapter

# Pollers of each running hub (a process may run several hubs, e.g. in tests).
_pollers: weakref.WeakKeyDictionary[Hub, dict[str, Poller]] = weakref.WeakKeyDictionary()


def pollers(hub: Hub) -> Mapping[str, Poller]:
    """The inbound pollers running for `hub`, by unit (for status displays and tests)."""
    return dict(_pollers.get(hub, {}))


@hookimpl
def lgsp_push_adapters(hub: Hub) -> Iterable[PushAdapter]:
    return [SftpPushAdapter(hub)]


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    return parse_adapter_section(hub.config.adapters.get("sftp"))[1]


@hookimpl
async def lgsp_startup(hub: Hub) -> None:
    # asyncssh logs several INFO lines per connection; with every unit polled every few seconds that
    # drowns the hub's own log. Quieten it unless the operator set its level explicitly.
    library_log = logging.getLogger("asyncssh")
    if library_log.level == logging.NOTSET:
        library_log.setLevel(logging.WARNING)
    sources, issues = parse_adapter_section(hub.config.adapters.get("sftp"))
    if issues:  # check_config already refused these; never poll on half-understood settings
        raise RuntimeError(Text("invalid adapters.sftp settings: {key}: {why}", key=issues[0][0], why=issues[0][1]))
    running = {unit: Poller(hub, source) for unit, source in sources.items() if source.enabled}
    for poller in running.values():
        poller.start()
    _pollers[hub] = running


@hookimpl
def lgsp_readiness(hub: Hub) -> Mapping[str, bool]:
    """Every enabled inbound poller is running (a remote server being down does not count)."""
    running = _pollers.get(hub)
    return {"sftp.inbound": running is not None and all(p.alive for p in running.values())}


@hookimpl
async def lgsp_shutdown(hub: Hub) -> None:
    running = _pollers.pop(hub, {})
    await asyncio.gather(*(poller.stop() for poller in running.values()))
