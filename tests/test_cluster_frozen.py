"""A node that stops running without dying (frozen, a paused VM, cut off from the store).

Its PostgreSQL sessions stay open, so neither a closed socket nor TCP keepalives (its kernel still
answers them) end them. The leader's lock has a lease instead: the server ends the leader's session
once it has been silent for the lease, and another node leads. The frozen node's push claims are
taken back after the heartbeat timeout and claimed again; when it runs again, the outcome of its old
attempt must change nothing, since the delivery is another attempt's now.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select, update

from lgsp.adapters.rest.receiver import HubVerifier
from lgsp.client import LgspError
from lgsp.core.cluster import LEADER_LOCK, Leadership
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.database import Database
from lgsp.core.store.tables import nodes, packet_events

from .delivery.helpers import (
    UNITS,
    Puller,
    add_units,
    base_config,
    delivery_state,
    free_port,
    has_state,
    hub_verifier,
    receiver_server,
    wait_for,
    with_delivery,
)

SRC, DST = UNITS[0], UNITS[1]
P1, D1 = UNITS[2], UNITS[4]
TAKEOVER_LIMIT = 30.0


async def test_the_old_attempt_of_a_node_thought_dead_changes_nothing(tmp_path: Path) -> None:
    """Attempt 1 is in flight when its node is thought dead: the claim is taken back and attempt 2
    starts. Attempt 1 then fails; that must not move attempt 2's delivery to `retrying` (nor record
    a retry), and attempt 2's success is the one delivery recorded."""
    first, second = asyncio.Event(), asyncio.Event()
    arrived: list[int] = []

    def held(gate: asyncio.Event, code: int | None) -> Callable[[web.Request], Awaitable[web.Response | None]]:
        async def step(request: web.Request) -> web.Response | None:
            arrived.append(code or 200)
            await gate.wait()
            if code is None:
                return None  # the receiver itself answers
            await request.read()
            return web.json_response({"code": "test.503", "detail": "busy"}, status=code)
        return step

    async with receiver_server() as rr:
        rr.script.steps = [held(first, 503), held(second, None)]
        target = {"protocol": "rest", "url": rr.url, "timeout_seconds": 30}
        cfg = with_delivery(base_config(tmp_path), targets={DST: target}, probe_interval_seconds=0, concurrency=2,
                            poll_interval_seconds=60)
        cfg = cfg.replace(presence={"sweep_interval_seconds": 3600})  # no housekeeping round meanwhile
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"van ban", [DST], subject="Hai lần thử")
            await wait_for(lambda: len(arrived) == 1, what="attempt 1 at the receiver")
            # This node looks dead to the cluster (as a frozen one does): its claim is taken back.
            for task in hub._tasks:
                if task.get_name() == "lgsp-heartbeat":
                    task.cancel()
            async with hub.db.write() as conn:
                await conn.execute(update(nodes).where(nodes.c.id == hub.node).values(
                    heartbeat_at=hub.clock() - timedelta(hours=1)))
            assert await hub.engine.release_stale() == 1
            await wait_for(lambda: len(arrived) == 2, what="attempt 2 at the receiver")
            await hub.nodes.beat()  # alive again, as the node that wakes up
            row = await delivery_state(hub, pid, DST)
            assert (row.state, row.attempts, row.claimed_by) == ("sending", 2, hub.node)

            first.set()  # attempt 1 fails now, late
            await wait_for(lambda: len(rr.script.hits) == 1, what="attempt 1's answer")
            await asyncio.sleep(0.5)
            row = await delivery_state(hub, pid, DST)
            assert (row.state, row.attempts) == ("sending", 2), "attempt 1's outcome moved attempt 2's delivery"

            second.set()
            await wait_for(lambda: has_state(hub, pid, DST, "delivered"), what="attempt 2 delivered")
            async with hub.db.read() as conn:
                types = list((await conn.execute(select(packet_events.c.type).where(
                    packet_events.c.packet_id == pid).order_by(packet_events.c.id))).scalars())
    assert types.count("packet.delivered") == 1
    assert "delivery.retrying" not in types, types
    assert [h[2] for h in rr.script.hits] == [503, 200]
    assert list(rr.receiver.stored) == [f"{pid}:{DST}"]


