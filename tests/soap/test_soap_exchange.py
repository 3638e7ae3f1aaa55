"""A VBQL system with zeep, knowing only the WSDL and the signing rules, completes the exchange."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
import zeep
from lxml import etree

from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import MakeActor, raw_request
from ..edxml_hub.support import HUB_ID, A, B, C, D, add_units, edoc, fixture, status
from .soap_support import TNS, zeep_client


async def zeep_for(hub: Hub, make_actor: MakeActor, *units: str) -> dict[str, zeep.Client]:
    await add_units(hub)
    out = {}
    for unit in units:
        actor = await make_actor(unit, existing=True)
        out[unit] = await asyncio.to_thread(zeep_client, actor)
    return out


def call(client: Any, operation: str, **kwargs: Any) -> Any:
    """A zeep call off the event loop (zeep is synchronous; the hub runs on this loop)."""
    return asyncio.to_thread(getattr(client.service, operation), **kwargs)


async def test_wsdl_is_served_with_the_hubs_address(hub: Hub) -> None:
    texts = []
    for path in ("/soap/edxml?wsdl", "/soap/edxml", "/soap/edxml.wsdl"):
        status, headers, body = await raw_request(hub.url, "GET", path)
        assert status == 200 and headers["Content-Type"].startswith("text/xml")
        texts.append(body)
    assert texts[0] == texts[1] == texts[2]
    root = etree.fromstring(texts[0])
    addresses = [a.get("location") for a in root.iter("{*}address")]
    assert addresses == [hub.url + "/soap/edxml"] * 2
    ops = {o.get("name") for o in root.iter("{http://schemas.xmlsoap.org/wsdl/}operation")}
    assert ops == {"sendEdoc", "getReceivedEdocList", "getEdoc", "updateStatus", "getSentEdocList",
                   "getAgenciesList"}


async def test_vbql_exchange_end_to_end(hub: Hub, make_actor: MakeActor) -> None:
    """A sends an edoc to B and C; B receives, acknowledges, answers 03; A receives the status
    and sees delivery and business status per destination; C (SOAP 1.2) refuses its copy."""
    z = await zeep_for(hub, make_actor, A, B, C)
    data = edoc(A, [B, C], subject="V/v họp giao ban tháng 4")
    doc_id = parse_packet(data).document_id
    sent = await call(z[A], "sendEdoc", edxml=data)
    assert sent.messageType == "edoc" and sent.documentId == doc_id and sorted(sent.to) == sorted([B, C])

    (item,) = await call(z[B], "getReceivedEdocList", messageType="edoc")
    assert item.packetId == sent.packetId and item["from"] == A and item.documentId == doc_id
    assert item.codeNumber == "125" and item.subject == "V/v họp giao ban tháng 4" and item.priority == 1
    got = await call(z[B], "getEdoc", packetId=sent.packetId)
    assert hashlib.sha256(got.edxml).hexdigest() == got.sha256 == item.sha256 and got.size == len(got.edxml)
    packet = parse_packet(got.edxml)
    assert packet.to_json()["message_header"] == parse_packet(data).to_json()["message_header"]
    assert [t.organ_id for t in packet.trace_headers] == [A, HUB_ID]
    done = await call(z[B], "updateStatus", packetId=sent.packetId, status="done")
    assert done.state == "delivered"
    assert await call(z[B], "getReceivedEdocList") == []

    reply = await call(z[B], "sendEdoc", edxml=status(B, A, doc_id, "03", "Tiếp nhận, vào sổ văn bản đến"))
    assert reply.messageType == "status" and reply.to == [A] and reply.documentId == doc_id
    (incoming,) = await call(z[A], "getReceivedEdocList", messageType="status")
    assert incoming.packetId == reply.packetId and incoming.statusCode == "03" and incoming["from"] == B
    assert await call(z[A], "getReceivedEdocList", messageType="edoc") == []
    status_packet = await call(z[A], "getEdoc", packetId=reply.packetId)
    assert parse_packet(status_packet.edxml).status_code == "03"
    assert (await call(z[A], "updateStatus", packetId=reply.packetId, status="done")).state == "delivered"

    # C speaks SOAP 1.2 and refuses its copy.
    c12 = z[C].bind("LgspEdxmlService", "LgspEdxmlSoap12")
    refused = await asyncio.to_thread(c12.updateStatus, packetId=sent.packetId, status="fail",
                                      reason="Sai địa chỉ nhận")
    assert refused.state == "failed"

    rows = {r.to: r for r in await call(z[A], "getSentEdocList", packetId=sent.packetId)}
    assert rows[B].deliveryState == "delivered" and rows[B].statusCode == "03"
    assert rows[B].statusDescription == "Tiếp nhận, vào sổ văn bản đến" and rows[B].statusPacketId == reply.packetId
    assert rows[C].deliveryState == "failed" and rows[C].reason == "Sai địa chỉ nhận" and rows[C].statusCode is None
    by_doc = await call(z[A], "getSentEdocList", documentId=doc_id)
    assert {(r.packetId, r.to) for r in by_doc} == {(sent.packetId, B), (sent.packetId, C)}

    agencies = await call(z[B], "getAgenciesList", query="H45")
    assert {a.code for a in agencies} == {A, B} and all(a.format == "edxml" for a in agencies)


async def test_received_list_reads_past_other_data_types(hub: Hub, make_actor: MakeActor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """edXML behind a long queue of other packets is still listed (the inbox is read page by page)."""
    from lgsp.adapters.soap_edxml import service

    monkeypatch.setattr(service, "_INBOX_PAGE", 2)
    z = await zeep_for(hub, make_actor, A, B)
    rest_a = await make_actor(A, existing=True)
    for n in range(5):  # flash binary packets: ahead of the edoc in B's inbox
        await rest_a.client.send(f"tệp {n}".encode(), [B], subject=f"Tệp {n}", priority=3)
    sent = await call(z[A], "sendEdoc", edxml=edoc(A, [B]))
    sent_status = await call(z[A], "sendEdoc", edxml=status(A, B, "000.00.00.H45,2024/01/01,1/UBND", "13"))
    assert [i.packetId for i in await call(z[B], "getReceivedEdocList", messageType="edoc")] == [sent.packetId]
    assert [i.packetId for i in await call(z[B], "getReceivedEdocList", messageType="status")] == [
        sent_status.packetId]
    assert [i.packetId for i in await call(z[B], "getReceivedEdocList", limit=1)] == [sent.packetId]


async def test_received_list_misses_nothing_when_the_inbox_changes_between_pages(
        hub: Hub, make_actor: MakeActor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packet leaving the inbox while the list is read page by page does not hide the next one
    (each page starts after the last row read, not at an offset)."""
    from lgsp.adapters.soap_edxml import service
    from lgsp.core import documents

    monkeypatch.setattr(service, "_INBOX_PAGE", 2)
    z = await zeep_for(hub, make_actor, A, B)
    rest_a, rest_b = await make_actor(A, existing=True), await make_actor(B, existing=True)
    first = await rest_a.client.send(b"tep 1", [B], subject="Tệp 1", priority=3)
    await rest_a.client.send(b"tep 2", [B], subject="Tệp 2", priority=3)
    sent = await call(z[A], "sendEdoc", edxml=edoc(A, [B]))  # priority 1: third in B's inbox
    real_get_many = documents.get_many
    refused: list[str] = []

    async def get_many_while_b_refuses_one(conn: Any, ids: list[str]) -> Any:
        if not refused:  # after the first page was read: B's other system refuses its first packet
            refused.append(await rest_b.client.fail(first, "không thuộc thẩm quyền"))
        return await real_get_many(conn, ids)

    monkeypatch.setattr(documents, "get_many", get_many_while_b_refuses_one)
    listed = await call(z[B], "getReceivedEdocList")
    assert refused == ["failed"]
    assert [i.packetId for i in listed] == [sent.packetId]


