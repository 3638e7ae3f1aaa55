"""IN lists as plain parameters (core/store/params.py) and the statements built on them, on both stores:
the same rows as an IN over a Python list, at every length, compiled once per length."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine.interfaces import CacheStats

from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.auth import NonceBook
from lgsp.core.directory import Directory
from lgsp.core.masterkey import MasterKey
from lgsp.core.store import deferred
from lgsp.core.store.database import Database
from lgsp.core.store.params import MAX_PLAIN, MAX_ROWS, in_list, in_values
from lgsp.core.store.tables import deliveries, nonces, packet_events, packets, units

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
UNITS = [f"000.00.{i:02d}.H00" for i in range(12)]


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = Database(store_url, pool_size=1)
    await database.upgrade()
    async with database.write() as conn:
        await conn.execute(units.insert(), [dict(id=u, name=u, name_folded=u, zone="local", legacy=False,
                                                 status="active", created_at=NOW, online=False, stream_cursor=0)
                                            for u in UNITS])
        await conn.execute(packets.insert(), {"id": "p1", "source_unit": UNITS[0], "subject": "s", "priority": 0,
                                              "data_type": "d", "protocol": "p", "size": 1, "sha256": "0" * 64,
                                              "state": "accepted", "content_state": "stored", "created_at": NOW,
                                              "upload_expires_at": NOW})
        await conn.execute(deliveries.insert(), [
            {"packet_id": "p1", "unit_id": u, "state": dv.NOTIFIED if i % 2 else dv.QUEUED, "priority": 0,
             "packet_created_at": NOW, "updated_at": NOW, "attempts": 0, "mode": dv.PULL, "protocol": "p"}
            for i, u in enumerate(UNITS[1:], 1)])
    try:
        yield database
    finally:
        await database.close()


def _compiled(db: Database) -> tuple[list[bool], Any]:
    """Per statement sent: whether SQLAlchemy compiled it for this execution (or expanded a list into it)."""
    seen: list[bool] = []

    def on_statement(_c: Any, _cur: Any, _s: str, _p: Any, context: Any, _m: bool) -> None:
        seen.append(context.cache_hit != CacheStats.CACHE_HIT or bool(context.compiled.post_compile_params))

    return seen, on_statement


async def test_in_list_selects_what_an_in_over_a_list_selects(db: Database) -> None:
    seen, listener = _compiled(db)
    for n in (1, 2, 3, MAX_PLAIN, MAX_PLAIN + 1, len(UNITS)):
        wanted = UNITS[:n]
        stmt = select(units.c.id).where(in_list(units.c.id, "ids", n))
        async with db.read() as conn:
            got = set((await conn.execute(stmt, in_values("ids", wanted))).scalars())
            plain = set((await conn.execute(select(units.c.id).where(units.c.id.in_(wanted)))).scalars())
        assert got == plain == set(wanted)
    stmt = select(units.c.id).where(in_list(units.c.id, "fresh", 3))  # a shape not compiled yet
    event.listen(db.reader.sync_engine, "before_cursor_execute", listener)
    try:
        for values in (UNITS[:3], UNITS[3:6], ["none", UNITS[7], "other"]):
            async with db.read() as conn:
                got = set((await conn.execute(stmt, in_values("fresh", values))).scalars())
            assert got == set(values) & set(UNITS)
    finally:
        event.remove(db.reader.sync_engine, "before_cursor_execute", listener)
    assert seen == [True, False, False]  # compiled by the first execution only, never rewritten after
    with pytest.raises(ValueError, match="at least one value"):
        in_list(units.c.id, "ids", 0)


async def test_moves_by_unit_count_and_from_no_state(db: Database) -> None:
    """A move names one, several or more than MAX_PLAIN units, or all of the packet's: each moves
    exactly the deliveries in an allowed state; a move allowed from no state moves nothing."""
    async with db.write() as conn:
        assert await dv.move(conn, "p1", [UNITS[1]], dv.NOTIFIED, NOW) == []  # notified already: not allowed
        assert await dv.move(conn, "p1", [UNITS[2]], dv.NOTIFIED, NOW) == [UNITS[2]]  # queued → notified
        assert await dv.move(conn, "p1", [UNITS[1]], dv.FAILED, NOW, allowed_from=[]) == []
        several = sorted(await dv.move(conn, "p1", UNITS[3:7], dv.NOTIFIED, NOW))
        assert several == [UNITS[4], UNITS[6]]  # the queued ones
        many = sorted(await dv.move(conn, "p1", UNITS[1:], dv.CANCELLED, NOW, reason="r"))
        assert many == sorted(UNITS[1:])
        assert sorted(await dv.move(conn, "p1", None, dv.QUEUED, NOW, allowed_from=[dv.CANCELLED])) == UNITS[1:]
    async with db.read() as conn:
        assert set((await dv.states_of(conn, "p1")).values()) == {dv.QUEUED}


async def test_nonce_batch_records_each_pair_once(db: Database) -> None:
    """The batch INSERT (compiled once, sent as one multi-row statement): a pair recorded before and a
    pair twice in one batch are replays; the others are spent."""
    book = NonceBook(db)
    assert await book.spend("AK1", "n0", NOW)
    results = await asyncio.gather(*(book.spend("AK1", n, NOW) for n in ("n0", "n1", "n2", "n1", "n3")),
                                   book.spend("AK2", "n0", NOW))
    assert results == [False, True, True, False, True, True]


async def test_nonce_batches_of_every_size_record_each_pair_once(db: Database) -> None:
    """Batches of one row, of a size run often enough to go to the driver, and larger than
    `MAX_ROWS` (SQLAlchemy's list of parameter sets): each spends new pairs and refuses replays,
    those of earlier batches and repeats within the batch."""
    book = NonceBook(db)
    for round_ in range(4):  # the same sizes again: from the third run a statement is the driver's
        names = [f"r{round_}-{i}" for i in range(3)]
        assert await asyncio.gather(*(book.spend("AK3", n, NOW) for n in names)) == [True] * 3
        assert await asyncio.gather(*(book.spend("AK3", n, NOW) for n in names)) == [False] * 3
    big = [f"big-{i}" for i in range(MAX_ROWS + 6)]
    assert await asyncio.gather(*(book.spend("AK4", n, NOW) for n in [*big, big[0]])) == [True] * len(big) + [False]
    assert await asyncio.gather(*(book.spend("AK4", n, NOW) for n in [big[1], "small"])) == [False, True]
    async with db.read() as conn:
        stored = (await conn.execute(select(nonces.c.nonce).where(nonces.c.access_key.in_(["AK3", "AK4"])))).all()
    assert len(stored) == 12 + len(big) + 1


async def test_nonce_batch_is_one_statement_without_begin_or_commit_on_postgresql(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A nonce batch is a transaction of its own: on PostgreSQL sent in autocommit (the server
    commits the lone statement before answering), so no BEGIN and COMMIT round trips reach the
    server; on SQLite inside the writer's transaction. Recorded either way: a replay is caught."""
    import asyncpg

    simple: list[str] = []  # what asyncpg sends through the simple-query protocol: BEGIN, COMMIT, ...
    execute = asyncpg.Connection.execute

    async def recording(self: asyncpg.Connection, query: str, *args: object, **kwargs: object) -> object:
        simple.append(query.split()[0].rstrip(";").upper())
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", recording)
    commits: list[object] = []

    def on_commit(conn: object) -> None:
        commits.append(conn)

    event.listen(db.writer.sync_engine, "commit", on_commit)
    try:
        book = NonceBook(db)
        assert await asyncio.gather(book.spend("AK9", "a", NOW), book.spend("AK9", "b", NOW)) == [True, True]
        assert await book.spend("AK9", "a", NOW) is False
    finally:
        event.remove(db.writer.sync_engine, "commit", on_commit)
    if db.dialect == "postgresql":
        assert "BEGIN" not in simple and "COMMIT" not in simple
        assert commits == []
    else:
        assert len(commits) == 2  # two batches, each in a write transaction of the one writer
    async with db.read() as conn:
        stored = (await conn.execute(select(nonces.c.nonce).where(nonces.c.access_key == "AK9"))).scalars().all()
    assert sorted(stored) == ["a", "b"]


async def test_unit_lookup_compiled_once_per_length(db: Database) -> None:
    """The directory's lookup of a new packet's destinations: the right units at every list length
    (unknown ids left out), and a second lookup of the same length served from the compiled cache."""
    directory = Directory(db, MasterKey(secrets.token_bytes(32)), {})
    seen, listener = _compiled(db)
    # Listening from the first lookup: every one takes SQLAlchemy's path on PostgreSQL too (a
    # statement another test in this process ran before would otherwise go straight to the driver,
    # core/store/pg_direct.py, and first meet this engine's compiled cache below).
    event.listen(db.reader.sync_engine, "before_cursor_execute", listener)
    try:
        for n in (1, 2, MAX_PLAIN, MAX_PLAIN + 1, len(UNITS)):
            assert await directory.existing_units([*UNITS[:n], "000.00.99.H99"]) == dict.fromkeys(UNITS[:n], "active")
        seen.clear()
        assert await directory.existing_units([UNITS[3], UNITS[4]]) == {UNITS[3]: "active", UNITS[4]: "active"}
        assert await directory.zones_of(UNITS[5:8]) == dict.fromkeys(UNITS[5:8], "local")
    finally:
        event.remove(db.reader.sync_engine, "before_cursor_execute", listener)
    assert seen == [False, False]


async def test_a_move_and_its_event_go_together_and_a_move_that_is_not_allowed_records_nothing(
        db: Database) -> None:
    """`events.move_and_record` (one statement in autocommit on PostgreSQL, a transaction of two on
    SQLite): the delivery moves and its event is recorded; a second call finds the delivery already
    moved and records nothing; an unknown event type is refused before anything is written."""
    assert await ev.move_and_record(db, "p1", UNITS[1], dv.FETCHED, NOW, ev.PACKET_FETCHED)
    assert not await ev.move_and_record(db, "p1", UNITS[1], dv.FETCHED, NOW, ev.PACKET_FETCHED)
    with pytest.raises(ValueError, match="unknown event type"):
        await ev.move_and_record(db, "p1", UNITS[2], dv.FETCHED, NOW, "packet.teleported")
    async with db.read() as conn:
        recorded = (await conn.execute(select(packet_events.c.type, packet_events.c.unit, packet_events.c.at)
                                       .where(packet_events.c.packet_id == "p1"))).all()
        states = await dv.states_of(conn, "p1")
    assert [(r.type, r.unit, r.at) for r in recorded] == [(ev.PACKET_FETCHED, UNITS[1], NOW)]
    assert states[UNITS[1]] == dv.FETCHED
    assert {u: s for u, s in states.items() if u != UNITS[1]} == {
        u: dv.NOTIFIED if i % 2 else dv.QUEUED for i, u in enumerate(UNITS[1:], 1) if u != UNITS[1]}


async def test_a_one_statement_write_block_refuses_a_second_statement_and_uncarried_rows(db: Database) -> None:
    """`Database.write_one`: on PostgreSQL its one statement goes in autocommit, carrying what the
    block held; a second statement is refused before it is sent, and rows no statement carried are
    never written. (On SQLite it is `write()`, where both statements run in the transaction.)"""
    row = {"packet_id": "p1", "at": NOW, "type": ev.PACKET_FETCHED, "unit": UNITS[1], "audience": None,
           "detail": None}
    async with db.write_one() as conn:
        await deferred.insert(conn, packet_events, dict(row, unit=UNITS[2]))
        await ev.record(conn, "p1", ev.PACKET_FETCHED, NOW, unit=UNITS[3])  # carries the held row

    async def two_statements() -> None:
        async with db.write_one() as conn:
            await ev.record(conn, "p1", ev.PACKET_FETCHED, NOW, unit=UNITS[4])
            await ev.record(conn, "p1", ev.PACKET_FETCHED, NOW, unit=UNITS[5])  # refused, never sent

    async def uncarried() -> None:
        async with db.write_one() as conn:
            await deferred.insert(conn, packet_events, dict(row, unit=UNITS[6]))

    if db.dialect == "postgresql":
        with pytest.raises(RuntimeError, match="second statement"):
            await two_statements()
        with pytest.raises(RuntimeError, match="no statement carried"):
            await uncarried()
    async with db.read() as conn:
        units_ = sorted((await conn.execute(select(packet_events.c.unit)
                                            .where(packet_events.c.packet_id == "p1"))).scalars())
    assert units_ == ([UNITS[2], UNITS[3], UNITS[4]] if db.dialect == "postgresql" else [UNITS[2], UNITS[3]])
