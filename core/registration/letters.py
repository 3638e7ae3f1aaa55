"""Print a form record as the official letter (or record) the regulation's forms are: a .docx.

The layout follows the Vietnamese administrative model (Nghị định 30/2020/NĐ-CP, Phụ lục I): A4 with
margins 20/20/30/15 mm, Times New Roman; a borderless two-column heading with the issuing body and
"Số: …/<abbr>" on the left, the national motto and "<place>, ngày … tháng … năm …" on the right,
the "V/v …" line under the number; then "Kính gửi:", the legal bases ("Căn cứ …", always the
decision that issued the regulation), the body, and a borderless foot with "Nơi nhận:" on the left
and the signature block on the right. Mẫu 05 is a BIÊN BẢN signed by both parties. Every blank
field prints as a dotted blank so the paper can be completed by hand. Text goes in as text (the
XML is escaped by python-docx): what looks like markup prints literally.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.oxml.xmlchemy import BaseOxmlElement
from docx.shared import Mm, Pt
from docx.table import _Cell
from docx.text.paragraph import Paragraph
from lxml import etree

from lgsp.core.config import RegistrationConfig
from lgsp.core.i18n import gettext
from lgsp.core.registration.checks import text_problem
from lgsp.core.registration.forms import (
    AgencyLetter,
    Form01,
    Form02,
    Form03,
    Form04,
    Form05,
    Form06,
    Form07,
    FormRecord,
    Letter,
    ReplyLetter,
    Role,
    Signer,
    kind_of,
    recipient_of,
    sender_of,
)
from lgsp.core.registration.workdays import VIETNAM_TZ

FONT = "Times New Roman"
DOTS = "…………………"       # a blank to complete by hand
SHORT = "……"               # a blank day, month, hour
MOTTO = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")
SIGN_NOTE = "(Ký, ghi rõ họ tên, đóng dấu)"
PARTY_SIGN_NOTE = "(Ký, ghi rõ họ tên)"

# A4 and its margins (mm): top, bottom, left, right; the width left for text.
PAGE = (210, 297)
MARGINS = (20, 20, 30, 15)
TEXT_WIDTH = PAGE[0] - MARGINS[2] - MARGINS[3]
HEAD_COLUMNS = (62, TEXT_WIDTH - 62)
FOOT_COLUMNS = (75, TEXT_WIDTH - 75)
BODY_PT, HEAD_PT, MOTTO_PT, SUBJECT_PT, RECIPIENTS_PT, RECIPIENT_ITEM_PT = 14, 13, 12, 13, 12, 11


def _or(value: str | None, blank: str = DOTS) -> str:
    return value if value else blank


def vn_date(day: dt.date | None) -> str:
    """"ngày 05 tháng 3 năm 2026": days under 10 and months 1 and 2 take a leading zero (NĐ 30/2020)."""
    if day is None:
        return f"ngày {SHORT} tháng {SHORT} năm 20{SHORT}"
    month = f"{day.month:02d}" if day.month <= 2 else str(day.month)
    return f"ngày {day.day:02d} tháng {month} năm {day.year}"


def vn_moment(moment: dt.datetime | None) -> str:
    if moment is None:
        return f"{SHORT} giờ {SHORT} phút, {vn_date(None)}"
    local = moment.astimezone(VIETNAM_TZ) if moment.tzinfo else moment
    return f"{local.hour:02d} giờ {local.minute:02d} phút, {vn_date(local.date())}"


def _basis(text: str) -> str:
    """"Căn cứ <text>;" whether or not the person already wrote "Căn cứ" or a final mark."""
    text = text.rstrip(" ;.")
    if text[:6].lower() == "căn cứ":
        text = text[6:].lstrip()
    return f"Căn cứ {text};"


@dataclass(frozen=True)
class _Office:
    """A heading: the parent body (none for some agencies), the body, its symbol and signature."""

    parent: str | None
    name: str
    abbreviation: str
    signer_title: str
    footer: str = ""


def _office(role: Role, cfg: RegistrationConfig) -> _Office:
    d, c = cfg.department, cfg.centre
    if role == "department":
        return _Office(f"UBND {_or(cfg.province)}", _or(d.name), _or(d.abbreviation), d.signer_title,
                       _footer(d.address, d.phone, d.email))
    return _Office(_or(d.name), _or(c.name), _or(c.abbreviation), c.signer_title, _footer(c.address, c.phone, c.email))


def _footer(address: str, phone: str, email: str) -> str:
    parts = [f"{label}: {value}" for label, value in
             (("Địa chỉ", address), ("Điện thoại", phone), ("Thư điện tử", email)) if value]
    return "; ".join(parts)


def _agency_office(record: AgencyLetter) -> _Office:
    return _Office(record.parent_body, _or(record.agency), _or(record.abbreviation), "")


@dataclass
class _Para:
    """One paragraph of the body: its runs (text, bold, italic) and how it sits."""

    runs: list[tuple[str, bool, bool]]
    align: WD_ALIGN_PARAGRAPH = WD_ALIGN_PARAGRAPH.JUSTIFY
    indent: bool = True


def _p(text: str, *, bold: bool = False, italic: bool = False, indent: bool = True,
       align: WD_ALIGN_PARAGRAPH = WD_ALIGN_PARAGRAPH.JUSTIFY) -> _Para:
    return _Para([(text, bold, italic)], align, indent)


def _labelled(label: str, value: str | None) -> _Para:
    return _p(f"- {label}: {_or(value)}")


# -- the bodies of the seven forms ---------------------------------------------------------------

def _contact_lines(record: AgencyLetter, heading: str = "Cán bộ đầu mối liên hệ:") -> list[_Para]:
    c = record.contact
    return [_p(heading), _labelled("Họ và tên", c.name), _labelled("Chức vụ", c.position),
            _labelled("Phòng, ban", c.department), _labelled("Thư điện tử", c.email),
            _labelled("Điện thoại", c.phone)]


def _support_lines(record: Form02 | Form04, centre: str) -> list[_Para]:
    s = record.support_contact
    return [_p(f"Đầu mối hỗ trợ kỹ thuật của {centre}:"), _labelled("Họ và tên", s.name),
            _labelled("Phòng, ban", s.department), _labelled("Điện thoại", s.phone)]


def _request_ref(record: ReplyLetter) -> str:
    return f"Văn bản số {_or(record.request.number)} {vn_date(record.request.issued_on)}"


def _body(record: FormRecord, cfg: RegistrationConfig) -> list[_Para]:
    fk = kind_of(record)
    regulation = cfg.decision.title
    centre = _or(cfg.centre.name)
    if isinstance(record, Form01):
        agency = _or(record.agency)
        return [
            _p(f"{agency} đăng ký thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh như sau:"),
            _p(f"1. Tên ứng dụng, dịch vụ: {_or(record.application_name)}"),
            _p(f"2. Tên viết tắt: {_or(record.application_abbreviation)}"),
            _p(f"3. Đơn vị phát triển: {_or(record.developer)}"),
            *_contact_lines(record, "4. Cán bộ đầu mối liên hệ:"),
            _p(f"{agency} cam kết thực hiện đúng các quy định tại {regulation} và chịu trách nhiệm về "
               "thông tin đã đăng ký./."),
        ]
    if isinstance(record, Form03):
        agency = _or(record.agency)
        return [
            _p(f"{agency} đề nghị cung cấp tài khoản quản trị, tài liệu kỹ thuật và đầu mối hỗ trợ kỹ thuật "
               f"để kết nối, quản trị và theo dõi việc gửi, nhận của {agency} trên Trục liên thông tỉnh."),
            *_contact_lines(record),
            _p(f"{agency} cam kết quản lý, sử dụng tài khoản được cấp đúng quy định tại {regulation}./."),
        ]
    if isinstance(record, Form06):
        agency = _or(record.agency)
        return [
            _p(f"Do ứng dụng, dịch vụ dưới đây đã ngừng hoạt động, {agency} đề nghị hủy bỏ thông tin đã đăng ký "
               "của ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh và thu hồi các quyền đã cấp cho ứng dụng, "
               "dịch vụ đó:"),
            _labelled("Tên ứng dụng, dịch vụ", record.application_name),
            _labelled("Tên viết tắt", record.application_abbreviation),
            *_contact_lines(record),
            _p("Trân trọng./."),
        ]
    issuer = _office(sender_of(fk.kind, cfg.approvers), cfg).name
    if isinstance(record, Form02):
        return [
            _p(f"Xét đề nghị của {_or(record.agency)} tại {_request_ref(record)} về việc đăng ký thông tin ứng "
               "dụng, dịch vụ kết nối với Trục liên thông tỉnh,"),
            _p(f"{issuer} thông báo: {centre} đã thực hiện đăng ký thông tin ứng dụng, dịch vụ kết nối với "
               "Trục liên thông tỉnh theo đề nghị của Quý cơ quan."),
            *_support_lines(record, centre),
            _p(f"{issuer} thông báo để Quý cơ quan biết, phối hợp thực hiện./."),
        ]
    if isinstance(record, Form04):
        return [
            _p(f"Thực hiện đề nghị của {_or(record.agency)} tại {_request_ref(record)} về việc đề nghị cung cấp "
               "tài khoản quản trị, tài liệu kỹ thuật và đầu mối hỗ trợ kỹ thuật kết nối với Trục liên thông "
               f"tỉnh, {issuer} cung cấp cho Quý cơ quan tài khoản quản trị hệ thống và tài liệu kỹ thuật kết "
               "nối với Trục liên thông tỉnh (bàn giao theo biên bản)."),
            *_support_lines(record, centre),
            _p(f"Đề nghị Quý cơ quan quản lý, sử dụng tài khoản quản trị đúng quy định tại {regulation}./."),
        ]
    if isinstance(record, Form07):
        return [
            _p(f"Xét đề nghị của {_or(record.agency)} tại {_request_ref(record)} về việc đề nghị hủy bỏ thông "
               "tin đã đăng ký ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh,"),
            _p(f"{issuer} thông báo đã hủy bỏ thông tin đăng ký và thu hồi các quyền trên Trục liên thông tỉnh "
               "của ứng dụng, dịch vụ theo đề nghị của Quý cơ quan./."),
        ]
    raise TypeError(f"no letter body for {type(record).__name__}")  # Form05 is a record: _record_body


def _record_body(record: Form05, issuer: _Office) -> list[_Para]:
    a, b = record.party_a, record.party_b
    side_a, side_b = _or(a.representing or issuer.name), _or(b.representing)
    return [
        _p(f"Hôm nay, vào lúc {vn_moment(record.handover_at)}, tại {_or(record.handover_place)}, chúng tôi gồm:"),
        _p(f"BÊN GIAO (BÊN A): {side_a}", bold=True),
        _labelled("Ông (bà)", a.name), _labelled("Chức vụ", a.position),
        _p(f"BÊN NHẬN (BÊN B): {side_b}", bold=True),
        _labelled("Ông (bà)", b.name), _labelled("Chức vụ", b.position),
        _p("Hai bên thống nhất bàn giao các nội dung sau:"),
        _p(f"1. Tài khoản quản trị hệ thống Trục liên thông tỉnh của {side_b} (tên đăng nhập và mật khẩu)."),
        _p("2. Tài liệu kỹ thuật kết nối với Trục liên thông tỉnh."),
        _p("Trách nhiệm của Bên B:"),
        _p("- Bảo mật thông tin tài khoản quản trị được bàn giao; mọi truy cập bằng tài khoản này được xem là "
           "của Bên B, Bên B chịu trách nhiệm về mọi hoạt động thực hiện bằng tài khoản."),
        _p("- Đổi mật khẩu ngay khi nhận bàn giao; khi phát hiện lộ, mất thông tin tài khoản phải đổi mật khẩu "
           "và liên hệ ngay với Bên A để được hỗ trợ."),
        _p("Biên bản được lập thành 02 bản có giá trị như nhau, mỗi bên giữ 01 bản./."),
    ]


# -- the document -------------------------------------------------------------------------------

def render_letter(record: FormRecord, registration: RegistrationConfig) -> bytes:
    """The .docx of a form record, with the operator's identity from `registration`."""
    out = io.BytesIO()
    write_letter(record, registration, out)
    return out.getvalue()


