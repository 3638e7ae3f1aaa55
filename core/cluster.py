"""Live events across the nodes that share one PostgreSQL store (LISTEN/NOTIFY, no broker).

Every committed batch of streamed events is announced on the channel `lgsp_events` as
`<node> <seq>,<seq>,…`; every other node reads those rows back from the store and hands them to
its own open streams. The notification carries only sequence numbers, so the store stays the one
source of truth: a notification that is lost costs latency, never an event — each node also
catches up every few seconds from the highest sequence it has seen, and a stream's `hello`
re-reads what its unit missed. On SQLite (one node) nothing of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from lgsp.core.events import Event, EventBus
from lgsp.core.store.database import Database
from lgsp.core.store.tables import packet_events

log = logging.getLogger(__name__)

CHANNEL = "lgsp_events"
#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; stay well under it.
MAX_PAYLOAD = 7000
#: How often a node looks for events it was not told of (a dropped notification, a reconnect).
CATCH_UP_SECONDS = 3.0
#: How many recently handed-over sequences a node remembers, so a catch-up does not repeat them.
REMEMBER = 20_000


def node_name() -> str:
    """A name for this process among the cluster's nodes (new at every start)."""
    return secrets.token_hex(6)


class ClusterEvents:
    def __init__(self, db: Database, bus: EventBus, node: str) -> None:
        self.db = db
        self.bus = bus
        self.node = node
        self._conn: Any = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._inbox: asyncio.Queue[list[int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._seen: deque[int] = deque(maxlen=REMEMBER)
        self._seen_set: set[int] = set()
        self._watermark = 0

    @property
    def enabled(self) -> bool:
        return self.db.dialect == "postgresql"

    async def start(self) -> None:
        if not self.enabled:
            return
        async with self.db.read() as conn:
            self._watermark = int(await conn.scalar(select(func.coalesce(func.max(packet_events.c.id), 0))) or 0)
        await self._connect()
        self.bus.observers.append(self._outgoing)
        self._tasks = [asyncio.create_task(self._send(), name="lgsp-cluster-notify"),
                       asyncio.create_task(self._receive(), name="lgsp-cluster-events"),
                       asyncio.create_task(self._catch_up(), name="lgsp-cluster-catch-up")]

    async def stop(self) -> None:
        if self._outgoing in self.bus.observers:
            self.bus.observers.remove(self._outgoing)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    # -- this node's events, told to the others -------------------------------------------------

    def _outgoing(self, events: Sequence[Event]) -> None:
        seqs = [e.seq for e in events if e.audience is not None and e.seq]
        if not seqs:
            return
        self._remember(seqs)
        chunk: list[str] = []
        size = len(self.node) + 1
        for seq in seqs:
            text = str(seq)
            if chunk and size + len(text) + 1 > MAX_PAYLOAD:
                self._outbox.put_nowait(f"{self.node} {','.join(chunk)}")
                chunk, size = [], len(self.node) + 1
            chunk.append(text)
            size += len(text) + 1
        self._outbox.put_nowait(f"{self.node} {','.join(chunk)}")

    async def _send(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self._ensure_connected()
                await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The others catch up from the store within CATCH_UP_SECONDS; nothing is lost.
                log.warning("could not tell the other nodes of events; they will catch up", exc_info=True)
                await self._drop_connection()

    # -- the others' events, handed to this node's streams ---------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        node, _, rest = payload.partition(" ")
        if node == self.node or not rest:
            return
        try:
            seqs = [int(part) for part in rest.split(",")]
        except ValueError:
            log.warning("ignored a malformed cluster notification")
            return
        self._inbox.put_nowait(seqs)

    async def _receive(self) -> None:
        while True:
            seqs = await self._inbox.get()
            fresh = [s for s in seqs if s not in self._seen_set]
            if not fresh:
                continue
            try:
                async with self.db.read() as conn:
                    rows = (await conn.execute(select(packet_events).where(packet_events.c.id.in_(fresh))
                                               .order_by(packet_events.c.id))).all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not read events another node announced; catching up later", exc_info=True)
                continue
            self._hand_over(rows)

    async def _catch_up(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_SECONDS)
            try:
                await self._ensure_connected()
                async with self.db.read() as conn:
                    rows = (await conn.execute(
                        select(packet_events).where(packet_events.c.id > self._watermark,
                                                    packet_events.c.audience.is_not(None))
                        .order_by(packet_events.c.id).limit(1000))).all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cluster catch-up failed; will retry", exc_info=True)
                continue
            self._hand_over([r for r in rows if r.id not in self._seen_set])

    def _hand_over(self, rows: Sequence[Any]) -> None:
        events = [Event(r.id, r.type, r.packet_id, r.at, r.unit, r.audience, r.detail) for r in rows]
        if not events:
            return
        self._remember([e.seq for e in events])
        self.bus.deliver(events)

    def _remember(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            if seq in self._seen_set:
                continue
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(seq)
            self._seen_set.add(seq)
            self._watermark = max(self._watermark, seq)

    # -- the listening connection ----------------------------------------------------------------

    async def _connect(self) -> None:
        import asyncpg

        url = make_url(self.db.url).set(drivername="postgresql")
        self._conn = await asyncpg.connect(url.render_as_string(hide_password=False))
        await self._conn.add_listener(CHANNEL, self._on_notify)

    async def _ensure_connected(self) -> None:
        if self._conn is None or self._conn.is_closed():
            await self._drop_connection()
            await self._connect()

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None


#: The advisory lock whose holder runs the cluster's singleton work ("lgsp" in ASCII).
LEADER_LOCK = 0x6C677370


class Leadership:
    """Which node runs the work that must run once per cluster (expiry, offline reports, clean-up,
    notices, pollers): the one holding a PostgreSQL session advisory lock.

    The lock lives as long as its connection: a node that dies or loses the store loses it at once,
    and another node takes it on its next round (`try_lead`, called every housekeeping round, so
    within `presence.sweep_interval_seconds`). On SQLite there is one node, always the leader.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Any = None
        self._leader = db.dialect != "postgresql"

    @property
    def leader(self) -> bool:
        return self._leader and (self._conn is None or not self._conn.is_closed())

    async def try_lead(self) -> bool:
        """Keep or take the lock; False when another node holds it or the store cannot be reached."""
        if self.db.dialect != "postgresql":
            return True
        try:
            if self._conn is None or self._conn.is_closed():
                self._leader = False
                import asyncpg

                url = make_url(self.db.url).set(drivername="postgresql")
                self._conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=10)
            if self._leader:
                await self._conn.execute("SELECT 1")  # still connected, so still holding it
            else:
                self._leader = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))
                if self._leader:
                    log.info("this node now runs the cluster's singleton work")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("lost the store while leading or trying to; another node may lead", exc_info=True)
            await self.release()
        return self._leader

    async def release(self) -> None:
        self._leader = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()  # ends the session: the lock goes with it
        self._conn = None
