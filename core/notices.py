"""Maintenance notices: the province tells every unit of planned downtime before it happens.

An operator adds a notice from the CLI (another process, with only the store); a running hub
announces it on its next housekeeping round as a `hub.notice` event to every local unit — recorded
with the other events, so a unit that is offline gets it in its next stream `hello` — and keeps the
notices that have not ended in memory, so `/v1/time` and every SOAP answer can carry them without
touching the store. Announcing is a conditional update, so with several nodes one announces.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update

from lgsp.core import events as ev
from lgsp.core.errors import Problem
from lgsp.core.events import EventBus, iso
from lgsp.core.i18n import Text
from lgsp.core.store.database import Database
from lgsp.core.store.tables import notices, units
from lgsp.core.text import check_text

EVENT = ev.HUB_NOTICE
MAX_MESSAGE = 1000
#: The longest a notice may last: a notice is about a maintenance window, not a standing banner.
MAX_SPAN = timedelta(days=31)


@dataclass(frozen=True)
class Notice:
    id: str
    message: str
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    created_by: str | None
    announced_at: datetime | None
    withdrawn_at: datetime | None

    def public(self) -> dict[str, Any]:
        """What units see (stream, /v1/time, SOAP header)."""
        return {"notice": self.id, "message": self.message, "from": iso(self.starts_at), "to": iso(self.ends_at)}


def _notice(row: Any) -> Notice:
    return Notice(row.id, row.message, row.starts_at, row.ends_at, row.created_at, row.created_by,
                  row.announced_at, row.withdrawn_at)


def _utc() -> datetime:
    return datetime.now(UTC)


class NoticeBoard:
    def __init__(self, db: Database, bus: EventBus, clock: Callable[[], datetime] = _utc) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self._active: tuple[Notice, ...] = ()

    async def add(self, message: str, starts_at: datetime, ends_at: datetime, *, by: str | None = None) -> Notice:
        """Record a notice; `request.invalid` for an empty or overlong message or a window that makes no sense."""
        message = check_text(message, "message", max_length=MAX_MESSAGE, multiline=True)
        if not message.strip():
            raise Problem("request.invalid", Text("message: must not be blank"), field="message")
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise Problem("request.invalid", Text("from/to: must carry a time zone"), field="from")
        now = self.clock()
        if ends_at <= starts_at:
            raise Problem("request.invalid", Text("to: must be after from"), field="to")
        if ends_at <= now:
            raise Problem("request.invalid", Text("to: is already past"), field="to")
        if ends_at - starts_at > MAX_SPAN:
            raise Problem("request.invalid", Text("to: a notice lasts at most {days} days", days=MAX_SPAN.days),
                          field="to")
        notice = Notice("N" + secrets.token_hex(6).upper(), message, starts_at.astimezone(UTC),
                        ends_at.astimezone(UTC), now, by, None, None)
        async with self.db.write() as conn:
            await conn.execute(notices.insert().values(
                id=notice.id, message=notice.message, starts_at=notice.starts_at, ends_at=notice.ends_at,
                created_at=now, created_by=by))
        return notice

    async def withdraw(self, notice_id: str) -> Notice:
        async with self.db.write() as conn:
            done = await conn.execute(update(notices).where(and_(notices.c.id == notice_id,
                                                                 notices.c.withdrawn_at.is_(None)))
                                      .values(withdrawn_at=self.clock()))
            row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).first()
        if row is None:
            raise Problem("not_found", Text("notice {notice_id} does not exist", notice_id=notice_id))
        if done.rowcount == 0:
            raise Problem("conflict", Text("notice {notice_id} was already withdrawn", notice_id=notice_id))
        return _notice(row)

    async def list(self, *, include_past: bool = False) -> list[Notice]:
        query = select(notices).order_by(notices.c.starts_at, notices.c.id)
        if not include_past:
            query = query.where(and_(notices.c.ends_at > self.clock(), notices.c.withdrawn_at.is_(None)))
        async with self.db.read() as conn:
            return [_notice(r) for r in (await conn.execute(query)).all()]

    def active(self) -> tuple[Notice, ...]:
        """Notices not yet ended (current or upcoming), as of the last `refresh`; no store access."""
        now = self.clock()
        return tuple(n for n in self._active if n.ends_at > now)

    async def refresh(self, *, announce: bool = True) -> None:
        """Announce what was added since the last round (the cluster's leader does), then reload
        what has not ended (every node, for /v1/time and SOAP answers)."""
        now = self.clock()
        if announce:
            async with self.db.read() as conn:
                pending = (await conn.execute(select(notices.c.id).where(and_(
                    notices.c.announced_at.is_(None), notices.c.withdrawn_at.is_(None),
                    notices.c.ends_at > now)))).scalars().all()
            for notice_id in pending:
                await self._announce(notice_id)
        self._active = tuple(await self.list())

    async def _announce(self, notice_id: str) -> None:
        now = self.clock()
        async with self.db.write() as conn:
            claimed = await conn.execute(update(notices).where(and_(notices.c.id == notice_id,
                                                                    notices.c.announced_at.is_(None)))
                                         .values(announced_at=now))
            if claimed.rowcount != 1:
                return  # another node announced it
            row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).one()
            detail = _notice(row).public()
            audience = (await conn.execute(select(units.c.id).where(and_(
                units.c.status == "active", units.c.zone != "national")))).scalars().all()
            recorded = [await ev.record(conn, None, EVENT, now, audience=unit, detail=detail) for unit in audience]
        self.bus.publish(recorded)
