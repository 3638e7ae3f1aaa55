"""Who is online: an open event stream, a signed request within the window, or (push units) an
endpoint that answers the health probe.

Observations happen on the hot path (every signed request), so they only touch memory; a flush
every second writes last-seen times, clock offsets and online/offline transitions in one batch.
Each transition keeps the time it happened, not the time it was flushed.
Clock offsets are also kept as a history: samples per unit and interval (core/clockoffsets.py),
aggregated in memory and written by the same flush.

Across nodes (core/cluster.py: Nodes) a unit is online while any live node holds a stream of it
(`stream_holders`, written by each node's flush) or any node saw a signed request of it within
the window (`units.last_seen_at`, the latest of every node's). A node going offline for a unit
writes it only when neither holds elsewhere; the leader's `sweep_cluster` ends what a dead node
held. Transitions are logged once, by the node whose write changed the stored state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import and_, bindparam, case, delete, exists, func, select, update

from lgsp.core.clock import SYSTEM_CLOCK
from lgsp.core.clockoffsets import OffsetSampler
from lgsp.core.events import iso
from lgsp.core.store.database import Database
from lgsp.core.store.tables import clock_offsets, presence_log, stream_holders, units

if TYPE_CHECKING:
    from lgsp.core.cluster import Nodes

log = logging.getLogger(__name__)


@dataclass
class _UnitState:
    online: bool = False
    streams: int = 0
    last_request: datetime | None = None
    offset: float | None = None
    dirty: bool = False
    probe_ok: bool | None = None  # None: not probed (pull unit, or no answer yet)
    last_probe_ok: datetime | None = None
    offline_since: datetime | None = None
    held: int = 0  # the stream count last written to stream_holders for this node
    def last_seen(self) -> datetime | None:
        seen = [t for t in (self.last_request, self.last_probe_ok) if t is not None]
        return max(seen) if seen else None


class _Taken(NamedTuple):
    """A unit's transition state when a flush took it into its batch (with the batch's log entries).

    The flush writes this, not the live state: a transition observed while it runs (a probe failing
    during its write) is left, with its log entry, to the next flush. Written early, it would make the
    store agree with that entry already, and the next flush would drop the entry as no change."""

    online: bool
    offline_since: datetime | None
    probe_ok: bool | None


_SEEN = bindparam("b_seen", type_=units.c.last_seen_at.type)
_OFFSET = bindparam("b_offset", type_=units.c.clock_offset_seconds.type)
#: A unit's observations without a transition (executemany): the latest last-seen time of every
#: node's (NULL: none here), the clock offset when one was measured (NULL: kept).
_OBSERVED = (update(units).where(units.c.id == bindparam("b_unit"))
             .values(last_seen_at=case((_SEEN.is_(None), units.c.last_seen_at),
                                       (units.c.last_seen_at.is_(None) | (units.c.last_seen_at < _SEEN), _SEEN),
                                       else_=units.c.last_seen_at),
                     clock_offset_seconds=func.coalesce(_OFFSET, units.c.clock_offset_seconds)))


class Presence:
    def __init__(self, db: Database, window_seconds: float,
                 clock: Callable[[], datetime] = SYSTEM_CLOCK, offsets: OffsetSampler | None = None) -> None:
        self.db = db
        self.clock = clock  # the hub's clock (core/clock.py): the window and the sweep follow it
        self.window = timedelta(seconds=window_seconds)
        self._units: dict[str, _UnitState] = {}
        self._log: list[dict[str, object]] = []
        self.nodes: Nodes | None = None  # set by the hub: streams of live nodes count (core/cluster.py)
        self._flushing = asyncio.Lock()
        # Clock-offset samples (core/clockoffsets.py), written by the flush with the rest.
        self.offsets = offsets or OffsetSampler(interval_seconds=300.0, jump_seconds=5.0)

    def _state(self, unit: str) -> _UnitState:
        state = self._units.get(unit)
        if state is None:
            state = self._units[unit] = _UnitState()
        return state

    def _set(self, unit: str, state: _UnitState, online: bool, cause: str, at: datetime) -> None:
        if state.online != online:
            state.online = online
            state.offline_since = None if online else at
            state.dirty = True
            self._log.append({"unit_id": unit, "at": at, "online": online, "cause": cause})

    def probe_result(self, unit: str, ok: bool, at: datetime | None = None) -> None:
        """A push unit's endpoint answered (ok) or not; a successful push counts as an answer too."""
        at = at or self.clock()
        state = self._state(unit)
        state.probe_ok = ok
        if ok:
            state.last_probe_ok = at
            state.dirty = True
        self._set(unit, state, self.is_online(unit, at), "probe_ok" if ok else "probe_failed", at)

    async def zone_result(self, zone: str, ok: bool, at: datetime | None = None) -> int:
        """A zone's route answered (ok) or not: every unit of the zone is online, or offline since `at`.

        Written straight to the store, only for the units whose state changes (a zone's units are
        never observed one by one: the national axis's agencies are reached only through the axis).
        Returns how many units changed.
        """
        at = at or self.clock()
        values: dict[str, object] = {"online": ok, "offline_since": None if ok else at}
        if ok:
            values["last_seen_at"] = at
        async with self.db.write() as conn:
            changed = list((await conn.execute(
                update(units).where(units.c.zone == zone, units.c.online.is_(not ok)).values(**values)
                .returning(units.c.id))).scalars())
            if changed:
                await conn.execute(presence_log.insert(), [
                    {"unit_id": unit, "at": at, "online": ok, "cause": "probe_ok" if ok else "probe_failed"}
                    for unit in sorted(changed)])
        return len(changed)

    def request_seen(self, unit: str, at: datetime, clock_offset: float | None = None) -> None:
        """A signed request from `unit` arrived at `at`; its clock was `clock_offset` s ahead of ours
        (None: unknown, e.g. the national axis protocol's timestamps, which have no zone and stay
        fixed for hours; the last known offset is kept)."""
        state = self._state(unit)
        state.last_request = at
        if clock_offset is not None:
            state.offset = clock_offset
            self.offsets.observe(unit, at, clock_offset)
        state.dirty = True
        self._set(unit, state, True, "request", at)

    def stream_opened(self, unit: str, at: datetime | None = None) -> None:
        at = at or self.clock()
        state = self._state(unit)
        state.streams += 1
        state.dirty = True
        self._log.append({"unit_id": unit, "at": at, "online": True, "cause": "stream_open"})
        state.online = True
        state.offline_since = None

    def stream_closed(self, unit: str, at: datetime | None = None) -> None:
        at = at or self.clock()
        state = self._state(unit)
        state.streams = max(0, state.streams - 1)
        state.dirty = True
        still = self.is_online(unit, at)
        self._log.append({"unit_id": unit, "at": at, "online": still, "cause": "stream_close"})
        if state.online and not still:
            state.offline_since = at
        state.online = still

    def is_online(self, unit: str, now: datetime | None = None) -> bool:
        state = self._units.get(unit)
        if state is None:
            return False
        if state.streams or state.probe_ok:
            return True
        now = now or self.clock()
        return state.last_request is not None and now - state.last_request < self.window

    def sweep(self, now: datetime | None = None) -> None:
        """Mark units offline whose window passed without a stream or a request."""
        now = now or self.clock()
        for unit, state in self._units.items():
            if state.online and not self.is_online(unit, now):
                at = (state.last_request + self.window) if state.last_request else now
                self._set(unit, state, False, "timeout", min(at, now))

    async def flush(self) -> None:
        """Persist observations and transitions (one write transaction, or none if idle).

        Rows are updated in identifier order: nodes sharing a PostgreSQL database flush overlapping
        units at the same moments, and one fixed order means no two flushes wait on each other in a
        cycle (a deadlock PostgreSQL would break by failing one of them).

        A unit observed before it is in the directory (a push target probed before `lgsp unit add`)
        has its transitions dropped and its state kept for the next flush: one such row must not
        fail the whole batch, round after round, for every other unit.

        One flush at a time: a caller (the housekeeping round) returns only once what was observed
        before it is stored, even when the periodic flush had already taken it.
        """
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        dirty = sorted(((u, s, _Taken(s.online, s.offline_since, s.probe_ok)) for u, s in self._units.items()
                        if s.dirty), key=lambda item: item[0])
        entries, self._log = self._log, []
        samples = self.offsets.due(self.clock())
        if not dirty and not entries and not samples:
            return
        for _, state, _ in dirty:
            state.dirty = False
        missing: list[_UnitState] = []
        try:
            async with self.db.write() as conn:
                if entries:
                    logged = {str(e["unit_id"]) for e in entries}
                    known = set((await conn.execute(select(units.c.id).where(units.c.id.in_(logged)))).scalars())
                    if known != logged:
                        log.debug("presence of unknown units not recorded: %s", ", ".join(sorted(logged - known)))
                        entries = [e for e in entries if e["unit_id"] in known]
                entries = await self._write(conn, dirty, entries, missing)
                if entries:
                    await conn.execute(presence_log.insert(), entries)
                if samples:
                    await conn.execute(clock_offsets.insert(), [sample.row() for sample in samples])
        except Exception:
            for _, state, _ in dirty:
                state.dirty = True
            self._log[:0] = entries
            self.offsets.restore(samples)
            raise
        for state in missing:  # written once the unit exists
            state.dirty = True

    async def _write(self, conn: Any, dirty: list[tuple[str, _UnitState, _Taken]], entries: list[dict[str, object]],
                     missing: list[_UnitState]) -> list[dict[str, object]]:
        """Write the dirty units; returns the log entries to keep (transitions that changed the store)."""
        if not dirty:
            return entries
        now = self.clock()
        stored = {r.id: r for r in (await conn.execute(
            select(units.c.id, units.c.online, units.c.last_seen_at)
            .where(units.c.id.in_([u for u, _, _ in dirty])))).all()}
        leaving = [u for u, _, taken in dirty if not taken.online and u in stored and stored[u].online]
        held_elsewhere: set[str] = set()
        if leaving and self.nodes is not None:
            held_elsewhere = set((await conn.execute(select(stream_holders.c.unit_id).where(
                stream_holders.c.unit_id.in_(leaving), stream_holders.c.node_id != self.nodes.id,
                stream_holders.c.streams > 0, stream_holders.c.node_id.in_(self.nodes.live(now))))).scalars())
        lost: set[str] = set()
        kept_online: set[str] = set()
        # The units whose row only takes observations (no transition), most of them under load, go in
        # one executemany (one round trip on PostgreSQL) instead of one UPDATE each; it is sent before
        # the next transition's own UPDATE, so rows are still updated in unit order.
        observed: list[dict[str, object]] = []
        for unit, state, taken in dirty:
            row = stored.get(unit)
            if row is None:
                missing.append(state)
                continue
            if self.nodes is not None and state.streams != state.held:
                await self._hold(conn, unit, state.streams)
                state.held = state.streams
            values: dict[str, object] = {}
            seen = state.last_seen()
            if seen is not None:  # the latest of every node's observations
                values["last_seen_at"] = case(
                    (units.c.last_seen_at.is_(None) | (units.c.last_seen_at < seen), seen),
                    else_=units.c.last_seen_at)
            if state.offset is not None:
                values["clock_offset_seconds"] = state.offset
            if taken.online == bool(row.online):  # no transition: observations only, if any
                if values:
                    observed.append({"b_unit": unit, "b_seen": seen, "b_offset": state.offset})
                continue
            if observed:
                await conn.execute(_OBSERVED, observed)
                observed = []
            flip = False
            if taken.online and not row.online:
                values.update(online=True, offline_since=None)
                flip = True
            elif not taken.online and row.online:
                # Another node's request within the window keeps it online (not a probe's failure).
                seen_elsewhere = (taken.probe_ok is not False and row.last_seen_at is not None
                                  and (seen is None or row.last_seen_at > seen)
                                  and now - row.last_seen_at < self.window)
                if unit in held_elsewhere or seen_elsewhere:
                    kept_online.add(unit)
                else:
                    values.update(online=False, offline_since=taken.offline_since or now)
                    flip = True
            if not values:
                continue
            cond = units.c.id == unit
            if flip:
                cond = and_(cond, units.c.online.is_(bool(row.online)))
            result = await conn.execute(update(units).where(cond).values(**values))
            if flip and not result.rowcount:  # another node flipped it first and logged it; keep our observations
                lost.add(unit)
                values.pop("online"), values.pop("offline_since")
                if values:
                    await conn.execute(update(units).where(units.c.id == unit).values(**values))
        if observed:
            await conn.execute(_OBSERVED, observed)
        # A transition is logged when it changes the unit's state as the store had it (so the nodes that
        # see the same change do not each log it); stream openings and closings are always logged, and
        # so is every transition of a unit never seen before (None: no stored state to compare with,
        # e.g. a push target probed up and down before it was added to the directory).
        kept: list[dict[str, object]] = []
        current: dict[str, bool | None] = {
            u: None if not r.online and r.last_seen_at is None else bool(r.online) for u, r in stored.items()}
        for entry in entries:
            unit = str(entry["unit_id"])
            if entry["cause"] in ("stream_open", "stream_close"):
                if unit in kept_online:
                    entry = {**entry, "online": True}
                kept.append(entry)
            elif unit in lost or unit not in current or (unit in kept_online and not entry["online"]):
                continue
            elif entry["online"] != current[unit]:
                current[unit] = bool(entry["online"])
                kept.append(entry)
        return kept

    async def _hold(self, conn: Any, unit: str, streams: int) -> None:
        """Record how many streams of `unit` this node holds open (none: no row)."""
        assert self.nodes is not None
        mine = and_(stream_holders.c.node_id == self.nodes.id, stream_holders.c.unit_id == unit)
        if streams <= 0:
            await conn.execute(delete(stream_holders).where(mine))
            return
        result = await conn.execute(update(stream_holders).where(mine).values(streams=streams))
        if not result.rowcount:
            await conn.execute(stream_holders.insert().values(node_id=self.nodes.id, unit_id=unit, streams=streams))

    def _held_live(self, now: datetime) -> Any:
        """A live node holds a stream of the unit (correlated with `units`)."""
        assert self.nodes is not None
        return exists().where(stream_holders.c.unit_id == units.c.id, stream_holders.c.streams > 0,
                              stream_holders.c.node_id.in_(self.nodes.live(now)))

    async def sweep_cluster(self, probed: Collection[str] = ()) -> int:
        """The cluster's part of the sweep (the leader runs it): units stored online that no live node
        holds a stream of and no node saw within the window go offline — those a dead node held,
        or whose last node stopped seeing them and died before saying so. Units whose presence comes
        from probes (`probed`, and units of other zones) are left to the probes. Returns how many."""
        if self.nodes is None:
            return 0
        now = self.clock()
        cond = and_(units.c.online.is_(True), units.c.zone == "local", ~self._held_live(now),
                    units.c.last_seen_at.is_(None) | (units.c.last_seen_at < now - self.window))
        if probed:
            cond = and_(cond, units.c.id.not_in(sorted(probed)))
        changed: list[str] = []
        async with self.db.write() as conn:
            for unit in (await conn.execute(select(units.c.id).where(cond).order_by(units.c.id))).scalars():
                result = await conn.execute(update(units).where(and_(units.c.id == unit, cond))
                                            .values(online=False, offline_since=now))
                if result.rowcount:
                    changed.append(unit)
            if changed:
                await conn.execute(presence_log.insert(), [
                    {"unit_id": unit, "at": now, "online": False, "cause": "timeout"} for unit in changed])
        if changed:
            log.info("%d unit(s) offline: no live node holds or saw them", len(changed))
        return len(changed)

    async def reset_stale(self, now: datetime | None = None) -> int:
        """At start-up: units the store still shows online but unseen for a window (and held by no
        live node's stream) go offline; those seen within it are taken into memory as last seen
        then, so the sweep times them out as usual (else a unit online when the hub stopped would
        stay online in the store for good)."""
        now = now or self.clock()
        cutoff = now - self.window
        async with self.db.write() as conn:
            rows = (await conn.execute(select(units.c.id, units.c.last_seen_at).where(
                units.c.online.is_(True)))).all()
            held: set[str] = set()
            if self.nodes is not None and rows:
                held = set((await conn.execute(select(units.c.id).where(
                    units.c.online.is_(True), self._held_live(now)))).scalars())
            stale = {r.id for r in rows if r.id not in held and (r.last_seen_at is None or r.last_seen_at < cutoff)}
            for unit in sorted(stale):  # identifier order, like flush()
                result = await conn.execute(update(units).where(units.c.id == unit, units.c.online.is_(True))
                                            .values(online=False, offline_since=now))
                if result.rowcount:
                    await conn.execute(presence_log.insert().values(unit_id=unit, at=now, online=False,
                                                                    cause="timeout"))
        for row in rows:
            if row.id not in stale and row.id not in held and row.id not in self._units:
                self._units[row.id] = _UnitState(online=True, last_request=row.last_seen_at)
        return len(stale)

    def overlay(self, unit: str, online: bool, last_seen: datetime | None) -> tuple[bool, datetime | None]:
        """Stored presence (every node's, up to a second old) brought up to date with this node's."""
        state = self._units.get(unit)
        if state is None:
            return online, last_seen
        mine = state.last_seen()
        if mine is not None and (last_seen is None or mine > last_seen):
            last_seen = mine
        return online or self.is_online(unit), last_seen

    async def _online_now(self, conn: Any, unit: str, stored_seen: datetime | None) -> bool:
        """Online by the hub's clock now, not by the stored flag (which waits for a flush or a sweep).

        For a unit this node has observed: its own streams, probe or request window; a request any
        node saw within the window (`units.last_seen_at`), unless this node's probe of it failed (as
        the flush rules: that time may be the probe's own last success); or a stream a live node holds.
        """
        now = self.clock()
        if self.is_online(unit, now):
            return True
        state = self._units.get(unit)
        probe_failed = state is not None and state.probe_ok is False
        if not probe_failed and stored_seen is not None and now - stored_seen < self.window:
            return True
        if self.nodes is None:
            return False
        held = await conn.scalar(select(exists().where(
            stream_holders.c.unit_id == unit, stream_holders.c.node_id != self.nodes.id,
            stream_holders.c.streams > 0, stream_holders.c.node_id.in_(self.nodes.live(now)))))
        return bool(held)

    async def view(self, unit: str, *, transitions: int = 20) -> dict[str, object] | None:
        """A unit's presence as stored (all nodes' observations), with its latest transitions."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(units.c.id, units.c.online, units.c.last_seen_at, units.c.offline_since,
                                             units.c.created_at).where(units.c.id == unit))).first()
            if row is None:
                return None
            log_rows = (await conn.execute(select(presence_log).where(presence_log.c.unit_id == unit)
                                           .order_by(presence_log.c.at.desc(), presence_log.c.id.desc())
                                           .limit(transitions))).all()
            online, last_seen = self.overlay(unit, bool(row.online), row.last_seen_at)
            if unit in self._units:
                online = await self._online_now(conn, unit, row.last_seen_at)
        if online:
            since = None
        elif row.online and last_seen is not None:  # the window passed; no sweep has stored it yet
            since = last_seen + self.window
        else:
            since = row.offline_since or row.created_at
        return {"unit": row.id, "online": online,
                "last_seen_at": iso(last_seen) if last_seen else None,
                "offline_since": iso(since) if since else None,
                "transitions": [{"at": iso(r.at), "online": r.online, "cause": r.cause} for r in log_rows]}
