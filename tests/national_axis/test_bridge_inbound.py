"""Inbound from the national axis: documents and statuses become packets of the hub, acknowledged on
the axis only after the packet is committed, never twice (real HTTP to the simulator)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from lgsp.adapters.national_axis.faults import FaultKind
from lgsp.client import Credentials, LgspClient
from lgsp.core.edxml import parse_packet
from lgsp.core.store.tables import packets

from ..conftest import wait_for
from ..edxml_hub.support import edoc, status
from .bridge_support import LOCAL_A, LOCAL_B, BridgeHub, MakeBridgeHub, make_bridge_hub, sha
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle

__all__ = ["make_bridge_hub"]

LOCAL_C = "000.03.32.H45"
OTHER_PROVINCE = "000.00.00.H41"  # named in To, but an agency of another province: not ours


async def client_of(bh: BridgeHub, unit: str) -> LgspClient:
    app = await bh.hub.directory.add_application(unit, "vbql")
    key = await bh.hub.directory.issue_key(app.id, "HMAC-SHA256")
    return LgspClient(Credentials(bh.hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))


def axis_status(sim: AxisSimHandle, receiver_doc_id: str) -> str:
    found = sim.simulator.state.receivers[receiver_doc_id]
    return found[1].status


async def count_packets(bh: BridgeHub, **meta: Any) -> int:
    async with bh.hub.db.read() as conn:
        rows = (await conn.execute(select(packets.c.meta))).scalars().all()
    return sum(1 for m in rows if isinstance(m, dict) and all(m.get(k) == v for k, v in meta.items()))


async def test_an_edoc_from_a_ministry_reaches_the_local_units_its_to_names(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B, LOCAL_C)
    data = edoc(MINISTRY_CODE, [LOCAL_B, LOCAL_C, OTHER_PROVINCE], subject="V/v hướng dẫn của Bộ")
    (doc_id,) = await axis_sim.inject(PROVINCE.agency_code, data)
    report = await bh.run_round("poll")
    assert report.submitted == 1 and report.refused == 0
    assert axis_status(axis_sim, doc_id) == "done" and axis_sim.simulator.pending(PROVINCE.agency_code) == []
    # The ministry, unknown before, is now a unit of zone national (its replies go back through the axis).
    ministry = await bh.hub.directory.get_unit(MINISTRY_CODE)
    assert ministry is not None and ministry.zone == "national" and ministry.status == "active"
    for unit in (LOCAL_B, LOCAL_C):
        async with await client_of(bh, unit) as client:
            (item,) = await client.inbox()
            assert item["from"] == MINISTRY_CODE and item["subject"] == "V/v hướng dẫn của Bộ"
            view = await client.status(item["id"])
            assert view["metadata"]["axis_doc_id"] == doc_id and view["metadata"]["via"] == "national_axis"
            # Only this hub's units: the other province's agency is the axis's business.
            assert view["metadata"]["edxml"]["to"] == [LOCAL_B, LOCAL_C]
            body = await client.fetch_bytes(item["id"])
            assert parse_packet(body).subject == "V/v hướng dẫn của Bộ"
            await client.ack(item["id"], sha(body))
    assert axis_sim.simulator.sent() == []  # nothing was sent back to the axis


async def test_a_document_the_hub_refuses_is_reported_fail_and_makes_no_packet(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B)
    (no_local,) = await axis_sim.inject(PROVINCE.agency_code, edoc(MINISTRY_CODE, [OTHER_PROVINCE]))
    (garbage,) = await axis_sim.inject(PROVINCE.agency_code, b"<not-edxml>", from_code=MINISTRY_CODE)
    (spoof,) = await axis_sim.inject(PROVINCE.agency_code, edoc(LOCAL_B, [LOCAL_A], number="9"))
    report = await bh.run_round("poll")
    assert report.refused == 3 and report.submitted == 0
    for doc_id in (no_local, garbage, spoof):
        assert axis_status(axis_sim, doc_id) == "fail"
    reasons = dict(bh.bridge.refusals)
    assert "route.unknown_destination" in reasons[no_local]
    assert "header cannot be read" in reasons[garbage]
    assert "zone local" in reasons[spoof]  # a document "from" a local unit never comes in from the axis
    # The refused upload stays on record (closed, its reason in the timeline); nothing is delivered.
    async with bh.hub.db.read() as conn:
        states = [r.state for r in (await conn.execute(select(packets.c.state, packets.c.meta))).all()
                  if isinstance(r.meta, dict) and r.meta.get("axis_doc_id") == no_local]
    assert states == ["expired"]
    async with bh.hub.db.read() as conn:
        accepted = await conn.scalar(select(func.count()).select_from(packets).where(packets.c.state == "accepted"))
    assert accepted == 0


async def test_a_lost_update_status_acknowledges_later_without_a_second_packet(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B)
    (doc_id,) = await axis_sim.inject(PROVINCE.agency_code, edoc(MINISTRY_CODE, [LOCAL_B]))
    axis_sim.faults.inject("updateStatus", FaultKind.HTTP_ERROR, times=1)
    first = await bh.bridge.run("poll", __import__("lgsp.adapters.national_axis.inbound",
                                                   fromlist=["poll_once"]).poll_once)
    assert first is not None and first.submitted == 0 and first.errors  # committed, not acknowledged
    assert axis_status(axis_sim, doc_id) == "initial"
    assert await count_packets(bh, axis_doc_id=doc_id) == 1
    second = await bh.run_round("poll")
    assert second.acknowledged == 1 and second.submitted == 0
    assert axis_status(axis_sim, doc_id) == "done"
    assert await count_packets(bh, axis_doc_id=doc_id) == 1


async def test_duplicates_in_the_list_and_a_document_that_cannot_be_fetched(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B)
    (doc_id,) = await axis_sim.inject(PROVINCE.agency_code, edoc(MINISTRY_CODE, [LOCAL_B]))
    axis_sim.faults.inject("getReceivedEdocList", FaultKind.DUPLICATES, times=1)
    axis_sim.faults.inject("getEdoc", FaultKind.FETCH_FAIL, times=1)
    first = await bh.bridge.run("poll", __import__("lgsp.adapters.national_axis.inbound",
                                                   fromlist=["poll_once"]).poll_once)
    assert first.submitted == 0 and first.errors  # left for the next round, not reported failed
    assert axis_status(axis_sim, doc_id) == "initial"
    axis_sim.faults.inject("getReceivedEdocList", FaultKind.DUPLICATES, times=1)
    second = await bh.run_round("poll")
    assert second.submitted == 1 and second.acknowledged == 0  # listed twice, taken once
    assert await count_packets(bh, axis_doc_id=doc_id) == 1


async def test_a_ministry_status_comes_back_to_the_local_source(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B)
    await bh.add_national()
    original = edoc(LOCAL_A, [MINISTRY_CODE])
    document_id = parse_packet(original).document_id
    async with await client_of(bh, LOCAL_A) as sender:
        created = await sender.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(original),
                                                            "sha256": sha(original)})
        await sender.upload(created["upload"]["url"], original, sha(original))
        packet_id = created["id"]
        await wait_for(lambda: len(axis_sim.simulator.sent()) == 1, what="sendEdoc")
        # The ministry takes it (the axis says done) and replies with status 03 through the axis.
        axis_sim.simulator.state.set_status(axis_sim.simulator.sent()[0].deliveries[0], "done")
        await axis_sim.inject(PROVINCE.agency_code, status(MINISTRY_CODE, LOCAL_A, document_id, "03",
                                                           "Tiếp nhận"), message_type="status")
        assert (await bh.run_round("track")).delivered == 1
        assert (await bh.run_round("poll")).submitted == 1
        (item,) = await sender.inbox()
        assert item["from"] == MINISTRY_CODE and item["subject"].startswith("Trạng thái 03")
        view = await sender.status(packet_id)
        (st,) = view["business_status"]
        assert st["unit"] == MINISTRY_CODE and st["status_code"] == "03" and st["reported_by"] == MINISTRY_CODE
        assert {d["unit"]: d["state"] for d in view["deliveries"]} == {MINISTRY_CODE: "delivered"}
