"""The axis's agencies in the hub's directory, as units of the axis's zone.

getSynchronizeUnit gives the whole directory with ``deleted`` flags and parents by internal id;
each agency becomes (or updates) a unit of the zone with its code, name, parent and mail, a
deleted one is suspended, and nothing else is touched (`Directory.sync_zone`). Local search
(`GET /v1/units`, the SOAP list, `lgsp unit list`) then finds them like local units, and packets
for them go through the axis. Runs on the adapter's schedule and by `lgsp axis sync`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lgsp.core.api import ZoneEntry, ZoneSync

from .client import AxisClient
from .settings import AxisSettings
from .shapes import SyncUnit

if TYPE_CHECKING:
    from lgsp.core.api import Hub

    from .bridge import AxisBridge

log = logging.getLogger("lgsp.adapters.national_axis")


def entries_of(items: list[SyncUnit]) -> list[ZoneEntry]:
    """Axis units as directory entries; the parent is the code of the unit whose id is `pid`."""
    code_of = {u.id: u.code.strip() for u in items if u.id}
    return [ZoneEntry(id=u.code.strip(), name=u.name, parent_id=code_of.get(u.pid) if u.pid else None,
                      mail=u.mail, deleted=u.deleted)
            for u in items if u.code.strip()]


async def sync_once(bridge: AxisBridge) -> ZoneSync:
    return await synchronise(bridge.hub, bridge.settings, bridge.client)


async def sync_with_store(hub: Hub, settings: AxisSettings) -> ZoneSync:
    """`lgsp axis sync`: a client of its own (the secret from the store), one round, closed."""
    secret = await hub.secrets.reveal(settings.secret_name)
    async with AxisClient(settings.endpoint, settings.system_id, secret, timeout=settings.timeout,
                          connect_timeout=settings.connect_timeout) as client:
        return await synchronise(hub, settings, client)


async def synchronise(hub: Hub, settings: AxisSettings, client: AxisClient) -> ZoneSync:
    items = await client.synchronize_units()
    report = await hub.directory.sync_zone(settings.zone, entries_of(items))
    log.info("national axis: directory synchronised (%d listed: %d added, %d updated, %d suspended, %d skipped)",
             len(items), report.added, report.updated, report.suspended, len(report.skipped))
    return report
