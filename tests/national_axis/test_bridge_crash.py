"""`lgsp run` killed with SIGKILL after an axis document is committed and before `updateStatus done`
reaches the axis: after a restart the document is acknowledged, never submitted a second time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import yaml
from sqlalchemy import select

from lgsp.adapters.national_axis.faults import FaultKind
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import packets

from ..conftest import free_port, wait_for
from ..edxml_hub.support import edoc
from .bridge_support import HUB_ID, LOCAL_B, OPEN_TO_NATIONAL, SECRET_NAME, axis_settings
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle


class HubProcess:
    def __init__(self, config: Path, url: str, log: Path) -> None:
        self.config, self.url, self.log = config, url, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lgsp.cli.main", "run", "-c", str(self.config), stdout=log, stderr=log,
                env=env)
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


async def packets_of(config_path: Path, doc_id: str) -> list[str]:
    hub = Hub(load_config(config_path, env={}))
    await hub.open_store()
    try:
        async with hub.db.read() as conn:
            rows = (await conn.execute(select(packets.c.state, packets.c.meta))).all()
    finally:
        hub.blobs.close()
        await hub.db.close()
    return [r.state for r in rows if isinstance(r.meta, dict) and r.meta.get("axis_doc_id") == doc_id]


async def test_sigkill_between_commit_and_update_status_neither_loses_nor_duplicates(
        tmp_path: Path, axis_sim: AxisSimHandle) -> None:
    port = free_port()
    config_path = tmp_path / "lgsp.yaml"
    config_path.write_text(yaml.safe_dump({
        "hub": {"data_dir": str(tmp_path / "var"), "identifier": HUB_ID},
        "server": {"port": port, "shutdown_timeout_seconds": 1},
        "blobs": {"fsync": False},
        "logging": {"level": "INFO", "access_log": False},
        "plugins": {"enabled": ["rest", "edxml", "national_axis"]},
        "adapters": {"national_axis": axis_settings(axis_sim.url)},
        "policy": OPEN_TO_NATIONAL,
    }), encoding="utf-8")
    setup = Hub(load_config(config_path, env={}))
    await setup.open_store()
    try:
        await setup.secrets.set(SECRET_NAME, PROVINCE.secret)
        await setup.directory.add_unit(LOCAL_B, "Sở Thông tin và Truyền thông")
    finally:
        setup.blobs.close()
        await setup.db.close()

    (doc_id,) = await axis_sim.inject(PROVINCE.agency_code, edoc(MINISTRY_CODE, [LOCAL_B]))
    # The first updateStatus hangs: the hub has committed the packet and waits for the axis's answer.
    axis_sim.faults.inject("updateStatus", FaultKind.DELAY, seconds=3600, times=1)
    hub = HubProcess(config_path, f"http://127.0.0.1:{port}", tmp_path / "hub.log")
    await hub.start()  # the poll round runs at start
    try:
        await wait_for(lambda: ("updateStatus", FaultKind.DELAY) in [(o.value, k) for o, k in
                                                                      axis_sim.faults.fired],
                       timeout=30, what="the hub to call updateStatus")
        await hub.kill()
        assert await packets_of(config_path, doc_id) == ["accepted"]  # committed before the call
        assert axis_sim.simulator.pending(PROVINCE.agency_code) == [doc_id]  # the axis never heard done

        await hub.start()
        await wait_for(lambda: axis_sim.simulator.pending(PROVINCE.agency_code) == [], timeout=30,
                       what="the restarted hub to acknowledge the document")
        state = axis_sim.simulator.state.receivers[doc_id][1].status
        assert state == "done"
    finally:
        await hub.stop()
    assert await packets_of(config_path, doc_id) == ["accepted"]  # still one packet: no duplicate
    assert "already packet" in (tmp_path / "hub.log").read_text(encoding="utf-8", errors="replace")
