"""A test plugin observing the packet lifecycle hooks (accepted, delivered, failed)."""

from __future__ import annotations

import asyncio
from typing import Any

from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl


class Recorder:
    """Records what each lifecycle hook saw, and whether the packet's state was already committed."""

    def __init__(self, *, fail: bool = False) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.fail = fail

    async def _state(self, hub: Hub, packet_id: str, unit: str) -> str | None:
        view = await hub.exchange.packet(packet_id)
        assert view is not None
        from lgsp.core import deliveries as dv

        async with hub.db.read() as conn:
            row = await dv.row_of(conn, packet_id, unit)
        return row.state if row is not None else None

    @hookimpl
    async def lgsp_packet_accepted(self, hub: Hub, packet: Any) -> None:
        await asyncio.sleep(0)
        stored = await hub.exchange.packet(packet.id)
        self.seen.append(("accepted", packet.id, packet.source, packet.to, stored.content_state if stored else None))
        if self.fail:
            raise RuntimeError("a broken observer must not hurt the packet")

    @hookimpl
    async def lgsp_packet_delivered(self, hub: Hub, packet: Any, unit: str) -> None:
        self.seen.append(("delivered", packet.id, unit, await self._state(hub, packet.id, unit)))
        if self.fail:
            raise RuntimeError("a broken observer must not hurt the packet")

    @hookimpl
    def lgsp_packet_failed(self, hub: Hub, packet: Any, unit: str, state: str, reason: str) -> None:
        self.seen.append(("failed", packet.id, unit, state, reason))
        if self.fail:
            raise RuntimeError("a broken observer must not hurt the packet")
