"""The axis's agencies in the hub's directory (getSynchronizeUnit, scheduled and `lgsp axis sync`), and
the axis's presence given to every unit of its zone (sources told when it is unreachable)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import and_, select

from lgsp.adapters.national_axis.faults import FaultKind
from lgsp.cli.main import main
from lgsp.client import Credentials, LgspClient
from lgsp.core.hub import Hub
from lgsp.core.store.tables import packet_events

from ..conftest import wait_for
from ..edxml_hub.support import edoc
from .bridge_support import LOCAL_A, LOCAL_B, MakeBridgeHub, axis_config, make_bridge_hub, sha, store_secret
from .conftest import MINISTRY_CODE, AxisSimHandle

__all__ = ["make_bridge_hub"]

CHILD = "000.01.00.G22"
GONE = "000.00.00.G07"


def fill_directory(sim: AxisSimHandle) -> None:
    parent = sim.simulator.state.agencies[MINISTRY_CODE]
    sim.simulator.add_agency(CHILD, "Cục Văn thư và Lưu trữ nhà nước", pid=parent.id, mail="vanthu@example.gov.vn")
    sim.simulator.add_agency(GONE, "Bộ đã giải thể", deleted=True)
    sim.simulator.add_agency(LOCAL_B, "Tên khác của một đơn vị của tỉnh")  # never takes over a local unit


async def test_sync_fills_the_zone_and_search_finds_the_agencies(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B)
    fill_directory(axis_sim)
    report = await bh.run_round("sync")
    assert report.added == 4  # the three of the fixture's directory and the child; the deleted one is not added
    assert [code for code, _ in report.skipped] == [LOCAL_B]
    directory = bh.hub.directory
    child = await directory.get_unit(CHILD)
    assert child is not None and child.zone == "national" and child.parent_id == MINISTRY_CODE
    assert child.mail == "vanthu@example.gov.vn"
    assert await directory.get_unit(GONE) is None
    local = await directory.get_unit(LOCAL_B)
    assert local is not None and local.zone == "local" and local.name == f"Đơn vị {LOCAL_B}"
    found = [u.id for u in await directory.search_units("van phong chinh phu")]
    assert found == [MINISTRY_CODE, CHILD]  # the child through its parent's name, after
    # Packets for a synchronised agency go through the axis from now on.
    assert bh.hub.engine.protocol_of(CHILD) == "national_axis"

    # The axis renames one agency and deletes the child: followed; listed again, it is active again.
    axis_sim.simulator.state.agencies[MINISTRY_CODE].name = "Văn phòng Chính phủ (mới)"
    axis_sim.simulator.state.delete_agency(CHILD)
    report = await bh.run_round("sync")
    assert report.suspended == 1 and report.updated == 2
    assert (await directory.get_unit(MINISTRY_CODE)).name == "Văn phòng Chính phủ (mới)"  # type: ignore[union-attr]
    assert (await directory.get_unit(CHILD)).status == "suspended"  # type: ignore[union-attr]
    axis_sim.simulator.state.agencies[CHILD].deleted = False
    report = await bh.run_round("sync")
    assert report.reactivated == 1 and (await directory.get_unit(CHILD)).status == "active"  # type: ignore[union-attr]


async def test_an_empty_answer_changes_nothing(make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.run_round("sync")
    before = await bh.hub.directory.count_units()
    axis_sim.simulator.state.agencies.clear()
    report = await bh.run_round("sync")
    assert report.added == report.updated == report.suspended == 0
    assert await bh.hub.directory.count_units() == before


async def test_lgsp_axis_sync_command(tmp_path: Path, axis_sim: AxisSimHandle,
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fill_directory(axis_sim)
    config = axis_config(tmp_path, axis_sim.url)
    (tmp_path / "lgsp.yaml").write_text((tmp_path / "lgsp.yaml").read_text(encoding="utf-8")
                                        + f"hub:\n  data_dir: {tmp_path / 'var'}\n", encoding="utf-8")
    await store_secret(config)
    monkeypatch.setenv("LGSP_LANG", "vi")
    code = await asyncio.to_thread(main, ["axis", "sync", "-c", str(tmp_path / "lgsp.yaml"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["zone"] == "national" and out["added"] == 5 and out["skipped"] == []
    code = await asyncio.to_thread(main, ["axis", "sync", "-c", str(tmp_path / "lgsp.yaml")])
    assert code == 0 and "thêm 0" in capsys.readouterr().out
    axis_sim.faults.inject("getSynchronizeUnit", FaultKind.BAD_SIGNATURE, times=1)
    code = await asyncio.to_thread(main, ["axis", "sync", "-c", str(tmp_path / "lgsp.yaml")])
    err = capsys.readouterr().err
    assert code != 0 and "401" in err and len(err.strip().splitlines()) == 1


async def test_without_settings_the_command_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lgsp.yaml").write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\n", encoding="utf-8")
    code = await asyncio.to_thread(main, ["axis", "sync", "-c", str(tmp_path / "lgsp.yaml")])
    assert code != 0 and "adapters.national_axis" in capsys.readouterr().err


async def test_sources_are_told_when_the_axis_is_unreachable(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim, probe_interval_seconds=0.2, env={
        "LGSP_PRESENCE_SWEEP_INTERVAL_SECONDS": "0.2", "LGSP_PRESENCE_OFFLINE_REPORT_AFTER_SECONDS": "0.5"})
    hub: Hub = bh.hub
    await bh.add_local(LOCAL_A)
    await bh.add_national()

    async def online() -> bool:
        unit = await hub.directory.get_unit(MINISTRY_CODE)
        return unit is not None and unit.online

    await wait_for(online, what="the probe to show the ministry online")
    axis_sim.faults.inject("countReceiveEdoc", FaultKind.HTTP_ERROR, times=None)
    axis_sim.faults.inject("sendEdoc", FaultKind.HTTP_ERROR, times=None)
    await wait_for(lambda: _not(online), what="the ministry to go offline with the axis")
    app = await hub.directory.add_application(LOCAL_A, "vbql")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    data = edoc(LOCAL_A, [MINISTRY_CODE])
    async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as sender:
        created = await sender.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                            "sha256": sha(data)})
        await sender.upload(created["upload"]["url"], data, sha(data))

    async def reported() -> bool:
        async with hub.db.read() as conn:
            rows = (await conn.execute(select(packet_events.c.detail).where(and_(
                packet_events.c.type == "destination.offline", packet_events.c.audience == LOCAL_A,
                packet_events.c.unit == MINISTRY_CODE)))).scalars().all()
        return any(created["id"] in (d or {}).get("packets", []) for d in rows)

    await wait_for(reported, what="the source to be told its destination is offline")
    axis_sim.faults.clear()
    await wait_for(online, what="the ministry back online with the axis")


async def _not(predicate: object) -> bool:
    return not await predicate()  # type: ignore[operator]
