"""The push side of the delivery engine: queues, attempts, retries and probes for push destinations.

Each push destination (a unit under `delivery.targets`) has its own lane: `concurrency` workers
that claim that unit's due deliveries from the store, highest priority first, then oldest, and
hand each to the adapter of the target's protocol. A slow or broken destination only ever holds
its own lane; a failed attempt is rescheduled and the lane moves on to the next packet.

The store is the queue. A claim moves the delivery to `sending` (attempts + 1) and commits before
the adapter is called; the outcome (`delivered`, `retrying` with `next_attempt_at`, or `failed`)
is committed after. The retry is then given to the APScheduler job store (core/scheduler.py),
which wakes the lane when it falls due; the lane also re-reads its queue every
`delivery.poll_interval_seconds`, which picks up work added by the CLI or by another node.

A claim records the node that made it (`claimed_by`, core/cluster.py: Nodes). At start-up, and on
the leader every housekeeping round, deliveries left `sending` by a node that is dead (no
heartbeat within `cluster.node_timeout_seconds`, or this node's previous run) become `retrying`
(due now); a live node's claims are never touched. The receiver may already hold the packet and
drops the repeat by its idempotency key `packet_id:unit`.

Zones: a unit of a zone other than `local` (the national axis's agencies, a peer hub's units) is
reached through its zone's route, a push adapter that names the zone in its `zones` attribute.
Such units are not listed under `delivery.targets`: one lane per zone claims the due deliveries of
all its units, and the route's probe gives every unit of the zone its presence (the axis down means
each of its agencies is unreachable, and their sources are told as for any offline destination).
A receipt marked `pending` (handed to another exchange) leaves the delivery `forwarded` with the
remote id recorded; the adapter's own tracker ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core import logs
from lgsp.core.events import Event, iso, record
from lgsp.core.i18n import Text
from lgsp.core.push import (
    PushAdapter,
    PushFailure,
    PushJob,
    PushReceipt,
    adapter_settings,
    carried_data_types,
    idempotency_key,
)
from lgsp.core.retry import next_delay
from lgsp.core.scheduler import RetryScheduler, jobstore_url_for
from lgsp.core.states import DELIVERY_EXTRA_FROM
from lgsp.core.store.tables import deliveries, packets, units

if TYPE_CHECKING:
    from lgsp.core.hub import Hub

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Lane:
    unit: str  # the destination unit, or `zone:<name>` for a zone's lane
    protocol: str
    adapter: PushAdapter
    settings: dict[str, Any]
    concurrency: int
    probe_interval: float
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    zone: str | None = None  # set for a zone's lane: it serves every unit of that zone


def zone_lane(zone: str) -> str:
    return f"zone:{zone}"


class DeliveryEngine:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config = hub.config.delivery
        self.lanes: dict[str, Lane] = {}
        self.scheduler: RetryScheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.clock: Callable[[], datetime] = hub.clock  # retries, deadlines and stale attempts follow the hub's clock
        # zone → push protocol of its route (adapters naming the zone in their `zones` attribute).
        self.zone_routes: dict[str, str] = {}
        for protocol, adapter in hub.push_adapters.items():
            for zone in getattr(adapter, "zones", ()) or ():
                self.zone_routes.setdefault(zone, protocol)
        # `routes:` in the config: a zone reached by the named adapter with the entry's settings.
        self.route_settings: dict[str, dict[str, Any]] = {}
        for zone, entry in (hub.config.routes or {}).items():
            named = entry.get("adapter") if isinstance(entry, dict) else None
            if isinstance(named, str) and named in hub.push_adapters:
                self.zone_routes[zone] = named
                self.route_settings[zone] = {k: v for k, v in entry.items() if k not in ("adapter", "patterns")}
        self._zone_online: dict[str, tuple[bool, float]] = {}

    # -- which units are pushed to ------------------------------------------------------------
    def zone_of(self, unit: str) -> str | None:
        """The zone of `unit` when it is not local (as the directory last read it)."""
        directory = getattr(self.hub, "directory", None)
        return directory.zones.get(unit) if directory is not None else None

    def protocol_of(self, unit: str) -> str | None:
        """The push protocol of `unit`, or None when it pulls (not a target, or no such adapter).

        A unit under `delivery.targets` uses its target; a unit of a zone with a route uses the route.
        """
        target = self.config.targets.get(unit)
        if not target:
            zone = self.zone_of(unit)
            return self.zone_routes.get(zone) if zone is not None else None
        protocol = target.get("protocol")
        return protocol if isinstance(protocol, str) and protocol in self.hub.push_adapters else None

    def data_types_of(self, unit: str) -> frozenset[str] | None:
        """The data types the route to `unit` can carry; None: any (pull, or an adapter without limits)."""
        protocol = self.protocol_of(unit)
        return carried_data_types(self.hub.push_adapters[protocol]) if protocol is not None else None

    def lane_of(self, unit: str) -> Lane | None:
        lane = self.lanes.get(unit)
        if lane is None and unit not in self.config.targets:
            zone = self.zone_of(unit)
            if zone is not None:
                lane = self.lanes.get(zone_lane(zone))
        return lane

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.hub.config
        for unit, target in self.config.targets.items():
            protocol = self.protocol_of(unit)
            if protocol is None:
                continue
            probe = target.get("probe_interval_seconds", self.config.probe_interval_seconds)
            self.lanes[unit] = Lane(unit, protocol, self.hub.push_adapters[protocol], adapter_settings(target),
                                    int(target.get("concurrency", self.config.concurrency)), float(probe))
        for zone, protocol in self.zone_routes.items():
            adapter = self.hub.push_adapters[protocol]
            self.lanes[zone_lane(zone)] = Lane(
                zone_lane(zone), protocol, adapter,
                {**self.route_settings.get(zone, {}), "protocol": protocol, "zone": zone},
                int(getattr(adapter, "concurrency", self.config.concurrency)),
                float(getattr(adapter, "probe_interval_seconds", self.config.probe_interval_seconds)), zone=zone)
        if self.zone_routes:
            await self.hub.directory.load_zones(self.zone_routes)
        await self._recover()
        self.scheduler = RetryScheduler(jobstore_url_for(self.config.scheduler.jobstore_url, cfg.database_url,
                                                         cfg.data_dir))
        await self.scheduler.start(self._due)
        added, removed = await self.scheduler.reconcile(await self._retrying())
        if added or removed:
            log.info("retry jobs reconciled with the store: %d added, %d removed", added, removed)
        self._running = True
        for lane in self.lanes.values():
            for i in range(lane.concurrency):
                lane.tasks.append(asyncio.create_task(self._worker(lane), name=f"lgsp-push-{lane.unit}-{i}"))
            if lane.probe_interval > 0:
                lane.tasks.append(asyncio.create_task(self._prober(lane), name=f"lgsp-probe-{lane.unit}"))
            lane.wake.set()

    async def stop(self) -> None:
        """Let attempts in flight finish (up to the server's shutdown grace), then cancel the rest.

        An attempt cut here stays `sending` and is retried at the next start.
        """
        from lgsp.core.hub import stop_tasks

        self._running = False
        for lane in self.lanes.values():
            lane.wake.set()
            for task in lane.tasks:
                if task.get_name().startswith("lgsp-probe-"):
                    task.cancel()
        tasks = [t for lane in self.lanes.values() for t in lane.tasks]
        await stop_tasks(tasks, self.hub.config.server.shutdown_timeout_seconds)
        for lane in self.lanes.values():
            lane.tasks.clear()
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None

    def wake(self, units: Iterable[str]) -> None:
        for unit in units:
            lane = self.lane_of(unit)
            if lane is not None:
                lane.wake.set()

    def _due(self, packet_id: str, unit: str) -> None:
        self.wake([unit])

    # -- recovery -----------------------------------------------------------------------------
    async def _recover(self) -> None:
        """Interrupted attempts become retryable; deliveries follow a unit that changed mode."""
        interrupted = await self._requeue_sending(Text("attempt interrupted (the hub stopped)"))
        if interrupted:
            log.warning("%d push attempt(s) were interrupted; retrying them", interrupted)
        await self._follow_mode_changes(self.clock())

    async def _requeue_sending(self, reason: str) -> int:
        """Deliveries in `sending` claimed by dead nodes become `retrying`, due now; their lanes are
        woken. Returns how many."""
        now = self.clock()
        cond = and_(deliveries.c.state == dv.SENDING, self.hub.nodes.claimed_by_dead(deliveries.c.claimed_by, now))
        async with self.hub.db.write() as conn:
            rows = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id).where(cond))).all()
            for row in rows:
                await dv.move(conn, row.packet_id, [row.unit_id], dv.RETRYING, now,
                              values={"next_attempt_at": now, "last_error": reason})
        self.wake({r.unit_id for r in rows})
        return len(rows)

    async def _release(self, unit: str, packet_id: str, reason: str, attempt: int) -> None:
        """Back from `sending` to `retrying`, due after the longest backoff (the cause is unknown)."""
        now = self.clock()
        at = now + timedelta(seconds=self.config.retry.max_delay_seconds)
        async with self.hub.db.write() as conn:
            moved = await dv.move(conn, packet_id, [unit], dv.RETRYING, now, claim=(self.hub.node, attempt),
                                  values={"next_attempt_at": at, "last_error": reason})
        if moved and self.scheduler is not None:
            with contextlib.suppress(Exception):
                await self.scheduler.schedule(packet_id, unit, at)

    async def release_stale(self) -> int:
        """Attempts claimed by a node that died become retryable at once (the leader checks every
        housekeeping round), so they do not wait for that node's restart."""
        taken = await self._requeue_sending(Text("the node making the attempt stopped"))
        if taken:
            log.warning("%d push attempt(s) of dead nodes taken back; retrying them", taken)
        return taken

    async def _follow_mode_changes(self, now: datetime) -> None:
        """A unit removed from `delivery.targets` pulls what was still queued for push, and back."""
        events: list[Event] = []
        async with self.hub.db.write() as conn:
            rows = (await conn.execute(
                select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.mode, deliveries.c.state,
                       deliveries.c.protocol)
                .where(deliveries.c.state.in_([dv.WAITING, dv.QUEUED, dv.RETRYING])))).all()
            for row in rows:
                protocol = self.protocol_of(row.unit_id)
                if row.mode == dv.PUSH and protocol == row.protocol:
                    continue
                if row.mode == dv.PULL and (protocol is None or row.state != dv.WAITING):
                    continue  # an announced pull delivery stays pull
                mode = dv.PUSH if protocol else dv.PULL
                if row.state == dv.RETRYING and mode == dv.PULL:
                    # retrying → queued is a path of its own in core/states.py (push_target_removed).
                    await dv.move(conn, row.packet_id, [row.unit_id], dv.QUEUED, now,
                                  allowed_from=DELIVERY_EXTRA_FROM["push_target_removed"][dv.QUEUED],
                                  values={"mode": mode, "protocol": None, "next_attempt_at": None})
                else:
                    await conn.execute(deliveries.update().where(and_(
                        deliveries.c.packet_id == row.packet_id, deliveries.c.unit_id == row.unit_id,
                        deliveries.c.state == row.state)).values(mode=mode, protocol=protocol))
                if mode == dv.PULL and row.state != dv.WAITING:
                    events.append(await record(conn, row.packet_id, ev.PACKET_AVAILABLE, now, unit=row.unit_id,
                                               audience=row.unit_id, detail={"reason": Text("unit now pulls")}))
        self.hub.bus.publish(events)

    async def _retrying(self) -> dict[tuple[str, str], datetime]:
        async with self.hub.db.read() as conn:
            rows = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id,
                                              deliveries.c.next_attempt_at)
                                       .where(deliveries.c.state == dv.RETRYING))).all()
        now = self.clock()
        return {(r.packet_id, r.unit_id): r.next_attempt_at or now for r in rows}

    # -- the lanes ----------------------------------------------------------------------------
    async def _worker(self, lane: Lane) -> None:
        while self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout=self.config.poll_interval_seconds)
            lane.wake.clear()
            try:
                while self._running:
                    claimed = await self._claim(lane)
                    if claimed is None:
                        break
                    try:
                        await self._attempt(lane, *claimed)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        # Never leave a claimed delivery in `sending`: nothing else would move it.
                        log.exception("push of %s to %s failed unexpectedly", claimed[0], claimed[1])
                        await self._release(claimed[1], claimed[0], Text("internal error during the attempt"),
                                            claimed[2])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push lane %s failed; it will try again", lane.unit)
                await asyncio.sleep(1.0)

    async def _claim(self, lane: Lane) -> tuple[str, str, int] | None:
        """Take the lane's most urgent due delivery: `sending`, attempts + 1, committed.

        Returns (packet, unit, attempt); a zone's lane takes the deliveries of every unit of its zone
        that is not a target of its own."""
        now = self.clock()
        if lane.zone is None:
            whose = deliveries.c.unit_id == lane.unit
        else:
            whose = and_(deliveries.c.protocol == lane.protocol, deliveries.c.unit_id.in_(
                select(units.c.id).where(units.c.zone == lane.zone)))
            if self.config.targets:
                whose = and_(whose, deliveries.c.unit_id.not_in(sorted(self.config.targets)))
        async with self.hub.db.write() as conn:
            stmt = (select(deliveries.c.packet_id, deliveries.c.unit_id)
                    .join(packets, packets.c.id == deliveries.c.packet_id)
                    .where(and_(whose, deliveries.c.mode == dv.PUSH,
                                or_(deliveries.c.state == dv.QUEUED,
                                    and_(deliveries.c.state == dv.RETRYING, deliveries.c.next_attempt_at <= now)),
                                or_(packets.c.deadline.is_(None), packets.c.deadline > now),
                                ~self.hub.exchange.too_old(now)))
                    .order_by(deliveries.c.priority.desc(), deliveries.c.packet_created_at, deliveries.c.packet_id)
                    .limit(1))
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=deliveries)
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            packet_id, unit = row.packet_id, row.unit_id
            moved = await dv.move(conn, packet_id, [unit], dv.SENDING, now, values={
                "attempts": deliveries.c.attempts + 1, "last_attempt_at": now, "next_attempt_at": None,
                "claimed_by": self.hub.node})
            if not moved:
                return None
            attempts = await dv.attempts_of(conn, packet_id, unit)
        return packet_id, unit, attempts or 1

    async def _presence(self, lane: Lane, unit: str, ok: bool, *, probe: bool = False) -> None:
        """What an attempt or probe says about the destination: the unit's, or the whole zone's.

        For a zone every probe is written (units added to the zone since come online with the next
        one); an attempt's repeat of the same news at most every 30 s (it is on the push path)."""
        if lane.zone is None:
            self.hub.presence.probe_result(unit, ok)
            return
        now = time.monotonic()
        last = self._zone_online.get(lane.zone)
        if not probe and last is not None and last[0] == ok and now - last[1] < 30.0:
            return
        self._zone_online[lane.zone] = (ok, now)
        try:
            await self.hub.presence.zone_result(lane.zone, ok, self.clock())
        except Exception:
            log.exception("could not record the presence of zone %s", lane.zone)

    async def _attempt(self, lane: Lane, packet_id: str, unit: str, attempt: int) -> None:
        logs.bind(request_id=logs.request_id_for(packet_id), unit=unit, packet_id=packet_id, code=None)
        exchange = self.hub.exchange
        info = await exchange.packet(packet_id)
        if info is None:
            return
        if info.content_state != "stored":
            await exchange.end_delivery(info, unit, dv.FAILED, Text("the content is no longer held by the hub"),
                                        claim=(self.hub.node, attempt))
            return
        # The packet as this unit sees it: its content variant (e.g. edXML with the hub's TraceHeader).
        seen, content_path = await exchange.content.for_delivery(info, unit)
        job = PushJob(packet=seen, unit=unit, target=lane.settings,
                      idempotency_key=idempotency_key(packet_id, unit), attempt=attempt,
                      content_path=content_path, opener=await exchange.content.opener(content_path),
                      holder=functools.partial(exchange.content.holds, content_path))
        started = time.monotonic()
        receipt: PushReceipt | None = None
        try:
            async with asyncio.timeout(self.config.attempt_timeout_seconds):
                receipt = await lane.adapter.push(job)
        except PushFailure as exc:
            failure = exc
        except TimeoutError:
            failure = PushFailure(Text("attempt took longer than {seconds} s",
                                       seconds=format(self.config.attempt_timeout_seconds, "g")),
                                  retryable=True)
        except Exception as exc:
            log.exception("push adapter %s raised on %s → %s", lane.protocol, packet_id, unit)
            failure = PushFailure(Text("adapter error: {error}: {reason}", error=type(exc).__name__, reason=exc),
                                  retryable=True)
        took = time.monotonic() - started
        if receipt is not None:
            await self._presence(lane, unit, True)
            detail: dict[str, Any] = {"mode": dv.PUSH, "protocol": lane.protocol}
            if receipt.remote_id:
                detail["remote_id"] = receipt.remote_id
            if receipt.detail:
                detail["receipt"] = receipt.detail[:500]
            if receipt.pending:
                await self._forwarded(info, unit, attempt, receipt, detail)
            elif not await exchange.end_delivery(info, unit, dv.DELIVERED, None, detail=detail,
                                                 values={"last_error": None}, claim=(self.hub.node, attempt)):
                log.warning("packet %s reached %s but its delivery had meanwhile changed state", packet_id, unit)
            log.debug("pushed %s to %s in %.3f s (attempt %d)", packet_id, unit, took, attempt)
            return
        if failure.retryable:
            # the endpoint is not answering usefully: counts against presence until a probe or push succeeds
            await self._presence(lane, unit, False)
        await self._failed(lane, info, unit, attempt, failure)

    async def _forwarded(self, info: Any, unit: str, attempt: int, receipt: PushReceipt,
                         detail: dict[str, Any]) -> None:
        """Handed to another exchange: `forwarded`, with its id there, until the adapter's tracker ends it."""
        now = self.clock()
        async with self.hub.db.write() as conn:
            moved = await dv.move(conn, info.id, [unit], dv.FORWARDED, now, claim=(self.hub.node, attempt), values={
                "remote_id": (receipt.remote_id or "")[:128] or None, "last_error": None})
            event = await record(conn, info.id, ev.PACKET_FORWARDED, now, unit=unit, audience=info.source,
                                 detail=detail) if moved else None
        if event is None:
            log.warning("packet %s was handed on for %s but its delivery had meanwhile changed state", info.id, unit)
            return
        self.hub.bus.publish([event])

    async def _failed(self, lane: Lane, info: Any, unit: str, attempt: int, failure: PushFailure) -> None:
        exchange = self.hub.exchange
        reason = failure.reason[:1000]
        limits = self.hub.config.delivery.priorities.for_priority(info.priority)
        if not failure.retryable:
            await exchange.end_delivery(info, unit, dv.FAILED,
                                        Text("refused by the destination: {reason}", reason=reason),
                                        values={"last_error": reason}, claim=(self.hub.node, attempt))
            return
        if attempt >= limits.max_attempts:
            await exchange.end_delivery(info, unit, dv.FAILED,
                                        Text("gave up after {attempts} attempts; last error: {reason}",
                                             attempts=attempt, reason=reason),
                                        values={"last_error": reason}, claim=(self.hub.node, attempt))
            return
        now = self.clock()
        at = now + timedelta(seconds=next_delay(attempt, self.config.retry, failure.retry_after))
        async with self.hub.db.write() as conn:
            moved = await dv.move(conn, info.id, [unit], dv.RETRYING, now, claim=(self.hub.node, attempt),
                                  values={"next_attempt_at": at, "last_error": reason})
            if moved:
                await record(conn, info.id, ev.DELIVERY_RETRYING, now, unit=unit, detail={
                    "attempts": attempt, "reason": reason, "next_attempt_at": iso(at)})
        if moved:
            self.hub.metrics.retried(lane.protocol)
        if moved and self.scheduler is not None:
            try:
                await self.scheduler.schedule(info.id, unit, at)
            except Exception:
                log.exception("could not store the retry job of %s → %s; the queue poll will retry it",
                              info.id, unit)

    # -- presence of push units ---------------------------------------------------------------
    async def _prober(self, lane: Lane) -> None:
        timeout = min(30.0, max(1.0, lane.probe_interval))
        while self._running:
            try:
                async with asyncio.timeout(timeout):
                    ok = bool(await lane.adapter.probe(lane.unit, lane.settings))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("probe of %s failed: %s", lane.unit, exc)
                ok = False
            await self._presence(lane, lane.unit, ok, probe=True)
            await asyncio.sleep(lane.probe_interval)
