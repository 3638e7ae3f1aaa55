"""The simulator's own rules: delivery states, idempotency window, limits, restarts, configuration."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lgsp.adapters.national_axis.protocol import AxisCode
from lgsp.adapters.national_axis.sim_config import SimConfigError, load_agencies, parse_system, read_systems_file
from lgsp.adapters.national_axis.sim_state import AgencyRecord
from lgsp.adapters.national_axis.simulator import AxisSimulator

from .conftest import DEPARTMENT, MINISTRY_CODE, PROVINCE, AxisSimHandle, fixture_bytes
from .sdk_requests import RawResponse, parse_like_sdk, send_raw

EDOC = fixture_bytes("edoc_new.edxml")
MakeSim = Callable[..., Awaitable[AxisSimHandle]]


def answer(operation: str, response: RawResponse) -> dict[str, Any]:
    assert response.status == 200
    return parse_like_sdk(operation, response)


async def test_update_status_moves_an_item_along_and_the_sender_sees_it(axis_sim: AxisSimHandle) -> None:
    province, department = axis_sim.sdk(PROVINCE), axis_sim.sdk(DEPARTMENT)
    [sent] = await send_raw(axis_sim.url, province.send_edoc(EDOC, PROVINCE.agency_code, to=["000.02.31.H45"]))
    doc_id = str(answer("sendEdoc", sent)["DocId"])
    [receiver_id] = axis_sim.simulator.pending(DEPARTMENT.agency_code)
    assert receiver_id != doc_id  # each recipient has its own docId

    processing, listing, rows_before = await send_raw(
        axis_sim.url, department.update_status(receiver_id, "processing"), department.received_list(),
        province.sent_list(doc_id))
    assert answer("updateStatus", processing)["ErrorCode"] == "0"
    [item] = answer("getReceivedEdocList", listing)["data"]
    assert (item["status"], item["status_desc"]) == ("processing", "Đang xử lý")
    [row] = answer("getSentEdocList", rows_before)["data"]
    assert (row["receiveStatus"], row["receivedTime"], row["sendStatus"]) == ("processing", "", "sent")

    done, again, after, rows_after = await send_raw(
        axis_sim.url, department.update_status(receiver_id, "done"), department.update_status(receiver_id, "done"),
        department.received_list(), province.sent_list(doc_id))
    assert answer("updateStatus", done)["ErrorCode"] == answer("updateStatus", again)["ErrorCode"] == "0"
    assert answer("getReceivedEdocList", after)["data"] == []
    [row] = answer("getSentEdocList", rows_after)["data"]
    assert (row["receiveStatus"], row["receiveStatusDesc"]) == ("done", "Đã nhận") and row["receivedTime"]


async def test_only_the_sender_reads_its_sent_list(axis_sim: AxisSimHandle) -> None:
    [sent] = await send_raw(axis_sim.url, axis_sim.sdk(PROVINCE).send_edoc(EDOC, PROVINCE.agency_code))
    doc_id = str(answer("sendEdoc", sent)["DocId"])
    [other] = await send_raw(axis_sim.url, axis_sim.sdk(DEPARTMENT).sent_list(doc_id))
    assert answer("getSentEdocList", other)["ErrorCode"] == AxisCode.NOT_FOUND


@pytest.mark.parametrize(("status", "code"), [("", AxisCode.INVALID_REQUEST), ("done; drop", AxisCode.INVALID_REQUEST)])
async def test_update_status_refuses_missing_or_odd_statuses(axis_sim: AxisSimHandle, status: str, code: str) -> None:
    [doc_id] = await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE)
    [reply] = await send_raw(axis_sim.url, axis_sim.sdk(PROVINCE).update_status(doc_id, status))
    assert answer("updateStatus", reply)["ErrorCode"] == code
    assert axis_sim.simulator.pending(PROVINCE.agency_code) == [doc_id]


async def test_the_idempotency_window(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    same = sdk.send_edoc(EDOC, PROVINCE.agency_code)
    other_to = sdk.send_edoc(EDOC, PROVINCE.agency_code, to=["28.22.H17"])
    first, replay, different = await send_raw(axis_sim.url, same, same, other_to)
    assert answer("sendEdoc", first)["DocId"] == answer("sendEdoc", replay)["DocId"]
    assert answer("sendEdoc", different)["DocId"] != answer("sendEdoc", first)["DocId"]
    axis_sim.clock.now += 601  # past the 600 s window
    [late] = await send_raw(axis_sim.url, same)
    assert answer("sendEdoc", late)["DocId"] != answer("sendEdoc", first)["DocId"]
    assert len(axis_sim.simulator.sent()) == 3


@pytest.mark.parametrize(("body", "code"), [
    (b"this is not XML", AxisCode.INVALID_REQUEST),
    (b"<edXML><MessageHeader><From><OrganId>000.00.00.H45</OrganId></From></MessageHeader></edXML>",
     AxisCode.UNKNOWN_RECIPIENT),
])
async def test_send_edoc_refuses_what_cannot_be_routed(axis_sim: AxisSimHandle, body: bytes, code: str) -> None:
    [reply] = await send_raw(axis_sim.url, axis_sim.sdk(PROVINCE).send_edoc(body, PROVINCE.agency_code))
    data = answer("sendEdoc", reply)
    assert (data["status"], data["ErrorCode"], data["DocId"]) == ("FAIL", code, "")


async def test_documents_over_the_limit_are_refused(make_axis_sim: MakeSim) -> None:
    sim = await make_axis_sim(max_document_bytes=1000)
    [reply] = await send_raw(sim.url, sim.sdk(PROVINCE).send_edoc(EDOC, PROVINCE.agency_code))
    assert answer("sendEdoc", reply)["ErrorCode"] == AxisCode.TOO_LARGE
    assert sim.simulator.sent() == []


async def test_register_agency_refuses_bad_bodies(axis_sim: AxisSimHandle) -> None:
    sdk = axis_sim.sdk(PROVINCE)
    not_a_string: Any = ["x"]
    replies = await send_raw(axis_sim.url, sdk.register_agency({"code": "", "name": "x"}),
                             sdk.register_agency({"code": "000.01.01.H45", "name": not_a_string}),
                             sdk.register_agency({"id": "no-such-id", "code": "000.01.01.H45", "name": "x"}))
    codes = [answer("registerAgency", r)["ErrorCode"] for r in replies]
    assert codes == [AxisCode.INVALID_REQUEST, AxisCode.INVALID_REQUEST, AxisCode.NOT_FOUND]
    request = sdk.register_agency({})
    request.body = b"[1, 2"
    [reply] = await send_raw(axis_sim.url, request)
    assert answer("registerAgency", reply)["ErrorCode"] == AxisCode.INVALID_REQUEST


async def test_register_agency_updates_by_id_and_refuses_taking_another_code(axis_sim: AxisSimHandle) -> None:
    record = axis_sim.simulator.add_agency("000.01.01.H45", "Sở cũ")
    sdk = axis_sim.sdk(PROVINCE)
    renamed, clash = await send_raw(
        axis_sim.url, sdk.register_agency({"id": record.id, "code": "000.01.01.H45", "name": "Sở mới"}),
        sdk.register_agency({"id": record.id, "code": "28.22.H17", "name": "Sở mới"}))
    assert answer("registerAgency", renamed)["ErrorCode"] == "0"
    assert answer("registerAgency", clash)["ErrorCode"] == AxisCode.INVALID_REQUEST
    stored = axis_sim.simulator.state.agencies["000.01.01.H45"]
    assert (stored.name, stored.version, stored.id) == ("Sở mới", 2, record.id)
    assert axis_sim.simulator.state.agencies["28.22.H17"].name == "UBND xã cũ"


async def test_state_survives_a_restart(make_axis_sim: MakeSim, tmp_path: Path) -> None:
    state = tmp_path / "axis-state.json"
    first = await make_axis_sim(state_file=state)
    sdk = first.sdk(PROVINCE)
    send = sdk.send_edoc(EDOC, PROVINCE.agency_code)
    [sent] = await send_raw(first.url, send)
    doc_id = answer("sendEdoc", sent)["DocId"]
    [injected] = await first.inject(PROVINCE.agency_code, fixture_bytes("edoc_update.edxml"), from_code=MINISTRY_CODE)
    await send_raw(first.url, sdk.update_status(injected, "processing"),
                   sdk.register_agency({"code": "000.09.09.H45", "name": "Sở mới"}))
    await first.simulator.stop()

    second = await make_axis_sim(state_file=state, clock=first.clock)
    again, listing, edoc = await send_raw(second.url, send, sdk.received_list(), sdk.get_edoc(injected))
    assert answer("sendEdoc", again)["DocId"] == doc_id  # the idempotency memory survived too
    [item] = answer("getReceivedEdocList", listing)["data"]
    assert (item["docId"], item["status"]) == (injected, "processing")
    assert answer("getEdoc", edoc)["ErrorCode"] == "0"
    assert second.simulator.state.agencies["000.09.09.H45"].name == "Sở mới"
    assert second.simulator.sent()[0].content == EDOC


def test_an_unreadable_state_file_is_refused_with_its_path(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "documents": [{"content": "!!"}]}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"state\.json: not a simulator state file"):
        AxisSimulator([PROVINCE], state_file=state)
    state.write_text('{"version": 7}', encoding="utf-8")
    with pytest.raises(ValueError, match="version 7"):
        AxisSimulator([PROVINCE], state_file=state)


def test_systems_are_unique() -> None:
    with pytest.raises(ValueError, match="twice"):
        AxisSimulator([PROVINCE, PROVINCE])


# -- configuration --------------------------------------------------------------------------------

def test_system_specs_take_the_secret_literally_from_env_or_from_a_file(tmp_path: Path) -> None:
    assert parse_system("vxp.saas.01:a:b:c:000.00.00.H45").secret == "a:b:c"
    env = {"AXIS_SECRET": "từ-môi-trường"}
    assert parse_system("vxp.saas.01:env:AXIS_SECRET:000.00.00.H45", env=env).secret == "từ-môi-trường"
    secret_file = tmp_path / "secret"
    secret_file.write_text("từ-tệp\n", encoding="utf-8")
    system = parse_system(f"vxp.saas.01:file:{secret_file}:000.00.00.H45")
    assert (system.system_id, system.secret, system.agency_code) == ("vxp.saas.01", "từ-tệp", "000.00.00.H45")
    assert "từ-tệp" not in repr(system)


@pytest.mark.parametrize(("spec", "match"), [
    ("vxp.saas.01", "ID:SECRET:AGENCY"),
    ("vxp.saas.01:000.00.00.H45", "ID:SECRET:AGENCY"),
    ("vxp saas:x:000.00.00.H45", "system id"),
    ("vxp.saas.01:x:", "agency code"),
    ("vxp.saas.01::000.00.00.H45", "empty"),
    ("vxp.saas.01:env:NOT_SET_ANYWHERE:000.00.00.H45", "NOT_SET_ANYWHERE is not set"),
    ("vxp.saas.01:file:/no/such/file:000.00.00.H45", "cannot read"),
])
def test_bad_system_specs_say_what_is_wrong(spec: str, match: str) -> None:
    with pytest.raises(SimConfigError, match=match):
        parse_system(spec, env={})


def test_systems_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "systems"
    path.write_text("# systems\nvxp.saas.01:s:000.00.00.H45\n\nbroken\n", encoding="utf-8")
    with pytest.raises(SimConfigError, match=rf"{path.name}:4: expected"):
        read_systems_file(path)
    path.write_text("vxp.saas.01:s:000.00.00.H45\n", encoding="utf-8")
    assert [s.system_id for s in read_systems_file(path)] == ["vxp.saas.01"]


def test_agencies_file(tmp_path: Path) -> None:
    path = tmp_path / "agencies.json"
    path.write_text(json.dumps([{"code": "000.00.00.G22", "name": "Văn phòng Chính phủ", "centerCode": "G22",
                                 "version": 4, "deleted": True, "isAgency": False, "oldCode": "VPCP"}]), "utf-8")
    [record] = load_agencies(path)
    assert record == AgencyRecord(code="000.00.00.G22", name="Văn phòng Chính phủ", center_code="G22", version=4,
                                  deleted=True, is_agency=False, old_code="VPCP")


@pytest.mark.parametrize(("text", "match"), [
    ('[{"code": "a", "name": "b"},\n {"code": "a" "name": 1}]', r":2:\d+: not JSON"),
    ('{"code": "a"}', "JSON array"),
    ('[{"code": "a"}]', r"\[0\]\.name: must be a non-empty string"),
    ('[{"code": "a", "name": "b", "version": "2"}]', r"\[0\]\.version"),
    ('[{"code": "a", "name": "b", "deleted": "no"}]', r"\[0\]\.deleted"),
    ('[{"code": "a", "name": "b", "mail": 5}]', r"\[0\]\.mail"),
    ('[{"code": "a", "name": "b", "colour": "red"}]', "unknown key 'colour'"),
    ('[{"code": "a", "name": "b"}, {"code": "a", "name": "c"}]', r"\[1\]\.code: .* listed twice"),
    ("[1]", r"\[0\]: must be an object"),
])
def test_agencies_file_errors_say_where(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "agencies.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SimConfigError, match=match):
        load_agencies(path)


def test_a_missing_agencies_file(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match="No such file"):
        load_agencies(tmp_path / "none.json")


@pytest.mark.parametrize("real_multipart", [True, False])
async def test_send_edoc_as_multipart_or_under_a_multipart_type(axis_sim: AxisSimHandle, real_multipart: bool) -> None:
    request = axis_sim.sdk(PROVINCE).send_edoc(EDOC, PROVINCE.agency_code)
    boundary = "===1704420423045==="
    if real_multipart:
        request.body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file_doc\"; filename=\"a.edxml\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n").encode() + EDOC + (
                        f"\r\n--{boundary}--\r\n").encode()
    # The unprefixed Content-Type is not signed; the SDK's MultipartUtility would have set this one.
    request = request.replace("Content-Type", f"multipart/form-data; boundary={boundary}")
    [reply] = await send_raw(axis_sim.url, request)
    assert answer("sendEdoc", reply)["ErrorCode"] == "0"
    [sent] = axis_sim.simulator.sent()
    assert sent.content == EDOC
