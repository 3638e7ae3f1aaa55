"""Business statuses travel back to the sender; revocations, updates and replacements link to the original."""

from __future__ import annotations

from typing import Any

import pytest

from lgsp.client import LgspError
from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from .support import A, B, C, D, add_units, edoc, fixture, sha, status
from .test_edxml_exchange import send


async def setup(hub: Hub, make_actor: MakeActor) -> dict[str, Any]:
    await add_units(hub)
    return {u: await make_actor(u, existing=True) for u in (A, B, C, D)}


async def receive(actor: Any, packet_id: str) -> bytes:
    data = await actor.client.fetch_bytes(packet_id)
    assert await actor.client.ack(packet_id, sha(data)) == "delivered"
    return data


async def test_status_replies_reach_the_sender_and_the_latest_is_kept(hub: Hub, make_actor: MakeActor) -> None:
    who = await setup(hub, make_actor)
    original = edoc(A, [B, C])
    doc_id = parse_packet(original).document_id
    packet_id = await send(who[A].client, original)
    await receive(who[B], packet_id)

    # B accepts (03): a packet of its own, routed by ResponseFor to A.
    reply = await send(who[B].client, status(B, A, doc_id, "03", "Tiếp nhận, vào sổ văn bản đến"))
    (item,) = await who[A].client.inbox()
    assert item["id"] == reply and item["from"] == B and item["subject"].startswith("Trạng thái 03 – Tiếp nhận")
    assert parse_packet(await receive(who[A], reply)).status_code == "03"
    reply_view = await who[B].client.status(reply)
    assert reply_view["to"] == [A] and reply_view["document"]["original_packet"] == packet_id
    assert reply_view["metadata"]["edxml"]["status_code"] == "03"

    view = await who[A].client.status(packet_id)
    (st,) = view["business_status"]
    assert st["unit"] == B and st["status_code"] == "03" and st["status"] == "accepted"
    assert st["reported_by"] == B and st["status_packet"] == reply
    assert st["description"] == "Tiếp nhận, vào sổ văn bản đến"
    assert [e["unit"] for e in view["events"] if e["type"] == "document.status"] == [B]

    # C reports an unknown code: stored as it is. B moves on to 05: the latest replaces 03.
    await send(who[C].client, status(C, A, doc_id, "09"))
    await send(who[B].client, status(B, A, doc_id, "05", "Đang xử lý"))
    view = await who[A].client.status(packet_id)
    by_unit = {s["unit"]: s for s in view["business_status"]}
    assert by_unit[B]["status_code"] == "05" and by_unit[C]["status_code"] == "09"
    assert by_unit[C]["status"] == "unknown"
    # A recipient sees its own status only.
    (own,) = (await who[B].client.status(packet_id))["business_status"]
    assert own["unit"] == B and own["status_code"] == "05"

    # 13: the sender asks B to give the document back (roles reversed); routed to B.
    take_back = await send(who[A].client, status(A, B, doc_id, "13", "Đề nghị trả lại văn bản"))
    assert [i["id"] for i in await who[B].client.inbox()] == [take_back]
    by_unit = {s["unit"]: s for s in (await who[A].client.status(packet_id))["business_status"]}
    assert by_unit[B]["status_code"] == "13" and by_unit[B]["reported_by"] == A


async def test_status_with_a_foreign_organ_code_is_routed_by_its_document(hub: Hub, make_actor: MakeActor) -> None:
    """A legacy VBQL writes the sender's old code in ResponseFor/OrganId: the DocumentId still finds it."""
    who = await setup(hub, make_actor)
    original = edoc(A, [B])
    packet_id = await send(who[A].client, original)
    doc_id = parse_packet(original).document_id
    reply = await send(who[B].client, status(B, "H45.01", doc_id, "03"))
    view = await who[B].client.status(reply)
    assert view["to"] == [A] and view["metadata"]["edxml"]["routed_by"] == "ResponseFor/DocumentId"
    assert view["document"]["original_packet"] == packet_id
    assert [(s["unit"], s["status_code"]) for s in (await who[A].client.status(packet_id))["business_status"]] == [
        (B, "03")]
    # Without such a document the unknown code is refused as an unknown destination.
    with pytest.raises(LgspError) as err:
        await send(who[B].client, status(B, "H45.01", "khác", "03"))
    assert err.value.code == "route.unknown_destination"


