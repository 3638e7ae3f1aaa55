"""edXML on the REST exchange: routing by the header, the hub's TraceHeader, variants per destination."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lgsp.client import LgspClient, LgspError
from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub
from tests.blob_support import inline_keys

from ..conftest import MakeActor
from .support import (
    HUB_ID,
    A,
    B,
    C,
    D,
    add_units,
    blob_files,
    bundle,
    edoc,
    edoc_json,
    fixture,
    sha,
    status_json,
)


async def send(client: LgspClient, data: bytes, *, data_type: str = "edxml", **body: Any) -> str:
    """Create (destinations, subject and priority left to the content unless given) and upload."""
    created = await client.call("POST", "/v1/packets", {"data_type": data_type, "size": len(data),
                                                        "sha256": sha(data), **body})
    await client.upload(created["upload"]["url"], data, sha(data))
    return str(created["id"])


async def actors(hub: Hub, make_actor: MakeActor, *units: str) -> dict[str, Any]:
    await add_units(hub)
    return {u: await make_actor(u, existing=True) for u in units}


async def test_destinations_subject_priority_from_the_header_and_the_hub_trace(
        hub: Hub, make_actor: MakeActor, tmp_path: Path) -> None:
    who = await actors(hub, make_actor, A, B, C)
    data = edoc(A, [B, C], subject="V/v báo cáo quý I", priority="2")
    async with who[B].client.events() as stream:
        assert (await anext(aiter(stream)))["type"] == "hello"
        packet_id = await send(who[A].client, data)
        available = await asyncio.wait_for(anext(aiter(stream)), 2)
    view = await who[A].client.status(packet_id)
    assert view["to"] == sorted([B, C]) and view["subject"] == "V/v báo cáo quý I" and view["priority"] == 2
    meta = view["metadata"]["edxml"]
    assert meta["document_id"] == f"{A},2024/03/15,125/UBND-VP" and meta["code"] == "125/UBND-VP"
    assert meta["due_date"] == "2024/06/30" and meta["priority"] == 2 and meta["kind"] == "edoc"
    assert meta["document_type"]["type_name"] == "Công văn" and meta["bussiness_doc_type"] == 0
    assert meta["trace"][-1]["organ_id"] == HUB_ID and len(meta["trace"]) == 2
    assert sorted(view["metadata"]["implicit"]) == ["priority", "subject", "to"]
    assert view["document"]["document_id"] == meta["document_id"]
    (edxml_variant,) = [v for v in view["variants"] if v["variant"] == "edxml"]
    # The upload, small, is kept in the store (inspected from memory, never a file); variants are files.
    assert len(data) <= hub.config.blobs.inline_bytes
    (upload_key,) = await inline_keys(hub, packet_id)
    assert blob_files(hub) and all(p.name.startswith(upload_key + "-") for p in blob_files(hub))

    # B gets the packet with the hub's TraceHeader: its own bytes, size and hash everywhere.
    got = await who[B].client.fetch_bytes(packet_id)
    assert got != data and sha(got) == edxml_variant["sha256"] and len(got) == edxml_variant["size"]
    assert available["type"] == "packet.available" and available["sha256"] == sha(got)
    assert available["size"] == len(got) and available["subject"] == "V/v báo cáo quý I"
    (item,) = await who[B].client.inbox()
    assert item["sha256"] == sha(got) and item["size"] == len(got) and item["data_type"] == "edxml"
    trace = parse_packet(got).trace_headers
    assert [t.organ_id for t in trace] == [A, HUB_ID]
    assert parse_packet(got).to_json()["attachments"][0]["sha256"] == parse_packet(data).attachments[0].sha256
    b_view = await who[B].client.status(packet_id)
    assert b_view["sha256"] == sha(got) and b_view["variant"] == "edxml"
    # The download's X-LGSP-Content-SHA256 is the variant's (the client checks the file against it).
    assert await who[B].client.download(packet_id, tmp_path / "got.edxml") == sha(got)

    with pytest.raises(LgspError) as err:
        await who[B].client.ack(packet_id, sha(data))  # the upload's hash is not what B received
    assert err.value.code == "content.hash_mismatch"
    assert await who[B].client.ack(packet_id, sha(got)) == "delivered"
    got_c = await who[C].client.fetch_bytes(packet_id)
    assert got_c == got  # same format (edxml): same variant
    assert await who[C].client.ack(packet_id, sha(got_c)) == "delivered"
    view = await who[A].client.status(packet_id)
    assert view["state"] == "completed" and view["content"] == "purged"
    assert blob_files(hub) == [] and await inline_keys(hub, packet_id) == []  # the upload and every variant are gone


async def test_json_destination_gets_the_json_form_and_its_attachments(hub: Hub, make_actor: MakeActor) -> None:
    who = await actors(hub, make_actor, A, B, C)
    await hub.content.set_format(C, "edxml", "json")
    files = {"cid:1": "Tệp một — ký tự đặc biệt & < >".encode(), "cid:2": b"PK\x03\x04" + bytes(range(256)) * 40}
    data = edoc(A, [B, C], files=files)
    packet_id = await send(who[A].client, data, to=[B, C])

    (item,) = await who[C].client.inbox()
    assert item["data_type"] == "edxml+json"
    raw = await who[C].client.fetch_bytes(packet_id)
    assert sha(raw) == item["sha256"]
    form = json.loads(raw)
    assert form["format"] == "edxml-json/1" and form["kind"] == "edoc"
    assert form["trace_header_list"]["trace_header"][-1]["organ_id"] == HUB_ID
    assert [a["content_id"] for a in form["attachments"]] == ["cid:1", "cid:2"]
    for entry, (cid, content) in zip(form["attachments"], files.items(), strict=True):
        assert entry["ref"].startswith(f"/v1/packets/{packet_id}/attachments/") and entry["content_id"] == cid
        status, headers, body = await who[C].raw("GET", entry["ref"])
        assert status == 200 and body == content
        assert headers["X-LGSP-Content-SHA256"] == sha(content) == entry["sha256"]
    assert form["attachments"][1]["is_zip"] is True
    # Only readers of the packet may fetch its attachments.
    outsider = await make_actor(D, existing=True)
    status, _, body = await outsider.raw("GET", form["attachments"][0]["ref"])
    assert status == 404 and body["code"] == "not_found"
    status, _, body = await who[C].raw("GET", f"/v1/packets/{packet_id}/attachments/9")
    assert status == 404

    assert (await who[B].client.inbox())[0]["data_type"] == "edxml"
    assert await who[C].client.ack(packet_id, sha(raw)) == "delivered"
    status, _, body = await who[C].raw("GET", form["attachments"][0]["ref"])
    assert status == 410 and body["code"] == "content.gone"  # its delivery has ended
    got_b = await who[B].client.fetch_bytes(packet_id)
    assert await who[B].client.ack(packet_id, sha(got_b)) == "delivered"
    assert blob_files(hub) == []


async def test_attachment_endpoint_streams_the_exact_bytes(hub: Hub, make_actor: MakeActor) -> None:
    who = await actors(hub, make_actor, A, B)
    await hub.content.set_format(B, "edxml", "json")
    content = bytes(range(256)) * 4096  # 1 MiB
    packet_id = await send(who[A].client, edoc(A, [B], files={"cid:9": content}))
    form = json.loads(await who[B].client.fetch_bytes(packet_id))
    status, headers, body = await who[B].raw("GET", form["attachments"][0]["ref"])
    assert status == 200 and body == content and headers["Content-Disposition"].endswith("tep-1.txt")
    status, headers, body = await who[B].raw("GET", form["attachments"][0]["ref"], headers={"Range": "bytes=1000-"})
    assert status == 206 and body == content[1000:]


async def test_request_to_must_agree_with_the_header(hub: Hub, make_actor: MakeActor) -> None:
    who = await actors(hub, make_actor, A, B, C, D)
    data = edoc(A, [B, C])
    created = await who[A].client.call("POST", "/v1/packets", {
        "to": [B, D], "subject": "x", "data_type": "edxml", "size": len(data), "sha256": sha(data)})
    with pytest.raises(LgspError) as err:
        await who[A].client.upload(created["upload"]["url"], data, sha(data))
    assert err.value.status == 422 and err.value.code == "edxml.destination_mismatch"
    assert err.value.body["in_packet"] == [B, C] and sorted(err.value.body["in_request"]) == sorted([B, D])
    view = await who[A].client.status(created["id"])
    assert view["state"] == "created" and view["content"] == "none"
    assert view["events"][-1]["type"] == "content.rejected" and "names" in view["events"][-1]["reason"]
    assert blob_files(hub) == []
    # Agreeing lists (any order) are fine, and the request's subject and priority stand.
    packet_id = await send(who[A].client, data, to=[C, B], subject="Tiêu đề của yêu cầu", priority=3)
    view = await who[A].client.status(packet_id)
    assert view["state"] == "accepted" and view["subject"] == "Tiêu đề của yêu cầu" and view["priority"] == 3
    assert "implicit" not in view["metadata"]


async def test_sender_must_be_the_authenticated_unit(hub: Hub, make_actor: MakeActor) -> None:
    who = await actors(hub, make_actor, A, B)
    data = edoc(B, [A])  # From says B, but A sends it
    with pytest.raises(LgspError) as err:
        await send(who[A].client, data)
    assert err.value.status == 403 and err.value.code == "edxml.sender_mismatch"
    assert err.value.body["path"].endswith("/MessageHeader/From/OrganId") and B in err.value.detail
    assert await who[B].client.inbox() == [] and blob_files(hub) == []


async def test_unknown_recipient_in_to_and_the_packet_stays_uploadable(hub: Hub, make_actor: MakeActor) -> None:
    who = await actors(hub, make_actor, A, B)
    data = edoc(A, [B, "000.00.00.H99"])
    created = await who[A].client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                               "sha256": sha(data)})
    with pytest.raises(LgspError) as err:
        await who[A].client.upload(created["upload"]["url"], data, sha(data))
    assert err.value.code == "route.unknown_destination" and err.value.body["unknown"] == ["000.00.00.H99"]
    assert await who[B].client.inbox() == [] and blob_files(hub) == []
    # Nothing was kept and the packet still waits: once the unit exists, the same upload succeeds.
    await hub.directory.add_unit("000.00.00.H99", "Đơn vị mới")
    accepted = await who[A].client.upload(created["upload"]["url"], data, sha(data))
    assert accepted["state"] == "accepted"
    view = await who[A].client.status(created["id"])
    assert view["to"] == sorted([B, "000.00.00.H99"])
    assert [e["type"] for e in view["events"]].count("content.rejected") == 1


async def test_real_world_shaped_packet_routes_to_a_legacy_code(hub: Hub, make_actor: MakeActor) -> None:
    """edoc_new: three To (one the legacy 28.22.H17), MIME-wrapped Base64 outside the envelope,
    a Signature without its own namespace; one destination takes JSON."""
    who = await actors(hub, make_actor, A, B, C, D)
    await hub.content.set_format(D, "edxml", "json")
    data = fixture("edoc_new")
    packet_id = await send(who[A].client, data)
    view = await who[A].client.status(packet_id)
    assert view["to"] == sorted([B, C, D])
    assert view["metadata"]["edxml"]["irregular_organ_ids"] == [C]
    assert view["metadata"]["edxml"]["signature"] is True
    original = parse_packet(data)
    for unit in (B, C):
        got = parse_packet(await who[unit].client.fetch_bytes(packet_id))
        assert [a.sha256 for a in got.attachments] == [a.sha256 for a in original.attachments]
        assert got.header["signature"] == original.header["signature"]
        assert got.trace_headers[:-1] == original.trace_headers and got.trace_headers[-1].organ_id == HUB_ID
    form = json.loads(await who[D].client.fetch_bytes(packet_id))
    assert form["signature"] == original.header["signature"]
    assert [a["sha256"] for a in form["attachments"]] == [a.sha256 for a in original.attachments]
    for entry in form["attachments"]:
        status, headers, _ = await who[D].raw("GET", entry["ref"])
        assert status == 200 and headers["X-LGSP-Content-SHA256"] == entry["sha256"]


async def test_json_form_source_as_a_zip_bundle(hub: Hub, make_actor: MakeActor) -> None:
    """A JSON-speaking source sends edxml+json (edxml.json + files); an edXML destination gets edXML."""
    who = await actors(hub, make_actor, A, B, C)
    await hub.content.set_format(C, "edxml", "json")
    content = "Báo cáo tháng 3".encode() * 1000
    document, files = edoc_json(A, [B, C], files={"cid:77": content})
    data = bundle(document, files)
    packet_id = await send(who[A].client, data, data_type="edxml+json")
    got = parse_packet(await who[B].client.fetch_bytes(packet_id))
    assert got.from_organ_id == A and got.to_organ_ids == [B, C]
    assert [t.organ_id for t in got.trace_headers] == [A, HUB_ID]
    assert got.attachments[0].sha256 == sha(content)
    form = json.loads(await who[C].client.fetch_bytes(packet_id))
    status, _, body = await who[C].raw("GET", form["attachments"][0]["ref"])
    assert status == 200 and body == content
    view = await who[A].client.status(packet_id)
    assert view["data_type"] == "edxml+json" and view["metadata"]["edxml"]["kind"] == "edoc"


async def test_json_form_source_errors_name_the_path(hub: Hub, make_actor: MakeActor) -> None:
    who = await actors(hub, make_actor, A, B)
    document, files = edoc_json(A, [B])
    broken = bundle(document, files).replace(b"files/tep-1.txt", b"files/tep-X.txt", 1)  # member renamed
    with pytest.raises(LgspError) as err:
        await send(who[A].client, broken, data_type="edxml+json")
    assert err.value.code in ("edxml.invalid", "edxml.malformed")
    bare = json.dumps(document).encode()  # attachments but no bundle to hold them
    with pytest.raises(LgspError) as err:
        await send(who[A].client, bare, data_type="edxml+json")
    assert err.value.code == "edxml.invalid" and "$.attachments" in err.value.body["path"]
    document["message_header"]["to"][0]["organ_id"] = ""
    with pytest.raises(LgspError) as err:
        await send(who[A].client, bundle(document, files), data_type="edxml+json")
    assert err.value.code == "edxml.invalid" and err.value.body["path"].endswith("To[1]/OrganId")
    status = json.dumps(status_json(A, B, "x", "01")).encode()
    assert await send(who[A].client, status, data_type="edxml+json")  # a bare status needs no bundle
    assert blob_files(hub) != []


async def test_organ_ids_of_other_systems_route_both_ways(hub: Hub, make_actor: MakeActor) -> None:
    """A legacy unit with another system's code (`vxp.saas.02`) is an edXML To and a From/OrganId."""
    vxp = "vxp.saas.02"
    who = await actors(hub, make_actor, A)
    other = await make_actor(vxp, "Hệ thống VXP", legacy=True)
    to_vxp = await send(who[A].client, edoc(A, [vxp]))
    view = await who[A].client.status(to_vxp)
    assert view["to"] == [vxp] and view["metadata"]["edxml"]["irregular_organ_ids"] == [vxp]
    got = await other.client.fetch_bytes(to_vxp)
    assert parse_packet(got).to_organ_ids == [vxp]
    assert await other.client.ack(to_vxp, sha(got)) == "delivered"
    from_vxp = await send(other.client, edoc(vxp, [A], number="7"))
    assert (await who[A].client.status(from_vxp))["from"] == vxp
    with pytest.raises(LgspError) as err:  # From/OrganId must still be the authenticated unit, case included
        await send(other.client, edoc("VXP.SAAS.02", [A], number="8"))
    assert err.value.code == "edxml.sender_mismatch"