def write_letter(record: FormRecord, registration: RegistrationConfig, stream: BinaryIO) -> None:
    _refuse_unprintable(record)
    fk = kind_of(record)
    doc = _new_document(gettext(fk.title, "vi"))  # the regulation's words, whoever downloads it
    decision = registration.decision
    bases = [f"Căn cứ Quyết định số {_or(decision.number)} {vn_date(decision.issued_on)} của "
             f"{_or(decision.issuer)} ban hành {decision.title};"]
    if isinstance(record, Form05):
        issuer = _office(sender_of(fk.kind, registration.approvers), registration)
        _heading(doc, issuer, f"BB-{issuer.abbreviation}", record.number, None, None)
        _centered(doc, "BIÊN BẢN", bold=True, size=BODY_PT, before=12)
        _centered(doc, fk.subject_line, bold=True, size=BODY_PT)
        _rule(doc, 55)
        bases += [
            f"Căn cứ Văn bản số {_or(record.form_04.number)} {vn_date(record.form_04.issued_on)} của {issuer.name} "
            "về việc cung cấp tài khoản quản trị, tài liệu kỹ thuật và đầu mối hỗ trợ kỹ thuật kết nối với "
            "Trục liên thông tỉnh;",
            f"Căn cứ Văn bản số {_or(record.form_03.number)} {vn_date(record.form_03.issued_on)} của "
            f"{_or(record.party_b.representing)} về việc đề nghị cung cấp tài khoản quản trị, tài liệu kỹ thuật "
            "và đầu mối hỗ trợ kỹ thuật kết nối với Trục liên thông tỉnh;",
        ]
        _paragraphs(doc, [_p(b) for b in bases] + _record_body(record, issuer))
        _party_signatures(doc, record)
        _footer_line(doc, issuer.footer)
        doc.save(stream)
        return
    assert isinstance(record, Letter)
    if isinstance(record, AgencyLetter):
        office = _agency_office(record)
        addressee = _office(recipient_of(fk.kind, registration.approvers), registration).name
        place = record.place
        bases += [_basis(b) for b in getattr(record, "legal_bases", ())]
    else:
        assert isinstance(record, ReplyLetter)
        office = _office(sender_of(fk.kind, registration.approvers), registration)
        addressee = _or(record.agency)
        place = record.place or registration.place
    _heading(doc, office, office.abbreviation, record.number, fk.subject_line,
             f"{_or(place)}, {vn_date(record.issued_on)}")
    _centered(doc, f"Kính gửi: {addressee}", size=BODY_PT, before=12, after=12)
    _paragraphs(doc, [_p(b) for b in bases] + _body(record, registration))
    _letter_foot(doc, record, office)
    _footer_line(doc, office.footer)
    doc.save(stream)


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name), f"{path}.{f.name}" if path else f.name)


