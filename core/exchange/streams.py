"""What the event stream needs from the exchange: the hello, the saved cursor, queued → notified."""

from __future__ import annotations

from sqlalchemy import and_, select, update

from lgsp.core import deliveries as dv
from lgsp.core.events import Event
from lgsp.core.exchange.base import ExchangeBase
from lgsp.core.exchange.views import Hello
from lgsp.core.store.tables import packet_events, packets, units

#: A stream's hello carries at most this many changes (then `more: true`: reconnect for the rest)
#: and inbox items.
HELLO_CHANGES = 1000
HELLO_INBOX = 1000


class StreamSupport(ExchangeBase):
    async def hello(self, unit: str) -> Hello:
        """The first message of a stream: pending inbox and sent-packet changes since last time.

        The live feed skips the event seqs and packet ids it covered, so nothing is told twice.
        """
        async with self.db.read() as conn:
            cursor = await conn.scalar(select(units.c.stream_cursor).where(units.c.id == unit)) or 0
            rows = (await conn.execute(
                select(packet_events).outerjoin(packets, packets.c.id == packet_events.c.packet_id)
                .where(and_(packet_events.c.audience == unit, packet_events.c.id > cursor,
                            (packets.c.source_unit == unit) | packet_events.c.packet_id.is_(None)))
                .order_by(packet_events.c.id).limit(HELLO_CHANGES + 1))).all()
        inbox = await self._inbox_page(unit, HELLO_INBOX, None)
        changes = tuple(Event(r.id, r.type, r.packet_id, r.at, r.unit, r.audience, r.detail)
                        for r in rows[:HELLO_CHANGES])
        return Hello(at=self.clock(), unit=unit, inbox=inbox.items, changes=changes, more=len(rows) > HELLO_CHANGES)

    async def save_cursor(self, unit: str, seq: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(units).where(and_(units.c.id == unit, units.c.stream_cursor < seq))
                               .values(stream_cursor=seq))

    async def mark_told(self, unit: str, packet_ids: list[str]) -> None:
        """A hello listed these packets to their destination: queued → notified."""
        if not packet_ids:
            return
        now = self.clock()
        async with self.db.write() as conn:
            for packet_id in packet_ids:
                await dv.move(conn, packet_id, [unit], dv.NOTIFIED, now)
