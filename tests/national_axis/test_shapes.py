"""Answer shapes: the exact field names the SDK reads, never null, and strict reading."""

from __future__ import annotations

import json

import pytest

from lgsp.adapters.national_axis.shapes import (
    AgencyListResult,
    AgencyRegistration,
    CountResult,
    EdocResult,
    ReceivedItem,
    ReceivedListResult,
    Result,
    SendEdocResult,
    SentItem,
    SentListResult,
    ShapeError,
    SyncUnit,
    SyncUnitListResult,
    dump_json,
    load_json,
)

from .sdk_requests import ITEM_FIELDS


def test_item_fields_are_exactly_those_the_sdk_reads() -> None:
    assert tuple(ReceivedItem().to_json()) == ITEM_FIELDS["getReceivedEdocList"]
    assert tuple(SentItem().to_json()) == ITEM_FIELDS["getSentEdocList"]
    assert set(SyncUnit().to_json()) == {*ITEM_FIELDS["getSynchronizeUnit"], "version", "deleted", "isAgency"}
    assert list(AgencyRegistration().to_json()) == ["id", "pcode", "code", "name", "mail", "mobile", "fax"]


def test_every_answer_has_the_common_fields_and_send_edoc_its_doc_id_even_on_failure() -> None:
    failed = SendEdocResult.failure("401", "chữ ký không hợp lệ").to_json()
    assert failed == {"status": "FAIL", "ErrorCode": "401", "ErrorDesc": "chữ ký không hợp lệ", "DocId": ""}
    assert ReceivedListResult.failure("401", "x").to_json()["data"] == []
    assert EdocResult.failure("404", "x").to_json()["data"] == ""
    assert CountResult.failure("404", "x").to_json()["count"] == 0
    for result in (Result(), SendEdocResult(doc_id="d"), ReceivedListResult(data=(ReceivedItem(),)),
                   SyncUnitListResult(data=(SyncUnit(),))):
        assert "null" not in json.dumps(result.to_json())


def test_json_is_ascii_so_the_sdk_reading_us_ascii_keeps_vietnamese() -> None:
    body = dump_json(Result.failure("400", "thiếu tham số").to_json())
    assert body.isascii() and json.loads(body)["ErrorDesc"] == "thiếu tham số"


def test_round_trips() -> None:
    rows = (ReceivedItem(doc_id="d", from_="000.00.00.G22", to="000.00.00.H45", status="initial"),)
    assert ReceivedListResult.from_json(ReceivedListResult(data=rows).to_json()).data == rows
    sent = (SentItem(sender_doc_id="s", receiver_doc_id="r", title="Trích yếu"),)
    assert SentListResult.from_json(SentListResult(data=sent).to_json()).data == sent
    units = (SyncUnit(code="x", version=3, deleted=True, is_agency=False),)
    assert SyncUnitListResult.from_json(SyncUnitListResult(data=units).to_json()).data == units
    assert SendEdocResult.from_json({"status": "OK", "ErrorCode": "0", "ErrorDesc": "", "DocId": "d"}).doc_id == "d"


COMMON = {"status": "OK", "ErrorCode": "0", "ErrorDesc": ""}


@pytest.mark.parametrize(("obj", "match"), [
    ({"status": "OK", "ErrorCode": "0"}, "ErrorDesc"),
    ({**COMMON, "status": None}, "null"),
    ({**COMMON, "ErrorCode": {"x": 1}}, "dict"),
])
def test_common_fields_are_read_strictly(obj: dict[str, object], match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        Result.from_json(obj)


def test_numbers_and_booleans_read_as_strings_like_gson() -> None:
    result = Result.from_json({"status": "OK", "ErrorCode": 0, "ErrorDesc": False})
    assert result.ok and result.error_desc == "false"


@pytest.mark.parametrize(("row", "match"), [
    ({"docId": "d"}, "missing"),
    ({**ReceivedItem().to_json(), "to": ["000.00.00.H45"]}, "list"),
    ({**ReceivedItem().to_json(), "from": None}, "null"),
    ("not an object", "object"),
])
def test_list_items_are_read_strictly(row: object, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        ReceivedListResult.from_json({**COMMON, "data": [row]})


def test_lists_are_read_only_on_success_and_payloads_skipped_on_fail() -> None:
    failed = {"status": "FAIL", "ErrorCode": "401", "ErrorDesc": "x"}
    assert ReceivedListResult.from_json({**failed, "data": None}).data == ()
    assert EdocResult.from_json(failed).data == ""
    assert CountResult.from_json(failed).count == 0
    with pytest.raises(ShapeError, match="list"):
        AgencyListResult.from_json({**COMMON, "data": {}})
    with pytest.raises(ShapeError, match="integer"):
        CountResult.from_json({**COMMON, "count": "many"})
    with pytest.raises(ShapeError, match="boolean"):
        SyncUnitListResult.from_json({**COMMON, "data": [{**SyncUnit().to_json(), "deleted": "yes"}]})


@pytest.mark.parametrize(("body", "match"), [(b"<html/>", "not JSON"), (b"[]", "object"), (b"[" * 100000, "JSON"),
                                             (b"{}" + b" " * 200_000, "larger")])
def test_unreadable_answers(body: bytes, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        load_json(body, 200_000)
