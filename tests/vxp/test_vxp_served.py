"""The hub's own `/vxp` routes, driven exactly as the national axis's Java SDK drives the axis.

Requests come from tests/national_axis/sdk_requests.py over a raw keep-alive socket: one
`SdkSession` per service object (fixed timestamp, a header map never cleared, HashMap order),
sendEdoc as the file plus CRLF with an unpadded hash-file, `docId` and `docid`, `Expect:
100-continue`. Answers are checked with `parse_like_sdk`, the SDK's strict reading.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import Actor, MakeActor
from ..edxml_hub.support import HUB_ID, A, B, C, add_units, edoc, status
from ..national_axis.sdk_requests import (
    RawConnection,
    RawRequest,
    RawResponse,
    SdkSession,
    parse_like_sdk,
    sdk_hash_file,
    send_raw,
)


def ok(operation: str, response: RawResponse) -> dict[str, Any]:
    assert response.status == 200, response.body[:300]
    data = parse_like_sdk(operation, response)
    assert data["status"] == "OK" and data["ErrorCode"] == "0", data
    return data


def refused(operation: str, response: RawResponse, code: str) -> dict[str, Any]:
    assert response.status == 200, response.body[:300]
    data = parse_like_sdk(operation, response)
    assert (data["status"], data["ErrorCode"]) == ("FAIL", code), data
    assert data["ErrorDesc"]
    return data


def sdk(actor: Actor, **kwargs: Any) -> SdkSession:
    """The SDK configured with the unit's application key: systemId = access key, secret = its secret."""
    assert actor.key.secret is not None
    return SdkSession(actor.key.access_key, actor.key.secret, base_path="/vxp", **kwargs)


async def units(hub: Hub, make_actor: MakeActor) -> dict[str, Actor]:
    await add_units(hub)
    return {u: await make_actor(u, existing=True) for u in (A, B, C)}