def _refuse_unprintable(record: FormRecord) -> None:
    """A record built in code skipped validation: no control character reaches the file."""
    for path, text in _strings(record, ""):
        if text_problem(text):
            raise ValueError(f"{path}: not printable text (validate the record first)")


def _new_document(title: str) -> DocxDocument:
    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(PAGE[0]), Mm(PAGE[1])
    section.top_margin, section.bottom_margin = Mm(MARGINS[0]), Mm(MARGINS[1])
    section.left_margin, section.right_margin = Mm(MARGINS[2]), Mm(MARGINS[3])
    normal = doc.styles["Normal"]
    normal.font.name = FONT
    normal.font.size = Pt(BODY_PT)
    rpr = normal.element.get_or_add_rPr()
    fonts = rpr.get_or_add_rFonts()
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), FONT)
    lang = rpr.find(qn("w:lang"))
    if lang is None:
        lang = OxmlElement("w:lang")
        _insert_in_order(rpr, lang, "w:lang")
    lang.set(qn("w:val"), "vi-VN")
    fmt = normal.paragraph_format
    fmt.space_before, fmt.space_after = Pt(0), Pt(0)
    props = doc.core_properties
    props.title, props.language, props.author = title, "vi-VN", "lgsp"
    return doc


def _run(paragraph: Paragraph, text: str, *, bold: bool = False, italic: bool = False,
         size: float | None = None) -> None:
    run = paragraph.add_run(text)
    run.bold, run.italic = bold or None, italic or None
    if size is not None:
        run.font.size = Pt(size)


