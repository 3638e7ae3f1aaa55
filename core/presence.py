"""Who is online: an open event stream, or a signed request within the window.

Observations happen on the hot path (every signed request), so they only touch memory; a flush
every second writes last-seen times, clock offsets and online/offline transitions in one batch.
Each transition keeps the time it happened, not the time it was flushed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, select, update

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


class Presence:
    def __init__(self, db: Database, window_seconds: float) -> None:
        self.db = db
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
            self._log.append({"unit_id": unit, "at": at, "online": online, "cause": cause})

    def request_seen(self, unit: str, at: datetime, clock_offset: float) -> None:
        """A signed request from `unit` arrived at `at`; its clock was `clock_offset` s ahead of ours."""
        state = self._state(unit)
        state.last_request = at
        state.offset = clock_offset
        state.dirty = True
        self._set(unit, state, True, "request", at)

    def stream_opened(self, unit: str, at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        state = self._state(unit)
        state.streams += 1
        state.dirty = True
        self._log.append({"unit_id": unit, "at": at, "online": True, "cause": "stream_open"})
        state.online = True

    def stream_closed(self, unit: str, at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        state = self._state(unit)
        state.streams = max(0, state.streams - 1)
        state.dirty = True
        still = state.streams > 0 or (state.last_request is not None and at - state.last_request < self.window)
        self._log.append({"unit_id": unit, "at": at, "online": still, "cause": "stream_close"})
        state.online = still

    def is_online(self, unit: str, now: datetime | None = None) -> bool:
        state = self._units.get(unit)
        if state is None:
            return False
        if state.streams:
            return True
        now = now or datetime.now(UTC)
        return state.last_request is not None and now - state.last_request < self.window

    def sweep(self, now: datetime | None = None) -> None:
        """Mark units offline whose window passed without a stream or a request."""
        now = now or datetime.now(UTC)
        for unit, state in self._units.items():
            if state.online and not self.is_online(unit, now):
                at = (state.last_request + self.window) if state.last_request else now
                self._set(unit, state, False, "timeout", min(at, now))
                state.dirty = True

    async def flush(self) -> None:
        """Persist observations and transitions (one write transaction, or none if idle)."""
        dirty = [(u, s) for u, s in self._units.items() if s.dirty]
        entries, self._log = self._log, []
        if not dirty and not entries:
            return
        for _, state in dirty:
            state.dirty = False
        try:
            async with self.db.write() as conn:
                for unit, state in dirty:
                    values: dict[str, object] = {"online": state.online}
                    if state.last_request is not None:
                        values["last_seen_at"] = state.last_request
                    if state.offset is not None:
                        values["clock_offset_seconds"] = state.offset
                    await conn.execute(update(units).where(units.c.id == unit).values(**values))
                if entries:
                    await conn.execute(presence_log.insert(), entries)
        except Exception:
            for _, state in dirty:
                state.dirty = True
            self._log[:0] = entries
            raise

    async def reset_stale(self, now: datetime | None = None) -> int:
        """At start-up: units the store still shows online but unseen for a window go offline."""
        now = now or datetime.now(UTC)
        cutoff = now - self.window
        async with self.db.write() as conn:
            rows = (await conn.execute(select(units.c.id, units.c.last_seen_at).where(and_(
                units.c.online.is_(True),
                (units.c.last_seen_at.is_(None)) | (units.c.last_seen_at < cutoff))))).all()
            for row in rows:
                await conn.execute(update(units).where(units.c.id == row.id).values(online=False))
                await conn.execute(presence_log.insert().values(unit_id=row.id, at=now, online=False,
                                                                cause="timeout"))
        return len(rows)