async def test_an_sdk_system_sends_receives_and_acknowledges_through_the_hub(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    sender, receiver = sdk(who[A]), sdk(who[B])
    packet = edoc(A, [B, C], subject="V/v báo cáo chuyển đổi số")
    async with RawConnection(hub.url) as conn:
        sent = ok("sendEdoc", await conn.send(sender.send_edoc(packet, from_=A, expect_continue=True)))
        doc_id = sent["DocId"]
        view = await who[A].client.status(doc_id)  # the DocId is the hub's packet id
        assert view["state"] == "accepted" and view["to"] == sorted([B, C]) and view["protocol"] == "vxp"
        assert view["subject"] == "V/v báo cáo chuyển đổi số"

        # The receiving system's loop, on one service object (ServiceTest's receive loop).
        assert ok("countReceiveEdoc", await conn.send(receiver.count()))["count"] == 1
        assert ok("countReceiveStatus", await conn.send(receiver.count("countReceiveStatus")))["count"] == 0
        listed = ok("getReceivedEdocList", await conn.send(receiver.received_list()))["data"]
        assert [(i["docId"], i["from"], i["to"], i["messageType"], i["status"]) for i in listed] == \
            [(doc_id, A, B, "edoc", "initial")]
        got = ok("getEdoc", await conn.send(receiver.get_edoc(doc_id)))
        edxml = base64.b64decode(got["data"])
        parsed = parse_packet(edxml)
        assert parsed.to_organ_ids == [B, C] and [t.organ_id for t in parsed.trace_headers] == [A, HUB_ID]
        assert parsed.attachments[0].sha256 == parse_packet(packet).attachments[0].sha256
        ok("updateStatus", await conn.send(receiver.update_status(doc_id, "done")))
        ok("updateStatus", await conn.send(receiver.update_status(doc_id, "done")))  # repeating is harmless
        assert ok("getReceivedEdocList", await conn.send(receiver.received_list()))["data"] == []

        # The third unit takes the same packet over REST.
        fetched = await who[C].client.fetch_bytes(doc_id)
        assert await who[C].client.ack(doc_id, hashlib.sha256(fetched).hexdigest()) == "delivered"
        rows = ok("getSentEdocList", await conn.send(sender.sent_list(doc_id)))["data"]
        assert sorted((r["toCode"], r["receiveStatus"]) for r in rows) == [(B, "done"), (C, "done")]
        assert {r["senderDocId"] for r in rows} == {doc_id} and rows[0]["title"] == "V/v báo cáo chuyển đổi số"

        # The recipient's business status comes back as a status packet on the sender's status list.
        reply = status(B, A, parsed.document_id, "03", "Tiếp nhận, vào sổ văn bản đến")
        status_id = ok("sendEdoc", await conn.send(receiver.send_edoc(reply, from_=B, message_type="status")))["DocId"]
        assert ok("getReceivedEdocList", await conn.send(sender.received_list("edoc")))["data"] == []
        statuses = ok("getReceivedEdocList", await conn.send(sender.received_list("status")))["data"]
        assert [(i["docId"], i["messageType"], i["from"]) for i in statuses] == [(status_id, "status", B)]
        # docId only: a stale `docid` beside a newer `docId` is refused by the shared verifier (see docs/vxp.md).
        assert parse_packet(base64.b64decode(
            ok("getEdoc", await conn.send(sender.get_edoc(status_id, both_cases=False)))["data"])).status_code == "03"
        ok("updateStatus", await conn.send(sender.update_status(status_id, "done")))
        rows = ok("getSentEdocList", await conn.send(sender.sent_list(doc_id)))["data"]
        assert "03" in next(r for r in rows if r["toCode"] == B)["receiveStatusDesc"]
    final = await who[A].client.status(doc_id)
    assert final["state"] == "completed" and {d["state"] for d in final["deliveries"]} == {"delivered"}


async def test_a_polling_system_is_online_and_its_clock_is_not_guessed(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    assert not hub.presence.is_online(B)
    (listed,) = await send_raw(hub.url, sdk(who[B]).received_list())  # an SDK timestamp from January 2024
    ok("getReceivedEdocList", listed)
    assert hub.presence.is_online(B)
    await hub.presence.flush()
    unit = await hub.directory.get_unit(B)
    assert unit is not None and unit.last_seen_at is not None and unit.clock_offset_seconds is None
    await who[B].client.inbox()  # a request of the hub's own protocol does measure the clock
    await send_raw(hub.url, sdk(who[B]).received_list())
    await hub.presence.flush()
    unit = await hub.directory.get_unit(B)
    assert unit is not None and unit.clock_offset_seconds is not None
    assert abs(unit.clock_offset_seconds) < 60  # kept, not replaced by a guess from the 2024 timestamp


async def test_a_replayed_upload_creates_nothing_new(hub: Hub, make_actor: MakeActor) -> None:
    """The SDK re-sends identical signed headers: the same request twice gives one packet, one DocId."""
    who = await units(hub, make_actor)
    request = sdk(who[A]).send_edoc(edoc(A, [B]), from_=A)
    first, second = await send_raw(hub.url, request, request)
    assert ok("sendEdoc", first)["DocId"] == ok("sendEdoc", second)["DocId"]
    assert len(await who[B].client.inbox()) == 1


async def test_the_same_upload_racing_on_two_connections_creates_one_packet(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    request = sdk(who[A]).send_edoc(edoc(A, [B], number="42"), from_=A)
    answers = await asyncio.gather(*(send_raw(hub.url, request) for _ in range(4)))
    assert len({ok("sendEdoc", a)["DocId"] for (a,) in answers}) == 1
    assert len(await who[B].client.inbox()) == 1


async def test_send_edoc_bodies_the_sdk_and_other_clients_write(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    session = sdk(who[A])
    one = edoc(A, [B], number="1")
    bare = session.send_edoc(one, from_=A)
    bare = RawRequest(bare.method, bare.path, bare.headers, one)  # no trailing CRLF: a client not copying the quirk
    two = edoc(A, [B], number="2")
    boundary = "===1714000000000==="
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file_doc\"; filename=\"a.edxml\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + two + f"\r\n--{boundary}--\r\n".encode()
    real = session.send_edoc(two, from_=A, to=[B])
    real = RawRequest(real.method, real.path,
                      [(k, f"multipart/form-data; boundary={boundary}" if k == "Content-Type" else v)
                       for k, v in real.headers], multipart)
    by_system_id = session.send_edoc(edoc(A, [B], number="3"), from_=who[A].key.access_key)
    answers = await send_raw(hub.url, bare, real, by_system_id)
    ids = [ok("sendEdoc", a)["DocId"] for a in answers]
    inbox = {p["id"]: p for p in await who[B].client.inbox()}
    assert set(ids) <= set(inbox) and len(set(ids)) == 3
    for doc_id, number in zip(ids, "123", strict=True):
        assert parse_packet(await who[B].client.fetch_bytes(doc_id)).code.number == number  # type: ignore[union-attr]


async def test_refusals_are_http_200_in_the_sdk_shape(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    session = sdk(who[A])
    good = session.send_edoc(edoc(A, [B]), from_=A)
    tampered_hash = good.replace("XroadVnpt-hash-header", "0" * 64)
    upper_hex = good.replace("XroadVnpt-hash-header", good.header("XroadVnpt-hash-header").upper())
    unknown = SdkSession("AKUNKNOWNKEY000000000000", "secret", base_path="/vxp").received_list()
    other_body = RawRequest(good.method, good.path, good.headers, edoc(A, [B], number="9") + b"\r\n")
    answers = await send_raw(hub.url, tampered_hash, unknown, other_body, upper_hex)
    refused("sendEdoc", answers[0], "401")
    refused("getReceivedEdocList", answers[1], "402")
    refused("sendEdoc", answers[2], "409")  # the body is bound to the signed hash-file
    ok("sendEdoc", answers[3])  # hex case is ignored
    unknown_op = RawRequest("POST", "/vxp/getEverything", session.received_list().headers, b"")
    (answer,) = await send_raw(hub.url, unknown_op)
    refused("getEverything", answer, "405")
    register = session.register_agency({"id": "", "pcode": "", "code": "000.00.09.H45", "name": "X", "mail": "",
                                        "mobile": "", "fax": ""})
    delete = session.delete_agency(B)
    answers = await send_raw(hub.url, register, delete)
    refused("registerAgency", answers[0], "403")
    refused("deleteAgency", answers[1], "403")
    assert await hub.directory.get_unit(B) is not None


async def test_what_the_hub_refuses_in_a_document_travels_with_its_code(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    session = sdk(who[A])
    broken = edoc(A, [B]).replace(b"<Subject>", b"<Subjekt>", 1).replace(b"</Subject>", b"</Subjekt>", 1)
    answers = await send_raw(
        hub.url,
        session.send_edoc(edoc(B, [C]), from_=A),  # From/OrganId is another unit
        session.send_edoc(edoc(A, ["000.00.00.H99"]), from_=A),  # not in the directory
        session.send_edoc(broken, from_=A),
        session.send_edoc(edoc(A, [B]), from_=B),  # `from` is not the caller
        session.send_edoc(edoc(A, [B]), from_=A, to=[C]),  # to disagrees with To
        session.send_edoc(edoc(A, [B]), from_=A, message_type="fax"),
    )
    assert "edxml.sender_mismatch" in refused("sendEdoc", answers[0], "403")["ErrorDesc"]
    assert "route.unknown_destination" in refused("sendEdoc", answers[1], "422")["ErrorDesc"]
    assert "edxml.invalid" in refused("sendEdoc", answers[2], "400")["ErrorDesc"]
    refused("sendEdoc", answers[3], "403")
    assert "edxml.destination_mismatch" in refused("sendEdoc", answers[4], "422")["ErrorDesc"]
    refused("sendEdoc", answers[5], "400")
    for answer in answers:
        assert parse_like_sdk("sendEdoc", answer)["DocId"] == ""
    assert await who[B].client.inbox() == [] and await who[C].client.inbox() == []


async def test_a_document_of_another_unit_is_not_found(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    (sent,) = await send_raw(hub.url, sdk(who[A]).send_edoc(edoc(A, [B]), from_=A))
    doc_id = ok("sendEdoc", sent)["DocId"]
    stranger = sdk(who[C])
    answers = await send_raw(hub.url, stranger.get_edoc(doc_id), stranger.update_status(doc_id, "done"),
                             stranger.download_edoc(doc_id), stranger.sent_list(doc_id))
    refused("getEdoc", answers[0], "404")
    refused("updateStatus", answers[1], "404")
    assert answers[2].status == 200 and json.loads(answers[2].body)["ErrorCode"] == "404"
    refused("getSentEdocList", answers[3], "404")
    receiver = sdk(who[B])
    early, fetched, done, failed = await send_raw(
        hub.url, receiver.update_status(doc_id, "done"), receiver.download_edoc(doc_id),
        receiver.update_status(doc_id, "done"), receiver.update_status(doc_id, "fail"))
    refused("updateStatus", early, "400")  # done before the document was fetched
    assert fetched.status == 200 and parse_packet(fetched.body).from_organ_id == A  # raw bytes, not JSON
    ok("updateStatus", done)
    ok("updateStatus", failed)  # after done: nothing left to refuse, and no error either
    assert (await who[A].client.status(doc_id))["state"] == "completed"


async def test_fail_refuses_the_delivery_and_other_words_change_nothing(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    (sent,) = await send_raw(hub.url, sdk(who[A]).send_edoc(edoc(A, [B]), from_=A))
    doc_id = ok("sendEdoc", sent)["DocId"]
    receiver = sdk(who[B])
    processing, listed, failed, after = await send_raw(
        hub.url, receiver.update_status(doc_id, "processing"), receiver.received_list(),
        receiver.update_status(doc_id, "fail"), receiver.received_list())
    ok("updateStatus", processing)
    assert [i["docId"] for i in ok("getReceivedEdocList", listed)["data"]] == [doc_id]
    ok("updateStatus", failed)
    assert ok("getReceivedEdocList", after)["data"] == []
    view = await who[A].client.status(doc_id)
    assert [d["state"] for d in view["deliveries"]] == ["failed"]


async def test_directory_operations_list_the_hub_units(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    await hub.directory.add_unit("vxp.saas.03", "Văn phòng Bộ Tài chính", zone="national")
    session = sdk(who[A])
    agencies, qd20, sync = await send_raw(hub.url, session.agencies(), session.agencies_qd20(),
                                          session.synchronize_units())
    codes = {a["code"]: a for a in ok("getAgenciesList", agencies)["data"]}
    assert {A, B, C, "vxp.saas.03"} <= set(codes) and codes[A]["name"] == f"Đơn vị {A}"
    assert {a["code"]: a["code102"] for a in ok("getAgenciesListQD20", qd20)["data"]}[C] == ""  # legacy code
    rows = ok("getSynchronizeUnit", sync)["data"]
    assert all(isinstance(r["version"], int) and r["deleted"] is False for r in rows)


async def test_keys_that_cannot_sign_vxp_and_revoked_keys(hub: Hub, make_actor: MakeActor) -> None:
    await add_units(hub)
    rsa = await make_actor(A, existing=True, algorithm="RSA-SHA256")
    hmac_actor = await make_actor(B, existing=True)
    as_rsa = SdkSession(rsa.key.access_key, "anything", base_path="/vxp")
    await hub.directory.revoke_key(hmac_actor.key.access_key)
    answers = await send_raw(hub.url, as_rsa.received_list(), sdk(hmac_actor).received_list())
    refused("getReceivedEdocList", answers[0], "401")
    refused("getReceivedEdocList", answers[1], "401")


async def test_a_hash_file_of_a_digest_with_small_bytes_is_matched_unpadded(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    for n in range(200):  # a packet whose digest has a byte below 0x10, so unpadded hex is shorter
        data = edoc(A, [B], number=str(100 + n))
        if len(sdk_hash_file(data)) < 64:
            break
    else:  # pragma: no cover - about 12% of digests have no such byte
        pytest.skip("no digest with a small byte found")
    (answer,) = await send_raw(hub.url, sdk(who[A]).send_edoc(data, from_=A))
    assert len(await who[B].client.inbox()) == 1 and ok("sendEdoc", answer)["DocId"]


async def test_a_head_on_a_download_answers_as_the_get_and_fetches_nothing(hub: Hub, make_actor: MakeActor) -> None:
    """The routes answer GET, so HEAD too: a HEAD must not make the sender see the document as fetched."""
    who = await units(hub, make_actor)
    (sent,) = await send_raw(hub.url, sdk(who[A]).send_edoc(edoc(A, [B]), from_=A))
    doc_id = ok("sendEdoc", sent)["DocId"]
    receiver = sdk(who[B])

    async def head(request: RawRequest) -> tuple[int, dict[str, str], bytes]:
        async with aiohttp.ClientSession() as http, http.head(
                hub.url + request.path, headers=CIMultiDict(request.headers)) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def state() -> str:
        return str((await who[A].client.status(doc_id))["deliveries"][0]["state"])

    before = await state()
    answers = [await head(receiver.download_edoc(doc_id)), await head(receiver.get_edoc(doc_id))]
    assert [(status, body) for status, _, body in answers] == [(200, b""), (200, b"")]
    assert await state() == before == "queued"

    got_edoc, downloaded = await send_raw(hub.url, receiver.get_edoc(doc_id), receiver.download_edoc(doc_id))
    assert parse_packet(downloaded.body).from_organ_id == A and await state() == "fetched"
    varying = ("date", "x-request-id")
    for (_, head_headers, _), got in zip(answers, (downloaded, got_edoc), strict=True):
        assert {k: v for k, v in head_headers.items() if k.lower() not in varying} == \
            {k: v for k, v in got.headers if k.lower() not in varying}


async def test_operations_that_send_or_change_are_post_only(hub: Hub, make_actor: MakeActor) -> None:
    """updateStatus and sendEdoc asked by GET (what a proxy may repeat on its own) are refused in the
    SDK's shape and change nothing; the reads still answer a GET."""
    who = await units(hub, make_actor)
    (sent,) = await send_raw(hub.url, sdk(who[A]).send_edoc(edoc(A, [B]), from_=A))
    doc_id = ok("sendEdoc", sent)["DocId"]
    receiver, sender = sdk(who[B]), sdk(who[A])

    async def by_get(operation: str, request: RawRequest) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(
                hub.url + request.path, headers=CIMultiDict(request.headers), data=request.body or None) as resp:
            body = await resp.read()
            assert resp.status == 200, body[:300]
            return dict(json.loads(body))

    done = await by_get("updateStatus", receiver.update_status(doc_id, "done"))
    assert (done["status"], done["ErrorCode"]) == ("FAIL", "400") and "POST" in done["ErrorDesc"]
    again = await by_get("sendEdoc", sender.send_edoc(edoc(A, [B], number="77"), from_=A))
    assert (again["status"], again["ErrorCode"]) == ("FAIL", "400")
    assert [d["state"] for d in (await who[A].client.status(doc_id))["deliveries"]] == ["queued"]
    assert len(await who[B].client.inbox()) == 1
    listed = await by_get("getReceivedEdocList", receiver.received_list())
    assert (listed["status"], [i["docId"] for i in listed["data"]]) == ("OK", [doc_id])
