"""`lgsp run` killed with SIGKILL after an axis document is committed and before `updateStatus done`
reaches the axis: after a restart the document is acknowledged, never submitted a second time."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import select

from lgsp.adapters.national_axis.faults import FaultKind
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import packets

from ..conftest import free_port, wait_for
from ..delivery.test_crash import HubProcess
from ..edxml_hub.support import edoc
from .bridge_support import HUB_ID, LOCAL_B, OPEN_TO_NATIONAL, SECRET_NAME, axis_settings
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle


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