async def test_a_silent_leader_loses_the_lead_after_its_lease(pg_url: str) -> None:
    """A leader that stops speaking on its session (frozen) loses the lock when the lease runs out;
    another node takes it; the old leader, asked again, knows it no longer leads."""
    db = Database(pg_url)
    try:
        frozen = Leadership(db, lease_seconds=1.0, ping_seconds=0.2)
        other = Leadership(db, lease_seconds=1.0, ping_seconds=0.2)
        assert await frozen.try_lead()
        assert not await other.try_lead()
        await asyncio.sleep(1.5)  # the keeper speaks: a running leader keeps the lead past its lease
        assert await frozen.confirm() and not await other.try_lead()
        assert frozen._keeper is not None
        frozen._keeper.cancel()  # from now on silent, as a frozen process is
        started = time.monotonic()
        await wait_for(other.try_lead, timeout=10, interval=0.2, what="the other node to lead")
        assert time.monotonic() - started < 5
        assert not await frozen.confirm()
        assert not frozen.leader
        await other.release()
        assert await frozen.try_lead()  # the lock is free again: the woken node may lead once more
        await frozen.release()
    finally:
        await db.close()


async def test_a_node_that_does_not_lead_keeps_its_session_between_rounds(pg_url: str) -> None:
    """The lease is the leader's only: a node trying to lead now and then, less often than the lease,
    keeps its connection (it was ended between rounds, and every other round failed and reconnected)."""
    db = Database(pg_url)
    try:
        leader = Leadership(db, lease_seconds=1.0, ping_seconds=0.2)
        other = Leadership(db, lease_seconds=1.0, ping_seconds=0.2)
        assert await leader.try_lead()
        assert not await other.try_lead()
        conn = other._conn
        for _ in range(2):
            await asyncio.sleep(1.6)  # longer than the lease between two rounds
            assert not await other.try_lead()
            assert other._conn is conn and not conn.is_closed()
        await leader.release()
        await other.release()
    finally:
        await db.close()


async def test_a_running_leader_keeps_the_lead_through_a_long_round(pg_url: str) -> None:
    """The lease counts silence on the session, and the keeper speaks while the node works on: a
    round longer than the lease does not cost the lead."""
    db = Database(pg_url)
    try:
        leader = Leadership(db, lease_seconds=1.0, ping_seconds=0.2)
        assert await leader.try_lead()
        await asyncio.sleep(3.0)
        assert await leader.confirm()
        await leader.release()
    finally:
        await db.close()



