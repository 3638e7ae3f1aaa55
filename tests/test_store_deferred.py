"""Rows a write transaction does not read back, carried by its events INSERT on PostgreSQL
(core/store/deferred.py): written in the transaction, with it or not at all, and on SQLite at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select

from lgsp.core import audit
from lgsp.core import events as ev
from lgsp.core.store import deferred
from lgsp.core.store.database import Database
from lgsp.core.store.tables import audit_log, packet_events, packets, units

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
UNIT = "000.00.01.H00"


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = Database(store_url, pool_size=2)
    await database.upgrade()
    async with database.write() as conn:
        await conn.execute(units.insert(), {"id": UNIT, "name": UNIT, "name_folded": UNIT, "zone": "local",
                                            "legacy": False, "status": "active", "created_at": NOW, "online": False,
                                            "stream_cursor": 0})
    try:
        yield database
    finally:
        await database.close()


def _packet(packet_id: str) -> dict[str, Any]:
    return {"id": packet_id, "source_unit": UNIT, "subject": "s", "priority": 0, "data_type": "d",
            "protocol": "p", "size": 1, "sha256": "0" * 64, "state": "created", "content_state": "none",
            "created_at": NOW, "upload_expires_at": NOW, "meta": {"k": "v"}}


class Statements:
    """The SQL the store is sent, as the driver gets it."""

    def __init__(self, db: Database) -> None:
        self.engine = db.writer.sync_engine
        self.sent: list[str] = []

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sent.append(statement)

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self.sent

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)


async def _count(db: Database, table: Any) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_held_rows_travel_with_the_events_insert(db: Database) -> None:
    """PostgreSQL: the packet and the audit entry go out in the event's statement (one statement in
    all, written with it); SQLite: each row when it is asked for (three statements)."""
    with Statements(db) as sent:
        async with db.write() as conn:
            await deferred.insert(conn, packets, _packet("p-held"))
            await audit.append(conn, "packet.created", actor="000.00.01.H00", target="p-held", at=NOW,
                               detail={"size": 1})
            recorded = await ev.record_all(conn, [ev.NewEvent("p-held", ev.PACKET_CREATED, NOW),
                                                  ev.NewEvent("p-held", ev.PACKET_ACCEPTED, NOW)])
    writes = [s for s in sent if s.lstrip().upper().startswith(("INSERT", "WITH"))]
    assert len(writes) == (1 if db.dialect == "postgresql" else 3)
    # The events' seqs follow the order given, and every row is there, values intact.
    assert recorded[0].seq < recorded[1].seq
    async with db.read() as conn:
        types = (await conn.execute(select(packet_events.c.type).order_by(packet_events.c.id))).scalars().all()
        row = (await conn.execute(select(packets).where(packets.c.id == "p-held"))).one()
        entry = (await conn.execute(select(audit_log).where(audit_log.c.target == "p-held"))).one()
    assert types == [ev.PACKET_CREATED, ev.PACKET_ACCEPTED]
    assert row.meta == {"k": "v"} and row.created_at == NOW
    assert entry.detail == {"size": 1} and entry.at == NOW


async def test_rows_no_events_insert_took_are_written_before_the_commit(db: Database) -> None:
    async with db.write() as conn:
        await audit.append(conn, "operator.note", actor="op", target="x", at=NOW)
        await audit.append(conn, "operator.note", actor="op", target="y", at=NOW)
    assert await _count(db, audit_log) == 2


async def test_a_failed_transaction_writes_none_of_its_held_rows(db: Database) -> None:
    async def failing_use_case() -> None:
        async with db.write() as conn:
            await deferred.insert(conn, packets, _packet("p-lost"))
            await audit.append(conn, "operator.note", actor="op", target="p-lost", at=NOW)
            raise RuntimeError("the use case fails after holding rows")

    with pytest.raises(RuntimeError):
        await failing_use_case()
    assert await _count(db, packets) == 0
    assert await _count(db, audit_log) == 0
    # Nothing held survives on the pooled connection into the next transaction.
    async with db.write() as conn:
        await ev.record(conn, None, ev.PACKET_CREATED, NOW)
    assert await _count(db, audit_log) == 0


async def test_outside_a_write_block_rows_are_inserted_at_once(db: Database) -> None:
    """A connection `Database.write` did not open holds nothing (it could not flush it)."""
    async with db.writer.begin() as conn:
        assert deferred.hold(conn, audit_log, {"action": "a"}) is False
        await audit.append(conn, "operator.note", actor="op", target="z", at=NOW)
    assert await _count(db, audit_log) == 1


async def test_a_held_row_gets_the_defaults_a_plain_insert_would_give(db: Database) -> None:
    """A row that leaves out a column whose default is client-side only (SQLAlchemy fills it in a
    plain INSERT; the table has no server default) is stored with it, held or not: the held rows'
    INSERT … SELECT renders such defaults into its SELECT (`from_select`'s `include_defaults`)."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    table = Table("held_defaults", MetaData(), Column("id", String(8), primary_key=True),
                  Column("v", Integer, nullable=False, default=7))
    async with db.write() as conn:
        await conn.run_sync(table.metadata.create_all)
    async with db.write() as conn:
        await deferred.insert(conn, table, {"id": "a"})
        await ev.record(conn, None, ev.PACKET_CREATED, NOW)
    async with db.read() as conn:
        assert (await conn.execute(select(table.c.v))).scalar_one() == 7
