"""Failover: three `lgsp run` nodes on one PostgreSQL and one blob folder, one killed every 20 s.

A source sends a steady stream of packets, each to a push destination (a reference REST receiver
in this process) and a pull destination (a client that fetches and acknowledges, and keeps an
event stream open); every client knows the three nodes' URLs. Every 20 s the node running the
cluster's singleton work is killed with SIGKILL; a survivor must take that work over within 30 s
(read from the nodes' logs), then the killed node is started again. At the end every packet the
hub accepted reached both destinations exactly once (one recorded delivery each; the push
receiver got repeats only of attempts cut by a kill), no content is left for completed packets,
and the event stream came back after every break.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from lgsp.adapters.rest.receiver import HubVerifier
from lgsp.client import LgspError
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .delivery.helpers import UNITS, Puller, add_units, free_port, receiver_server, wait_for
from .delivery.test_crash import HubProcess, subprocess_env

S1, P1, D1 = UNITS[0], UNITS[2], UNITS[4]
NODES = 3
KILLS = 3
KILL_EVERY = 20.0
TAKEOVER_LIMIT = 30.0
CONCURRENCY = 2
TAKEOVER = "now runs the cluster's singleton work"

pytestmark = [pytest.mark.serial, pytest.mark.slow]


def _write_config(path: Path, data_dir: Path, port: int, db_url: str, push_url: str) -> None:
    path.write_text(f"""
hub:
  data_dir: {data_dir}
database:
  url: {db_url}
  pool_size: 2
server:
  port: {port}
  shutdown_timeout_seconds: 1
blobs:
  fsync: false
security:
  rsa_key_bits: 2048
presence:
  sweep_interval_seconds: 1
cluster:
  heartbeat_interval_seconds: 1
  node_timeout_seconds: 4
delivery:
  concurrency: {CONCURRENCY}
  poll_interval_seconds: 1
  probe_interval_seconds: 0
  retry:
    base_delay_seconds: 0.2
    max_delay_seconds: 1.0
  targets:
    "{P1}":
      protocol: rest
      url: {push_url}
      timeout_seconds: 5
logging:
  level: INFO
  format: text
  access_log: false
