"""Crash safety: `lgsp run` killed with SIGKILL at random moments under a steady exchange.

Two sources send a steady stream of packets to two push destinations (reference REST receivers in
this process) and two pull destinations (clients in this process that fetch and acknowledge). The
hub is a subprocess, killed with SIGKILL at least five times at random moments and restarted each
time. At the end every packet the hub accepted must have reached every destination exactly once
(the hub recorded one delivery each; push receivers got matching hashes and repeats only from
attempts the hub could not record; pull destinations never saw an acknowledged packet again), and
no content may remain for any completed packet. The seed is printed; set LGSP_CRASH_SEED to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lgsp.adapters.rest.receiver import HubVerifier
from lgsp.client import LgspError
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from ..conftest import start_raw_upload
from .helpers import UNITS, Puller, add_units, free_port, receiver_server, wait_for

S1, S2, P1, P2, D1, D2 = UNITS
KILLS = 5
CONCURRENCY = 2

pytestmark = pytest.mark.slow


def write_config(path: Path, data_dir: Path, port: int, push_urls: dict[str, str]) -> None:
    targets = "\n".join(f'    "{u}":\n      protocol: rest\n      url: {url}\n      timeout_seconds: 5'
                        for u, url in push_urls.items())
    path.write_text(f"""
hub:
  data_dir: {data_dir}
server:
  port: {port}
  shutdown_timeout_seconds: 1
blobs:
  fsync: false
security:
  rsa_key_bits: 2048
presence:
  sweep_interval_seconds: 0.5
delivery:
  concurrency: {CONCURRENCY}
  poll_interval_seconds: 1
  probe_interval_seconds: 0
  retry:
    base_delay_seconds: 0.2
    max_delay_seconds: 1.0
  targets:
{targets}
logging:
  level: WARNING
  access_log: false
""", encoding="utf-8")


def subprocess_env() -> dict[str, str]:
    """The environment of a hub started as a subprocess: no LGSP_* setting of this process leaks into
    its configuration, except the development check of state transitions the test suite turns on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    if os.environ.get("LGSP_CHECK_TRANSITIONS"):
        env["LGSP_CHECK_TRANSITIONS"] = os.environ["LGSP_CHECK_TRANSITIONS"]
    return env


