"""Packets shaped as other vendors and the national axis send them, through the SOAP service."""

from __future__ import annotations

import asyncio

import pytest
import zeep

from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from ..edxml_hub.support import A, B, add_units, fixture
from .soap_support import TNS, zeep_client

AXIS_UNIT = "vxp.saas.03"


async def test_vendor_packets_and_a_status_without_response_for(hub: Hub, make_actor: MakeActor) -> None:
    await add_units(hub)
    ministry = await asyncio.to_thread(zeep_client, await make_actor(AXIS_UNIT, "Bộ Tài chính", legacy=True))
    province = await asyncio.to_thread(zeep_client, await make_actor(A, existing=True))
    department = await asyncio.to_thread(zeep_client, await make_actor(B, existing=True))
    data = fixture("vendor_axis_edoc")
    sent = await asyncio.to_thread(ministry.service.sendEdoc, edxml=data)
    assert sorted(sent.to) == sorted([A, B]) and sent.documentId == "6f1c2a9e-3b7d-4c55-9a10-2f4e8d7b1c33"
    for client in (province, department):
        got = parse_packet((await asyncio.to_thread(client.service.getEdoc, packetId=sent.packetId)).edxml)
        assert "organ_add" not in got.message_header["from"] and got.attachments[0].content_type == "text/plain"

    bare = fixture("vendor_status_no_response_for")
    with pytest.raises(zeep.exceptions.Fault) as err:  # names no recipient, and neither does the call
        await asyncio.to_thread(province.service.sendEdoc, edxml=bare)
    problem = err.value.detail.find(f"{{{TNS}}}problem")
    assert problem.find(f"{{{TNS}}}code").text == "edxml.invalid"
    assert "không có ResponseFor" in problem.find(f"{{{TNS}}}detail").text
    routed = await asyncio.to_thread(province.service.sendEdoc, edxml=bare, to=[AXIS_UNIT])
    assert routed.to == [AXIS_UNIT] and routed.messageType == "status"
    listed = await asyncio.to_thread(ministry.service.getReceivedEdocList, messageType="status")
    assert [i.packetId for i in listed] == [routed.packetId]