@pytest.mark.serial
@pytest.mark.slow
async def test_a_frozen_leader_is_replaced_and_wakes_up_harmless(pg_url: str, tmp_path: Path) -> None:
    """Two `lgsp run` nodes; the leader (which also pushes) is frozen with SIGSTOP under steady
    traffic. The other node must take over the singleton work within 30 s (from its log) and take
    back the frozen node's claims; after SIGCONT the woken node knows it lost the lead, and every
    accepted packet reached both destinations exactly once."""
    import asyncpg

    from .test_cluster_failover import TAKEOVER, NodeProcess, _count, _write_config

    data_dir = tmp_path / "shared"
    async with receiver_server() as rr:
        # Until the freeze, the receiver holds each push for up to 2 s (below the hub's 5 s timeout): the
        # node the clients talk to fills its push slots, the leader claims the rest within its 1 s poll,
        # and its claim stays open long enough to be seen. Polling for a short claim raced with it.
        frozen = asyncio.Event()

        async def held(request: web.Request) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(frozen.wait(), 2.0)
            await asyncio.sleep(0.2)

        rr.script.steps = [held] * 100_000
        procs: list[NodeProcess] = []
        for i in range(2):
            port = free_port()
            cfg_path = tmp_path / f"node{i}.yaml"
            _write_config(cfg_path, data_dir, port, pg_url, rr.url)
            # One process per node (not a supervisor and its workers): SIGSTOP freezes the whole node.
            cfg_path.write_text(cfg_path.read_text(encoding="utf-8").replace("server:\n", "server:\n  workers: 1\n"),
                                encoding="utf-8")
            procs.append(NodeProcess(cfg_path, f"http://127.0.0.1:{port}", tmp_path / f"node{i}.log"))
        leader, other = procs
        hub = Hub(load_config(leader.config, env={}))
        await hub.open_store()
        creds = await add_units(hub, [SRC, P1, D1])
        await hub.db.close()
        try:
            for proc in procs:  # the first started leads
                await proc.start()
        except BaseException:
            await asyncio.gather(*(p.stop() for p in procs))
            raise
        assert _count(leader.log, TAKEOVER) == 1 and _count(other.log, TAKEOVER) == 0
        # The clients talk to the other node (a frozen node accepts connections and never answers: a
        # client would wait for its read timeout); the frozen node works through the shared store.
        urls = f"{other.url},{leader.url}"
        clients = {u: c.client(urls) for u, c in creds.items()}
        key = await clients[SRC].call("GET", "/v1/hub")
        rr.receiver.verify = HubVerifier(key["access_key"], key["public_key_pem"])
        sent: dict[str, str] = {}
        pull = Puller(clients[D1])
        stop = asyncio.Event()

        async def sender() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                body = f"gói {n} ".encode() * (n % 50 + 1)
                sha = hashlib.sha256(body).hexdigest()
                created = await clients[SRC].create_packet([P1, D1], subject="khi một nút đứng", size=len(body),
                                                           sha256=sha)
                await clients[SRC].upload(created["upload"]["url"], body, sha)
                sent[created["id"]] = sha
                await asyncio.sleep(0.1)

        async def puller() -> None:
            while True:
                with contextlib.suppress(LgspError, aiohttp.ClientError, OSError):
                    await pull.round()
                await asyncio.sleep(0.1)

        workers = [asyncio.create_task(sender()), asyncio.create_task(puller())]
        conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            async def frozen_holds_claims() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM deliveries d JOIN nodes n ON n.id = d.claimed_by "
                                        "WHERE d.state = 'sending' AND n.pid = $1", leader.proc.pid)
                return bool(n)

            await wait_for(frozen_holds_claims, timeout=30, interval=0.02, what="the leader pushing")
            leader.proc.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            frozen.set()
            await wait_for(lambda: _count(other.log, TAKEOVER) == 1, timeout=TAKEOVER_LIMIT, interval=0.1,
                           what="the other node to take over the singleton work")
            takeover = time.monotonic() - frozen_at
            await wait_for(lambda: _count(other.log, "of dead nodes taken back") >= 1, timeout=15,
                           what="the frozen node's claims taken back")
            await asyncio.sleep(2.0)
            leader.proc.send_signal(signal.SIGCONT)
            await wait_for(lambda: _count(leader.log, "lost the lead") >= 1, timeout=15,
                           what="the woken node to notice it lost the lead")
            await asyncio.sleep(3.0)  # the woken node works on beside the new leader
            stop.set()
            await workers[0]

            async def all_done() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM packets WHERE id = ANY($1::text[]) "
                                        "AND state = 'completed' AND content_state = 'purged'", list(sent))
                return bool(n == len(sent))

            try:
                await wait_for(all_done, timeout=60, interval=0.5, what="every accepted packet completed")
            except AssertionError:
                print("not completed:", [dict(r) for r in await conn.fetch(
                    "SELECT d.packet_id, d.unit_id, d.state, d.attempts, d.claimed_by, d.next_attempt_at, p.state "
                    "AS packet_state FROM deliveries d JOIN packets p ON p.id = d.packet_id "
                    "WHERE d.packet_id = ANY($1::text[]) AND d.state <> 'delivered'", list(sent))])
                raise
            delivered = Counter((r["packet_id"], r["unit"]) for r in await conn.fetch(
                "SELECT packet_id, unit FROM packet_events WHERE type = 'packet.delivered' "
                "AND packet_id = ANY($1::text[])", list(sent)))
            states = Counter(r["state"] for r in await conn.fetch(
                "SELECT state FROM deliveries WHERE packet_id = ANY($1::text[])", list(sent)))
            presence = [(r["unit_id"], r["online"]) for r in await conn.fetch(
                "SELECT unit_id, online FROM presence_log ORDER BY id")]
            leaders = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", LEADER_LOCK)
        finally:
            stop.set()
            for w in workers:
                w.cancel()
            await conn.close()
            for c in clients.values():
                await c.close()
            await asyncio.gather(*(p.stop() for p in procs))

    assert takeover <= TAKEOVER_LIMIT
    assert len(sent) >= 20, f"too little traffic to mean anything ({len(sent)} packets)"
    assert states == Counter({"delivered": 2 * len(sent)})
    assert delivered == Counter({(pid, unit): 1 for pid in sent for unit in (P1, D1)})
    for pid, sha in sent.items():
        got = rr.receiver.stored.get(f"{pid}:{P1}")
        assert got is not None and got.sha256 == sha, f"{pid} never reached {P1}"
        assert pull.acked[pid] == 1, (pid, pull.acked[pid])
    assert pull.violations == []
    repeats = rr.receiver.repeats()
    assert repeats <= 2, f"{repeats} repeats"  # only the attempts the frozen node had in flight
    for unit in {u for u, _ in presence}:  # each change of presence recorded once, by one node
        seen = [online for u, online in presence if u == unit]
        assert all(a != b for a, b in itertools.pairwise(seen)), (unit, seen)
    assert leaders == 1  # one leader, not two
    assert _count(leader.log, TAKEOVER) == 1  # the woken node did not take the lead back from a live leader
    print(f"frozen leader: {len(sent)} packets, takeover {takeover:.1f} s, push repeats {repeats}")
