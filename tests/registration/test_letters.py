"""Every form printed as a .docx and read back with python-docx: the administrative layout, each
value present with its diacritics, dotted blanks for what is missing, markup printed literally."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import unicodedata
import zipfile
from collections.abc import Iterator
from typing import Any

import docx
import pytest
from docx.document import Document as DocxDocument
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Mm, Pt

from lgsp.core.config import ApproversConfig, Config
from lgsp.core.registration.forms import FORM_KINDS, AgencyLetter, Form01, Form05, FormRecord, validate
from lgsp.core.registration.letters import DOTS, SHORT, render_letter, vn_date, vn_moment, write_letter

from .samples import SAMPLES

BLANK = Config().registration
CENTRE = "Trung tâm Công nghệ thông tin và Truyền thông"
CFG = dataclasses.replace(
    BLANK, province="tỉnh Đồng Nai", place="Đồng Nai",
    department=dataclasses.replace(BLANK.department, address="Số 2 đường Nguyễn Văn Trị, phường Trấn Biên",
                                   phone="0251 3822 111", email="skhcn@example.gov.vn"),
    centre=dataclasses.replace(BLANK.centre, name=CENTRE, abbreviation="TTCNTT", phone="0251 3822 123"),
    decision=dataclasses.replace(BLANK.decision, number="12/2025/QĐ-UBND", issued_on=dt.date(2025, 3, 5),
                                 issuer="Ủy ban nhân dân tỉnh Đồng Nai"))
DECISION_LINE = ("Căn cứ Quyết định số 12/2025/QĐ-UBND ngày 05 tháng 3 năm 2025 của Ủy ban nhân dân tỉnh Đồng Nai "
                 "ban hành Quy chế quản lý, vận hành và sử dụng hệ thống Trục liên thông tỉnh;")


def record_of(kind: str, **changes: Any) -> Any:
    record = validate(kind, {**SAMPLES[kind], **changes})
    assert not isinstance(record, list), record
    return record


def read(data: bytes) -> DocxDocument:
    assert data[:2] == b"PK"
    return docx.Document(io.BytesIO(data))


def cells(doc: DocxDocument, table: int) -> list[list[str]]:
    return [[p.text for p in cell.paragraphs] for cell in doc.tables[table].rows[0].cells]


def body(doc: DocxDocument) -> list[str]:
    return [p.text for p in doc.paragraphs if p.text]


def all_text(doc: DocxDocument) -> str:
    parts = [p.text for p in doc.paragraphs]
    parts += [p.text for t in doc.tables for c in t.rows[0].cells for p in c.paragraphs]
    parts += [p.text for p in doc.sections[0].first_page_footer.paragraphs]
    return "\n".join(parts)


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from strings(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from strings(getattr(value, f.name))


def dates(value: object) -> Iterator[dt.date]:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from dates(getattr(value, f.name))


# -- content ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(FORM_KINDS))
def test_every_value_of_every_form_is_printed(kind: str) -> None:
    record = record_of(kind)
    doc = read(render_letter(record, CFG))
    text = all_text(doc)
    for value in strings(record):
        assert value in text or value.upper() in text, value
    for day in dates(record):
        assert vn_date(day) in text, day
    if isinstance(record, Form05):
        assert vn_moment(record.handover_at) == "09 giờ 30 phút, ngày 09 tháng 3 năm 2026"
        assert "09 giờ 30 phút, ngày 09 tháng 3 năm 2026" in text
    assert DECISION_LINE in body(doc)
    assert unicodedata.is_normalized("NFC", text)
    assert "Nguyễn Thị Ánh Tuyết" in text or kind in ("02", "04", "07")
    assert "\ufffd" not in text


@pytest.mark.parametrize("kind", [k for k, fk in FORM_KINDS.items() if fk.document == "letter"])
def test_the_letter_heading_and_foot(kind: str) -> None:
    record = record_of(kind)
    doc = read(render_letter(record, CFG))
    left, right = cells(doc, 0)
    assert right[:2] == ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]
    assert right[-1] == "Đồng Nai, " + vn_date(record.issued_on)
    assert left[-1] == FORM_KINDS[kind].subject_line
    if isinstance(record, AgencyLetter):
        assert left[:2] == ["UBND TỈNH ĐỒNG NAI", "SỞ Y TẾ"]
        assert "Số: 125/SYT-VP" in left
        addressee = {"01": "Sở Khoa học và Công nghệ", "03": CENTRE, "06": "Sở Khoa học và Công nghệ"}[kind]
    else:
        heading = {"02": ["UBND TỈNH ĐỒNG NAI", "SỞ KHOA HỌC VÀ CÔNG NGHỆ", "", "Số: 45/SKHCN"],
                   "04": ["SỞ KHOA HỌC VÀ CÔNG NGHỆ", CENTRE.upper(), "", "Số: 45/TTCNTT"],
                   "07": ["UBND TỈNH ĐỒNG NAI", "SỞ KHOA HỌC VÀ CÔNG NGHỆ", "", "Số: 45/SKHCN"]}[kind]
        assert left[:4] == heading
        addressee = "Sở Y tế"
    assert body(doc)[0] == f"Kính gửi: {addressee}"
    assert body(doc)[1] == DECISION_LINE
    assert body(doc)[-1].endswith("./.")
    recipients, signature = cells(doc, 1)
    assert recipients[0] == "Nơi nhận:" and recipients[1] == "- Như trên;"
    assert recipients[-1] == f"- Lưu: VT, {record.archive_unit}."
    assert f"- {record.copies_to[0]};" in recipients
    assert "(Ký, ghi rõ họ tên, đóng dấu)" in signature and signature[-1] == record.signer.name
    if record.signer.on_behalf_of:
        assert signature[:2] == ["KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"]
    else:
        assert signature[0] == "GIÁM ĐỐC"


def test_the_handover_record() -> None:
    record = record_of("05")
    doc = read(render_letter(record, CFG))
    left, right = cells(doc, 0)
    assert left == ["SỞ KHOA HỌC VÀ CÔNG NGHỆ", CENTRE.upper(), "", "Số: 7/BB-TTCNTT"]
    assert right == ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", ""]
    lines = body(doc)
    assert lines[:3] == ["BIÊN BẢN", FORM_KINDS["05"].subject_line, DECISION_LINE]
    assert lines[3].startswith(f"Căn cứ Văn bản số 45/TTCNTT ngày 06 tháng 3 năm 2026 của {CENTRE} về việc cung cấp")
    assert lines[4].startswith("Căn cứ Văn bản số 125/SYT-VP ngày 02 tháng 3 năm 2026 của Sở Y tế về việc đề nghị")
    # Party A did not say whom it represents: the Centre that hands over.
    assert f"BÊN GIAO (BÊN A): {CENTRE}" in lines and "BÊN NHẬN (BÊN B): Sở Y tế" in lines
    assert lines[-1] == "Biên bản được lập thành 02 bản có giá trị như nhau, mỗi bên giữ 01 bản./."
    side_b, side_a = cells(doc, 1)
    assert side_b == ["ĐẠI DIỆN BÊN B", "(Ký, ghi rõ họ tên)", "Nguyễn Thị Ánh Tuyết"]
    assert side_a == ["ĐẠI DIỆN BÊN A", "(Ký, ghi rõ họ tên)", "Trần Quốc Hưng"]
    assert "Nơi nhận:" not in all_text(doc)


@pytest.mark.parametrize("kind", list(FORM_KINDS))
def test_a_blank_form_prints_dotted_blanks(kind: str) -> None:
    doc = read(render_letter(FORM_KINDS[kind].record(), BLANK))
    text = all_text(doc)
    left, _ = cells(doc, 0)
    assert any(line.startswith(f"Số: {SHORT}/") for line in left)
    assert f"Căn cứ Quyết định số {DOTS} {vn_date(None)} của {DOTS} ban hành" in text
    assert text.count(DOTS) >= 4
    if FORM_KINDS[kind].document == "letter":
        assert f"ngày {SHORT} tháng {SHORT} năm 20{SHORT}" in cells(doc, 0)[1][-1]
        assert cells(doc, 1)[0][-1] == f"- Lưu: VT, {SHORT}."
        assert cells(doc, 1)[1][-1] == DOTS  # the signer's name
    else:
        assert f"vào lúc {SHORT} giờ {SHORT} phút, ngày {SHORT}" in text
    # The blank operator of an unconfigured hub is a blank too, never a made-up name.
    assert "Đồng Nai" not in text
    assert doc.sections[0].first_page_footer.paragraphs[0].text == ""


def test_blank_fields_of_a_filled_form() -> None:
    record = record_of("01", application_abbreviation=None, contact={**SAMPLES["01"]["contact"], "position": ""},
                       parent_body=None)
    doc = read(render_letter(record, CFG))
    assert f"2. Tên viết tắt: {DOTS}" in body(doc) and f"- Chức vụ: {DOTS}" in body(doc)
    assert cells(doc, 0)[0][0] == "SỞ Y TẾ"  # no parent body: no line for it


def test_markup_is_printed_literally() -> None:
    tricky = "Sở <b>Y</b> tế & {{agency}} ${x} <w:t>]]></w:t> &amp;"
    record = record_of("01", agency=tricky, legal_bases=["Căn cứ Luật Giao dịch điện tử năm 2023."])
    data = render_letter(record, CFG)
    lines = body(read(data))
    assert f"{tricky} đăng ký thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh như sau:" in lines
    assert "Căn cứ Luật Giao dịch điện tử năm 2023;" in lines  # "Căn cứ" not doubled
    xml = zipfile.ZipFile(io.BytesIO(data)).read("word/document.xml").decode()
    assert "&lt;b&gt;Y&lt;/b&gt;" in xml and "&lt;w:t&gt;]]&gt;&lt;/w:t&gt; &amp;amp;" in xml
    assert "<b>" not in xml


def test_approvers_decide_who_writes_and_who_is_addressed() -> None:
    cfg = dataclasses.replace(CFG, approvers=ApproversConfig(form_02="centre", form_04="department"))
    doc = read(render_letter(record_of("02"), cfg))
    assert cells(doc, 0)[0][:2] == ["SỞ KHOA HỌC VÀ CÔNG NGHỆ", CENTRE.upper()]
    assert f"{CENTRE} thông báo để Quý cơ quan biết, phối hợp thực hiện./." in body(doc)
    assert body(read(render_letter(record_of("01"), cfg)))[0] == f"Kính gửi: {CENTRE}"
    assert body(read(render_letter(record_of("03"), cfg)))[0] == "Kính gửi: Sở Khoa học và Công nghệ"


def test_the_operator_contact_line_sits_at_the_foot_of_the_first_page() -> None:
    doc = read(render_letter(record_of("02"), CFG))
    section = doc.sections[0]
    assert section.different_first_page_header_footer
    assert section.first_page_footer.paragraphs[0].text == (
        "Địa chỉ: Số 2 đường Nguyễn Văn Trị, phường Trấn Biên; Điện thoại: 0251 3822 111; "
        "Thư điện tử: skhcn@example.gov.vn")
    assert read(render_letter(record_of("04"), CFG)).sections[0].first_page_footer.paragraphs[0].text == \
        "Điện thoại: 0251 3822 123"
    agency_letter = read(render_letter(record_of("01"), CFG)).sections[0]
    assert not agency_letter.different_first_page_header_footer


# -- layout -------------------------------------------------------------------------------------

def _borders(table: Any) -> dict[str, str]:
    element = table._tbl.tblPr.find(qn("w:tblBorders"))
    return {child.tag.split("}")[1]: child.get(qn("w:val")) for child in element}


def test_page_font_and_borderless_tables() -> None:
    doc = read(render_letter(record_of("02"), CFG))
    section = doc.sections[0]
    # Word stores lengths in twentieths of a point: compare in whole millimetres.
    lengths = [section.page_width, section.page_height, section.top_margin, section.bottom_margin,
               section.left_margin, section.right_margin]
    assert [round(length.mm) if length is not None else None for length in lengths] == [210, 297, 20, 20, 30, 15]
    normal = doc.styles["Normal"]
    assert normal.font.name == "Times New Roman" and normal.font.size == Pt(14)
    fonts = normal.element.rPr.rFonts
    assert {fonts.get(qn(a)) for a in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs")} == {"Times New Roman"}
    assert normal.element.rPr.find(qn("w:lang")).get(qn("w:val")) == "vi-VN"
    assert len(doc.tables) == 2
    for table in doc.tables:
        assert len(table.columns) == 2
        assert _borders(table) == dict.fromkeys(("top", "left", "bottom", "right", "insideH", "insideV"), "nil")
    assert round(sum(c.width for c in doc.tables[0].rows[0].cells) / Mm(1)) == 165


def test_type_faces_of_the_heading_and_the_foot() -> None:
    doc = read(render_letter(record_of("01"), CFG))
    left, right = (cell.paragraphs for cell in doc.tables[0].rows[0].cells)
    assert not left[0].runs[0].bold and left[1].runs[0].bold             # parent body, body
    assert right[0].runs[0].bold and right[1].runs[0].bold               # the motto
    assert right[-1].runs[0].italic and right[-1].runs[0].font.size == Pt(14)  # place and date
    assert all(p.alignment == WD_ALIGN_PARAGRAPH.CENTER for p in [*left, *right] if p.text)
    recipients = doc.tables[1].rows[0].cells[0].paragraphs
    assert recipients[0].runs[0].bold and recipients[0].runs[0].italic and recipients[0].runs[0].font.size == Pt(12)
    justified = [p for p in doc.paragraphs if p.text.startswith("Căn cứ")]
    assert justified and all(p.alignment == WD_ALIGN_PARAGRAPH.JUSTIFY for p in justified)


FOLLOWING_PBDR = {qn(t) for t in ("w:shd", "w:tabs", "w:spacing", "w:ind", "w:jc", "w:rPr")}


def test_properties_are_in_the_order_word_requires() -> None:
    data = render_letter(record_of("05"), CFG)
    root = read(data).element
    borders = 0
    for ppr in root.iter(qn("w:pPr")):
        tags = [child.tag for child in ppr]
        if qn("w:pBdr") in tags:
            borders += 1
            assert not FOLLOWING_PBDR & set(tags[:tags.index(qn("w:pBdr"))]), tags
    assert borders >= 3
    for tblpr in root.iter(qn("w:tblPr")):
        tags = [child.tag for child in tblpr]
        position = tags.index(qn("w:tblBorders"))
        assert not {qn("w:tblLayout"), qn("w:tblLook"), qn("w:shd")} & set(tags[:position]), tags


# -- the rest -----------------------------------------------------------------------------------

def test_a_record_built_in_code_with_control_characters_is_refused() -> None:
    record: FormRecord = dataclasses.replace(record_of("01"), agency="Sở\x0bY tế")
    with pytest.raises(ValueError, match=r"^agency: not printable text"):
        render_letter(record, CFG)
    bad_contact = dataclasses.replace(record_of("03").contact, name="\ud800")
    with pytest.raises(ValueError, match=r"^contact\.name: "):
        render_letter(dataclasses.replace(record_of("03"), contact=bad_contact), CFG)
    with pytest.raises(ValueError, match=r"^legal_bases\[0\]: "):
        render_letter(Form01(legal_bases=("a\x00",)), CFG)


def test_write_to_a_stream() -> None:
    out = io.BytesIO()
    write_letter(record_of("07"), CFG, out)
    assert all_text(read(out.getvalue())) == all_text(read(render_letter(record_of("07"), CFG)))


def test_vietnamese_dates() -> None:
    assert vn_date(dt.date(2026, 3, 5)) == "ngày 05 tháng 3 năm 2026"
    assert vn_date(dt.date(2026, 1, 15)) == "ngày 15 tháng 01 năm 2026"
    assert vn_date(dt.date(2026, 2, 1)) == "ngày 01 tháng 02 năm 2026"
    assert vn_date(dt.date(2026, 12, 31)) == "ngày 31 tháng 12 năm 2026"
    assert vn_moment(dt.datetime(2026, 3, 8, 23, 5, tzinfo=dt.UTC)) == "06 giờ 05 phút, ngày 09 tháng 3 năm 2026"
