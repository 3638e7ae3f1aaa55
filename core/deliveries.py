"""The delivery state machine: one delivery per (packet, destination), one place for its rules.

    waiting ──upload──▶ queued ──told──▶ notified ──download──▶ fetched ──ack──▶ delivered
       │                  │                 │                      │
       └──────────────────┴─────────────────┴──────────────────────┴──▶ failed | expired | cancelled

Every change is a conditional UPDATE (`... WHERE state IN (allowed sources)`), so two nodes or two
requests racing on the same delivery cannot both win, and the caller learns it lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.store.tables import deliveries

WAITING = "waiting"
QUEUED = "queued"
NOTIFIED = "notified"
FETCHED = "fetched"
DELIVERED = "delivered"
FAILED = "failed"
EXPIRED = "expired"
CANCELLED = "cancelled"

STATES = (WAITING, QUEUED, NOTIFIED, FETCHED, DELIVERED, FAILED, EXPIRED, CANCELLED)
TERMINAL = frozenset({DELIVERED, FAILED, EXPIRED, CANCELLED})
# Content is stored and the destination may fetch it.
PENDING = frozenset({QUEUED, NOTIFIED, FETCHED})
ACTIVE = frozenset(STATES) - TERMINAL

# target state → states it may be reached from
ALLOWED_FROM: dict[str, frozenset[str]] = {
    QUEUED: frozenset({WAITING}),
    NOTIFIED: frozenset({QUEUED}),
    FETCHED: frozenset({QUEUED, NOTIFIED}),
    DELIVERED: frozenset(PENDING),
    FAILED: frozenset(PENDING),
    EXPIRED: frozenset(ACTIVE),
    CANCELLED: frozenset(ACTIVE),
}


def can_move(current: str, target: str) -> bool:
    return current in ALLOWED_FROM.get(target, ())


async def move(conn: AsyncConnection, packet_id: str, units: Iterable[str] | None, target: str, at: datetime,
               *, reason: str | None = None) -> list[str]:
    """Move the given deliveries (all of the packet's if `units` is None) to `target` where allowed.

    Returns the units that actually moved; the others were in a state that forbids it.
    """
    sources = ALLOWED_FROM[target]
    cond = and_(deliveries.c.packet_id == packet_id, deliveries.c.state.in_(sources))
    if units is not None:
        units = list(units)
        if not units:
            return []
        cond = and_(cond, deliveries.c.unit_id.in_(units))
    values: dict[str, object] = {"state": target, "updated_at": at}
    if reason is not None:
        values["reason"] = reason
    result = await conn.execute(update(deliveries).where(cond).values(**values)
                                .returning(deliveries.c.unit_id))
    return [r.unit_id for r in result.all()]


async def states_of(conn: AsyncConnection, packet_id: str) -> dict[str, str]:
    rows = (await conn.execute(select(deliveries.c.unit_id, deliveries.c.state)
                               .where(deliveries.c.packet_id == packet_id))).all()
    return {r.unit_id: r.state for r in rows}


async def state_of(conn: AsyncConnection, packet_id: str, unit: str) -> str | None:
    return await conn.scalar(select(deliveries.c.state).where(
        and_(deliveries.c.packet_id == packet_id, deliveries.c.unit_id == unit)))
