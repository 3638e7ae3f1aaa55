"""The presence flush writes the observations of many units (no transition) in one executemany,
in unit order, with the same rules as one UPDATE each: the latest last-seen time of every node's,
the clock offset kept when none was measured. Both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from lgsp.core.presence import Presence
from lgsp.core.store.database import Database
from lgsp.core.store.tables import units

IDS = [f"000.00.{i:02d}.H23" for i in range(20)]


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = Database(store_url, pool_size=2)
    await database.upgrade()
    now = datetime.now(UTC)
    async with database.write() as conn:
        await conn.execute(units.insert(), [dict(id=u, name=u, name_folded=u, zone="local", legacy=False,
                                                 status="active", created_at=now, online=False, stream_cursor=0)
                                            for u in IDS])
    try:
        yield database
    finally:
        await database.close()


async def test_observations_of_many_units_are_one_executemany(db: Database) -> None:
    presence = Presence(db, 300)
    first = datetime.now(UTC).replace(microsecond=0)
    for n, unit in enumerate(IDS):
        presence.request_seen(unit, first, float(n))
    await presence.flush()  # every unit goes online: one conditional UPDATE each, as before

    # Another node saw unit 0 later than this node's next observation: its time must stay.
    later_elsewhere = first + timedelta(minutes=5)
    async with db.write() as conn:
        await conn.execute(units.update().where(units.c.id == IDS[0]).values(last_seen_at=later_elsewhere))

    updates: list[tuple[str, bool, int]] = []

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE UNITS"):
            updates.append((statement, executemany, len(parameters) if executemany else 1))

    event.listen(db.writer.sync_engine, "before_cursor_execute", count)
    try:
        second = first + timedelta(minutes=1)
        for n, unit in enumerate(IDS):
            # odd units: no offset measured this time (e.g. the national axis): the last one stays
            presence.request_seen(unit, second, float(100 + n) if n % 2 == 0 else None)
        await presence.flush()
    finally:
        event.remove(db.writer.sync_engine, "before_cursor_execute", count)
    assert [(many, rows) for _, many, rows in updates] == [(True, len(IDS))], updates

    async with db.read() as conn:
        rows = {r.id: r for r in (await conn.execute(select(units).where(units.c.id.in_(IDS)))).all()}
    assert all(r.online for r in rows.values())
    assert rows[IDS[0]].last_seen_at == later_elsewhere
    assert all(rows[u].last_seen_at == second for u in IDS[1:])
    assert [rows[u].clock_offset_seconds for u in IDS] == [
        float(100 + n) if n % 2 == 0 else float(n) for n in range(len(IDS))]


async def test_a_transition_among_observations_is_still_written_and_logged(db: Database) -> None:
    from lgsp.core.store.tables import presence_log

    presence = Presence(db, 300)
    now = datetime.now(UTC).replace(microsecond=0)
    for unit in IDS[:3]:
        presence.request_seen(unit, now, None)
    await presence.flush()
    presence.stream_opened(IDS[3], now)  # IDS[3] goes online amid units that only report
    for unit in IDS[:3]:
        presence.request_seen(unit, now + timedelta(seconds=5), 1.5)
    await presence.flush()
    async with db.read() as conn:
        rows = {r.id: r for r in (await conn.execute(select(units).where(units.c.id.in_(IDS[:4])))).all()}
        logged = (await conn.execute(select(presence_log.c.unit_id, presence_log.c.online)
                                     .order_by(presence_log.c.id))).all()
    assert all(rows[u].online for u in IDS[:4])
    assert [rows[u].clock_offset_seconds for u in IDS[:3]] == [1.5, 1.5, 1.5]
    assert rows[IDS[3]].last_seen_at is None  # a stream opening is no request
    assert [(u, bool(o)) for u, o in logged] == [(IDS[0], True), (IDS[1], True), (IDS[2], True), (IDS[3], True)]
