"""What the Java SDK sends, byte for byte over a raw socket, is accepted and answered in its shape.

The requests come from sdk_requests.py (fixed timestamp, re-sent headers, HashMap key order,
sendEdoc as file plus CRLF in application/octet-stream, unpadded hash-file, Expect: 100-continue,
docId and docid); every answer is checked with the SDK's strict parsing (parse_like_sdk).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from lgsp.adapters.national_axis.protocol import AxisCode

from .conftest import DEPARTMENT, MINISTRY_CODE, PROVINCE, AxisSimHandle, fixture_bytes
from .sdk_requests import RawRequest, RawResponse, SdkSession, parse_like_sdk, sdk_hash_file, send_raw

EDOC = fixture_bytes("edoc_new.edxml")


def ok(operation: str, response: RawResponse) -> dict[str, Any]:
    assert response.status == 200, response.body[:300]
    data = parse_like_sdk(operation, response)
    assert (data["status"], data["ErrorCode"]) == ("OK", "0"), data
    return data


def refused(operation: str, response: RawResponse, code: str) -> dict[str, Any]:
    assert response.status == 200, response.body[:300]
    data = parse_like_sdk(operation, response)
    assert (data["status"], data["ErrorCode"]) == ("FAIL", code), data
    assert isinstance(data["ErrorDesc"], str) and data["ErrorDesc"]
    return data


async def test_the_receive_loop_of_service_test_on_one_service_object(axis_sim: AxisSimHandle) -> None:
    first, second = fixture_bytes("edoc_update.edxml"), fixture_bytes("edoc_replacement.edxml")
    [doc1] = await axis_sim.inject(DEPARTMENT.agency_code, first, from_code=MINISTRY_CODE)
    [doc2] = await axis_sim.inject(DEPARTMENT.agency_code, second, from_code=MINISTRY_CODE)
    sdk = axis_sim.sdk(DEPARTMENT)

    count, listing = await send_raw(axis_sim.url, sdk.count(), sdk.received_list())
    assert ok("countReceiveEdoc", count)["count"] == 2
    rows = ok("getReceivedEdocList", listing)["data"]
    assert isinstance(rows, list) and [r["docId"] for r in rows] == [doc1, doc2]
    assert rows[0]["from"] == MINISTRY_CODE and rows[0]["to"] == DEPARTMENT.agency_code

    get1, done1 = sdk.get_edoc(doc1), sdk.update_status(doc1, "done")
    get2, fail2 = sdk.get_edoc(doc2), sdk.update_status(doc2, "fail")
    # The header map is never cleared: updateStatus re-sends and re-signs earlier keys.
    for name in ("XroadVnpt-servicetype", "XroadVnpt-messagetype", "XroadVnpt-filePath", "XroadVnpt-docid"):
        assert done1.header(name)
    assert get1.header("XroadVnpt-docId") == get1.header("XroadVnpt-docid") == doc1
    assert get1.header("XroadVnpt-timestamp") == fail2.header("XroadVnpt-timestamp")  # fixed for the object
    answers = await send_raw(axis_sim.url, get1, done1, get2, fail2, sdk.received_list())
    assert base64.b64decode(ok("getEdoc", answers[0])["data"]) == first
    assert base64.b64decode(ok("getEdoc", answers[2])["data"]) == second
    ok("updateStatus", answers[1])
    ok("updateStatus", answers[3])
    assert answers[0].interim == [100]  # {} bodies go out after 100-continue
    assert ok("getReceivedEdocList", answers[4])["data"] == []


async def test_identical_requests_from_one_service_object_are_all_served(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(DEPARTMENT)
    request = sdk.received_list()
    answers = await send_raw(axis_sim.url, request, request, request)
    assert all(ok("getReceivedEdocList", a)["data"] == [] for a in answers)


@pytest.mark.parametrize("expect_continue", [False, True])
async def test_send_edoc_as_the_sdk_writes_it(axis_sim: AxisSimHandle, expect_continue: bool) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    request = sdk.send_edoc(EDOC, PROVINCE.agency_code, expect_continue=expect_continue)
    assert request.body == EDOC + b"\r\n" and request.header("Content-Type") == "application/octet-stream"
    assert request.header("XroadVnpt-sign-header-key") == (
        "systemid;servicetype;messagetype;hash-file;from;timestamp;Content-Type")
    [answer] = await send_raw(axis_sim.url, request)
    doc_id = ok("sendEdoc", answer)["DocId"]
    assert isinstance(doc_id, str) and doc_id
    [sent] = axis_sim.simulator.sent(PROVINCE.system_id)
    assert sent.doc_id == doc_id and sent.content == EDOC  # stored without the trailing CRLF
    assert [d.agency_code for d in sent.deliveries] == ["000.02.31.H45", "28.22.H17", "000.00.00.H41"]

    [rows] = await send_raw(axis_sim.url, sdk.sent_list(doc_id))
    items = ok("getSentEdocList", rows)["data"]
    assert isinstance(items, list) and [i["toCode"] for i in items] == [d.agency_code for d in sent.deliveries]
    assert {i["senderDocId"] for i in items} == {doc_id} and items[0]["notation"] == "125/QĐ-UBND"


async def test_send_edoc_with_to_as_json_text_and_the_system_id_as_from(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    [answer] = await send_raw(axis_sim.url, sdk.send_edoc(EDOC, PROVINCE.system_id, to=["000.00.00.H41"]))
    ok("sendEdoc", answer)
    [sent] = axis_sim.simulator.sent()
    assert [d.agency_code for d in sent.deliveries] == ["000.00.00.H41"]
    assert axis_sim.simulator.pending("000.00.00.H41") == [sent.deliveries[0].receiver_doc_id]


async def test_a_replayed_upload_creates_nothing_new(axis_sim: AxisSimHandle) -> None:
    request = axis_sim.sdk(PROVINCE).send_edoc(EDOC, PROVINCE.agency_code)
    first, again = await send_raw(axis_sim.url, request, request)
    assert ok("sendEdoc", first)["DocId"] == ok("sendEdoc", again)["DocId"]
    assert len(axis_sim.simulator.sent()) == 1
    assert len(axis_sim.simulator.pending(DEPARTMENT.agency_code)) == 1


def resign(request: RawRequest, members: dict[str, str], secret: str) -> RawRequest:
    """The request with another sign-header and its valid HMAC (a client signing other values)."""
    sign_header = json.dumps(members, separators=(",", ":"), ensure_ascii=False)
    digest = hmac.new(secret.encode(), sign_header.encode(), hashlib.sha256).hexdigest()
    return request.replace("XroadVnpt-sign-header", sign_header).replace("XroadVnpt-hash-header", digest)


def with_small_digest_byte() -> bytes:
    """An edXML whose SHA-256 has a byte below 0x10, so padded and unpadded hex differ."""
    for n in range(1000):
        data = EDOC + f"<!-- {n} -->".encode()
        if any(b < 0x10 for b in hashlib.sha256(data).digest()):
            return data
    raise AssertionError("no such digest in 1000 tries")


async def test_hash_file_must_be_the_unpadded_sdk_hex(axis_sim: AxisSimHandle) -> None:
    data = with_small_digest_byte()
    sdk = axis_sim.sdk(PROVINCE)
    good = sdk.send_edoc(data, PROVINCE.agency_code)
    assert len(good.header("XroadVnpt-hash-file")) < 64
    # Signed with the zero-padded digest: the signature is valid, the binding is not.
    padded = hashlib.sha256(data).hexdigest()
    members = json.loads(good.header("XroadVnpt-sign-header")) | {"XroadVnpt-hash-file": padded}
    bad = resign(good.replace("XroadVnpt-hash-file", padded), members, PROVINCE.secret)
    answers = await send_raw(axis_sim.url, bad, good)
    data_bad = refused("sendEdoc", answers[0], AxisCode.HASH_MISMATCH)
    assert data_bad["DocId"] == ""
    ok("sendEdoc", answers[1])


async def test_a_body_changed_after_signing_is_refused(axis_sim: AxisSimHandle) -> None:
    request = axis_sim.sdk(PROVINCE).send_edoc(EDOC, PROVINCE.agency_code)
    request.body = EDOC.replace(b"28.22.H17", b"28.22.H18") + b"\r\n"
    [answer] = await send_raw(axis_sim.url, request)
    refused("sendEdoc", answer, AxisCode.HASH_MISMATCH)
    assert axis_sim.simulator.sent() == []


async def test_refusals_are_http_200_in_the_sdk_shape(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    listing = sdk.received_list()
    wrong_secret = SdkSession(PROVINCE.system_id, "not-the-secret").received_list()
    unknown = SdkSession("vxp.saas.99", "whatever").send_edoc(EDOC, PROVINCE.agency_code)
    tampered = listing.replace("XroadVnpt-sign-header", listing.header("XroadVnpt-sign-header").replace(
        '"edoc"', '"status"')).replace("XroadVnpt-messagetype", "status")
    differing = listing.replace("XroadVnpt-messagetype", "status")
    unknown_op = listing.replace("XroadVnpt-messagetype", "edoc")
    unknown_op.path = "/getEverything"
    answers = await send_raw(axis_sim.url, wrong_secret, unknown, tampered, differing, unknown_op)
    refused("getReceivedEdocList", answers[0], AxisCode.BAD_SIGNATURE)
    assert refused("sendEdoc", answers[1], AxisCode.UNKNOWN_SYSTEM)["DocId"] == ""
    assert refused("getReceivedEdocList", answers[2], AxisCode.BAD_SIGNATURE)["data"] == []
    refused("getReceivedEdocList", answers[3], AxisCode.BAD_SIGNATURE)
    refused("getEverything", answers[4], AxisCode.UNKNOWN_OPERATION)


async def test_an_unknown_recipient_and_a_foreign_from_are_refused(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    answers = await send_raw(axis_sim.url, sdk.send_edoc(EDOC, PROVINCE.agency_code, to=["000.00.00.X99"]),
                             sdk.send_edoc(EDOC, DEPARTMENT.agency_code))
    assert "000.00.00.X99" in str(refused("sendEdoc", answers[0], AxisCode.UNKNOWN_RECIPIENT)["ErrorDesc"])
    refused("sendEdoc", answers[1], AxisCode.FORBIDDEN)
    assert axis_sim.simulator.sent() == []


async def test_a_status_packet_goes_to_its_response_for_on_the_status_list(axis_sim: AxisSimHandle) -> None:
    status = fixture_bytes("status_01.edxml")  # from 000.02.31.H45, ResponseFor 000.00.00.H45
    department = axis_sim.sdk(DEPARTMENT)
    [sent] = await send_raw(axis_sim.url, department.send_edoc(status, DEPARTMENT.agency_code, message_type="status"))
    ok("sendEdoc", sent)
    province = axis_sim.sdk(PROVINCE)
    edocs, statuses, count = await send_raw(axis_sim.url, province.received_list("edoc"),
                                            province.received_list("status"), province.count("countReceiveStatus"))
    assert ok("getReceivedEdocList", edocs)["data"] == []
    rows = ok("getReceivedEdocList", statuses)["data"]
    assert isinstance(rows, list) and rows[0]["messageType"] == "status" and rows[0]["from"] == "000.02.31.H45"
    assert ok("countReceiveStatus", count)["count"] == 1


async def test_directory_operations(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    register = sdk.register_agency({"id": "", "pcode": "000.00.00.H45", "code": "000.05.01.H45",
                                    "name": "Sở Nội vụ", "mail": "snv@example.vn", "mobile": "", "fax": ""})
    axis_sim.simulator.add_agency(PROVINCE.agency_code, "UBND tỉnh", id="h45")
    answers = await send_raw(axis_sim.url, register, sdk.agencies(), sdk.agencies_qd20(), sdk.synchronize_units(),
                             sdk.delete_agency("000.05.01.H45"), sdk.synchronize_units(), sdk.agencies(),
                             sdk.delete_agency("000.05.01.H45"))
    ok("registerAgency", answers[0])
    assert answers[0].interim == [100]
    codes = [a["code"] for a in ok("getAgenciesList", answers[1])["data"]]
    assert "000.05.01.H45" in codes
    added = next(a for a in ok("getAgenciesList", answers[1])["data"] if a["code"] == "000.05.01.H45")
    assert added["pid"] == "h45" and added["mail"] == "snv@example.vn"
    ok("getAgenciesListQD20", answers[2])
    before = next(u for u in ok("getSynchronizeUnit", answers[3])["data"] if u["code"] == "000.05.01.H45")
    ok("deleteAgency", answers[4])
    after = next(u for u in ok("getSynchronizeUnit", answers[5])["data"] if u["code"] == "000.05.01.H45")
    assert (before["deleted"], after["deleted"]) == (False, True) and after["version"] == before["version"] + 1
    assert "000.05.01.H45" not in [a["code"] for a in ok("getAgenciesList", answers[6])["data"]]
    refused("deleteAgency", answers[7], AxisCode.NOT_FOUND)


async def test_download_edoc_is_a_get_with_the_raw_bytes(axis_sim: AxisSimHandle) -> None:
    [doc_id] = await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE)
    sdk = axis_sim.sdk(PROVINCE)
    found, missing = await send_raw(axis_sim.url, sdk.download_edoc(doc_id), sdk.download_edoc("nope"))
    assert found.status == 200 and found.body == EDOC
    refused("downloadEdoc", missing, AxisCode.NOT_FOUND)


async def test_get_edoc_of_a_document_of_another_agency_is_not_found(axis_sim: AxisSimHandle) -> None:
    [doc_id] = await axis_sim.inject(DEPARTMENT.agency_code, EDOC, from_code=MINISTRY_CODE)
    sdk = axis_sim.sdk(PROVINCE)
    get, update = await send_raw(axis_sim.url, sdk.get_edoc(doc_id), sdk.update_status(doc_id, "done"))
    assert refused("getEdoc", get, AxisCode.NOT_FOUND).get("data", "") == ""
    refused("updateStatus", update, AxisCode.NOT_FOUND)
    assert axis_sim.simulator.pending(DEPARTMENT.agency_code) == [doc_id]


@pytest.mark.parametrize("build", [
    lambda s: s.received_list(), lambda s: s.received_list("status"), lambda s: s.count("countReceiveEdoc"),
    lambda s: s.count("countReceiveStatus"), lambda s: s.agencies(), lambda s: s.agencies_qd20(),
    lambda s: s.synchronize_units(), lambda s: s.sent_list("nope"), lambda s: s.get_edoc("nope"),
    lambda s: s.update_status("nope", "done"), lambda s: s.delete_agency("nope"),
])
async def test_every_answer_parses_like_the_sdk_wants(axis_sim: AxisSimHandle, build: object) -> None:
    request = build(axis_sim.sdk(PROVINCE))  # type: ignore[operator]
    [answer] = await send_raw(axis_sim.url, request)
    assert answer.status == 200
    parse_like_sdk(request.path.lstrip("/"), answer)


def test_the_hash_file_helper_is_the_sdk_one() -> None:
    assert len(sdk_hash_file(b"abc")) == 61
