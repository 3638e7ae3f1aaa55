"""The hot path's statements, pinned: a pull exchange (create, upload, notify, ready, fetch, ack)
may not send the store more statements than it does now, on SQLite and on PostgreSQL.

Counted with bench/statements.py's `StatementCounter` (an Engine `before_cursor_execute` listener)
over real exchanges through the hub's HTTP server. The exchange's own statements (its tables) are
deterministic and pinned tightly; the total and the write transactions also include what depends
on timing (nonce batches, presence flushes), so their bound has some room. A change that adds a
statement to the exchange fails here: measure it (`python -m bench.statements`) and, if it must
stay, raise the bound with the reason in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import CacheStats

from lgsp.client import Credentials
from lgsp.core import events as ev
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import packet_events

from .conftest import base_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package

from bench.procs import Pair, unit_ids  # noqa: E402
from bench.statements import StatementCounter, carried_of, count_exchanges, kind_of  # noqa: E402

#: Tables of the exchange itself: their statements per exchange do not depend on timing.
EXCHANGE_TABLES = ("packets", "deliveries", "packet_events", "audit_log", "content_keys", "packet_contents",
                   "inline_blobs")
#: Per exchange, measured when pinned (SQLite and PostgreSQL alike): packets 1 INSERT + 4 SELECT
#: (one per request, with its deliveries) + 2 UPDATE (accept; complete and purge); deliveries
#: 1 INSERT + 4 UPDATE; 4 event INSERTs (one per write transaction); 3 audit INSERTs; content keys
#: 1 INSERT (with the packet) + 1 DELETE (purge): the upload and the download read the packet's data
#: key in the statement that loads the packet (no SELECT of their own); the small upload's sealed
#: bytes 1 INSERT (kept in the store with the acceptance).
EXCHANGE_STATEMENTS = 22
#: PostgreSQL adds one: the end of a delivery locks its packet's row before checking whether the
#: packet is done (two last deliveries ending together must not both miss the completion). And it
#: sends fourteen fewer: rows a transaction does not read back travel as data-modifying CTEs of its
#: events INSERT (core/store/deferred.py): the creation's packet, deliveries, data key and audit
#: entry, the audit entries of the acceptance and of the delivery's end, and the small upload's
#: sealed bytes with the acceptance (7); the fetch's move of its delivery travels in its event
#: INSERT (`events.move_and_record`, 1); the acceptance is one statement, its packet's move and its
#: deliveries' two moves carried (3); the delivery's end locks the packet in its move (1); and the
#: completion's UPDATE and its data key's DELETE travel in its events INSERT (2).
EXCHANGE_STATEMENTS_EXTRA = {"postgresql": 1 - 7 - 1 - 3 - 1 - 2}
#: Those, carried per exchange on PostgreSQL (none on SQLite, which runs statements inline).
CARRIED = {"postgresql": {"INSERT audit_log": 3, "INSERT packets": 1, "INSERT deliveries": 1,
                          "INSERT content_keys": 1, "INSERT inline_blobs": 1, "UPDATE deliveries": 2,
                          "UPDATE packets": 2, "DELETE content_keys": 1}}
#: Write transactions with BEGIN and COMMIT per exchange on PostgreSQL: the delivery's end only
#: (the others are one statement each, sent in autocommit), and room for presence flushes.
PG_WRITE_TRANSACTIONS = 1.5
#: Carried kinds that the exchange also sends as statements of their own (the other moves).
ALSO_OWN = {"UPDATE deliveries"}
#: Statements on those tables that timers send (the audit chainer; a stream's catch-up and the
#: offline checks read events and deliveries): not the exchange's, and bounded apart.
TIMERS = ("SELECT audit_log", "UPDATE audit_log", "SELECT packet_events", "SELECT deliveries")
#: The four write transactions of the exchange (create, accept, fetched, delivered) plus nonce
#: batches (at worst one per request) and presence flushes, which depend on timing: loose bounds.
MAX_WRITE_TRANSACTIONS = 12
MAX_STATEMENTS = 55


async def _pairs(hub: Hub, n: int) -> list[Pair]:
    pairs = []
    for i in range(n):
        creds = []
        ids = unit_ids(i)
        for unit in ids:
            await hub.directory.add_unit(unit, f"Đơn vị {unit}")
            app = await hub.directory.add_application(unit, "bench")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            creds.append(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))
        pairs.append(Pair(creds[0], creds[1], *ids))
    return pairs


class CompileWatch:
    """Statements SQLAlchemy did not serve whole from its compiled cache: compiled for this execution
    (a cache miss, or a construct without a cache key such as `.values(list)`), or with an expanding
    IN list, which it rewrites into the SQL at every execution (core/store/params.py)."""

    def __init__(self) -> None:
        self.fresh: Counter[str] = Counter()
        #: The statement objects executed, by kind: one built per call shows as many objects as runs.
        self.objects: dict[str, set[int]] = {}
        self.executions: Counter[str] = Counter()

    def built_per_call(self, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        """Kinds of these tables whose statements are built at each execution (SQLAlchemy then keys
        each one again, walking its whole tree): (distinct objects, executions), beyond a few shapes."""
        return {k: (len(ids), self.executions[k]) for k, ids in self.objects.items()
                if k.split(" ", 1)[-1] in tables and len(ids) > max(8, self.executions[k] // 2)}

    def on_statement(self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
                     _many: bool) -> None:
        compiled = getattr(context, "compiled", None)
        invoked = getattr(context, "invoked_statement", None)  # this execution's own statement object
        if invoked is not None:
            kind = kind_of(statement)
            self.objects.setdefault(kind, set()).add(id(invoked))
            self.executions[kind] += 1
        if compiled is None or kind_of(statement).startswith(("BEGIN", "COMMIT", "ROLLBACK", "SELECT PG_")):
            return  # driver-level SQL (BEGIN IMMEDIATE): nothing to compile
        if context.cache_hit != CacheStats.CACHE_HIT or compiled.post_compile_params:
            self.fresh[kind_of(statement)] += 1

    @contextmanager
    def watching(self, *engines: Engine) -> Iterator[CompileWatch]:
        engines = tuple(dict.fromkeys(engines))
        for engine in engines:
            sa_event.listen(engine, "before_cursor_execute", self.on_statement)
        try:
            yield self
        finally:
            for engine in engines:
                sa_event.remove(engine, "before_cursor_execute", self.on_statement)


#: The exchange's statements and the nonce batches: every one compiled once, then served from the cache.
COMPILED_ONCE = (*EXCHANGE_TABLES, "nonces", "access_keys")


async def _check(hub: Hub) -> None:
    watch = CompileWatch()
    pairs = await _pairs(hub, 3)
    await count_exchanges(hub, pairs, per_pair=1)  # every shape compiled once
    # A nonce batch is one statement per row count (core/store/params.py `rows_select`): which
    # counts the warm-up met depends on timing, so every count the exchanges below can form (three
    # pairs, at most six requests at once) is compiled here.
    soon = datetime.now(UTC) + timedelta(minutes=5)
    for rows in range(1, 9):
        await asyncio.gather(*(hub.auth.nonces.spend("warm-up", f"n{rows}-{i}", soon) for i in range(rows)))
    with watch.watching(hub.db.writer.sync_engine, hub.db.reader.sync_engine):
        counter, n = await count_exchanges(hub, pairs, per_pair=4)
    per = counter.per(n)
    fresh = {k: v for k, v in watch.fresh.items() if k.split(" ", 1)[-1] in COMPILED_ONCE and k not in TIMERS}
    assert not fresh, f"compiled at run time, or with an expanding IN: {fresh}"
    built = watch.built_per_call(COMPILED_ONCE)
    assert not built, f"statements built at each execution (distinct objects, executions): {built}"
    exchange = sum(v for k, v in counter.statements.items()
                   if k.split(" ", 1)[-1] in EXCHANGE_TABLES and k not in TIMERS) / n
    # Timers also touch some of these (a packet load of an offline check, ...): a fraction per
    # exchange at most, where one more statement in the exchange is a whole one.
    assert exchange <= EXCHANGE_STATEMENTS + EXCHANGE_STATEMENTS_EXTRA.get(hub.db.dialect, 0) + 0.75, per
    assert per["statements"] <= MAX_STATEMENTS, per
    assert per["write_transactions"] <= MAX_WRITE_TRANSACTIONS, per
    # The savings pinned one by one: one load per request, one event INSERT per write transaction.
    assert per["by_kind"].get("SELECT deliveries", 0) < 0.5, per  # timers' only: none per request
    assert per["by_kind"]["SELECT packets"] < 4.5, per  # PostgreSQL's lock rides the delivery's move
    if hub.db.dialect == "postgresql":
        assert per["write_transactions"] < PG_WRITE_TRANSACTIONS, per
    assert per["by_kind"]["INSERT packet_events"] < 4.5, per
    assert per["by_kind"].get("UPDATE packets", 0) < 2.5, per
    assert per["by_kind"].get("INSERT content_keys", 0) < 1.5, per
    assert per["by_kind"].get("SELECT content_keys", 0) == 0, per  # read with the packet
    carried = CARRIED.get(hub.db.dialect, {})
    for kind, count in carried.items():
        assert count - 0.25 <= per["carried"].get(kind, 0) <= count + 0.25, per
        if kind not in ALSO_OWN:
            assert per["by_kind"].get(kind, 0) < 0.25, per  # no longer a statement of its own
    assert set(per["carried"]) <= set(carried), per


async def test_statements_per_exchange_on_sqlite(hub: Hub) -> None:
    await _check(hub)


@pytest.mark.postgres
async def test_statements_per_exchange_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url, LGSP_DATABASE_POOL_SIZE="4")
    async with Hub(load_config(None, env=env)) as hub:
        await _check(hub)


async def test_events_recorded_together_keep_their_order(hub: Hub) -> None:
    """`record_all` writes several events in one INSERT; each Event's seq is its own row's, in the
    order given, as separate `record` calls would have numbered them."""
    now = datetime.now(UTC)
    new = [ev.NewEvent(None, ev.HUB_NOTICE, now, unit=f"u{i}", audience=f"a{i % 3}", detail={"i": i})
           for i in range(7)]
    counter = StatementCounter()
    with counter.counting(hub.db.writer.sync_engine):
        async with hub.db.write() as conn:
            events = await ev.record_all(conn, new)
    assert counter.statements["INSERT packet_events"] == 1
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    async with hub.db.read() as conn:
        rows = {r.id: r for r in (await conn.execute(select(packet_events).where(
            packet_events.c.id.in_([e.seq for e in events])))).all()}
    for event, wanted in zip(events, new, strict=True):
        row = rows[event.seq]
        assert (row.unit, row.audience, row.detail) == (wanted.unit, wanted.audience, wanted.detail)
    with pytest.raises(ValueError, match="unknown event type"):
        async with hub.db.write() as conn:
            await ev.record_all(conn, [*new[:2], ev.NewEvent(None, "no.such.type", now)])


def test_statement_kinds() -> None:
    assert kind_of("SELECT packets.id FROM packets LEFT OUTER JOIN deliveries ON x") == "SELECT packets"
    assert kind_of('INSERT INTO "packet_events" (id) VALUES (?)') == "INSERT packet_events"
    assert kind_of("UPDATE deliveries SET state=? WHERE x RETURNING unit_id") == "UPDATE deliveries"
    assert kind_of("DELETE FROM content_keys WHERE packet_id IN (?)") == "DELETE content_keys"
    assert kind_of("BEGIN IMMEDIATE") == "BEGIN IMMEDIATE"
    assert kind_of("select pg_advisory_xact_lock($1)") == "SELECT PG_ADVISORY_XACT_LOCK"
    # A SELECT returning the rows of a data-modifying CTE is that write; the other writes are carried.
    sql = ("WITH done AS (UPDATE packets SET x=$1 RETURNING id), gone AS (DELETE FROM content_keys WHERE k=$2), "
           "recorded AS (INSERT INTO packet_events (a) SELECT a FROM (SELECT $3 AS a) AS r RETURNING id) "
           "SELECT recorded.id FROM recorded UNION ALL SELECT NULL FROM done")
    assert kind_of(sql) == "INSERT packet_events"
    assert sorted(carried_of(sql)) == ["DELETE content_keys", "UPDATE packets"]
    assert kind_of("WITH m AS (SELECT 1) SELECT * FROM m") == "SELECT m"  # no write: the SELECT itself