def _centered(container: DocxDocument | _Cell, text: str, *, bold: bool = False, italic: bool = False,
              size: float = HEAD_PT, before: float = 0, after: float = 0) -> Paragraph:
    p = container.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    p.paragraph_format.space_before, p.paragraph_format.space_after = Pt(before), Pt(after)
    _run(p, text, bold=bold, italic=italic, size=size)
    return p


# What follows each property we add, in the order WordprocessingML requires (ECMA-376 part 1, 17.3.1.26,
# 17.3.2.28, 17.4.60); Word refuses a file whose properties are out of order.
_FOLLOWERS = {
    "w:pBdr": ("w:shd", "w:tabs", "w:suppressAutoHyphens", "w:kinsoku", "w:wordWrap", "w:overflowPunct",
               "w:topLinePunct", "w:autoSpaceDE", "w:autoSpaceDN", "w:bidi", "w:adjustRightInd", "w:snapToGrid",
               "w:spacing", "w:ind", "w:contextualSpacing", "w:mirrorIndents", "w:suppressOverlap", "w:jc",
               "w:textDirection", "w:textAlignment", "w:textboxTightWrap", "w:outlineLvl", "w:divId", "w:cnfStyle",
               "w:rPr", "w:sectPr", "w:pPrChange"),
    "w:lang": ("w:eastAsianLayout", "w:specVanish", "w:oMath"),
    "w:tblBorders": ("w:shd", "w:tblLayout", "w:tblCellMar", "w:tblLook", "w:tblCaption", "w:tblDescription",
                     "w:tblPrChange"),
}