class HubProcess:
    def __init__(self, config: Path, url: str, log: Path) -> None:
        self.config = config
        self.url = url
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lgsp.cli.main", "run", "-c", str(self.config),
                stdout=log, stderr=log, env=subprocess_env())
        self.starts += 1
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"the hub exited with {self.proc.returncode}; see {self.log}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url + "/v1/time") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the hub did not come up; see {self.log}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def test_sigkill_at_random_moments_loses_nothing_and_delivers_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("LGSP_CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash test seed: {seed}")
    rng = random.Random(seed)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "hub"
    cfg_path = tmp_path / "lgsp.yaml"

    async with receiver_server() as r1, receiver_server() as r2:
        receivers = {P1: r1, P2: r2}
        write_config(cfg_path, data_dir, port, {u: r.url for u, r in receivers.items()})
        cfg = load_config(cfg_path, env={})
        hub = Hub(cfg)  # only the store, to register units before the server runs
        await hub.open_store()
        creds = await add_units(hub, UNITS)
        await hub.db.close()

        proc = HubProcess(cfg_path, url, tmp_path / "hub.log")
        await proc.start()
        clients = {u: c.client(url) for u, c in creds.items()}
        key = await clients[S1].call("GET", "/v1/hub")
        for r in receivers.values():
            r.receiver.verify = HubVerifier(key["access_key"], key["public_key_pem"])

        sent: dict[str, tuple[str, list[str]]] = {}  # packet → (sha256, destinations)
        uncertain: dict[str, tuple[str, list[str]]] = {}  # created, upload outcome unknown
        stop = asyncio.Event()

        async def sender(source: str) -> None:
            client = clients[source]
            while not stop.is_set():
                dests = rng.sample([P1, P2, D1, D2], rng.randint(1, 3))
                body = rng.randbytes(rng.randint(1, 64 * 1024))
                sha = hashlib.sha256(body).hexdigest()
                try:
                    created = await client.create_packet(dests, subject=f"từ {source}", size=len(body), sha256=sha,
                                                         priority=rng.choice([0, 0, 0, 1, 2, 3]))
                except (LgspError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)
                    continue
                uncertain[created["id"]] = (sha, dests)
                try:
                    await client.upload(created["upload"]["url"], body, sha)
                except (LgspError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)
                    continue
                sent[created["id"]] = uncertain.pop(created["id"])
                await asyncio.sleep(rng.uniform(0.0, 0.05))

        pullers = {unit: Puller(clients[unit]) for unit in (D1, D2)}

        async def puller(unit: str) -> None:
            pull = pullers[unit]
            while not stop.is_set() or any(unit in d for _, d in sent.values()):
                try:
                    await pull.round()
                except (LgspError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.05)
                if stop.is_set() and not pull.to_ack and _all_done(data_dir, set(sent)):
                    return

        started = time.monotonic()
        workers = [asyncio.create_task(sender(S1)), asyncio.create_task(sender(S2)),
                   asyncio.create_task(puller(D1)), asyncio.create_task(puller(D2))]
        await asyncio.sleep(1.0)  # a steady stream first
        try:
            for _ in range(KILLS):
                # kill while packets flow: once a few more went through, at a random moment after
                before = len(sent)
                await wait_for(lambda before=before: len(sent) >= before + 3, 30, what="traffic between kills")
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                await proc.kill()
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                t0 = time.monotonic()
                await proc.start()
                print(f"restart took {time.monotonic() - t0:.2f} s; {len(sent)} sent so far", flush=True)
            await wait_for(lambda: len(sent) >= 40, 60, what="40 packets sent")
            stop.set()
            await asyncio.gather(workers[0], workers[1])
            # packets whose upload answer was lost in a crash: the hub decides whether they exist
            for pid, value in list(uncertain.items()):
                view = await _source_view(pid, clients)
                if view is not None and view["state"] in ("accepted", "completed"):
                    sent[pid] = value
            deadline = time.monotonic() + 60
            while not _all_done(data_dir, set(sent)):
                assert time.monotonic() < deadline, "deliveries did not finish within 60 s after the last restart"
                await asyncio.sleep(0.2)
            await asyncio.wait_for(asyncio.gather(workers[2], workers[3]), 30)
        finally:
            stop.set()
            for w in workers:
                w.cancel()
            for c in clients.values():
                await c.close()
            await proc.stop()
        took = time.monotonic() - started

    assert proc.starts == KILLS + 1
    assert len(sent) >= 40, f"too little traffic to mean anything ({len(sent)} packets)"
    db = sqlite3.connect(data_dir / "lgsp.db")
    blobs = data_dir / "blobs" / "objects"
    for pid, (sha, dests) in sent.items():
        state, content, stored_sha = db.execute(
            "SELECT state, content_state, sha256 FROM packets WHERE id = ?", (pid,)).fetchone()
        assert stored_sha == sha
        assert (state, content) == ("completed", "purged"), pid
        # every blob of a packet (each upload attempt, each variant) is named `<packet id>-…`
        assert not list((blobs / pid[:2]).glob(f"{pid}*")), pid
        rows = dict(db.execute("SELECT unit_id, state FROM deliveries WHERE packet_id = ?", (pid,)).fetchall())
        assert rows == dict.fromkeys(dests, "delivered"), (pid, rows)
        delivered = Counter(u for (u,) in db.execute(
            "SELECT unit FROM packet_events WHERE packet_id = ? AND type = 'packet.delivered'", (pid,)))
        assert delivered == Counter(dests), (pid, delivered)
        for unit in dests:
            if unit in receivers:
                got = receivers[unit].receiver.stored.get(f"{pid}:{unit}")
                assert got is not None, f"{pid} never reached {unit}"
                assert got.sha256 == sha
            else:
                assert pullers[unit].acked[pid] == 1, (pid, unit, pullers[unit].acked[pid])
    # nothing arrived that the hub did not accept, and repeats came only from cut attempts
    for unit, r in receivers.items():
        keys = {rec.packet_id for rec in r.receiver.receptions}
        assert keys <= set(sent)
        repeats = r.receiver.repeats()
        assert repeats <= KILLS * CONCURRENCY, f"{unit} got {repeats} repeats"
        assert all(rec.sha256 == sent[rec.packet_id][0] for rec in r.receiver.receptions)
    assert pullers[D1].violations == [] and pullers[D2].violations == []
    # content is held only for packets never accepted: an upload whose blob was stored just before a
    # kill, the packet still `created` (the upload-expiry sweep removes it with the packet)
    leftover = {p.name[:36]: db.execute("SELECT state FROM packets WHERE id = ?", (p.name[:36],)).fetchone()
                for p in blobs.rglob("*") if p.is_file()}
    assert all(state == ("created",) for state in leftover.values()), leftover
    assert not set(leftover) & set(sent)
    per_dest = defaultdict(int)
    for _, dests in sent.values():
        for d in dests:
            per_dest[d] += 1
    print(f"crash test: {len(sent)} packets, {dict(per_dest)} deliveries, {KILLS} kills, "
          f"repeats {[r.receiver.repeats() for r in receivers.values()]}, {took:.1f} s")


