"""Who is online: an open event stream, a signed request within the window, or (push units) an
endpoint that answers the health probe.

Observations happen on the hot path (every signed request), so they only touch memory; a flush
every second writes last-seen times, clock offsets and online/offline transitions in one batch.
Each transition keeps the time it happened, not the time it was flushed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from lgsp.core.clock import SYSTEM_CLOCK
from lgsp.core.events import iso
from lgsp.core.store.database import Database
from lgsp.core.store.tables import presence_log, units

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

    def last_seen(self) -> datetime | None:
        seen = [t for t in (self.last_request, self.last_probe_ok) if t is not None]
        return max(seen) if seen else None


class Presence:
    def __init__(self, db: Database, window_seconds: float,
                 clock: Callable[[], datetime] = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock  # the hub's clock (core/clock.py): the window and the sweep follow it
        self.window = timedelta(seconds=window_seconds)
        self._units: dict[str, _UnitState] = {}
        self._log: list[dict[str, object]] = []

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
        """
        dirty = sorted(((u, s) for u, s in self._units.items() if s.dirty), key=lambda item: item[0])
        entries, self._log = self._log, []
        if not dirty and not entries:
            return
        for _, state in dirty:
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
                for unit, state in dirty:
                    values: dict[str, object] = {"online": state.online}
                    if not state.online and state.offline_since is not None:
                        values["offline_since"] = state.offline_since
                    elif state.online:
                        values["offline_since"] = None
                    if state.last_seen() is not None:
                        values["last_seen_at"] = state.last_seen()
                    if state.offset is not None:
                        values["clock_offset_seconds"] = state.offset
                    result = await conn.execute(update(units).where(units.c.id == unit).values(**values))
                    if not result.rowcount:
                        missing.append(state)
                if entries:
                    await conn.execute(presence_log.insert(), entries)
        except Exception:
            for _, state in dirty:
                state.dirty = True
            self._log[:0] = entries
            raise
        for state in missing:  # written once the unit exists
            state.dirty = True

    async def reset_stale(self, now: datetime | None = None) -> int:
        """At start-up: units the store still shows online but unseen for a window go offline; those
        seen within it are taken into memory as last seen then, so the sweep times them out as usual
        (else a unit online when the hub stopped would stay online in the store for good)."""
        now = now or self.clock()
        cutoff = now - self.window
        async with self.db.write() as conn:
            rows = (await conn.execute(select(units.c.id, units.c.last_seen_at).where(
                units.c.online.is_(True)))).all()
            stale = {r.id for r in rows if r.last_seen_at is None or r.last_seen_at < cutoff}
            for unit in sorted(stale):  # identifier order, like flush()
                await conn.execute(update(units).where(units.c.id == unit).values(online=False, offline_since=now))
                await conn.execute(presence_log.insert().values(unit_id=unit, at=now, online=False,
                                                                cause="timeout"))
        for row in rows:
            if row.id not in stale and row.id not in self._units:
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
        since = None if online else (row.offline_since or row.created_at)
        return {"unit": row.id, "online": online,
                "last_seen_at": iso(last_seen) if last_seen else None,
                "offline_since": iso(since) if since else None,
                "transitions": [{"at": iso(r.at), "online": r.online, "cause": r.cause} for r in log_rows]}