""", encoding="utf-8")


class NodeProcess(HubProcess):
    """A node started as `lgsp run`; ready once it answers (a loaded CI machine may take a while)."""

    async def start(self) -> None:
        # Ready when this process says it listens (another program may have taken the port meanwhile,
        # and would answer /readyz too) and answers /readyz.
        listening = f"listening on {self.url}"
        before = _count(self.log, listening)
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lgsp.cli.main", "run", "-c", str(self.config), stdout=log, stderr=log,
                env=subprocess_env())
        self.starts += 1
        proc = self.proc

        async def up() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"the node exited with {proc.returncode}; see {self.log}")
            if _count(self.log, listening) <= before:
                return False
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with aiohttp.ClientSession() as http, http.get(self.url + "/readyz") as resp:
                    return resp.status == 200
            return False

        await wait_for(up, timeout=120, interval=0.1, what=f"the node to come up (see {self.log})")


def _count(log: Path, text: str) -> int:
    return log.read_text(encoding="utf-8", errors="replace").count(text) if log.exists() else 0


def _takeovers(log: Path) -> int:
    return _count(log, TAKEOVER)


async def test_three_nodes_one_killed_every_20_seconds(pg_url: str, tmp_path: Path) -> None:
    import asyncpg

    rng = random.Random(int(time.time()))
    data_dir = tmp_path / "shared"  # one data folder: the blob folder and the master key all nodes share
    async with receiver_server() as rr:
        procs: list[NodeProcess] = []
        for i in range(NODES):
            port = free_port()
            cfg_path = tmp_path / f"node{i}.yaml"
            _write_config(cfg_path, data_dir, port, pg_url, rr.url)
            procs.append(NodeProcess(cfg_path, f"http://127.0.0.1:{port}", tmp_path / f"node{i}.log"))
        hub = Hub(load_config(procs[0].config, env={}))  # only the store, to register units first
        await hub.open_store()
        creds = await add_units(hub, [S1, P1, D1])
        await hub.db.close()

        try:
            for proc in procs:  # the first node started leads
                await proc.start()
            assert [_takeovers(p.log) for p in procs] == [1, 0, 0]
        except BaseException:
            await asyncio.gather(*(p.stop() for p in procs))  # no node outlives a failed start
            raise
        urls = ",".join(p.url for p in procs)
        clients = {u: c.client(urls) for u, c in creds.items()}
        key = await clients[S1].call("GET", "/v1/hub")
        rr.receiver.verify = HubVerifier(key["access_key"], key["public_key_pem"])

        sent: dict[str, str] = {}  # packet → sha256
        uncertain: dict[str, str] = {}  # created, upload outcome unknown
        hellos: list[float] = []
        breaks: list[float] = []
        stop = asyncio.Event()

        async def sender() -> None:
            client = clients[S1]
            while not stop.is_set():
                body = rng.randbytes(rng.randint(1, 16 * 1024))
                sha = hashlib.sha256(body).hexdigest()
                try:
                    created = await client.create_packet([P1, D1], subject="qua cụm", size=len(body), sha256=sha)
                except (LgspError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)
                    continue
                uncertain[created["id"]] = sha
                try:
                    await client.upload(created["upload"]["url"], body, sha)
                except (LgspError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)
                    continue
                sent[created["id"]] = uncertain.pop(created["id"])
                await asyncio.sleep(rng.uniform(0.05, 0.15))

        pull = Puller(clients[D1])

        async def puller() -> None:
            while True:
                try:
                    await pull.round()
                except (LgspError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.1)

        async def streamer() -> None:
            """D1's event stream: reopened on another node whenever its node goes."""
            client = clients[D1]
            while not stop.is_set():
                try:
                    async with client.events(heartbeat=2.0) as stream:
                        async for message in stream:
                            if message["type"] == "hello":
                                hellos.append(time.monotonic())
                except (LgspError, aiohttp.ClientError, OSError):
                    pass
                breaks.append(time.monotonic())
                await asyncio.sleep(0.2)

        workers = [asyncio.create_task(sender()), asyncio.create_task(puller()), asyncio.create_task(streamer())]
        started = time.monotonic()
        takeover_times: list[float] = []
        restarts: list[asyncio.Task[None]] = []
        leader = 0
        try:
            for _ in range(KILLS):
                await asyncio.sleep(KILL_EVERY)
                await asyncio.gather(*restarts)  # a slow machine: the last node killed must be back first
                survivors = [i for i in range(NODES) if i != leader]
                before = {i: _takeovers(procs[i].log) for i in survivors}
                await procs[leader].kill()
                t0 = time.monotonic()

                def taken(survivors: list[int] = survivors, before: dict[int, int] = before) -> bool:
                    return any(_takeovers(procs[i].log) > before[i] for i in survivors)

                await wait_for(taken, timeout=TAKEOVER_LIMIT, interval=0.1,
                               what="a surviving node to take over the singleton work")
                takeover_times.append(time.monotonic() - t0)
                new_leader = next(i for i in survivors if _takeovers(procs[i].log) > before[i])
                # Started again in the background: the next kill (of the new leader) comes 20 s after
                # this one however long the start takes.
                restarts.append(asyncio.create_task(procs[leader].start()))
                leader = new_leader
            await asyncio.sleep(5.0)
            stop.set()
            await workers[0]
            await asyncio.gather(*restarts)
            for pid, sha in list(uncertain.items()):  # upload answer lost in a kill: the hub decides
                with contextlib.suppress(LgspError, aiohttp.ClientError, OSError):
                    view = await clients[S1].status(pid)
                    if view["state"] in ("accepted", "completed"):
                        sent[pid] = sha
            conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
            try:
                async def all_done() -> bool:
                    n = await conn.fetchval("SELECT count(*) FROM packets WHERE id = ANY($1::text[]) "
                                            "AND state = 'completed' AND content_state = 'purged'", list(sent))
                    return bool(n == len(sent))

                try:
                    await wait_for(all_done, timeout=60, interval=0.5, what="every accepted packet completed")
                except AssertionError:
                    print("not completed:", [dict(r) for r in await conn.fetch(
                        "SELECT p.id, p.state AS packet_state, p.content_state, d.unit_id, d.state, d.attempts, "
                        "d.claimed_by, d.next_attempt_at FROM packets p LEFT JOIN deliveries d ON d.packet_id = p.id "
                        "WHERE p.id = ANY($1::text[]) AND NOT (p.state = 'completed' AND p.content_state = 'purged')",
                        list(sent))])
                    raise
                packets = {r["id"]: r for r in await conn.fetch(
                    "SELECT id, state, content_state, sha256 FROM packets WHERE id = ANY($1::text[])", list(sent))}
                rows = await conn.fetch("SELECT packet_id, unit_id, state FROM deliveries "
                                        "WHERE packet_id = ANY($1::text[])", list(sent))
                delivered_events = Counter((r["packet_id"], r["unit"]) for r in await conn.fetch(
                    "SELECT packet_id, unit FROM packet_events WHERE type = 'packet.delivered' "
                    "AND packet_id = ANY($1::text[])", list(sent)))
                created = {r["id"] for r in await conn.fetch("SELECT id FROM packets WHERE state = 'created'")}
                # Small content kept in the store (no file): its rows go with the purge too.
                kept = {r["key_id"] for r in await conn.fetch("SELECT key_id FROM inline_blobs")}
                sending = await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'sending'")
            finally:
                await conn.close()
        finally:
            stop.set()
            for w in [*workers, *restarts]:
                w.cancel()
            for c in clients.values():
                await c.close()
            await asyncio.gather(*(p.stop() for p in procs))
        took = time.monotonic() - started

    assert all(t <= TAKEOVER_LIMIT for t in takeover_times) and len(takeover_times) == KILLS, takeover_times
    assert sending == 0
    for pid, sha in sent.items():
        assert packets[pid]["sha256"] == sha
        assert (packets[pid]["state"], packets[pid]["content_state"]) == ("completed", "purged"), pid
    assert {(r["packet_id"], r["unit_id"]): r["state"] for r in rows} == {
        (pid, unit): "delivered" for pid in sent for unit in (P1, D1)}
    assert delivered_events == Counter({(pid, unit): 1 for pid in sent for unit in (P1, D1)})
    for pid, sha in sent.items():
        got = rr.receiver.stored.get(f"{pid}:{P1}")
        assert got is not None and got.sha256 == sha, f"{pid} never reached {P1}"
        assert pull.acked[pid] == 1, (pid, pull.acked[pid])
    assert {rec.packet_id for rec in rr.receiver.receptions} <= set(sent)
    repeats = rr.receiver.repeats()
    assert repeats <= KILLS * CONCURRENCY, f"{repeats} repeats"  # only attempts a kill cut short
    assert pull.violations == []
    blobs = data_dir / "blobs" / "objects"
    leftover = {p.name[:36] for p in blobs.rglob("*") if p.is_file()}
    assert not leftover & set(sent)
    assert leftover <= created, leftover - created  # only uploads of packets never accepted
    assert not kept & set(sent), kept & set(sent)
    # The stream broke when its node was killed and came back on another node each time.
    assert breaks, "the event stream never broke: no kill reached its node"
    assert all(any(0 <= h - b <= 10.0 for h in hellos) for b in breaks[:-1]), (breaks, hellos)
    assert len(sent) >= 30, f"too little traffic to mean anything ({len(sent)} packets)"
    print(f"failover: {len(sent)} packets, {KILLS} kills, takeovers {[f'{t:.1f}' for t in takeover_times]} s, "
          f"stream breaks {len(breaks) - 1}, push repeats {repeats}, {took:.1f} s")
