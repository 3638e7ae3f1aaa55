"""Two real hubs on loopback, each with its own store, peering with each other.

Province X (Quảng Nam, `…H45`) and province Y (`…H29`): each hub has the other's zone as a
`routes:` entry with `adapter: peer`, and the other hub registered as a unit with a key. The keys
are issued once both hubs run (a hub's access key is random); the route then names it and the
secret goes into the secret store, as an operator would do with `lgsp key issue` and
`lgsp secret set`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from ..conftest import base_env, free_port

X_HUB, Y_HUB = "000.00.99.H45", "000.00.99.H29"
X_A, X_B = "000.00.00.H45", "000.02.31.H45"    # UBND tỉnh, Sở TT&TT (X)
Y_A, Y_B = "000.00.00.H29", "000.03.31.H29"    # units of Y
X_ZONE, Y_ZONE = "qnam", "hcm"                 # how each is named on the other hub
PATTERN = {X_ZONE: r"\d{3}\.\d{2}\.\d{2}\.H45", Y_ZONE: r"\d{3}\.\d{2}\.\d{2}\.H29"}
PLUGINS = "[rest, edxml, peer]"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Side:
    name: str
    hub_id: str
    zone_here: str  # the other hub's zone, as this hub names it
    port: int
    config: Config
    hub: Hub
    clients: dict[str, LgspClient] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def unit(self, unit: str, zone: str = "local") -> LgspClient:
        """A unit of this hub with a key, and a client signing as it."""
        if await self.hub.directory.get_unit(unit) is None:
            await self.hub.directory.add_unit(unit, f"Đơn vị {unit}", zone=zone)
        app = await self.hub.directory.add_application(unit, "vbql")
        key = await self.hub.directory.issue_key(app.id, "HMAC-SHA256")
        client = LgspClient(Credentials(self.url, key.access_key, "HMAC-SHA256", secret=key.secret))
        self.clients[unit] = client
        return client

    async def send(self, client: LgspClient, data: bytes, **fields: Any) -> str:
        body = {"data_type": "edxml", "size": len(data), "sha256": sha(data), **fields}
        created = await client.call("POST", "/v1/packets", body)
        await client.upload(created["upload"]["url"], data, sha(data))
        return str(created["id"])

    async def delivery(self, packet_id: str, unit: str) -> dict[str, Any]:
        async with self.hub.db.read() as conn:
            from sqlalchemy import select

            from lgsp.core.store.tables import deliveries
            row = (await conn.execute(select(deliveries).where(
                (deliveries.c.packet_id == packet_id) & (deliveries.c.unit_id == unit)))).first()
        return dict(row._mapping) if row is not None else {}


def _config(tmp: Path, me: str, port: int, other_zone: str, other_port: int, other_hub: str) -> Config:
    path = tmp / "lgsp.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    route = {"adapter": "peer", "patterns": [PATTERN[other_zone]], "url": f"http://127.0.0.1:{other_port}",
             "unit": me, "key_id": "pending", "secret": f"peer-{other_zone}", "peer_unit": other_hub,
             "track_interval_seconds": 1, "timeout_seconds": 10, "connect_timeout_seconds": 2}
    path.write_text(yaml.safe_dump({"routes": {other_zone: route}}), encoding="utf-8")
    return load_config(path, env=base_env(tmp / "var", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=me,
                                          LGSP_SERVER_PORT=str(port),
                                          LGSP_DELIVERY_RETRY_BASE_DELAY_SECONDS="0.3",
                                          LGSP_DELIVERY_POLL_INTERVAL_SECONDS="0.5"))


@dataclass
class Pair:
    x: Side
    y: Side

    async def restart(self, side: Side) -> None:
        await side.hub.stop()
        for _ in range(50):  # the port may linger a moment
            try:
                side.hub = Hub(side.config)
                await side.hub.start()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError("could not restart the hub on its port")


async def _peer(me: Side, other: Side) -> None:
    """`other` registers `me`'s hub as a unit of `me`'s zone with a key; `me`'s route names that key."""
    zone_on_other = other.zone_here
    await other.hub.directory.add_unit(me.hub_id, f"Trục {me.name}", zone=zone_on_other)
    app = await other.hub.directory.add_application(me.hub_id, "lgsp-peer")
    key = await other.hub.directory.issue_key(app.id, "HMAC-SHA256")
    assert key.secret is not None
    me.config.routes[me.zone_here]["key_id"] = key.access_key
    await me.hub.secrets.set(f"peer-{me.zone_here}", key.secret)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    x_port, y_port = free_port(), free_port()
    x_cfg = _config(tmp_path / "x", X_HUB, x_port, Y_ZONE, y_port, Y_HUB)
    y_cfg = _config(tmp_path / "y", Y_HUB, y_port, X_ZONE, x_port, X_HUB)
    x = Side("X", X_HUB, Y_ZONE, x_port, x_cfg, Hub(x_cfg))
    y = Side("Y", Y_HUB, X_ZONE, y_port, y_cfg, Hub(y_cfg))
    await x.hub.start()
    await y.hub.start()
    pair = Pair(x, y)
    try:
        await _peer(x, y)
        await _peer(y, x)
        yield pair
    finally:
        for side in (x, y):
            await asyncio.gather(*(c.close() for c in side.clients.values()), return_exceptions=True)
            with contextlib.suppress(Exception):
                await side.hub.stop()


Check = Callable[[], Awaitable[bool]]
