"""Documents per second through the `national_axis` bridge, against the axis simulator on loopback.

Two figures, one hub (in this process, SQLite, plugins rest + edxml + national_axis):

* outbound: a local unit sends N edXML documents to a ministry (zone national) over the REST API;
  a document counts when its delivery is `forwarded` (sendEdoc answered, DocId recorded);
* inbound: N documents "from a ministry" are put on the axis's pending list; one poll round
  (getReceivedEdocList, getEdoc, submit, updateStatus done) takes them all.

Each beside its baseline in the same run, against the same simulator: the axis client alone doing
the protocol part of the work (outbound: sendEdoc of other documents of the same size, as many at
once as the bridge's lane; inbound: getReceivedEdocList, then getEdoc and updateStatus done per
document), so the ratio is what the hub adds (REST upload, store, delivery engine, submit).

    python -m bench.axis_bridge_bench [--docs 100] [--size 16384] [--workdir DIR]

Prints one JSON row; `python -m bench.run` makes rows of it (group `axis`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from bench.vxp_bench import document as bench_document
from lgsp.adapters.national_axis.bridge import bridge_of
from lgsp.adapters.national_axis.client import AxisClient
from lgsp.adapters.national_axis.inbound import poll_once
from lgsp.adapters.national_axis.sim_state import SimSystem
from lgsp.adapters.national_axis.simulator import AxisSimulator
from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import deliveries

SYSTEM = SimSystem("vxp.saas.45", "bench-secret-45", "000.00.00.H45")
LOCAL, OTHER, MINISTRY = "000.00.00.H45", "000.02.31.H45", "000.00.00.G22"
CONCURRENCY = 4  # the bridge's sendEdoc lane, and the baseline's calls in flight


def document(sender: str, recipient: str, n: int, size: int) -> bytes:
    return bench_document(sender, recipient, n, size)


async def direct(sim: AxisSimulator, docs: int, size: int) -> tuple[float, float]:
    """Seconds for the axis client alone: sendEdoc of `docs` documents; then fetching and
    acknowledging `docs` received ones."""
    payloads = [document(SYSTEM.agency_code, MINISTRY, 50_000 + i, size) for i in range(docs)]
    async with AxisClient(sim.url, SYSTEM.system_id, SYSTEM.secret, timeout=60) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def send(data: bytes) -> None:
            async with gate:
                await client.send_edoc(data, SYSTEM.agency_code, [MINISTRY])

        started = time.perf_counter()
        await asyncio.gather(*(send(d) for d in payloads))
        outbound = time.perf_counter() - started
        for i in range(docs):
            await sim.inject(SYSTEM.agency_code, document(MINISTRY, OTHER, 60_000 + i, size))
        started = time.perf_counter()
        for item in await client.received_list("edoc"):
            await client.get_edoc(item.doc_id)
            await client.update_status(item.doc_id, "done")
        inbound = time.perf_counter() - started
    return outbound, inbound


async def run(docs: int, size: int, workdir: Path) -> dict[str, Any]:
    sim = AxisSimulator([SYSTEM])
    sim.add_agency(MINISTRY, "Văn phòng Chính phủ")
    await sim.start()
    path = workdir / "lgsp.yaml"
    path.write_text(yaml.safe_dump({
        "hub": {"data_dir": str(workdir / "var")}, "server": {"port": 0}, "blobs": {"fsync": False},
        "logging": {"level": "WARNING", "access_log": False},
        "plugins": {"enabled": ["rest", "edxml", "national_axis"]},
        "delivery": {"poll_interval_seconds": 0.2},
        # The shipped policy keeps the national zone closed until granted: the province grants it here.
        "policy": {"rules": [{"action": "allow", "source": "zone:local", "destination": "zone:national"}]},
        "adapters": {"national_axis": {
            "endpoint": sim.url, "system_id": SYSTEM.system_id, "secret": "axis", "agency_code": SYSTEM.agency_code,
            "poll_interval_seconds": 3600, "track_interval_seconds": 3600, "sync_interval_seconds": 0,
            "probe_interval_seconds": 0, "concurrency": CONCURRENCY}}}), encoding="utf-8")
    config = load_config(path, env={})
    pre = Hub(config)
    await pre.open_store()
    await pre.secrets.set("axis", SYSTEM.secret)
    pre.blobs.close()
    await pre.db.close()
    hub = Hub(config)
    await hub.start()
    try:
        for unit in (LOCAL, OTHER):
            await hub.directory.add_unit(unit, f"Đơn vị {unit}")
        await hub.directory.add_unit(MINISTRY, "Văn phòng Chính phủ", zone="national")
        app = await hub.directory.add_application(LOCAL, "bench")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        payloads = [document(LOCAL, MINISTRY, i, size) for i in range(docs)]
        started = time.perf_counter()
        async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as client:
            for data in payloads:
                digest = hashlib.sha256(data).hexdigest()
                created = await client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                                    "sha256": digest})
                await client.upload(created["upload"]["url"], data, digest)
        while True:
            async with hub.db.read() as conn:
                done = await conn.scalar(select(func.count()).select_from(deliveries).where(
                    deliveries.c.state == "forwarded"))
            if done >= docs:
                break
            await asyncio.sleep(0.02)
        outbound = time.perf_counter() - started

        for i in range(docs):
            await sim.inject(SYSTEM.agency_code, document(MINISTRY, OTHER, 10_000 + i, size))
        bridge = bridge_of(hub)
        assert bridge is not None
        object.__setattr__(bridge.settings, "page_size", docs)  # one round takes them all
        started = time.perf_counter()
        report = await bridge.run("poll", poll_once)
        inbound = time.perf_counter() - started
        assert report is not None and report.submitted == docs, report
        direct_out, direct_in = await direct(sim, docs, size)
    finally:
        await hub.stop()
        await sim.stop()
    return {"docs": docs, "size": size, "edxml_bytes": len(payloads[0]), "outbound_seconds": round(outbound, 3),
            "outbound_docs_per_s": round(docs / outbound, 1), "inbound_seconds": round(inbound, 3),
            "inbound_docs_per_s": round(docs / inbound, 1),
            "direct_outbound_docs_per_s": round(docs / direct_out, 1),
            "direct_inbound_docs_per_s": round(docs / direct_in, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--size", type=int, default=16384, help="attachment bytes per document")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print(json.dumps(asyncio.run(run(args.docs, args.size, Path(tmp))), ensure_ascii=False))


if __name__ == "__main__":
    main()