def _insert_in_order(parent: BaseOxmlElement, child: etree._Element, tag: str) -> None:
    # OxmlElement() builds python-docx's element classes, typed as plain lxml elements.
    parent.insert_element_before(cast(BaseOxmlElement, child), *_FOLLOWERS[tag])


def _border(side: str) -> etree._Element:
    box = OxmlElement("w:pBdr")
    line = OxmlElement(f"w:{side}")
    for key, value in (("w:val", "single"), ("w:sz", "6"), ("w:space", "1"), ("w:color", "auto")):
        line.set(qn(key), value)
    box.append(line)
    return box


def _rule(container: DocxDocument | _Cell, length_mm: float, width_mm: float = TEXT_WIDTH) -> None:
    """The short solid line under the body's name and under the motto: an empty paragraph's bottom
    border, narrowed by indents to `length_mm` and centred."""
    p = container.add_paragraph()
    side = max(0.0, (width_mm - length_mm) / 2)
    fmt = p.paragraph_format
    fmt.left_indent = fmt.right_indent = Mm(side)
    fmt.space_after = Pt(2)
    fmt.line_spacing = Pt(2)
    _insert_in_order(p._p.get_or_add_pPr(), _border("bottom"), "w:pBdr")


def _borderless_table(doc: DocxDocument, widths: Sequence[float]) -> list[_Cell]:
    table = doc.add_table(rows=1, cols=len(widths))
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    borders = OxmlElement("w:tblBorders")
    for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
        el = OxmlElement(f"w:{edge}")
        el.set(qn("w:val"), "nil")
        borders.append(el)
    _insert_in_order(table._tbl.tblPr, borders, "w:tblBorders")
    cells = list(table.rows[0].cells)
    for cell, width in zip(cells, widths, strict=True):
        cell.width = Mm(width)
        # A new cell holds one empty paragraph; the content is added after it, so drop it.
        cell._tc.remove(cell.paragraphs[0]._p)
    for column, width in zip(table.columns, widths, strict=True):
        column.width = Mm(width)
    return cells


