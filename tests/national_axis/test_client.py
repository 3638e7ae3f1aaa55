"""AxisClient against the simulator (every operation, good and bad paths) and against a capture server
(its exact wire form and how it classifies answers it cannot use)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from lgsp.adapters.national_axis import AgencyRegistration, AxisClient, AxisError, TransportCode
from lgsp.adapters.national_axis.protocol import AxisCode, hash_file, verify_request

from ..conftest import free_port
from .conftest import DEPARTMENT, MINISTRY_CODE, PROVINCE, AxisSimHandle, fixture_bytes

EDOC = fixture_bytes("edoc_new.edxml")


async def fails(coro: Awaitable[object], code: str, *, retryable: bool) -> AxisError:
    with pytest.raises(AxisError) as info:
        await coro
    assert (info.value.code, info.value.retryable) == (code, retryable), info.value
    return info.value


# -- every operation against the simulator -----------------------------------------------------------

async def test_send_from_bytes_and_from_a_file_routes_on_the_edxml_to(axis_sim: AxisSimHandle,
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "edoc.edxml"
    path.write_bytes(fixture_bytes("edoc_update.edxml"))
    async with axis_sim.client() as axis:
        from_bytes = await axis.send_edoc(EDOC, PROVINCE.agency_code)
        from_file = await axis.send_edoc(path, PROVINCE.agency_code)
        only_one = await axis.send_edoc(fixture_bytes("edoc_replacement.edxml"), PROVINCE.agency_code,
                                        to=["000.00.00.H41"])
    sent = {d.doc_id: d for d in axis_sim.simulator.sent(PROVINCE.system_id)}
    assert sent[from_bytes].content == EDOC and sent[from_file].content == path.read_bytes()
    assert [d.agency_code for d in sent[from_file].deliveries] == ["000.02.31.H45", "000.00.00.G22"]
    assert [d.agency_code for d in sent[only_one].deliveries] == ["000.00.00.H41"]


async def test_the_receive_flow(axis_sim: AxisSimHandle, tmp_path: Path) -> None:
    first, second = fixture_bytes("edoc_update.edxml"), EDOC
    ids = [*await axis_sim.inject(PROVINCE.agency_code, first, from_code=MINISTRY_CODE),
           *await axis_sim.inject(PROVINCE.agency_code, second, from_code=MINISTRY_CODE)]
    async with axis_sim.client() as axis:
        assert await axis.count_received() == 2
        items = await axis.received_list()
        assert [i.doc_id for i in items] == ids and items[0].from_ == MINISTRY_CODE
        assert items[0].to == PROVINCE.agency_code and items[0].status == "initial"
        assert await axis.get_edoc(ids[0]) == first
        assert await axis.save_edoc(ids[1], tmp_path / "second.edxml") == len(second)
        assert (tmp_path / "second.edxml").read_bytes() == second
        assert await axis.download_edoc(ids[1], tmp_path / "again.edxml") == len(second)
        assert (tmp_path / "again.edxml").read_bytes() == second
        await axis.update_status(ids[0], "processing")
        assert [(i.doc_id, i.status) for i in await axis.received_list()] == [(ids[0], "processing"),
                                                                              (ids[1], "initial")]
        await axis.update_status(ids[0], "done")
        await axis.update_status(ids[1], "fail")
        assert await axis.received_list() == [] and await axis.count_received() == 0


async def test_status_packets_travel_on_their_own_list(axis_sim: AxisSimHandle) -> None:
    async with axis_sim.client(DEPARTMENT) as department, axis_sim.client() as province:
        await department.send_edoc(fixture_bytes("status_03.edxml"), DEPARTMENT.agency_code, message_type="status")
        assert await province.count_received("status") == 1 and await province.count_received("edoc") == 0
        [item] = await province.received_list("status")
        assert item.message_type == "status" and item.from_ == DEPARTMENT.agency_code
        assert b"<edXML" in await province.get_edoc(item.doc_id)
        await province.update_status(item.doc_id, "done")
        assert await province.received_list("status") == []


async def test_the_sender_tracks_each_recipient(axis_sim: AxisSimHandle) -> None:
    async with axis_sim.client() as province, axis_sim.client(DEPARTMENT) as department:
        doc_id = await province.send_edoc(EDOC, PROVINCE.agency_code)
        [received] = await department.received_list()
        await department.update_status(received.doc_id, "done")
        rows = {r.to_code: r for r in await province.sent_list(doc_id)}
        assert set(rows) == {"000.02.31.H45", "28.22.H17", "000.00.00.H41"}
        assert rows["000.02.31.H45"].receive_status == "done" and rows["000.02.31.H45"].received_time
        assert rows["28.22.H17"].receive_status == "initial" and rows["28.22.H17"].received_time == ""
        assert rows["28.22.H17"].title.startswith("V/v") and rows["28.22.H17"].sender_doc_id == doc_id
        assert await province.get_edoc(doc_id) == EDOC  # the sender may read its own document


async def test_the_directory(axis_sim: AxisSimHandle) -> None:
    async with axis_sim.client() as axis:
        await axis.register_agency(AgencyRegistration(code="000.03.01.H45", name="Sở Tài chính",
                                                      mail="stc@example.vn", pcode="000.00.00.G22"))
        agencies = {a.code: a for a in await axis.agencies()}
        assert agencies["000.03.01.H45"].pid == agencies["000.00.00.G22"].id
        assert {a.code for a in await axis.agencies_qd20("1")} == set(agencies)
        assert await axis.agencies_qd20("2") == []
        await axis.delete_agency("000.03.01.H45")
        units = {u.code: u for u in await axis.synchronize_units()}
        assert units["000.03.01.H45"].deleted and units["000.03.01.H45"].version == 2
        assert "000.03.01.H45" not in {a.code for a in await axis.agencies()}
        await fails(axis.delete_agency("000.03.01.H45"), AxisCode.NOT_FOUND, retryable=False)


# -- refusals ------------------------------------------------------------------------------------

async def test_wrong_secret_and_unknown_system_are_not_retryable(axis_sim: AxisSimHandle) -> None:
    async with AxisClient(axis_sim.url, PROVINCE.system_id, "wrong") as axis:
        error = await fails(axis.received_list(), AxisCode.BAD_SIGNATURE, retryable=False)
        assert error.operation == "getReceivedEdocList" and "hash-header" in error.desc
    async with AxisClient(axis_sim.url, "vxp.saas.99", "x") as axis:
        await fails(axis.send_edoc(EDOC, "000.00.00.H45"), AxisCode.UNKNOWN_SYSTEM, retryable=False)
    assert axis_sim.simulator.sent() == []


async def test_refusals_of_the_operations(axis_sim: AxisSimHandle) -> None:
    [theirs] = await axis_sim.inject(DEPARTMENT.agency_code, EDOC, from_code=MINISTRY_CODE)
    async with axis_sim.client() as axis:
        await fails(axis.get_edoc(theirs), AxisCode.NOT_FOUND, retryable=False)
        await fails(axis.update_status(theirs, "done"), AxisCode.NOT_FOUND, retryable=False)
        await fails(axis.sent_list(theirs), AxisCode.NOT_FOUND, retryable=False)
        await fails(axis.send_edoc(EDOC, PROVINCE.agency_code, to=["000.00.00.X99"]), AxisCode.UNKNOWN_RECIPIENT,
                    retryable=False)
        await fails(axis.send_edoc(EDOC, DEPARTMENT.agency_code), AxisCode.FORBIDDEN, retryable=False)
        await fails(axis.send_edoc(b"not xml", PROVINCE.agency_code), AxisCode.INVALID_REQUEST, retryable=False)
        await fails(axis.register_agency(AgencyRegistration(code="x y", name="")), AxisCode.INVALID_REQUEST,
                    retryable=False)
    assert axis_sim.simulator.pending(DEPARTMENT.agency_code) == [theirs]


async def test_local_mistakes_fail_before_any_request(axis_sim: AxisSimHandle, tmp_path: Path) -> None:
    async with axis_sim.client(max_document_bytes=100) as axis:
        await fails(axis.send_edoc(EDOC, PROVINCE.agency_code), TransportCode.TOO_LARGE, retryable=False)
        big = tmp_path / "big.edxml"
        big.write_bytes(EDOC)
        await fails(axis.send_edoc(big, PROVINCE.agency_code), TransportCode.TOO_LARGE, retryable=False)
        with pytest.raises(ValueError, match="status"):
            await axis.update_status("d", "done; x")
        with pytest.raises(ValueError, match="recipient"):
            await axis.send_edoc(b"<x/>", PROVINCE.agency_code, to=["a b"])
        with pytest.raises(ValueError, match="MessageType"):
            await axis.received_list("everything")
        with pytest.raises(FileNotFoundError):
            await axis.send_edoc(tmp_path / "missing.edxml", PROVINCE.agency_code)
    assert axis_sim.simulator.calls == []
    with pytest.raises(ValueError, match="http"):
        AxisClient("ftp://axis", "s", "x")
    with pytest.raises(ValueError, match="system id"):
        AxisClient("http://axis", "bad id", "x")
    with pytest.raises(ValueError, match="secret"):
        AxisClient("http://axis", "s", "")


async def test_the_secret_is_never_shown(axis_sim: AxisSimHandle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with AxisClient(axis_sim.url, PROVINCE.system_id, "wrong-secret-value") as axis:
        assert "wrong-secret-value" not in repr(axis)
        error = await fails(axis.received_list(), AxisCode.BAD_SIGNATURE, retryable=False)
    async with axis_sim.client() as axis:
        await axis.received_list()
    assert "wrong-secret-value" not in str(error)
    assert all(secret not in r.getMessage() for r in caplog.records for secret in ("wrong-secret-value",
                                                                                  PROVINCE.secret))


async def test_connection_refused_is_retryable() -> None:
    async with AxisClient(f"http://127.0.0.1:{free_port()}", "vxp.saas.45", "x") as axis:
        await fails(axis.received_list(), TransportCode.CONNECT, retryable=True)


# -- the client's own wire form, and answers it cannot use --------------------------------------------

@dataclass
class Capture:
    """A loopback server that records requests and answers what the test sets."""

    url: str = ""
    requests: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = field(default_factory=list)
    reply: Callable[[], web.StreamResponse] = lambda: web.json_response({})


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    cap = Capture()

    async def handle(request: web.Request) -> web.StreamResponse:
        cap.requests.append((request.method, request.path, list(request.raw_headers), await request.read()))
        return cap.reply()

    app = web.Application(client_max_size=1 << 26)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cap.url = f"http://127.0.0.1:{runner.addresses[0][1]}/vxp"
    yield cap
    await runner.cleanup()


OK = {"status": "OK", "ErrorCode": "0", "ErrorDesc": ""}


def headers_of(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw}


async def test_send_edoc_goes_out_like_the_sdk_writes_it(capture: Capture, tmp_path: Path) -> None:
    capture.reply = lambda: web.json_response({**OK, "DocId": "5bebcfeff858e3e0cc154762"})
    path = tmp_path / "doc.edxml"
    path.write_bytes(EDOC)
    times = iter([datetime(2024, 1, 5, 9, 7, 3, 45_000), datetime(2024, 1, 5, 9, 7, 4)])
    async with AxisClient(capture.url, PROVINCE.system_id, PROVINCE.secret, now=lambda: next(times)) as axis:
        assert await axis.send_edoc(path, PROVINCE.agency_code, to=["000.00.00.H41"]) == "5bebcfeff858e3e0cc154762"
        await axis.send_edoc(EDOC, PROVINCE.agency_code)
    (method, where, raw, body), (_, _, raw2, body2) = capture.requests
    headers = headers_of(raw)
    assert (method, where) == ("POST", "/vxp/sendEdoc")
    assert body == body2 == EDOC + b"\r\n" and headers["Content-Length"] == str(len(EDOC) + 2)
    assert "Transfer-Encoding" not in headers
    assert headers["Content-Type"] == headers["XroadVnpt-Content-Type"] == "application/octet-stream"
    assert headers["XroadVnpt-hash-file"] == hash_file(EDOC) and headers["XroadVnpt-to"] == '["000.00.00.H41"]'
    assert headers["User-Agent"] == "JAVASDKAgent/1.0.0 XRoad/VPCP" and headers["Accept-Encoding"] == "identity"
    assert headers["XroadVnpt-timestamp"] == "05012024T090703+0045"
    assert headers_of(raw2)["XroadVnpt-timestamp"] == "05012024T090704+0000"  # signed afresh per call
    verified = verify_request(raw, lambda s: PROVINCE.secret if s == PROVINCE.system_id else None)
    assert verified.get("from") == PROVINCE.agency_code


async def test_other_calls_send_empty_or_brace_bodies(capture: Capture) -> None:
    capture.reply = lambda: web.json_response({**OK, "data": [], "count": 0})
    async with AxisClient(capture.url, PROVINCE.system_id, PROVINCE.secret) as axis:
        await axis.received_list()
        await axis.count_received()
        await axis.update_status("d1", "done")
    bodies = [(where, body) for _, where, _, body in capture.requests]
    assert bodies == [("/vxp/getReceivedEdocList", b""), ("/vxp/countReceiveEdoc", b"{}"),
                      ("/vxp/updateStatus", b"{}")]


@pytest.mark.parametrize(("reply", "code", "retryable"), [
    (lambda: web.Response(status=502, text="Bad Gateway"), TransportCode.HTTP_STATUS, True),
    (lambda: web.Response(status=429, text="slow down"), TransportCode.HTTP_STATUS, True),
    (lambda: web.Response(status=404, text="no such path"), TransportCode.HTTP_STATUS, False),
    (lambda: web.json_response({"status": "FAIL", "ErrorCode": "503", "ErrorDesc": "bận"}, status=500),
     AxisCode.UNAVAILABLE, True),
    (lambda: web.json_response({"status": "FAIL", "ErrorCode": "77", "ErrorDesc": "?"}), "77", False),
    (lambda: web.json_response({"status": "FAIL", "ErrorCode": "500", "ErrorDesc": "lỗi"}), AxisCode.INTERNAL, True),
    (lambda: web.json_response({"status": "OK", "ErrorCode": "5", "ErrorDesc": "?"}), "5", False),
    (lambda: web.json_response({"status": "OK"}), TransportCode.UNPARSABLE, True),
    (lambda: web.json_response({**OK, "data": [{"docId": None}]}), TransportCode.UNPARSABLE, True),
    (lambda: web.Response(text="<html>maintenance</html>"), TransportCode.UNPARSABLE, True),
    (lambda: web.json_response({**OK, "data": []}, status=503), TransportCode.HTTP_STATUS, True),
    (lambda: web.Response(body=b"{" + b" " * 300_000 + b"}"), TransportCode.TOO_LARGE, False),
])
async def test_answers_are_classified(capture: Capture, reply: Callable[[], web.StreamResponse], code: str,
                                      retryable: bool) -> None:
    capture.reply = reply
    async with AxisClient(capture.url, "vxp.saas.45", "x", max_json_bytes=200_000) as axis:
        await fails(axis.received_list(), code, retryable=retryable)


async def test_send_edoc_success_without_a_doc_id_is_not_trusted(capture: Capture) -> None:
    capture.reply = lambda: web.json_response({**OK, "DocId": ""})
    async with AxisClient(capture.url, "vxp.saas.45", "x") as axis:
        await fails(axis.send_edoc(EDOC, "000.00.00.H45"), TransportCode.UNPARSABLE, retryable=True)


@pytest.mark.parametrize(("data", "code", "retryable"), [
    ("not base64 !!", TransportCode.UNPARSABLE, True),
    ("QUJD" * 100, TransportCode.TOO_LARGE, False),
])
async def test_bad_documents_in_get_edoc(capture: Capture, data: str, code: str, retryable: bool) -> None:
    capture.reply = lambda: web.json_response({**OK, "data": data})
    async with AxisClient(capture.url, "vxp.saas.45", "x", max_document_bytes=200) as axis:
        await fails(axis.get_edoc("d"), code, retryable=retryable)


async def test_get_edoc_tolerates_wrapped_base64(capture: Capture) -> None:
    capture.reply = lambda: web.json_response({**OK, "data": "PGVk\r\nWE1M\r\nLz4=\r\n"})
    async with AxisClient(capture.url, "vxp.saas.45", "x") as axis:
        assert await axis.get_edoc("d") == b"<edXML/>"


async def test_a_refused_download_leaves_no_file(capture: Capture, tmp_path: Path) -> None:
    target = tmp_path / "doc.edxml"
    capture.reply = lambda: web.json_response({"status": "FAIL", "ErrorCode": "404", "ErrorDesc": "không có"})
    async with AxisClient(capture.url, "vxp.saas.45", "x", max_document_bytes=1000) as axis:
        await fails(axis.download_edoc("d", target), AxisCode.NOT_FOUND, retryable=False)
        capture.reply = lambda: web.Response(body=b"")
        await fails(axis.download_edoc("d", target), TransportCode.UNPARSABLE, retryable=True)
        capture.reply = lambda: web.Response(body=b"x" * 5000)
        await fails(axis.download_edoc("d", target), TransportCode.TOO_LARGE, retryable=False)
        capture.reply = lambda: web.json_response(OK)
        await fails(axis.download_edoc("d", target), TransportCode.UNPARSABLE, retryable=True)
    assert list(tmp_path.iterdir()) == []
    assert json.loads(capture.requests[0][3] or b"{}") == {}  # a GET without a body
