"""Operator commands (`lgsp deliveries ...`): list deliveries to act on, retry, cancel, re-route."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select

from lgsp.core import audit
from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.errors import Problem
from lgsp.core.events import record
from lgsp.core.exchange.base import AfterCommit, ExchangeBase, modes_of
from lgsp.core.exchange.values import Attention, PacketInfo, UnitStatus, uuid_like
from lgsp.core.exchange.views import DeliveryRecord, OperatorDelivery, OperatorView, Rerouted, TimelineEntry
from lgsp.core.i18n import Text
from lgsp.core.states import DELIVERY_EXTRA_FROM
from lgsp.core.store.tables import deliveries, packet_events, packets, units

#: Deliveries an operator's overview counts as stuck.
STUCK = (dv.FAILED, dv.EXPIRED, dv.RETRYING)
#: Deliveries that wait on their destination.
WAITING_ON_DESTINATION = (dv.QUEUED, dv.NOTIFIED, dv.RETRYING)


class OperatorCommands(ExchangeBase):
    async def attention(self, scope: Collection[str] | None = None, *,
                        waiting_longer_than: float = 3600) -> Attention:
        """The overview of units (all, or those in `scope`): their presence, stuck deliveries by
        state, and per unit the deliveries created more than `waiting_longer_than` seconds ago
        that still wait on it."""
        since = self.clock() - timedelta(seconds=waiting_longer_than)
        unit_q = select(units.c.id, units.c.name, units.c.online, units.c.last_seen_at)
        stuck_q = select(deliveries.c.state, func.count()).where(deliveries.c.state.in_(STUCK))
        waiting_q = select(deliveries.c.unit_id, func.count()).where(and_(
            deliveries.c.state.in_(WAITING_ON_DESTINATION), deliveries.c.packet_created_at < since))
        if scope is not None:
            unit_q = unit_q.where(units.c.id.in_(list(scope)))
            stuck_q = stuck_q.where(deliveries.c.unit_id.in_(list(scope)))
            waiting_q = waiting_q.where(deliveries.c.unit_id.in_(list(scope)))
        async with self.db.read() as conn:
            unit_rows = (await conn.execute(unit_q.order_by(units.c.id))).all()
            stuck = {r[0]: r[1] for r in await conn.execute(stuck_q.group_by(deliveries.c.state))}
            waiting = {r[0]: r[1] for r in await conn.execute(waiting_q.group_by(deliveries.c.unit_id))}
        return Attention([UnitStatus(r.id, r.name, bool(r.online), r.last_seen_at) for r in unit_rows], stuck, waiting)

    async def list_deliveries(self, *, states: list[str] | None = None, unit: str | None = None,
                              packet_id: str | None = None, older_than: float | None = None,
                              limit: int = 100) -> tuple[DeliveryRecord, ...]:
        """Deliveries an operator may need to act on; by default everything not yet delivered."""
        wanted = states or sorted(dv.ACTIVE - {dv.WAITING} | {dv.FAILED, dv.EXPIRED})
        bad = sorted(set(wanted) - set(dv.STATES))
        if bad:
            raise Problem("request.invalid", Text("unknown state(s): {bad} (one of {STATES})", bad=', '.join(bad),
                                                  STATES=', '.join(dv.STATES)))
        cond: list[ColumnElement[bool]] = [deliveries.c.state.in_(wanted)]
        if unit:
            cond.append(deliveries.c.unit_id == unit)
        if packet_id:
            cond.append(deliveries.c.packet_id == packet_id)
        if older_than is not None:
            cond.append(deliveries.c.updated_at <= self.clock() - timedelta(seconds=older_than))
        stmt = (select(deliveries, packets.c.source_unit, packets.c.subject, packets.c.content_state)
                .join(packets, packets.c.id == deliveries.c.packet_id).where(and_(*cond))
                .order_by(deliveries.c.updated_at, deliveries.c.packet_id, deliveries.c.unit_id).limit(limit))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return tuple(DeliveryRecord(packet_id=r.packet_id, source=r.source_unit, subject=r.subject,
                                    priority=r.priority, content_state=r.content_state, delivery=_operator_delivery(r))
                     for r in rows)

    async def operator_view(self, packet_id: str) -> OperatorView | None:
        """A packet as an operator sees it (metadata only): every delivery and every timeline
        entry; None when there is no such packet."""
        if not uuid_like(packet_id):
            return None
        async with self.db.read() as conn:
            packet = (await conn.execute(select(packets.c.id, packets.c.source_unit, packets.c.subject,
                                                packets.c.data_type, packets.c.size, packets.c.sha256,
                                                packets.c.state, packets.c.created_at, packets.c.deadline,
                                                packets.c.priority)
                                         .where(packets.c.id == packet_id))).first()
            if packet is None:
                return None
            rows = (await conn.execute(select(deliveries).where(deliveries.c.packet_id == packet_id)
                                       .order_by(deliveries.c.unit_id))).all()
            events = (await conn.execute(select(packet_events).where(packet_events.c.packet_id == packet_id)
                                         .order_by(packet_events.c.id))).all()
        return OperatorView(
            id=packet.id, source=packet.source_unit, subject=packet.subject, priority=packet.priority,
            data_type=packet.data_type, size=packet.size, sha256=packet.sha256, state=packet.state,
            created_at=packet.created_at, deadline=packet.deadline,
            deliveries=tuple(_operator_delivery(r) for r in rows),
            events=tuple(TimelineEntry(e.at, e.type, e.unit, audience=e.audience) for e in events))

    async def _held(self, packet_id: str) -> PacketInfo:
        info = await self.packet(packet_id) if uuid_like(packet_id) else None
        if info is None:
            raise Problem("not_found", Text("no packet {packet_id}", packet_id=packet_id))
        if info.state != "accepted" or info.content_state != "stored":
            raise Problem("content.gone",
                          Text("packet {packet_id} is {state} and its content is {content_state}; the source "
                               "must send it again", packet_id=packet_id, state=info.state,
                               content_state=info.content_state))
        return info

    async def operator_retry(self, packet_id: str, unit: str) -> str:
        """Put a stuck or ended delivery back in the queue now, with a fresh attempt budget and age."""
        if not uuid_like(packet_id):
            raise Problem("not_found", Text("no packet {packet_id}", packet_id=packet_id))
        async with self.db.read() as conn:
            row = await dv.row_of(conn, packet_id, unit)
        if row is None:
            raise Problem("not_found", Text("packet {packet_id} has no delivery to {unit}", packet_id=packet_id,
                                            unit=unit))
        if row.state not in dv.OPERATOR_RETRY_FROM:
            raise Problem("conflict",
                          Text("the delivery to {unit} is {state}; only {OPERATOR_RETRY_FROM} deliveries can "
                               "be retried", unit=unit, state=row.state,
                               OPERATOR_RETRY_FROM=", ".join(sorted(dv.OPERATOR_RETRY_FROM))), state=row.state)
        info = await self._held(packet_id)
        now = self.clock()
        after = AfterCommit()
        async with self.db.write() as conn:
            row = await dv.row_of(conn, packet_id, unit)
            if row is None or row.state not in dv.OPERATOR_RETRY_FROM:
                raise Problem("conflict", Text("the delivery to {unit} changed meanwhile; try again", unit=unit))
            await dv.move(conn, packet_id, [unit], dv.QUEUED, now,
                          allowed_from=DELIVERY_EXTRA_FROM["operator_retry"][dv.QUEUED], values={
                "queued_at": now, "attempts": 0, "next_attempt_at": None, "last_error": None, "reason": None})
            await audit.append(conn, "operator.delivery_retried", target=packet_id, unit=unit, at=now,
                               detail={"was": row.state})
            after.events.append(await record(conn, packet_id, ev.DELIVERY_RETRIED, now, unit=unit,
                                             audience=info.source,
                                             detail={"reason": Text("retried by an operator (was {state})",
                                                                    state=row.state)}))
            if row.mode == dv.PULL:
                after.events.append(await record(conn, packet_id, ev.PACKET_AVAILABLE, now, unit=unit, audience=unit,
                                                 detail=self._available_detail(info)))
        if row.mode == dv.PUSH:
            after.push_units = [unit]
        await self._after_commit(after)
        return dv.QUEUED

    async def operator_cancel(self, packet_id: str, unit: str | None, reason: str = Text("cancelled by an operator")
                              ) -> list[str]:
        """Cancel one (or every) unfinished delivery of a packet; the source is told."""
        info = await self.packet(packet_id) if uuid_like(packet_id) else None
        if info is None:
            raise Problem("not_found", Text("no packet {packet_id}", packet_id=packet_id))
        now = self.clock()
        after = AfterCommit()
        async with self.db.write() as conn:
            before = await dv.states_of(conn, packet_id)
            if unit is not None and unit not in before:
                raise Problem("not_found", Text("packet {packet_id} has no delivery to {unit}", packet_id=packet_id,
                                                unit=unit))
            modes = await modes_of(conn, packet_id)
            moved = await dv.move(conn, packet_id, None if unit is None else [unit], dv.CANCELLED, now, reason=reason)
            if unit is not None and not moved:
                raise Problem("conflict", Text("the delivery to {unit} is already {before}", unit=unit,
                                               before=before[unit]), state=before[unit])
            for u in moved:
                after.events.append(await record(conn, packet_id, ev.PACKET_CANCELLED, now, unit=u,
                                                 audience=info.source, detail={"reason": reason}))
                if before.get(u) in dv.PENDING and modes.get(u) == dv.PULL:
                    after.events.append(await record(conn, packet_id, ev.PACKET_CANCELLED, now, unit=u, audience=u,
                                                     detail={"reason": reason}))
            if moved:
                await audit.append(conn, "operator.delivery_cancelled", target=packet_id, at=now,
                                   detail={"units": moved, "reason": reason})
                await self._complete_if_done(conn, packet_id, now, after)
        after.failed(info, moved, dv.CANCELLED, reason)
        await self._after_commit(after)
        return moved

    async def operator_reroute(self, packet_id: str, unit: str, to: str) -> Rerouted:
        """Send a packet that did not reach `unit` to `to` instead (same content, new delivery)."""
        info = await self._held(packet_id)
        await self.check_destinations([to])
        if self.policy is not None:  # an operator cannot send where the source may not
            await self.policy.check_named(info, [to])
        now = self.clock()
        reason = f"re-routed to {to} by an operator"
        after = AfterCommit()
        async with self.db.write() as conn:
            states = await dv.states_of(conn, packet_id)
            if unit not in states:
                raise Problem("not_found", Text("packet {packet_id} has no delivery to {unit}", packet_id=packet_id,
                                                unit=unit))
            if to in states:
                raise Problem("conflict", Text("{to} is already a destination of packet {packet_id}", to=to,
                                               packet_id=packet_id))
            if states[unit] == dv.DELIVERED:
                raise Problem("conflict", Text("packet {packet_id} was already delivered to {unit}",
                                               packet_id=packet_id, unit=unit), state=dv.DELIVERED)
            moved = await dv.move(conn, packet_id, [unit], dv.CANCELLED, now, reason=reason)
            row = self._delivery_row(packet_id, to, info.priority, info.created_at, state=dv.QUEUED, queued_at=now)
            await conn.execute(deliveries.insert().values(**row))
            await audit.append(conn, "operator.delivery_rerouted", target=packet_id, unit=unit, at=now,
                               detail={"to": to})
            after.events.append(await record(conn, packet_id, ev.PACKET_REROUTED, now, unit=unit,
                                             audience=info.source, detail={"reason": reason, "to": to}))
            if row["mode"] == dv.PULL:
                after.events.append(await record(conn, packet_id, ev.PACKET_AVAILABLE, now, unit=to, audience=to,
                                                 detail=self._available_detail(info)))
        after.failed(info, moved, dv.CANCELLED, reason)
        if row["mode"] == dv.PUSH:
            after.push_units = [to]
        await self._after_commit(after)
        return Rerouted(packet_id, unit, to, row["mode"], dv.QUEUED)


def _operator_delivery(r: Any) -> OperatorDelivery:
    return OperatorDelivery(unit=r.unit_id, state=r.state, mode=r.mode, protocol=r.protocol, attempts=r.attempts,
                            updated_at=r.updated_at,
                            next_attempt_at=r.next_attempt_at if r.state == dv.RETRYING else None,
                            reason=r.reason, last_error=r.last_error)