def _heading(doc: DocxDocument, office: _Office, abbreviation: str, number: str | None,
             subject_line: str | None, place_date: str | None) -> None:
    left, right = _borderless_table(doc, HEAD_COLUMNS)
    if office.parent:
        _centered(left, office.parent.upper())
    _centered(left, office.name.upper(), bold=True)
    _rule(left, 22, HEAD_COLUMNS[0])
    _centered(left, f"Số: {_or(number, SHORT)}/{abbreviation}", before=4)
    if subject_line:
        _centered(left, subject_line, size=SUBJECT_PT, before=4)
    _centered(right, MOTTO[0], bold=True, size=MOTTO_PT)
    _centered(right, MOTTO[1], bold=True, size=BODY_PT)
    _rule(right, 62, HEAD_COLUMNS[1])
    if place_date:
        _centered(right, place_date, italic=True, size=BODY_PT, before=6)


def _paragraphs(doc: DocxDocument, paras: Sequence[_Para]) -> None:
    for para in paras:
        p = doc.add_paragraph()
        p.alignment = para.align
        fmt = p.paragraph_format
        fmt.space_before, fmt.space_after = Pt(3), Pt(3)
        fmt.line_spacing = 1.15
        if para.indent:
            fmt.first_line_indent = Mm(12.7)
        for text, bold, italic in para.runs:
            _run(p, text, bold=bold, italic=italic)


def _signature(cell: _Cell, signer: Signer, default_title: str, note: str) -> None:
    if signer.on_behalf_of:
        _centered(cell, f"KT. {signer.on_behalf_of.upper()}", bold=True, size=BODY_PT)
    _centered(cell, (signer.title or default_title or DOTS).upper(), bold=True, size=BODY_PT)
    _centered(cell, note, italic=True, size=BODY_PT)
    _centered(cell, _or(signer.name), bold=True, size=BODY_PT, before=72)


def _letter_foot(doc: DocxDocument, record: Letter, office: _Office) -> None:
    doc.add_paragraph()
    left, right = _borderless_table(doc, FOOT_COLUMNS)
    p = left.add_paragraph()
    _run(p, "Nơi nhận:", bold=True, italic=True, size=RECIPIENTS_PT)
    for item in ("Như trên;", *(f"{c.rstrip(' ;.')};" for c in record.copies_to),
                 f"Lưu: VT, {_or(record.archive_unit, SHORT)}."):
        _run(left.add_paragraph(), f"- {item}", size=RECIPIENT_ITEM_PT)
    _signature(right, record.signer, office.signer_title, SIGN_NOTE)


def _party_signatures(doc: DocxDocument, record: Form05) -> None:
    doc.add_paragraph()
    left, right = _borderless_table(doc, (TEXT_WIDTH / 2, TEXT_WIDTH / 2))
    for cell, heading, party in ((left, "ĐẠI DIỆN BÊN B", record.party_b), (right, "ĐẠI DIỆN BÊN A", record.party_a)):
        _centered(cell, heading, bold=True, size=BODY_PT)
        _centered(cell, PARTY_SIGN_NOTE, italic=True, size=BODY_PT)
        _centered(cell, _or(party.name), bold=True, size=BODY_PT, before=72)


def _footer_line(doc: DocxDocument, text: str) -> None:
    """The operator's address, phone and e-mail at the foot of the first page, under a full rule."""
    if not text:
        return
    section = doc.sections[0]
    section.different_first_page_header_footer = True
    p = section.first_page_footer.paragraphs[0]
    _insert_in_order(p._p.get_or_add_pPr(), _border("top"), "w:pBdr")
    _run(p, text, size=RECIPIENT_ITEM_PT)