def _all_done(data_dir: Path, packets: set[str]) -> bool:
    if not packets:
        return True
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'lgsp.db'}?mode=ro", uri=True, timeout=5)) as db:
        marks = ",".join("?" * len(packets))
        n = db.execute(f"SELECT count(*) FROM packets WHERE id IN ({marks}) AND state = 'completed' "
                       "AND content_state = 'purged'", tuple(packets)).fetchone()[0]
    return n == len(packets)


async def _source_view(pid: str, clients: dict[str, Any]) -> dict[str, Any] | None:
    """The source's view of a packet, whichever source it was (the other gets not_found)."""
    for source in (S1, S2):
        for _ in range(50):
            try:
                return await clients[source].status(pid)
            except LgspError as exc:
                if exc.code == "not_found":
                    break
                await asyncio.sleep(0.1)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
    return None


async def test_partial_upload_of_a_killed_hub_goes_at_restart_and_never_outlives_delivery(tmp_path: Path) -> None:
    """The probe's sequence: 2 of 3 MiB uploaded, SIGKILL, restart, upload again, fetch, acknowledge.
    The killed run's partial file (the start of the content) is removed at the restart, and once the
    packet is completed no byte of its content is left anywhere under the data folder."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "hub"
    cfg_path = tmp_path / "lgsp.yaml"
    cfg_path.write_text(f"""hub:
  data_dir: {data_dir}
server:
  port: {port}
  shutdown_timeout_seconds: 1
blobs:
  fsync: false
security:
  rsa_key_bits: 2048
logging:
  access_log: false
""", encoding="utf-8")
    hub = Hub(load_config(cfg_path, env={}))
    await hub.open_store()
    creds = await add_units(hub, [S1, D1])
    await hub.db.close()
    content = os.urandom(3 << 20)
    sha = hashlib.sha256(content).hexdigest()
    marker = content[: 1 << 16]  # the start of the payload, as the probe found it in the partial file

    def copies() -> list[Path]:
        """Files under the data folder holding (the start of) the content: in clear, or sealed in a
        partial upload named for the packet (content is encrypted at rest)."""
        found = []
        for path in data_dir.rglob("*"):
            if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm", ".key"):
                with path.open("rb") as fh:
                    if fh.read(len(marker)) == marker or (path.suffix == ".part" and created_id[0] in path.name):
                        found.append(path)
        return found

    created_id: list[str] = [""]

    proc = HubProcess(cfg_path, url, tmp_path / "hub.log")
    await proc.start()
    source, dest = creds[S1].client(url), creds[D1].client(url)
    try:
        created = await source.create_packet([D1], subject="Gói bị cắt", size=len(content), sha256=sha)
        created_id[0] = created["id"]
        _, writer = await start_raw_upload(created["upload"]["url"], source.signer, len(content), sha,
                                           content[: 2 << 20])
        await wait_for(lambda: any(p.stat().st_size >= 1 << 20 for p in copies()), 20,
                       what="the partial upload on disk")
        await proc.kill()
        writer.close()
        left = copies()
        assert left and all(p.suffix == ".part" for p in left), left  # what the probe saw after the kill

        await proc.start()
        assert copies() == [], "the killed run's partial upload must be gone at start-up"
        await source.upload(created["upload"]["url"], content, sha)
        assert await dest.fetch_bytes(created["id"]) == content
        assert await dest.ack(created["id"], sha) == "delivered"
        status = await source.status(created["id"])
        assert (status["state"], status["content"]) == ("completed", "purged")
        assert copies() == []
        assert [p for p in (data_dir / "blobs").rglob("*") if p.is_file() and created["id"] in p.name] == []
    finally:
        await source.close()
        await dest.close()
        await proc.stop()