async def test_legacy_organ_code_with_an_explicit_to(hub: Hub, make_actor: MakeActor) -> None:
    """The request may name the destination the hub finds by DocumentId; any other is refused."""
    who = await setup(hub, make_actor)
    original = edoc(A, [B])
    packet_id = await send(who[A].client, original)
    doc_id = parse_packet(original).document_id
    reply = await send(who[B].client, status(B, "H45.01", doc_id, "05"), to=[A])
    assert (await who[B].client.status(reply))["to"] == [A]
    assert [s["status_code"] for s in (await who[A].client.status(packet_id))["business_status"]] == ["05"]
    with pytest.raises(LgspError) as err:
        await send(who[B].client, status(B, "H45.01", doc_id, "06"), to=[C])
    assert err.value.code == "edxml.destination_mismatch"


async def test_a_party_cannot_report_the_other_partys_status(hub: Hub, make_actor: MakeActor) -> None:
    """A status is filed under the role its code belongs to: the sender cannot mark its recipient
    "06 hoàn thành", and a recipient cannot send the sender's "13" about its own copy."""
    who = await setup(hub, make_actor)
    original = edoc(A, [B])
    packet_id = await send(who[A].client, original)
    doc_id = parse_packet(original).document_id
    forged = await send(who[A].client, status(A, B, doc_id, "06", "Đã xong (giả)"))
    assert (await who[A].client.status(forged))["document"].get("original_packet") is None
    assert (await who[A].client.status(packet_id))["business_status"] == []
    assert (await who[B].client.status(packet_id))["business_status"] == []
    reversed_take_back = await send(who[B].client, status(B, A, doc_id, "13"))
    assert (await who[B].client.status(reversed_take_back))["document"].get("original_packet") is None
    assert (await who[A].client.status(packet_id))["business_status"] == []
    # The genuine report still lands where it belongs.
    await send(who[B].client, status(B, A, doc_id, "06"))
    assert [(s["unit"], s["status_code"], s["reported_by"])
            for s in (await who[A].client.status(packet_id))["business_status"]] == [(B, "06", B)]


async def test_revocation_reaches_original_recipients_its_to_left_out(hub: Hub, make_actor: MakeActor) -> None:
    who = await setup(hub, make_actor)
    original = edoc(A, [B, C])
    doc_id = parse_packet(original).document_id
    packet_id = await send(who[A].client, original)
    revocation = edoc(A, [B, D], number="126", business="1", response_for=[
        {"organ_id": A, "code": "125/UBND-VP", "document_id": doc_id, "promulgation_date": "2024/03/15"}])
    rev_id = await send(who[A].client, revocation)
    view = await who[A].client.status(rev_id)
    assert view["to"] == sorted([B, C, D])  # its To, and C which had the original
    assert view["metadata"]["edxml"]["added_recipients"] == [C]
    assert view["document"]["original_packet"] == packet_id
    assert rev_id in [i["id"] for i in await who[C].client.inbox()]
    # A To that covers every original recipient adds nobody.
    update = edoc(A, [B, C], business="2", document_id=doc_id, subject="V/v triển khai (sửa đổi)")
    upd_id = await send(who[A].client, update)
    assert "added_recipients" not in (await who[A].client.status(upd_id))["metadata"]["edxml"]


async def test_status_from_a_stranger_is_not_shown_on_the_document(hub: Hub, make_actor: MakeActor) -> None:
    who = await setup(hub, make_actor)
    original = edoc(A, [B])
    packet_id = await send(who[A].client, original)
    doc_id = parse_packet(original).document_id
    stray = await send(who[D].client, status(D, A, doc_id, "06"))  # D never received it
    assert (await who[D].client.status(stray))["document"].get("original_packet") is None
    assert (await who[A].client.status(packet_id))["business_status"] == []
    # A status about a document the hub never carried still travels (sent elsewhere, e.g. the national axis).
    elsewhere = await send(who[B].client, status(B, C, "000.00.00.H41,2024/01/01,1/UBND", "01"))
    assert [i["id"] for i in await who[C].client.inbox()] == [elsewhere]


