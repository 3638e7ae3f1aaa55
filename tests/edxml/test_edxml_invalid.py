"""parse_packet on bad input: every failure has the right code, element path and rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from edxml_support import FIXTURES, fixture

from lgsp.core.edxml import EdxmlError, EdxmlInvalid, EdxmlMalformed, parse_packet

MH = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
THL = "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList"
ATT = "/edXML/AttachmentEncoded/Attachment"


def mutate(name: str, old: str | bytes, new: str | bytes, count: int = 1) -> bytes:
    data = fixture(name)
    old_b = old.encode() if isinstance(old, str) else old
    new_b = new.encode() if isinstance(new, str) else new
    assert old_b in data, f"mutation anchor missing from {name}: {old_b[:60]!r}"
    return data.replace(old_b, new_b, count)


def drop_element(name: str | bytes, local: str, nth: int = 1) -> bytes:
    """Remove the nth ``<edXML:local>…</edXML:local>`` element (with its children)."""
    data = fixture(name) if isinstance(name, str) else name
    start = -1
    for _ in range(nth):
        start = data.index(f"<edXML:{local}>".encode(), start + 1)
    end = data.index(f"</edXML:{local}>".encode(), start) + len(f"</edXML:{local}>")
    return data[:start] + data[end:]


ORGAN_TO2 = "<edXML:OrganId>28.22.H17</edXML:OrganId>"

# (id, packet bytes, expected path, substring of the detail)
INVALID = [
    (
        "To OrganId empty",
        lambda: mutate("edoc_new", ORGAN_TO2, "<edXML:OrganId>  </edXML:OrganId>"),
        f"{MH}/To[2]/OrganId",
        "pattern",
    ),
    ("To OrganId missing", lambda: mutate("edoc_new", ORGAN_TO2, ""), f"{MH}/To[2]", "OrganId"),
    (
        "first To OrganId missing",
        lambda: mutate("edoc_new", "<edXML:OrganId>000.02.31.H45</edXML:OrganId>", ""),
        f"{MH}/To[1]",
        "OrganId",
    ),
    (
        "no To at all",
        lambda: (
            drop_element("edoc_update", "To", 2)
            .replace(b"<edXML:To>", b"<edXML:X>", 1)
            .replace(b"</edXML:To>", b"</edXML:X>", 1)
        ),
        f"{MH}/X",
        "Unexpected child",
    ),
    (
        "To missing (counted in code)",
        lambda: drop_element(drop_element("edoc_update", "To"), "To"),
        MH,
        "missing required element To",
    ),
    (
        "From twice",
        lambda: mutate(
            "edoc_new",
            "<edXML:DocumentId>000.00.00.H45,2024/03/15",
            "<edXML:From><edXML:OrganId>x</edXML:OrganId><edXML:OrganizationInCharge/><edXML:OrganName/>"
            "<edXML:OrganAdd/><edXML:Email/><edXML:Telephone/><edXML:Fax/><edXML:Website/></edXML:From>"
            "<edXML:DocumentId>000.00.00.H45,2024/03/15",
        ),
        f"{MH}/From[2]",
        "at most 1",
    ),
    ("Subject missing", lambda: drop_element("edoc_new", "Subject"), MH, "missing required element Subject"),
    (
        "SteeringType twice",
        lambda: mutate(
            "edoc_new",
            "<edXML:SteeringType>1</edXML:SteeringType>",
            "<edXML:SteeringType>1</edXML:SteeringType><edXML:SteeringType>2</edXML:SteeringType>",
        ),
        f"{MH}/SteeringType[2]",
        "at most 1",
    ),
    (
        "unknown MessageHeader child",
        lambda: mutate("edoc_new", "<edXML:Subject>", "<edXML:Urgent>1</edXML:Urgent><edXML:Subject>"),
        f"{MH}/Urgent",
        "Unexpected child",
    ),
    (
        "foreign element in MessageHeader",
        lambda: mutate("edoc_new", "<edXML:Subject>", "<x:Note xmlns:x='urn:x'/><edXML:Subject>"),
        f"{MH}/Note",
        "Unexpected child",
    ),
    (
        "attribute on MessageHeader",
        lambda: mutate("edoc_new", "<edXML:MessageHeader>", "<edXML:MessageHeader lang='vi'>"),
        MH,
        "attribute",
    ),
    (
        "BussinessDocType 4",
        lambda: mutate("edoc_new", "<edXML:BussinessDocType>0<", "<edXML:BussinessDocType>4<"),
        f"{THL}/Bussiness/BussinessDocType",
        "one of",
    ),
    (
        "two Bussiness",
        lambda: mutate(
            "edoc_new",
            "</edXML:Bussiness>",
            "</edXML:Bussiness><edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>",
        ),
        f"{THL}/Bussiness[2]",
        "",
    ),
    ("no TraceHeader", lambda: drop_element("edoc_new", "TraceHeader"), THL, "TraceHeader"),
    (
        "bad Timestamp",
        lambda: mutate("edoc_new", "2024/03/15 08:15:30", "15-03-2024 8h15"),
        f"{THL}/TraceHeader[1]/Timestamp",
        "pattern",
    ),
    (
        "bad PromulgationDate",
        lambda: mutate("edoc_new", "<edXML:PromulgationDate>2024/03/15<", "<edXML:PromulgationDate>15/03/2024<"),
        f"{MH}/PromulgationInfo/PromulgationDate",
        "pattern",
    ),
    (
        "Direction not boolean",
        lambda: mutate("edoc_new", "<edXML:Direction>false<", "<edXML:Direction>không<"),
        f"{MH}/OtherInfo/Direction",
        "boolean",
    ),
    (
        "empty DocumentId",
        lambda: mutate("edoc_new", "<edXML:DocumentId>000.00.00.H45,2024/03/15,125/QĐ-UBND<", "<edXML:DocumentId><"),
        f"{MH}/DocumentId",
        "pattern",
    ),
    (
        "ReplacementInfo without OrganIdList",
        lambda: drop_element("edoc_replacement", "OrganIdList"),
        f"{THL}/Bussiness/ReplacementInfoList/ReplacementInfo[1]",
        "OrganIdList",
    ),
    (
        "Receiver OrganId empty",
        lambda: mutate(
            "edoc_update",
            "<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n                <edXML:ReceiverType>",
            "<edXML:OrganId></edXML:OrganId>\n                <edXML:ReceiverType>",
        ),
        f"{THL}/Bussiness/BussinessDocumentInfo/ReceiverList/Receiver[2]/OrganId",
        "pattern",
    ),
    (
        "signature in a third namespace",
        lambda: mutate("edoc_new", "<Signature>", "<Signature xmlns='urn:not-dsig'>"),
        "/edXML/edXMLEnvelope/edXMLHeader/Signature",
        "Unexpected child",
    ),
    (
        "no manifest Reference",
        lambda: drop_element("edoc_update", "Reference"),
        "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest",
        "Reference",
    ),
    (
        "duplicate manifest ContentId",
        lambda: mutate("edoc_new", "<edXML:ContentId>cid:102<", "<edXML:ContentId>101<"),
        "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference[2]/ContentId",
        "duplicate",
    ),
    (
        "Attachment without Reference",
        lambda: mutate("edoc_update", "<ContentId>cid:301</ContentId>", "<ContentId>cid:999</ContentId>"),
        f"{ATT}[1]/ContentId",
        "no Reference",
    ),
    (
        "Reference without Attachment",
        lambda: mutate("edoc_new", "<edXML:ContentId>cid:102<", "<edXML:ContentId>cid:103<"),
        f"{ATT}[2]/ContentId",
        "no Reference",
    ),
    (
        "manifest Reference never delivered",
        lambda: drop_attachment("edoc_new", 2),
        "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference[2]/ContentId",
        "has no Attachment",
    ),
    (
        "two Attachments for one Reference",
        lambda: mutate("edoc_new", "<ContentId>cid:102</ContentId>", "<ContentId>101</ContentId>"),
        f"{ATT}[2]/ContentId",
        "second Attachment",
    ),
    ("AttachmentEncoded missing", lambda: drop_attachment_section("edoc_update"), "/edXML", "AttachmentEncoded"),
    (
        "payload before ContentId",
        lambda: move_content_id_after_payload("edoc_update"),
        f"{ATT}[1]/ContentTransferEncoded",
        "ContentId",
    ),
    (
        "element after payload",
        lambda: mutate(
            "edoc_update",
            "</edXML:ContentTransferEncoded>",
            "</edXML:ContentTransferEncoded><Description>late</Description>",
        ),
        f"{ATT}[1]/Description[2]",
        "end with",
    ),
    (
        "second payload",
        lambda: mutate(
            "edoc_update",
            "</edXML:ContentTransferEncoded>",
            "</edXML:ContentTransferEncoded><ContentTransferEncoded>QUJD</ContentTransferEncoded>",
        ),
        f"{ATT}[1]/ContentTransferEncoded[2]",
        "more than one",
    ),
    (
        "Attachment without payload",
        lambda: strip_payload_element("edoc_update"),
        f"{ATT}[1]",
        "no ContentTransferEncoded",
    ),
    (
        "duplicate ContentType",
        lambda: mutate(
            "edoc_update",
            "<ContentType>application/zip</ContentType>",
            "<ContentType>application/zip</ContentType><ContentType>x</ContentType>",
        ),
        f"{ATT}[1]/ContentType[2]",
        "duplicate",
    ),
    (
        "unknown Attachment child",
        lambda: mutate(
            "edoc_update",
            "<ContentType>application/zip</ContentType>",
            "<ContentType>application/zip</ContentType><Checksum>1</Checksum>",
        ),
        f"{ATT}[1]/Checksum",
        "unexpected element",
    ),
    (
        "child element inside payload",
        lambda: mutate("edoc_update", "</edXML:ContentTransferEncoded>", "<b/></edXML:ContentTransferEncoded>"),
        f"{ATT}[1]/ContentTransferEncoded",
        "Base64 text only",
    ),
    (
        "non-Base64 character",
        lambda: mutate("edoc_update", 'QCVN_102_2016">UEsDB', 'QCVN_102_2016">U$sDB'),
        f"{ATT}[1]/ContentTransferEncoded",
        "Base64",
    ),
    (
        "character reference in payload",
        lambda: mutate("edoc_update", 'QCVN_102_2016">UEsDB', 'QCVN_102_2016">&#85;EsDB'),
        f"{ATT}[1]/ContentTransferEncoded",
        "character references",
    ),
    (
        "data after padding",
        lambda: mutate("edoc_update", "</edXML:ContentTransferEncoded>", "QUJD</edXML:ContentTransferEncoded>"),
        f"{ATT}[1]/ContentTransferEncoded",
        "padding",
    ),
    (
        "truncated Base64",
        lambda: mutate("edoc_update", "=</edXML:ContentTransferEncoded>", "</edXML:ContentTransferEncoded>"),
        f"{ATT}[1]/ContentTransferEncoded",
        "multiple of 4",
    ),
    (
        "payload element in foreign namespace",
        lambda: mutate(
            "edoc_update",
            'edXML:ContentTransferEncoded xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"',
            'edXML:ContentTransferEncoded xmlns:edXML="urn:other"',
        ),
        None,
        "outside the edXML namespace",
    ),
    (
        "ContentTransferEncoded in the header",
        lambda: mutate(
            "edoc_update",
            "<edXML:Subject>",
            "<edXML:ContentTransferEncoded>QUJD</edXML:ContentTransferEncoded><edXML:Subject>",
        ),
        f"{MH}/ContentTransferEncoded",
        "only allowed",
    ),
    (
        "status with attachments",
        lambda: mutate("status_03", "</edXML:edXMLEnvelope>", "</edXML:edXMLEnvelope><AttachmentEncoded/>"),
        "/edXML/AttachmentEncoded",
        "status packet",
    ),
    (
        "status without StatusCode is judged as edoc",
        lambda: drop_element("status_03", "StatusCode"),
        f"{MH}/StaffInfo",
        "edoc packet",
    ),
    (
        "status code one digit",
        lambda: mutate("status_02", "<edXML:StatusCode>02<", "<edXML:StatusCode>2<"),
        f"{MH}/StatusCode",
        "pattern",
    ),
    (
        "status Description twice",
        lambda: mutate(
            "status_02", "<edXML:Description>", "<edXML:Description>x</edXML:Description><edXML:Description>"
        ),
        f"{MH}/Description[2]",
        "Unexpected child",
    ),
    (
        "status with body",
        lambda: mutate("status_05", "</edXML:edXMLHeader>", "</edXML:edXMLHeader><edXML:edXMLBody/>"),
        "/edXML/edXMLEnvelope/edXMLBody",
        "Unexpected child",
    ),
    (
        "wrong root namespace",
        lambda: mutate(
            "status_01",
            '<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">',
            '<edXML xmlns="urn:wrong" xmlns:edXML2="x">',
        ),
        "/edXML",
        "edXML",
    ),
    ("extra root child", lambda: mutate("edoc_update", "</edXML>", "<Extra/></edXML>"), "/edXML/Extra", ""),
    (
        "element between envelope and attachments",
        lambda: mutate("edoc_update", "<AttachmentEncoded>", "<Extra/><AttachmentEncoded>"),
        "/edXML/AttachmentEncoded",
        "directly follow",
    ),
]


def drop_attachment(name: str, nth: int) -> bytes:
    data = fixture(name)
    start = -1
    for _ in range(nth):
        start = data.index(b"<Attachment>", start + 1)
    end = data.index(b"</Attachment>", start) + len(b"</Attachment>")
    return data[:start] + data[end:]


def drop_attachment_section(name: str) -> bytes:
    data = fixture(name)
    start = data.index(b"<AttachmentEncoded>")
    end = data.index(b"</AttachmentEncoded>") + len(b"</AttachmentEncoded>")
    return data[:start] + data[end:]


def move_content_id_after_payload(name: str) -> bytes:
    data = fixture(name)
    start = data.index(b"<ContentId>", data.index(b"<AttachmentEncoded>"))
    end = data.index(b"</ContentId>", start) + len(b"</ContentId>")
    element = data[start:end]
    data = data[:start] + data[end:]
    return data.replace(b"</edXML:ContentTransferEncoded>", b"</edXML:ContentTransferEncoded>" + element, 1)


def strip_payload_element(name: str) -> bytes:
    data = fixture(name)
    start = data.index(b"<edXML:ContentTransferEncoded")
    end = data.index(b"</edXML:ContentTransferEncoded>") + len(b"</edXML:ContentTransferEncoded>")
    return data[:start] + data[end:]


@pytest.mark.parametrize(("case", "make", "path", "detail"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_packets(case: str, make: Callable[[], bytes], path: str | None, detail: str) -> None:
    data = make()
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(data)
    e = err.value
    assert e.code == "edxml.invalid"
    assert e.path == path, e.message
    assert detail in e.detail, e.message
    assert e.rule, "every invalid report names the rule"
    assert e.message.startswith("edxml.invalid: ")
    assert e.to_dict()["code"] == "edxml.invalid"


def test_error_serialises_for_api_replies() -> None:
    data = mutate("edoc_new", ORGAN_TO2, "<edXML:OrganId> </edXML:OrganId>")
    with pytest.raises(EdxmlError) as err:
        parse_packet(data)
    body = err.value.to_dict()
    assert body == {
        "code": "edxml.invalid",
        "detail": err.value.detail,
        "path": "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[2]/OrganId",
        "rule": "NonEmptyString: pattern",
    }


def test_malformed_template_is_malformed() -> None:
    with pytest.raises(EdxmlMalformed) as err:
        parse_packet(FIXTURES / "malformed_template.edxml")
    assert err.value.code == "edxml.malformed"
    assert err.value.path is not None
    assert err.value.path.startswith("line ")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"not xml at all",
        b"<edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'>",  # truncated
        b"<a><b></a>",
        b"<a xmlns:p='x'><q:b/></a>",  # undeclared prefix
        b"<a>&undefined;</a>",  # undeclared entity without any DTD
        b"<a><!ELEMENT x ANY></a>",
        "<?xml version='1.0' encoding='UTF-16'?><a/>".encode("utf-16"),
        b"\x00\x00\x00<",
        b"<a>\x01</a>",  # control character
        b"<a>\xff\xfe</a>",  # not UTF-8
    ],
)
def test_malformed_inputs(data: bytes) -> None:
    with pytest.raises(EdxmlMalformed) as err:
        parse_packet(data)
    assert err.value.code == "edxml.malformed"


def test_truncated_real_packet_is_malformed() -> None:
    data = fixture("edoc_new")
    for cut in (100, len(data) // 2, len(data) - 20, len(data) - 3):
        with pytest.raises(EdxmlMalformed):
            parse_packet(data[:cut])
