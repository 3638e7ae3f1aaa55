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
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.engine import make_url

from lgsp.core.clock import SYSTEM_CLOCK
from lgsp.core.events import Event, EventBus
from lgsp.core.store.database import Database
from lgsp.core.store.tables import nodes, packet_events, stream_holders

log = logging.getLogger(__name__)

CHANNEL = "lgsp_events"
#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; stay well under it.
MAX_PAYLOAD = 7000
#: How often a node looks for events it was not told of (a dropped notification, a reconnect).
CATCH_UP_SECONDS = 3.0
#: How long an event found by the catch-up may still be on its way to its own node's publish.
PUBLISH_GRACE_SECONDS = 1.0
#: How many recently handed-over sequences a node remembers, so a catch-up does not repeat them.
REMEMBER = 20_000


def node_name() -> str:
    """A name for this process among the cluster's nodes (new at every start)."""
    return secrets.token_hex(6)


class Nodes:
    """This process as a node of the cluster: a row in `nodes` whose heartbeat it refreshes.

    A node whose heartbeat is older than `timeout` is dead: the event streams it held stop keeping
    their units online, and its `sending` claims are taken back (core/engine.py). A node that stops
    cleanly deletes its row and its stream holdings at once. Times are the hub's clock: the nodes'
    clocks must agree (NTP), as signed requests already require. On SQLite there is one node and
    the same rows are kept, so the rules are the same everywhere.
    """

    def __init__(self, db: Database, node: str, *, heartbeat_seconds: float, timeout_seconds: float,
                 clock: Callable[[], datetime] = SYSTEM_CLOCK) -> None:
        self.db = db
        self.id = node
        self.heartbeat_seconds = heartbeat_seconds
        # Never shorter than two heartbeats: one late beat must not kill a live node.
        self.timeout = timedelta(seconds=max(timeout_seconds, 2 * heartbeat_seconds))
        self.clock = clock
        self.beats = 0
        self.registered = False

    async def register(self) -> None:
        now = self.clock()
        async with self.db.write() as conn:
            await conn.execute(nodes.insert().values(id=self.id, host=socket.gethostname()[:255], pid=os.getpid(),
                                                     started_at=now, heartbeat_at=now))
        self.registered = True
        log.info("node %s joined the cluster", self.id)

    async def beat(self) -> None:
        """Refresh this node's heartbeat (the row comes back if another node removed it as dead)."""
        now = self.clock()
        async with self.db.write() as conn:
            result = await conn.execute(update(nodes).where(nodes.c.id == self.id).values(heartbeat_at=now))
            if not result.rowcount:
                await conn.execute(nodes.insert().values(id=self.id, host=socket.gethostname()[:255],
                                                         pid=os.getpid(), started_at=now, heartbeat_at=now))
        self.beats += 1

    async def leave(self) -> None:
        """A clean stop: this node and the streams it held are gone at once, not after the timeout."""
        async with self.db.write() as conn:
            await conn.execute(delete(stream_holders).where(stream_holders.c.node_id == self.id))
            await conn.execute(delete(nodes).where(nodes.c.id == self.id))
        self.registered = False

    def alive_since(self, now: datetime | None = None) -> datetime:
        """Heartbeats at or after this moment are a live node's."""
        return (now or self.clock()) - self.timeout

    def live(self, now: datetime | None = None) -> Any:
        """A subquery of the ids of live nodes, for `IN (...)` conditions."""
        return select(nodes.c.id).where(nodes.c.heartbeat_at >= self.alive_since(now))

    def claimed_by_dead(self, column: Any, now: datetime | None = None) -> ColumnElement[bool]:
        """`column` (a node id) names no live node: a claim nobody is working on any more."""
        dead: ColumnElement[bool] = column.is_(None) | column.not_in(self.live(now))
        return dead

    async def dead_nodes(self) -> list[str]:
        """Nodes whose heartbeat stopped (until `forget_dead` removes them; a clean stop leaves none)."""
        async with self.db.read() as conn:
            return list((await conn.execute(select(nodes.c.id).where(nodes.c.heartbeat_at < self.alive_since())
                                            .order_by(nodes.c.id))).scalars())

    async def live_nodes(self) -> list[str]:
        async with self.db.read() as conn:
            return list((await conn.execute(self.live().order_by(nodes.c.id))).scalars())

    async def forget_dead(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove the rows of nodes dead for long (and their stream holdings); the leader does this."""
        cutoff = self.clock() - self.timeout - older_than
        async with self.db.write() as conn:
            gone = list((await conn.execute(select(nodes.c.id).where(nodes.c.heartbeat_at < cutoff))).scalars())
            if gone:
                await conn.execute(delete(stream_holders).where(stream_holders.c.node_id.in_(gone)))
                await conn.execute(delete(nodes).where(nodes.c.id.in_(gone)))
            orphans = select(nodes.c.id)
            await conn.execute(delete(stream_holders).where(and_(stream_holders.c.node_id.not_in(orphans))))
        return len(gone)


class ClusterEvents:
    def __init__(self, db: Database, bus: EventBus, node: str) -> None:
        self.db = db
        self.bus = bus
        self.node = node
        self._conn: Any = None
        self._outbox: asyncio.Queue[list[int]] = asyncio.Queue()
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
        self._outbox.put_nowait(seqs)

    def payloads(self, seqs: Sequence[int]) -> list[str]:
        """`<node> <seq>,<seq>,…` notifications for these sequences, each under MAX_PAYLOAD."""
        out: list[str] = []
        chunk: list[str] = []
        size = len(self.node) + 1
        for seq in seqs:
            text = str(seq)
            if chunk and size + len(text) + 1 > MAX_PAYLOAD:
                out.append(f"{self.node} {','.join(chunk)}")
                chunk, size = [], len(self.node) + 1
            chunk.append(text)
            size += len(text) + 1
        if chunk:
            out.append(f"{self.node} {','.join(chunk)}")
        return out

    async def _send(self) -> None:
        while True:
            seqs = list(await self._outbox.get())
            # What the commits of other requests queued meanwhile goes in the same notification: one
            # round trip for them all, where there was one per committed batch.
            while not self._outbox.empty():
                seqs.extend(self._outbox.get_nowait())
            for payload in self.payloads(seqs):
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
                await self.catch_up_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cluster catch-up failed; will retry", exc_info=True)

    async def catch_up_once(self, grace: float = PUBLISH_GRACE_SECONDS) -> int:
        """Hand over the streamed events this node has neither published nor been told of; how many.

        An event is in the store from its transaction's commit, but its node publishes it only after
        the commit's own follow-up (deleting purged files, core/exchange/base.py `_after_commit`):
        an event this node committed a moment ago is not missed, only not published yet. The rows
        read are therefore handed over only if still unknown `grace` seconds later; without it a
        stream got such an event twice (here, then from the publish).
        """
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(packet_events).where(packet_events.c.id > self._watermark,
                                            packet_events.c.audience.is_not(None))
                .order_by(packet_events.c.id).limit(1000))).all()
        missed = [r for r in rows if r.id not in self._seen_set]
        if missed and grace > 0:
            await asyncio.sleep(grace)
            missed = [r for r in missed if r.id not in self._seen_set]
        self._hand_over(missed)
        return len(missed)

    def _hand_over(self, rows: Sequence[Any]) -> None:
        events = [Event(r.id, r.type, r.packet_id, r.at, r.unit, r.audience, r.detail) for r in rows
                  if r.id not in self._seen_set]  # a notification and a catch-up may find the same row
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
#: TCP keepalives of the leader's session, so the server ends it soon after its machine is gone.
LEADER_KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}
#: The leader's lease: PostgreSQL ends the leader's session (and so frees the lock) once it has been
#: silent this long (`idle_session_timeout`), whatever the reason — a frozen process, a paused VM, a
#: network partition. The leader's own keeper speaks every LEASE_PING_SECONDS, so only a leader that
#: cannot run loses it.
LEASE_SECONDS = 10.0
LEASE_PING_SECONDS = 2.0


class Leadership:
    """Which node runs the work that must run once per cluster (expiry, offline reports, clean-up,
    notices, pollers): the one holding a PostgreSQL session advisory lock.

    The lock lives as long as its session, and the session as long as the leader keeps speaking on
    it: a node that dies or loses the store loses it at once, a node that stops running (frozen,
    paused, cut off from the store) within LEASE_SECONDS, when the server ends its silent session.
    Another node takes the lock on its next round (`try_lead`, called every housekeeping round, so
    within `presence.sweep_interval_seconds`). A leader that wakes after its lease ran out finds its
    session gone the next time it asks (`try_lead`, `confirm`) and stops leading; the housekeeping
    round confirms before each piece of singleton work. On SQLite there is one node, always the leader.
    """

    def __init__(self, db: Database, *, lease_seconds: float = LEASE_SECONDS,
                 ping_seconds: float = LEASE_PING_SECONDS) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.ping_seconds = ping_seconds
        self._conn: Any = None
        self._leader = db.dialect != "postgresql"
        self._use = asyncio.Lock()  # one statement at a time on the lock's connection
        self._keeper: asyncio.Task[None] | None = None
        self._spoke = (0.0, 0.0)  # (monotonic, wall) time the server last answered on the lock's session

    @property
    def leader(self) -> bool:
        return self._leader and (self._conn is None or not self._conn.is_closed())

    async def try_lead(self) -> bool:
        """Keep or take the lock; False when another node holds it or the store cannot be reached."""
        if self.db.dialect != "postgresql":
            return True
        try:
            async with self._use:
                if self._conn is None or self._conn.is_closed():
                    if self._leader:
                        log.warning("lost the lead (the store ended this node's session); another node may lead")
                    self._leader = False
                    await self._connect()
                if self._leader:
                    await self._conn.execute("SELECT 1")  # the session still lives, so the lock is still ours
                    self._spoke = (time.monotonic(), time.time())
                else:
                    # The lease only on the leader's session: a node that does not lead keeps its
                    # connection idle between rounds, which must not end it.
                    if self._conn.get_server_version().major >= 14:
                        self._leader = bool(await self._conn.fetchval(
                            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN "
                            "set_config('idle_session_timeout', $2, false) IS NOT NULL ELSE false END",
                            LEADER_LOCK, str(int(self.lease_seconds * 1000))))
                    else:
                        self._leader = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))
                    if self._leader:
                        self._spoke = (time.monotonic(), time.time())
                        log.info("this node now runs the cluster's singleton work")
                        self._keeper = asyncio.create_task(self._keep(), name="lgsp-leader-lease")
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._leader:
                log.warning("lost the lead (the store ended this node's session); another node leads",
                            exc_info=True)
            else:
                log.warning("could not reach the store to try to lead; will try again", exc_info=True)
            await self.release()
        return self._leader

    async def confirm(self) -> bool:
        """Whether this node still leads: what a leader checks right before a piece of singleton work,
        in case it was frozen past its lease. The server is asked when it has not answered on the
        lock's session for longer than the keeper's ping (by either clock: the process stopped, the
        machine paused, the work took long); otherwise the session cannot have been silent long
        enough for the server to end it."""
        if self.db.dialect != "postgresql":
            return True
        if not self.leader:
            return False
        mono, wall = self._spoke
        if max(time.monotonic() - mono, time.time() - wall) < self.ping_seconds * 1.5:
            return True
        return await self.try_lead()

    async def _connect(self) -> None:
        import asyncpg

        url = make_url(self.db.url).set(drivername="postgresql")
        # A killed process closes its socket at once; a machine that vanishes fails these keepalives
        # in ~11 s; a process that stops running (SIGSTOP, a paused VM) keeps its socket open and its
        # kernel answering keepalives, so the lease (idle_session_timeout) ends its session instead.
        self._conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=10,
                                           server_settings=LEADER_KEEPALIVES)
        if self._conn.get_server_version().major < 14:
            log.warning("PostgreSQL has no idle_session_timeout (before version 14): a frozen leader keeps "
                        "the lead until it runs again")

    async def _keep(self) -> None:
        """Speak on the lock's session often enough that the server never ends a running leader's."""
        while self._leader:
            await asyncio.sleep(self.ping_seconds)
            try:
                async with self._use:
                    if not self._leader or self._conn is None:
                        return
                    await self._conn.execute("SELECT 1")
                    self._spoke = (time.monotonic(), time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the lead (the store ended this node's session); another node leads",
                            exc_info=True)
                self._keeper = None  # release() must not cancel the task it runs in
                await self.release()
                return

    async def release(self) -> None:
        self._leader = False
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)  # ends the session: the lock goes with it
        self._conn = None
