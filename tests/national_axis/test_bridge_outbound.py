"""Outbound through the national axis: packets for units of zone `national` go out as sendEdoc and
are followed on getSentEdocList until received or refused (real HTTP to the simulator)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import and_, select

from lgsp.adapters.national_axis.edxml_addresses import read_addresses
from lgsp.adapters.national_axis.faults import FaultKind
from lgsp.client import LgspClient, LgspError
from lgsp.core.edxml import parse_packet
from lgsp.core.store.tables import deliveries, packet_events

from ..conftest import wait_for
from ..edxml_hub.support import edoc
from .bridge_support import HUB_ID, LOCAL_A, LOCAL_B, BridgeHub, MakeBridgeHub, make_bridge_hub, sha
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle

__all__ = ["make_bridge_hub"]


async def client_of(bh: BridgeHub, unit: str) -> LgspClient:
    from lgsp.client import Credentials

    app = await bh.hub.directory.add_application(unit, "vbql")
    key = await bh.hub.directory.issue_key(app.id, "HMAC-SHA256")
    return LgspClient(Credentials(bh.hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))


async def send(client: LgspClient, data: bytes, **body: Any) -> str:
    created = await client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                        "sha256": sha(data), **body})
    await client.upload(created["upload"]["url"], data, sha(data))
    return str(created["id"])


async def delivery(bh: BridgeHub, packet_id: str, unit: str) -> Any:
    async with bh.hub.db.read() as conn:
        return (await conn.execute(select(deliveries).where(and_(
            deliveries.c.packet_id == packet_id, deliveries.c.unit_id == unit)))).first()


async def event_types(bh: BridgeHub, packet_id: str) -> list[str]:
    async with bh.hub.db.read() as conn:
        return list((await conn.execute(select(packet_events.c.type).where(
            packet_events.c.packet_id == packet_id).order_by(packet_events.c.id))).scalars())


async def setup(make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> tuple[BridgeHub, LgspClient]:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B)
    await bh.add_national()
    return bh, await client_of(bh, LOCAL_A)


async def test_edoc_to_a_ministry_goes_out_as_send_edoc_and_is_forwarded_with_the_doc_id(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh, sender = await setup(make_bridge_hub, axis_sim)
    async with sender:
        packet_id = await send(sender, edoc(LOCAL_A, [LOCAL_B, MINISTRY_CODE]))

        async def forwarded() -> bool:
            row = await delivery(bh, packet_id, MINISTRY_CODE)
            return row is not None and row.state == "forwarded"

        await wait_for(forwarded, what="the ministry's delivery to be forwarded")
        sent = axis_sim.simulator.sent(PROVINCE.system_id)
        assert len(sent) == 1
        doc = sent[0]
        # One sendEdoc naming only the ministry (the local unit is not the axis's business) ...
        assert [d.agency_code for d in doc.deliveries] == [MINISTRY_CODE]
        assert doc.message_type == "edoc" and doc.from_code == PROVINCE.agency_code
        # ... with the edXML the hub wrote: the sender's header and the hub's TraceHeader.
        packet = parse_packet(doc.content)
        assert [t.organ_id for t in packet.trace_headers][-1] == HUB_ID
        assert read_addresses(doc.content).from_ == LOCAL_A
        row = await delivery(bh, packet_id, MINISTRY_CODE)
        assert row.remote_id == doc.doc_id and row.mode == "push" and row.protocol == "national_axis"
        local = await delivery(bh, packet_id, LOCAL_B)
        assert local.mode == "pull"
        assert "packet.forwarded" in await event_types(bh, packet_id)
        view = await sender.status(packet_id)
        assert {d["unit"]: d["state"] for d in view["deliveries"]}[MINISTRY_CODE] == "forwarded"


async def test_tracking_ends_the_delivery_when_the_axis_reports_it_received(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh, sender = await setup(make_bridge_hub, axis_sim)
    async with sender:
        packet_id = await send(sender, edoc(LOCAL_A, [MINISTRY_CODE]))
        await wait_for(lambda: len(axis_sim.simulator.sent()) == 1, what="sendEdoc")
        await wait_for(lambda: _state(bh, packet_id, "forwarded"), what="forwarded")
        report = await bh.run_round("track")
        assert report.checked == 1 and report.delivered == 0  # the ministry has not taken it yet
        assert (await delivery(bh, packet_id, MINISTRY_CODE)).state == "forwarded"
        axis_sim.simulator.state.set_status(axis_sim.simulator.sent()[0].deliveries[0], "processing")
        assert (await bh.run_round("track")).delivered == 0
        axis_sim.simulator.state.set_status(axis_sim.simulator.sent()[0].deliveries[0], "done")
        report = await bh.run_round("track")
        assert report.delivered == 1
        row = await delivery(bh, packet_id, MINISTRY_CODE)
        assert row.state == "delivered"
        view = await sender.status(packet_id)
        assert view["state"] == "completed"
        assert (await bh.run_round("track")).checked == 0  # nothing left to follow


async def test_tracking_fails_the_delivery_the_axis_reports_refused(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh, sender = await setup(make_bridge_hub, axis_sim)
    async with sender:
        packet_id = await send(sender, edoc(LOCAL_A, [MINISTRY_CODE]))
        await wait_for(lambda: _state(bh, packet_id, "forwarded"), what="forwarded")
        axis_sim.simulator.state.set_status(axis_sim.simulator.sent()[0].deliveries[0], "fail")
        assert (await bh.run_round("track")).failed == 1
        row = await delivery(bh, packet_id, MINISTRY_CODE)
        assert row.state == "failed" and "Nhận lỗi" in row.reason


async def test_tracking_waits_while_the_axis_does_not_answer(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh, sender = await setup(make_bridge_hub, axis_sim)
    async with sender:
        packet_id = await send(sender, edoc(LOCAL_A, [MINISTRY_CODE]))
        await wait_for(lambda: _state(bh, packet_id, "forwarded"), what="forwarded")
        axis_sim.simulator.state.set_status(axis_sim.simulator.sent()[0].deliveries[0], "done")
        axis_sim.faults.inject("getSentEdocList", FaultKind.HTTP_ERROR, times=1)
        report = await bh.run_round("track")
        assert report.errors == 1 and report.delivered == 0
        assert (await delivery(bh, packet_id, MINISTRY_CODE)).state == "forwarded"
        assert (await bh.run_round("track")).delivered == 1


async def test_non_edxml_content_for_a_national_unit_is_refused_at_create(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    _, sender = await setup(make_bridge_hub, axis_sim)
    async with sender:
        data = b"%PDF-1.7 not an edXML packet"
        with pytest.raises(LgspError) as refused:
            await sender.call("POST", "/v1/packets", {"to": [LOCAL_B, MINISTRY_CODE], "subject": "Công văn",
                                                      "data_type": "pdf", "size": len(data), "sha256": sha(data)})
        assert refused.value.status == 422 and refused.value.code == "route.unsupported_data_type"
        assert refused.value.body.get("units") == [MINISTRY_CODE]
        # The same content to local units only is an ordinary packet.
        created = await sender.call("POST", "/v1/packets", {"to": [LOCAL_B], "subject": "Công văn",
                                                            "data_type": "pdf", "size": len(data),
                                                            "sha256": sha(data)})
        assert created["id"]
    assert axis_sim.simulator.sent() == []


async def test_a_retryable_axis_failure_is_retried_and_a_refusal_fails_the_delivery(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh, sender = await setup(make_bridge_hub, axis_sim)
    unknown = "000.00.00.G99"  # in the hub's directory, unknown to the axis
    await bh.add_national(unknown, "Bộ không có trên trục")
    axis_sim.faults.inject("sendEdoc", FaultKind.HTTP_ERROR, times=1)
    async with sender:
        retried = await send(sender, edoc(LOCAL_A, [MINISTRY_CODE]))
        await wait_for(lambda: _state(bh, retried, "retrying"), what="a retry to be scheduled")
        row = await delivery(bh, retried, MINISTRY_CODE)
        assert "HTTP 503" in (row.last_error or "") or "503" in (row.last_error or "")
        assert "delivery.retrying" in await event_types(bh, retried)
        refused = await send(sender, edoc(LOCAL_A, [unknown], number="126"))
        await wait_for(lambda: _state(bh, refused, "failed"), what="the refusal to fail the delivery")
        row = await delivery(bh, refused, unknown)
        assert "refused by the destination" in row.reason and "422" in row.reason
        assert row.attempts == 1


async def _state(bh: BridgeHub, packet_id: str, state: str) -> bool:
    row = await delivery(bh, packet_id, MINISTRY_CODE) or None
    if row is None or row.state != state:
        async with bh.hub.db.read() as conn:
            states = set((await conn.execute(select(deliveries.c.state).where(
                deliveries.c.packet_id == packet_id))).scalars())
        return states == {state}
    return True
