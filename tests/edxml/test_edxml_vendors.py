"""edXML as other vendors and the national axis really send it: what is accepted and what is refused.

The fixtures `vendor_*.edxml` are written for this project from the shapes observed in real traffic
(docs/edxml.md, "Real-world packets"): organisations with only OrganId, OrganizationInCharge and
OrganName; no DueDate, ToPlaces or ResponseFor; opaque UUID DocumentIds; axis codes such as
`vxp.saas.03`; a Bussiness with only BussinessDocType and Paper; text/plain attachments; JAXB
prefixes with XMLDSig as the default namespace; status packets without ResponseFor.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from edxml_support import fixture

from lgsp.core.edxml import (
    AttachmentMeta,
    EdxmlError,
    EdxmlInvalid,
    EdxmlMalformed,
    EdxmlUnsafe,
    build_packet,
    parse_packet,
)
from lgsp.core.edxml.spec import DSIG_NS, NS

MH = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
THL = "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList"
AXIS = "vendor_axis_edoc"
LETTER = "Công văn số 512/BTC-VP về số liệu quyết toán năm 2023.\n".encode()


def swap(name: str, old: str, new: str) -> bytes:
    data = fixture(name)
    assert old.encode() in data, f"anchor missing from {name}: {old[:60]!r}"
    return data.replace(old.encode(), new.encode(), 1)


def unprefixed(name: str) -> bytes:
    """The same packet with the edXML namespace as the default namespace and no prefixes."""
    data = fixture(name).replace(b'xmlns:edXML="', b'xmlns="')
    return data.replace(b"<edXML:", b"<").replace(b"</edXML:", b"</")


class KeptBytes(io.BytesIO):
    """An attachment writer whose bytes stay readable after the parser closes it."""

    def close(self) -> None:
        pass


def roundtrip(data: bytes) -> None:
    """edXML -> JSON form -> edXML -> JSON form is lossless, absent optional elements included."""
    kept: dict[str, KeptBytes] = {}

    def sink(meta: AttachmentMeta) -> KeptBytes:
        kept[meta.content_id] = KeptBytes()
        return kept[meta.content_id]

    form = parse_packet(data, attachment_sink=sink).to_json()
    out = io.BytesIO()
    build_packet(form, out, attachments={cid: io.BytesIO(b.getvalue()) for cid, b in kept.items()})
    again = parse_packet(out.getvalue()).to_json()
    for entry in form.get("attachments", []):
        entry.pop("ref", None)
    if form["kind"] == "edoc":
        form.setdefault("manifest_version", "1.0")  # documented: written as 1.0 when absent
    assert again == form


# -- accepted --------------------------------------------------------------------------------------

def test_axis_edoc_with_minimal_organisations_and_no_optional_elements() -> None:
    kept = KeptBytes()
    packet = parse_packet(fixture(AXIS), attachment_sink=lambda meta: kept)
    mh = packet.message_header
    assert packet.kind == "edoc" and packet.from_organ_id == "vxp.saas.03"
    assert packet.to_organ_ids == ["000.00.00.H45", "000.02.31.H45"]
    assert mh["from"] == {"organ_id": "vxp.saas.03", "organization_in_charge": "Bộ Tài chính",
                          "organ_name": "Văn phòng Bộ Tài chính"}  # no contact keys invented
    assert "due_date" not in mh and "to_places" not in mh and mh["response_for"] == []
    assert packet.due_date is None and packet.response_for == []
    assert packet.document_id == "6f1c2a9e-3b7d-4c55-9a10-2f4e8d7b1c33" and packet.document_id_parts is None
    assert packet.bussiness == {"bussiness_doc_type": "0", "paper": "0"} and packet.bussiness_doc_type == 0
    assert packet.document_type is not None and packet.document_type.type_detail is None
    assert not packet.signature_present and "manifest_version" not in packet.header
    (att,) = packet.attachments
    assert att.content_type == "text/plain" and not att.is_zip and kept.getvalue() == LETTER


def test_default_namespace_and_prefixed_forms_are_the_same_packet() -> None:
    assert parse_packet(unprefixed(AXIS)).to_json() == parse_packet(fixture(AXIS)).to_json()


def test_jaxb_prefixes_with_xmldsig_as_the_default_namespace() -> None:
    """JAXB writes `ns2:` for edXML and makes XMLDSig the default namespace: an unprefixed Signature
    is then an XMLDSig one, and the other elements must carry the prefix."""
    packet = parse_packet(fixture("vendor_jaxb_edoc"))
    assert packet.header["signature"]["namespace"] == DSIG_NS
    assert packet.message_header["from"]["email"] == "vpcp@chinhphu.vn"  # one contact detail of five
    assert packet.due_date == "" and packet.bussiness is not None and "staff_info" not in packet.bussiness
    assert [t.timestamp for t in packet.trace_headers] == ["2024/05/06 14:20:00", "2024-05-06T14:20:05.123+07:00"]
    assert packet.attachments[0].content_id == "7c9e6679-7425-40de-944b-e07fc1f90ae7"  # joins cid:<uuid>


def test_status_from_the_axis_names_an_axis_code_and_a_uuid() -> None:
    packet = parse_packet(fixture("vendor_status_axis"))
    assert packet.kind == "status" and packet.to_organ_ids == ["vxp.saas.03"]
    assert packet.document_id == "6f1c2a9e-3b7d-4c55-9a10-2f4e8d7b1c33" and packet.status_code == "03"


def test_status_without_response_for_names_nobody() -> None:
    packet = parse_packet(fixture("vendor_status_no_response_for"))
    assert packet.kind == "status" and packet.status_code == "01"
    assert packet.to_organ_ids == [] and packet.document_id == "" and packet.response_for == []
    assert "response_for" not in packet.message_header


@pytest.mark.parametrize("name", ["vendor_axis_edoc", "vendor_jaxb_edoc", "vendor_status_axis",
                                  "vendor_status_no_response_for"])
def test_vendor_packets_round_trip_through_the_json_form(name: str) -> None:
    roundtrip(fixture(name))


def test_json_form_may_leave_the_optional_elements_out() -> None:
    form = parse_packet(fixture(AXIS)).to_json()
    out = io.BytesIO()
    build_packet(form, out, attachments={"cid:1": io.BytesIO(LETTER)})
    rebuilt = out.getvalue()
    for absent in (b"OrganAdd", b"DueDate", b"ToPlaces", b"StaffInfo", b"BussinessDocReason"):
        assert absent not in rebuilt
    del form["message_header"]["from"]["organ_name"]  # required: refused with the JSON path
    with pytest.raises(EdxmlInvalid) as err:
        build_packet(form, io.BytesIO(), attachments={"cid:1": io.BytesIO(LETTER)})
    assert err.value.path == "$.message_header.from.organ_name"


# -- refused ---------------------------------------------------------------------------------------

def drop(name: str, local: str) -> bytes:
    data = fixture(name)
    start = data.index(f"<edXML:{local}>".encode())
    end = data.index(f"</edXML:{local}>".encode(), start) + len(f"</edXML:{local}>")
    return data[:start] + data[end:]


def drop_all(name: str, local: str) -> bytes:
    data = fixture(name)
    while f"<edXML:{local}>".encode() in data:
        start = data.index(f"<edXML:{local}>".encode())
        end = data.index(f"</edXML:{local}>".encode(), start) + len(f"</edXML:{local}>")
        data = data[:start] + data[end:]
    return data


# (case, packet, error class, path, substring of the detail)
REFUSED: list[tuple[str, Callable[[], bytes], type[EdxmlError], str | None, str]] = [
    ("no From", lambda: drop(AXIS, "From"), EdxmlInvalid, MH, "missing required element From"),
    ("no To", lambda: drop_all(AXIS, "To"), EdxmlInvalid, MH, "missing required element To"),
    ("From without OrganId", lambda: swap(AXIS, "<edXML:OrganId>vxp.saas.03</edXML:OrganId>\n<edXML:Organization",
                                           "<edXML:Organization"), EdxmlInvalid, f"{MH}/From", "OrganId"),
    ("To without OrganName", lambda: swap(AXIS, "<edXML:OrganName>UBND tỉnh Quảng Nam</edXML:OrganName>", ""),
     EdxmlInvalid, f"{MH}/To[1]", "OrganName"),
    ("blank OrganId", lambda: swap(AXIS, ">000.02.31.H45<", "> <"), EdxmlInvalid, f"{MH}/To[2]/OrganId", "pattern"),
    ("Bussiness without BussinessDocType", lambda: swap(AXIS, "<edXML:BussinessDocType>0</edXML:BussinessDocType>",
                                                         ""), EdxmlInvalid, f"{THL}/Bussiness", "BussinessDocType"),
    ("status without StatusCode is an edoc without To",
     lambda: swap("vendor_status_no_response_for", "<StatusCode>01</StatusCode>", ""), EdxmlInvalid, f"{MH}/StaffInfo",
     "edoc packet"),
    ("wrong root element", lambda: swap(AXIS, "<edXML:edXML ", "<edXML:Document ").replace(
        b"</edXML:edXML>", b"</edXML:Document>"), EdxmlInvalid, "/Document", "the root element is <Document>"),
    ("root without a namespace", lambda: unprefixed(AXIS).replace(f' xmlns="{NS}"'.encode(), b"", 1),
     EdxmlInvalid, "/edXML", "has no namespace"),
    ("namespace with a trailing slash", lambda: swap(AXIS, "QCVN_102_2016\"", "QCVN_102_2016/\""), EdxmlInvalid,
     "/edXML", "compared exactly"),
    ("other namespace", lambda: swap(AXIS, NS, "urn:vendor:edxml"), EdxmlInvalid, "/edXML",
     "is in the namespace urn:vendor:edxml"),
    ("root of another format", lambda: b"<?xml version='1.0'?><Envelope><Body/></Envelope>", EdxmlInvalid,
     "/Envelope", f"root is <edXML> in the namespace {NS}"),
    ("malformed XML", lambda: fixture(AXIS)[:700], EdxmlMalformed, None, "not well-formed"),
    ("wrong root and malformed: malformed wins", lambda: b"<Document><a></b></Document>", EdxmlMalformed, None,
     "not well-formed"),
    ("DOCTYPE", lambda: swap(AXIS, "<edXML:edXML ", '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                                                     "<edXML:edXML "), EdxmlUnsafe, None, "DOCTYPE"),
]


@pytest.mark.parametrize(("case", "make", "cls", "path", "detail"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: str, make: Callable[[], bytes], cls: type[EdxmlError], path: str | None,
                 detail: str) -> None:
    with pytest.raises(EdxmlError) as err:
        parse_packet(make())
    assert type(err.value) is cls, err.value.message
    if path is not None:
        assert err.value.path == path, err.value.message
    assert detail in err.value.detail, err.value.message


def test_wrong_root_is_reported_before_the_attachment_is_decoded() -> None:
    """Without the root check, a namespace slip was reported as a payload 'outside the edXML namespace'."""
    opened: list[object] = []
    data = swap(AXIS, NS, "urn:vendor:edxml")
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(data, attachment_sink=lambda meta: opened.append(meta) or io.BytesIO())
    assert "outside the edXML namespace" not in err.value.detail and opened == []
