"""Packets shaped as other vendors and the national axis send them, through the hub over REST."""

from __future__ import annotations

import pytest

from lgsp.client import LgspError
from lgsp.core.edxml import parse_packet
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from .support import A, B, add_units, fixture, sha
from .test_edxml_exchange import send

AXIS_UNIT = "vxp.saas.03"  # the ministry's system, named as the axis names it
UUID = "6f1c2a9e-3b7d-4c55-9a10-2f4e8d7b1c33"


async def test_national_units_take_the_axis_identifier_form(hub: Hub) -> None:
    unit = await hub.directory.add_unit(AXIS_UNIT, "Văn phòng Bộ Tài chính", zone="national")
    assert unit.id == AXIS_UNIT and unit.zone == "national"
    with pytest.raises(Problem) as err:  # a local unit still needs an official code (or the legacy flag)
        await hub.directory.add_unit("vxp.saas.04", "Hệ thống khác")
    assert err.value.code == "request.invalid"
    with pytest.raises(Problem):  # and the axis form is still a form: no spaces, no slashes
        await hub.directory.add_unit("vxp saas/05", "Hệ thống khác", zone="national")


async def test_axis_shaped_edoc_and_its_statuses(hub: Hub, make_actor: MakeActor) -> None:
    """Minimal organisations, UUID DocumentId, no DueDate/ToPlaces, a bare Bussiness, text/plain:
    accepted, delivered to both To; a status back to the axis code is routed by ResponseFor and
    recorded against the document; a status without ResponseFor goes where the request says."""
    await add_units(hub)
    ministry = await make_actor(AXIS_UNIT, "Văn phòng Bộ Tài chính", legacy=True)
    province = await make_actor(A, existing=True)
    department = await make_actor(B, existing=True)
    data = fixture("vendor_axis_edoc")
    packet_id = await send(ministry.client, data)
    view = await ministry.client.status(packet_id)
    assert view["state"] == "accepted" and view["to"] == sorted([A, B])
    assert view["subject"] == "V/v số liệu quyết toán ngân sách năm 2023"
    meta = view["metadata"]["edxml"]
    assert meta["document_id"] == UUID and "document_id_parts" not in meta and meta["due_date"] is None
    assert meta["irregular_organ_ids"] == [AXIS_UNIT] and meta["attachments"][0]["content_type"] == "text/plain"
    for actor in (province, department):
        got = await actor.client.fetch_bytes(packet_id)
        assert parse_packet(got).attachments[0].sha256 == parse_packet(data).attachments[0].sha256
        assert await actor.client.ack(packet_id, sha(got)) == "delivered"

    status_id = await send(province.client, fixture("vendor_status_axis"))
    status_view = await province.client.status(status_id)
    assert status_view["to"] == [AXIS_UNIT] and status_view["metadata"]["edxml"]["original_packet"] == packet_id
    original = await ministry.client.status(packet_id)
    assert [(s["unit"], s["status_code"]) for s in original["business_status"]] == [(A, "03")]

    bare = fixture("vendor_status_no_response_for")
    with pytest.raises(LgspError) as err:  # names nobody, and the request does not either
        await send(province.client, bare)
    assert err.value.status == 422 and err.value.code == "edxml.invalid"
    assert "không có ResponseFor" in err.value.detail and "to của yêu cầu" in err.value.detail
    routed = await send(province.client, bare, to=[AXIS_UNIT], subject="Đã đến")
    routed_view = await province.client.status(routed)
    assert routed_view["state"] == "accepted" and routed_view["to"] == [AXIS_UNIT]
    assert routed_view["metadata"]["edxml"]["routed_by"] == "request"
    assert routed_view["metadata"]["edxml"]["status_code"] == "01"
    inbox = await ministry.client.inbox()
    assert routed in [p["id"] for p in inbox]
    # Not tied to any document: the ministry's packet keeps only the status that named it.
    original = await ministry.client.status(packet_id)
    assert [(s["unit"], s["status_code"]) for s in original["business_status"]] == [(A, "03")]


async def test_refusals_name_what_was_expected(hub: Hub, make_actor: MakeActor) -> None:
    await add_units(hub)
    ministry = await make_actor(AXIS_UNIT, "Văn phòng Bộ Tài chính", legacy=True)
    data = fixture("vendor_axis_edoc")
    wrong_root = data.replace(b"<edXML:edXML ", b"<edXML:Document ").replace(b"</edXML:edXML>", b"</edXML:Document>")
    with pytest.raises(LgspError) as err:
        await send(ministry.client, wrong_root, to=[A, B], subject="x")
    assert err.value.status == 422 and err.value.code == "edxml.invalid"
    assert err.value.body["path"] == "/Document" and "<edXML>" in err.value.detail
    no_from = data[:data.index(b"<edXML:From>")] + data[data.index(b"</edXML:From>") + 13:]
    with pytest.raises(LgspError) as err:
        await send(ministry.client, no_from, to=[A, B], subject="x")
    assert err.value.code == "edxml.invalid" and "missing required element From" in err.value.detail
    with pytest.raises(LgspError) as err:
        await send(ministry.client, data[:-40], to=[A, B], subject="x")
    assert err.value.status == 400 and err.value.code == "edxml.malformed"