async def test_revocation_update_and_replacement_link_to_the_original(hub: Hub, make_actor: MakeActor) -> None:
    who = await setup(hub, make_actor)
    original = edoc(A, [B, C])
    doc_id = parse_packet(original).document_id
    packet_id = await send(who[A].client, original)
    await receive(who[B], packet_id)

    revocation = edoc(A, [B, C], number="126", business="1", response_for=[
        {"organ_id": A, "code": "125/UBND-VP", "document_id": doc_id, "promulgation_date": "2024/03/15"}])
    rev_id = await send(who[A].client, revocation)
    update = edoc(A, [B, C], business="2", document_id=doc_id, subject="V/v triển khai (sửa đổi)")
    upd_id = await send(who[A].client, update)
    replacement = edoc(A, [B, C], number="127", business="3", replaces=[doc_id])
    rep_id = await send(who[A].client, replacement)

    for linked, business in ((rev_id, "revocation"), (upd_id, "update"), (rep_id, "replacement")):
        view = await who[A].client.status(linked)
        assert view["to"] == sorted([B, C])  # routed to the original recipients (its To)
        assert view["document"]["original_packet"] == packet_id and view["document"]["business"] == business
        assert view["metadata"]["edxml"]["links"] == {doc_id: packet_id}
    view = await who[A].client.status(packet_id)
    assert [(e["type"]) for e in view["events"] if e["type"].startswith("document.")] == [
        "document.revoked", "document.updated", "document.replaced"]
    assert [x["packet"] for x in view["linked"]] == [rev_id, upd_id, rep_id]
    # Recipients see the history of the original too (B already acknowledged it).
    b_events = [e["type"] for e in (await who[B].client.status(packet_id))["events"]]
    assert "document.revoked" in b_events and "document.replaced" in b_events


async def test_only_the_original_sender_links_a_revocation(hub: Hub, make_actor: MakeActor) -> None:
    who = await setup(hub, make_actor)
    original = edoc(A, [B])
    doc_id = parse_packet(original).document_id
    packet_id = await send(who[A].client, original)
    forged = edoc(D, [B], business="1", response_for=[
        {"organ_id": A, "code": "125/UBND-VP", "document_id": doc_id, "promulgation_date": "2024/03/15"}])
    forged_id = await send(who[D].client, forged)
    assert (await who[D].client.status(forged_id))["metadata"]["edxml"]["links"] == {}
    view = await who[A].client.status(packet_id)
    assert not [e for e in view["events"] if e["type"].startswith("document.")] and view["linked"] == []


async def test_real_world_packets_route_and_link(hub: Hub, make_actor: MakeActor) -> None:
    """The fixtures: edoc_new from A to B, C (legacy), D; a status 03 from B; the replacement (UUID
    DocumentId, no signature, Bussiness before TraceHeader, xlink:href on the manifest) links to it."""
    who = await setup(hub, make_actor)
    new_id = await send(who[A].client, fixture("edoc_new"))
    assert (await who[A].client.status(new_id))["to"] == sorted([B, C, D])
    await receive(who[B], new_id)
    reply = await send(who[B].client, fixture("status_03"))
    assert (await who[B].client.status(reply))["document"]["original_packet"] == new_id
    rep_id = await send(who[A].client, fixture("edoc_replacement"))
    view = await who[A].client.status(rep_id)
    assert view["document"]["original_packet"] == new_id and view["document"]["business"] == "replacement"
    # Its To names B and C; D had the original too, so the hub adds it.
    assert view["to"] == sorted([B, C, D]) and view["metadata"]["edxml"]["added_recipients"] == [D]
    assert parse_packet(fixture("edoc_new")).document_id in view["metadata"]["edxml"]["replaces"]
    statuses = (await who[A].client.status(new_id))["business_status"]
    assert [(s["unit"], s["status_code"]) for s in statuses] == [(B, "03")]
