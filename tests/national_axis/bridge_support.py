"""A hub with the `national_axis` plugin bridged to the simulator, for the adapter's tests.

The hub's systemId and agency code on the axis are the simulator's PROVINCE system; its secret is
stored in the hub's sealed secret store before start, as an operator would (`lgsp secret set`).
Periodic rounds are left to their long intervals: tests run rounds themselves (`run_round`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lgsp.adapters.national_axis.bridge import AxisBridge, bridge_of
from lgsp.adapters.national_axis.directory_sync import sync_once
from lgsp.adapters.national_axis.inbound import poll_once
from lgsp.adapters.national_axis.tracking import track_once
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from ..conftest import base_env
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle

HUB_ID = "000.00.99.H45"
SECRET_NAME = "axis-vxp"
LOCAL_A = "000.00.00.H45"  # UBND tỉnh: sender of the edXML fixtures (also the hub's agency code on the axis)
LOCAL_B = "000.02.31.H45"
JOBS: dict[str, Callable[[AxisBridge], Awaitable[Any]]] = {"poll": poll_once, "track": track_once,
                                                            "sync": sync_once}


#: The shipped policy keeps the national zone to granted applications; these hubs let every local
#: unit reach it, as a province that granted them all would.
OPEN_TO_NATIONAL: dict[str, Any] = {"rules": [{"action": "allow", "source": "zone:local",
                                               "destination": "zone:national"}]}


def axis_settings(url: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint": url, "system_id": PROVINCE.system_id, "secret": SECRET_NAME,
            "agency_code": PROVINCE.agency_code, "poll_interval_seconds": 3600, "track_interval_seconds": 3600,
            "sync_interval_seconds": 0, "probe_interval_seconds": 0, "timeout_seconds": 5,
            "connect_timeout_seconds": 2, **extra}


def axis_config(tmp: Path, url: str, *, plugins: str = "[rest, edxml, soap_edxml, national_axis]",
                env: dict[str, str] | None = None, routes: dict[str, Any] | None = None, **extra: Any) -> Config:
    path = tmp / "lgsp.yaml"
    path.write_text(yaml.safe_dump({"adapters": {"national_axis": axis_settings(url, **extra)},
                                    "routes": routes or {}, "policy": OPEN_TO_NATIONAL}), encoding="utf-8")
    return load_config(path, env=base_env(tmp / "var", LGSP_PLUGINS_ENABLED=plugins, LGSP_HUB_IDENTIFIER=HUB_ID,
                                          LGSP_DELIVERY_POLL_INTERVAL_SECONDS="0.2", **(env or {})))


async def store_secret(config: Config, value: str = PROVINCE.secret) -> None:
    """What `lgsp secret set` does, on a store opened without the server."""
    pre = Hub(config)
    await pre.open_store()
    try:
        await pre.secrets.set(SECRET_NAME, value)
    finally:
        pre.blobs.close()
        await pre.db.close()


@dataclass
class BridgeHub:
    hub: Hub
    sim: AxisSimHandle

    @property
    def bridge(self) -> AxisBridge:
        bridge = bridge_of(self.hub)
        assert bridge is not None
        return bridge

    async def run_round(self, name: str) -> Any:
        bridge = self.bridge
        result = await bridge.run(name, JOBS[name])
        assert bridge.stats[name].last_error is None, bridge.stats[name].last_error
        return result

    async def add_local(self, *units: str) -> None:
        for unit in units:
            if await self.hub.directory.get_unit(unit) is None:
                await self.hub.directory.add_unit(unit, f"Đơn vị {unit}")

    async def add_national(self, code: str = MINISTRY_CODE, name: str = "Văn phòng Chính phủ") -> None:
        await self.hub.directory.add_unit(code, name, zone="national")


MakeBridgeHub = Callable[..., Awaitable[BridgeHub]]


@pytest.fixture
async def make_bridge_hub(tmp_path: Path) -> AsyncIterator[MakeBridgeHub]:
    hubs: list[Hub] = []

    async def make(sim: AxisSimHandle, *, sub: str = "hub", **extra: Any) -> BridgeHub:
        where = tmp_path / sub
        where.mkdir(parents=True, exist_ok=True)
        config = axis_config(where, sim.url, **extra)
        await store_secret(config)
        hub = Hub(config)
        await hub.start()
        hubs.append(hub)
        return BridgeHub(hub, sim)

    yield make
    for hub in hubs:
        await hub.stop()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
