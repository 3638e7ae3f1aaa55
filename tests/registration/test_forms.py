"""The seven forms as records: what each holds, and the checking of untrusted input (every field
named, every message in Vietnamese)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from typing import Any

import pytest

from lgsp.core.config import ApproversConfig
from lgsp.core.i18n import Text, render
from lgsp.core.registration.forms import (
    FIRST_YEAR,
    FORM_KINDS,
    LAST_YEAR,
    AgencyLetter,
    FieldError,
    Form01,
    Form02,
    Form05,
    FormKindError,
    ReplyLetter,
    field_label,
    form_kind,
    kind_of,
    parse_form,
    recipient_of,
    sender_of,
    validate,
)
from lgsp.core.registration.forms import (
    MESSAGES as MSGIDS,
)
from lgsp.core.registration.workdays import VIETNAM_TZ

from .samples import SAMPLES

# The field messages as a Vietnamese reader sees them (the module holds the English msgids).
MESSAGES = {code: render(Text(msgid, first=FIRST_YEAR, last=LAST_YEAR) if code == "year" else Text(msgid), "vi")
            for code, msgid in MSGIDS.items()}


def ok(kind: str, data: dict[str, Any]) -> Any:
    result = validate(kind, data)
    assert not isinstance(result, list), result
    return result


def errors(kind: str, data: object) -> dict[str, str]:
    result = validate(kind, data)
    assert isinstance(result, list), result
    assert all(isinstance(e, FieldError) for e in result)
    # The messages are msgids of the catalogues; these tests read them as a Vietnamese reader does.
    return {e.field: render(e.message, "vi") for e in result}


def with_(kind: str, **changes: Any) -> dict[str, Any]:
    return {**SAMPLES[kind], **changes}


# -- what the forms are ---------------------------------------------------------------------------

def test_the_table_of_forms() -> None:
    assert list(FORM_KINDS) == ["01", "02", "03", "04", "05", "06", "07"]
    lines = {k: fk.subject_line for k, fk in FORM_KINDS.items()}
    assert lines == {
        "01": "V/v đăng ký thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh",
        "02": "V/v đăng ký thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh",
        "03": "V/v đề nghị cung cấp tài khoản quản trị, tài liệu kỹ thuật và đầu mối hỗ trợ kỹ thuật kết nối "
              "với Trục liên thông tỉnh",
        "04": "V/v cung cấp tài khoản quản trị, tài liệu kỹ thuật và đầu mối hỗ trợ kỹ thuật kết nối với Trục "
              "liên thông tỉnh",
        "05": "Về việc bàn giao tài khoản quản trị hệ thống, tài liệu kỹ thuật Trục liên thông tỉnh",
        "06": "V/v đề nghị hủy bỏ thông tin đã đăng ký ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh",
        "07": "V/v hủy bỏ thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh",
    }
    routes = {k: (fk.sender, fk.recipient, fk.answers, fk.answered_by) for k, fk in FORM_KINDS.items()}
    assert routes == {
        "01": ("agency", "department", None, "02"), "02": ("department", "agency", "01", None),
        "03": ("agency", "centre", None, "04"), "04": ("centre", "agency", "03", "05"),
        "05": ("centre", "agency", "04", None), "06": ("agency", "department", None, "07"),
        "07": ("department", "agency", "06", None),
    }
    assert [k for k, fk in FORM_KINDS.items() if fk.document == "record"] == ["05"]
    for fk in FORM_KINDS.values():
        assert fk.title and fk.title == unicodedata.normalize("NFC", fk.title)
        assert kind_of(fk.record()) is fk


def test_each_form_holds_exactly_its_fields() -> None:
    letter = {"number", "place", "issued_on", "signer", "copies_to", "archive_unit"}
    agency = letter | {"agency", "parent_body", "abbreviation", "contact"}
    reply = letter | {"agency", "request"}
    expected = {
        "01": agency | {"legal_bases", "application_name", "application_abbreviation", "developer"},
        "02": reply | {"support_contact"},
        "03": agency | {"legal_bases"},
        "04": reply | {"support_contact"},
        "05": {"number", "form_04", "form_03", "handover_at", "handover_place", "party_a", "party_b"},
        "06": agency | {"application_name", "application_abbreviation"},
        "07": reply,
    }
    for kind, names in expected.items():
        assert {f.name for f in dataclasses.fields(FORM_KINDS[kind].record)} == names, kind
    contact = {f.name for f in dataclasses.fields(Form01().contact)}
    assert contact == {"name", "position", "department", "email", "phone"}
    assert {f.name for f in dataclasses.fields(Form02().support_contact)} == {"name", "department", "phone"}
    assert {f.name for f in dataclasses.fields(Form05().party_a)} == {"name", "position", "representing"}


def test_records_are_frozen_and_blank_by_default() -> None:
    blank = Form01()
    assert blank.agency is None and blank.legal_bases == () and blank.contact.email is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        blank.agency = "x"  # type: ignore[misc]


def test_who_sends_and_receives_follows_the_approvers_setting() -> None:
    default = ApproversConfig()
    assert [sender_of(k, default) for k in FORM_KINDS] == \
        ["agency", "department", "agency", "centre", "centre", "agency", "department"]
    assert [recipient_of(k, default) for k in FORM_KINDS] == \
        ["department", "agency", "centre", "agency", "agency", "department", "agency"]
    # A province where the Department provides the account: Mẫu 03 goes to the Department.
    changed = ApproversConfig(form_02="centre", form_04="department", form_07="centre")
    assert sender_of("04", changed) == "department" and recipient_of("03", changed) == "department"
    assert sender_of("02", changed) == "centre" and recipient_of("01", changed) == "centre"
    assert recipient_of("06", changed) == "centre"


def test_unknown_kind_is_a_callers_mistake() -> None:
    for kind in ("08", "1", "", "01 "):
        with pytest.raises(FormKindError, match="no form"):
            validate(kind, {})
    with pytest.raises(TypeError, match="not a form record"):
        kind_of(object())  # type: ignore[arg-type]


def test_labels() -> None:
    assert field_label("01", "contact.email") == "Cán bộ đầu mối liên hệ – Thư điện tử"
    assert field_label("05", "party_b.representing") == "Bên nhận (Bên B) – Đại diện cho"
    assert field_label("01", "legal_bases[2]") == "Căn cứ pháp lý của ứng dụng, dịch vụ"
    with pytest.raises(KeyError):
        field_label("01", "contact.fax")


# -- good input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(FORM_KINDS))
def test_a_complete_submission_becomes_its_record(kind: str) -> None:
    record = ok(kind, SAMPLES[kind])
    assert type(record) is FORM_KINDS[kind].record
    if isinstance(record, Form05):
        assert record.handover_at == dt.datetime(2026, 3, 9, 9, 30, tzinfo=VIETNAM_TZ)
        assert record.party_b.representing == "Sở Y tế"
        assert record.form_03.issued_on == dt.date(2026, 3, 2)
    elif isinstance(record, AgencyLetter):
        assert record.agency == "Sở Y tế" and record.contact.email == "tuyet.nta@syt.example.gov.vn"
        assert record.issued_on == dt.date(2026, 3, 2) and record.signer.name == "Phạm Văn Đức"
    else:
        assert isinstance(record, ReplyLetter)
        assert record.request.number == "125/SYT-VP" and record.signer.on_behalf_of == "Giám đốc"


def test_text_is_trimmed_composed_and_emails_normalized() -> None:
    decomposed = unicodedata.normalize("NFD", "Sở Y tế Đồng Nai")
    assert decomposed != "Sở Y tế Đồng Nai"
    record = ok("01", with_("01", agency=f"  {decomposed} ",
                            contact={**SAMPLES["01"]["contact"], "email": "Tuyet@SYT.Example.GOV.VN"}))
    assert record.agency == "Sở Y tế Đồng Nai"
    assert record.contact.email == "Tuyet@syt.example.gov.vn"


def test_dotted_names_are_groups_and_bytes_are_utf8() -> None:
    data: dict[str, Any] = {k: v for k, v in SAMPLES["01"].items() if k != "contact"}
    data |= {f"contact.{k}": v for k, v in SAMPLES["01"]["contact"].items()}
    data["agency"] = "Sở Y tế".encode()
    record = ok("01", data)
    assert record == ok("01", SAMPLES["01"])


def test_a_textarea_gives_one_item_a_line_and_blank_values_are_blank() -> None:
    record = ok("01", with_("01", legal_bases="Quyết định số 1/QĐ-UBND\r\n\r\n  Nghị quyết số 2/NQ-HĐND  \n",
                            application_abbreviation="   ", parent_body=None, copies_to=[]))
    assert record.legal_bases == ("Quyết định số 1/QĐ-UBND", "Nghị quyết số 2/NQ-HĐND")
    assert record.application_abbreviation is None and record.parent_body is None and record.copies_to == ()


def test_moments_and_dates_in_other_shapes() -> None:
    # A handover time with a zone is converted to Vietnam time; a datetime object is taken as is.
    record = ok("05", with_("05", handover_at="2026-03-09T02:30:00Z"))
    assert record.handover_at == dt.datetime(2026, 3, 9, 9, 30, tzinfo=VIETNAM_TZ)
    record = ok("05", with_("05", handover_at=dt.datetime(2026, 3, 9, 9, 30)))
    assert record.handover_at.utcoffset() == dt.timedelta(hours=7)
    record = ok("02", with_("02", issued_on=dt.date(2026, 3, 6)))
    assert record.issued_on == dt.date(2026, 3, 6)
    assert ok("02", with_("02", issued_on="2028-02-29")).issued_on == dt.date(2028, 2, 29)  # a leap day


# -- bad input --------------------------------------------------------------------------------------

REQUIRED = {
    "01": {"agency", "contact.name", "contact.email", "contact.phone", "application_name", "developer"},
    "02": {"agency", "request.number", "request.issued_on", "support_contact.name", "support_contact.phone"},
    "03": {"agency", "contact.name", "contact.email", "contact.phone"},
    "04": {"agency", "request.number", "request.issued_on", "support_contact.name", "support_contact.phone"},
    "05": {"form_04.number", "form_04.issued_on", "form_03.number", "form_03.issued_on", "handover_at",
           "handover_place", "party_a.name", "party_a.position", "party_b.name", "party_b.position",
           "party_b.representing"},
    "06": {"agency", "contact.name", "contact.email", "contact.phone", "application_name"},
    "07": {"agency", "request.number", "request.issued_on"},
}


@pytest.mark.parametrize("kind", list(FORM_KINDS))
def test_an_empty_submission_names_every_required_field(kind: str) -> None:
    found = errors(kind, {})
    assert found == {path: MESSAGES["required"] for path in REQUIRED[kind]}
    # Blank text is no answer either.
    assert errors(kind, {path: "   " for path in REQUIRED[kind]}) == found


@pytest.mark.parametrize("kind", list(FORM_KINDS))
def test_each_required_field_alone_is_missed(kind: str) -> None:
    for path in REQUIRED[kind]:
        head, _, rest = path.partition(".")
        data = dict(SAMPLES[kind])
        if rest:
            data[head] = {k: v for k, v in data[head].items() if k != rest}
        else:
            del data[head]
        assert errors(kind, data) == {path: MESSAGES["required"]}, path


BAD_TEXT = [
    ("x\x00y", "control"), ("Sở\nY tế", "control"), ("Sở\tY tế", "control"), ("a\x1bb", "control"),
    ("Sở Y tế\u202egnp.exe", "control"), ("\ud800", "utf-8"), (b"S\xc6", "utf-8"), (42, "type"),
    (["Sở Y tế"], "type"),
]


@pytest.mark.parametrize(("value", "code"), BAD_TEXT)
def test_text_that_is_not_one_clean_line_is_refused(value: object, code: str) -> None:
    assert errors("01", with_("01", agency=value)) == {"agency": MESSAGES[code]}
    assert errors("03", with_("03", contact={**SAMPLES["03"]["contact"], "name": value})) == \
        {"contact.name": MESSAGES[code]}


def test_lengths_are_bounded_at_the_exact_limit() -> None:
    assert ok("01", with_("01", agency="Đ" * 200)).agency == "Đ" * 200
    assert errors("01", with_("01", agency="Đ" * 201)) == {"agency": "Dài quá 200 ký tự."}
    # Counted in characters after composition: 200 decomposed "Ế" are 200 characters, not 600.
    assert ok("01", with_("01", agency=unicodedata.normalize("NFD", "Ế") * 200)).agency == "Ế" * 200
    assert errors("01", with_("01", application_abbreviation="A" * 31)) == \
        {"application_abbreviation": "Dài quá 30 ký tự."}
    assert errors("01", with_("01", legal_bases=["x" * 501])) == {"legal_bases[0]": "Dài quá 500 ký tự."}
    assert errors("01", with_("01", legal_bases=[f"Quyết định {i}" for i in range(11)])) == \
        {"legal_bases": "Nhiều nhất 10 mục."}


@pytest.mark.parametrize("email", ["tuyet", "tuyet@", "@syt.gov.vn", "tuyet@@syt.gov.vn", "tuyet @syt.gov.vn",
                                   "tuyet@syt", "a" * 250 + "@x.vn"])
def test_bad_emails(email: str) -> None:
    contact = {**SAMPLES["01"]["contact"], "email": email}
    found = errors("01", with_("01", contact=contact))
    assert found in ({"contact.email": MESSAGES["email"]}, {"contact.email": "Dài quá 254 ký tự."})


@pytest.mark.parametrize("phone", ["123", "0251", "số máy lẻ 12", "0251 3822 123 ext 4", "+84", "00000000000",
                                   "0912-345-67a", "1" * 31])
def test_bad_phones(phone: str) -> None:
    found = errors("02", with_("02", support_contact={**SAMPLES["02"]["support_contact"], "phone": phone}))
    assert found in ({"support_contact.phone": MESSAGES["phone"]}, {"support_contact.phone": "Dài quá 30 ký tự."})


@pytest.mark.parametrize("phone", ["0251 3822 456", "0251.3822.456", "(0251) 3822456", "0912345678",
                                   "+84 912 345 678", "028 3829 1234", "+1 202 555 0123"])
def test_good_phones(phone: str) -> None:
    record = ok("02", with_("02", support_contact={**SAMPLES["02"]["support_contact"], "phone": phone}))
    assert record.support_contact.phone == phone  # kept as the person wrote it


@pytest.mark.parametrize(("value", "code"), [
    ("2026-02-29", "no_such_day"), ("2026-04-31", "no_such_day"), ("2026-13-01", "no_such_day"),
    ("02/03/2026", "date"), ("2026-3-2", "date"), ("2026-03-02T10:00", "date"), ("hôm qua", "date"),
    ("1999-12-31", "year"), ("2100-01-01", "year"), (dt.date(1975, 4, 30), "year"),
    (dt.datetime(2026, 3, 2, 10, 0), "date"), (20260302, "type"),
])
def test_dates_that_do_not_exist_or_are_misspelled(value: object, code: str) -> None:
    assert errors("02", with_("02", request={**SAMPLES["02"]["request"], "issued_on": value})) == \
        {"request.issued_on": MESSAGES[code]}


@pytest.mark.parametrize(("value", "code"), [
    ("2026-03-09", "datetime"), ("09:30 2026-03-09", "datetime"), ("2026-02-30T09:30", "no_such_day"),
    ("2026-03-09T25:00", "no_such_day"), ("1990-03-09T09:30", "year"), (dt.date(2026, 3, 9), "datetime"),
])
def test_handover_moments(value: object, code: str) -> None:
    assert errors("05", with_("05", handover_at=value)) == {"handover_at": MESSAGES[code]}


def test_numbers_references_and_abbreviations() -> None:
    assert errors("01", with_("01", number="12a")) == {"number": MESSAGES["number"]}
    assert errors("01", with_("01", number="125/SYT")) == {"number": MESSAGES["number"]}
    assert errors("01", with_("01", abbreviation="SYT VP")) == {"abbreviation": MESSAGES["abbreviation"]}
    assert errors("01", with_("01", abbreviation="SYT_VP")) == {"abbreviation": MESSAGES["abbreviation"]}
    assert ok("01", with_("01", abbreviation="QĐ-UBND")).abbreviation == "QĐ-UBND"
    for bad in ("125", "SYT-VP", "125 /SYT", "125/", "125/SYT VP"):
        assert errors("07", with_("07", request={"number": bad, "issued_on": "2026-03-02"})) == \
            {"request.number": MESSAGES["reference"]}, bad
    for good in ("125/SYT-VP", "12/2025/QĐ-UBND", "7/BB-TTCNTT"):
        assert ok("07", with_("07", request={"number": good, "issued_on": "2026-03-02"})).request.number == good


def test_unknown_fields_shapes_and_conflicts() -> None:
    assert errors("01", with_("01", fax="0251", **{"contact.fax": "1"})) == \
        {"fax": MESSAGES["unknown"], "contact.fax": MESSAGES["unknown"]}
    assert errors("01", with_("01", contact="Tuyết")) == {"contact": MESSAGES["not_group"]}
    assert errors("01", with_("01", legal_bases=5)) == {"legal_bases": MESSAGES["not_list"]}
    assert errors("01", with_("01", **{"contact.name": "Khác"})) == {"contact.name": MESSAGES["conflict"]}
    with_int_key: dict[object, object] = {7: "x"}
    with_int_key.update(SAMPLES["01"])
    assert errors("01", with_int_key) == {"7": MESSAGES["unknown"]}
    not_mappings: tuple[object, ...] = (None, [], "agency=Sở Y tế")
    for data in not_mappings:
        assert errors("01", data) == {"": MESSAGES["not_mapping"]}


def test_several_problems_are_all_reported() -> None:
    found = errors("01", with_("01", agency="", number="x", contact={"email": "bad", "phone": "1"},
                               legal_bases=["ok", "a\x00b"]))
    assert found == {"agency": MESSAGES["required"], "number": MESSAGES["number"],
                     "contact.name": MESSAGES["required"], "contact.email": MESSAGES["email"],
                     "contact.phone": MESSAGES["phone"], "legal_bases[1]": MESSAGES["control"]}


def test_dates_that_contradict_each_other() -> None:
    assert errors("02", with_("02", issued_on="2026-03-01")) == \
        {"issued_on": "Ngày ban hành trước ngày của văn bản đề nghị."}
    assert ok("02", with_("02", issued_on="2026-03-02")).issued_on == dt.date(2026, 3, 2)  # the same day is fine
    assert errors("05", with_("05", form_04={"number": "45/TTCNTT", "issued_on": "2026-03-01"})) == \
        {"form_04.issued_on": "Văn bản Mẫu 04 đề ngày trước văn bản đề nghị Mẫu 03."}
    assert errors("05", with_("05", handover_at="2026-03-05T16:00")) == \
        {"handover_at": "Thời gian bàn giao trước ngày của văn bản Mẫu 04."}


def test_parse_form_with_a_class() -> None:
    record = parse_form(Form02, SAMPLES["02"])
    assert isinstance(record, Form02)
    assert form_kind("02").record is Form02