async def test_updatestatus_done_needs_the_packet_fetched_or_its_hash(hub: Hub, make_actor: MakeActor) -> None:
    z = await zeep_for(hub, make_actor, A, B)
    sent = await call(z[A], "sendEdoc", edxml=edoc(A, [B]))
    with pytest.raises(zeep.exceptions.Fault) as err:
        await call(z[B], "updateStatus", packetId=sent.packetId, status="done")
    assert err.value.detail.find(f"{{{TNS}}}problem/{{{TNS}}}code").text == "conflict"
    (item,) = await call(z[B], "getReceivedEdocList")
    with pytest.raises(zeep.exceptions.Fault) as err:
        await call(z[B], "updateStatus", packetId=sent.packetId, status="done", sha256="0" * 64)
    assert err.value.detail.find(f"{{{TNS}}}problem/{{{TNS}}}code").text == "content.hash_mismatch"
    ok = await call(z[B], "updateStatus", packetId=sent.packetId, status="done", sha256=item.sha256)
    assert ok.state == "delivered"


async def test_outsiders_see_nothing(hub: Hub, make_actor: MakeActor) -> None:
    z = await zeep_for(hub, make_actor, A, B, D)
    sent = await call(z[A], "sendEdoc", edxml=edoc(A, [B]))
    for operation, kwargs in (("getEdoc", {"packetId": sent.packetId}),
                              ("getSentEdocList", {"packetId": sent.packetId}),
                              ("updateStatus", {"packetId": sent.packetId, "status": "fail"})):
        with pytest.raises(zeep.exceptions.Fault) as err:
            await call(z[D], operation, **kwargs)
        assert err.value.code == "soap:Client"
        assert err.value.detail.find(f"{{{TNS}}}problem/{{{TNS}}}code").text == "not_found"


async def test_real_world_packets_over_soap(hub: Hub, make_actor: MakeActor) -> None:
    """The fixture packets (multiple To with a legacy code, MIME-wrapped Base64 outside the envelope,
    Signature without namespace) go through SOAP unchanged but for the hub's TraceHeader."""
    z = await zeep_for(hub, make_actor, A, B, C, D)
    data = fixture("edoc_new")
    sent = await call(z[A], "sendEdoc", edxml=data)
    assert sorted(sent.to) == sorted([B, C, D])
    got = parse_packet((await call(z[C], "getEdoc", packetId=sent.packetId)).edxml)
    original = parse_packet(data)
    assert got.header["signature"] == original.header["signature"]
    assert [a.sha256 for a in got.attachments] == [a.sha256 for a in original.attachments]
    reply = await call(z[B], "sendEdoc", edxml=fixture("status_05"))
    assert reply.to == [A] and reply.messageType == "status"
    rows = {r.to: r for r in await call(z[A], "getSentEdocList", packetId=sent.packetId)}
    assert rows[B].statusCode == "05" and rows[C].deliveryState == "fetched"
