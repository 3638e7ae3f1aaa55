"""parse_packet on good input: accessors, attachments, sinks, sources and stream chunking."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest
from edxml_support import EDOC_FIXTURES, FIXTURES, STATUS_CODES, STATUS_FIXTURES, RecordingSink, fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from lgsp.core.edxml import (
    AttachmentMeta,
    DocumentCode,
    DocumentIdParts,
    EdxmlInvalid,
    Packet,
    ParseLimits,
    ResponseFor,
    TraceHeader,
    content_key,
    parse_document_id,
    parse_packet,
)

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def payloads(data: bytes) -> list[bytes]:
    """Decode every ContentTransferEncoded of a fixture independently of the library."""
    from lxml import etree

    root = etree.fromstring(data)
    return [base64.b64decode("".join(e.text.split())) for e in root.iter(f"{{{NS}}}ContentTransferEncoded")]


# ------------------------------------------------------------------------- accessors


def test_new_document_accessors() -> None:
    p = parse_packet(FIXTURES / "edoc_new.edxml")
    assert p.kind == "edoc"
    assert p.from_organ_id == "000.00.00.H45"
    assert p.to_organ_ids == ["000.02.31.H45", "28.22.H17", "000.00.00.H41"]  # irregular code kept
    assert p.document_id == "000.00.00.H45,2024/03/15,125/QĐ-UBND"
    assert p.document_id_parts == DocumentIdParts("000.00.00.H45", "2024/03/15", "125/QĐ-UBND")
    assert p.code == DocumentCode("125", "QĐ-UBND")
    assert str(p.code) == "125/QĐ-UBND"
    assert p.subject == "V/v triển khai Kế hoạch chuyển đổi số năm 2024 & định hướng đến năm 2025 (<đợt 1>)"
    assert p.document_type is not None
    assert (p.document_type.type, p.document_type.type_detail, p.document_type.type_name) == ("2", "0", "Quyết định")
    assert p.priority == 1
    assert p.due_date == "2024/06/30"
    assert p.promulgation_date == "2024/03/15"
    assert p.bussiness_doc_type == 0
    assert p.bussiness is not None
    assert p.bussiness["document_id"] == "000.00.00.H45,2024/02/30,118/QĐ-UBND"  # impossible date accepted
    assert p.response_for == []
    assert p.replacement_document_ids == []
    assert p.status_code is None
    assert p.trace_headers == [TraceHeader("000.00.00.H45", "2024/03/15 08:15:30")]
    assert p.timestamp == "2024/03/15 08:15:30"
    assert p.signature_present
    assert p.header["signature"]["namespace"] == NS
    assert p.message_header["other_info"]["appendixes"] == [
        "Phụ lục I: Danh mục nhiệm vụ",
        "Phụ lục II: Phân công thực hiện",
    ]
    assert p.message_header["to_places"] == ["Như trên", "Lưu: VT, KGVX"]


def test_revocation_accessors() -> None:
    p = parse_packet(FIXTURES / "edoc_revocation.edxml")
    assert p.bussiness_doc_type == 1
    assert p.response_for == [
        ResponseFor("000.00.00.H45", "38/STTTT-VP", "000.02.31.H45,2024/03/25,38/STTTT-VP", "2024/03/25"),
        ResponseFor("000.00.00.H41", "38/STTTT-VP", "000.02.31.H45,2024/03/25,38/STTTT-VP", "2024/03/25"),
    ]
    assert "document_id" not in p.bussiness  # type: ignore[operator]
    assert p.header["signature"]["namespace"] == "http://www.w3.org/2000/09/xmldsig#"
    assert "RSAKeyValue" not in p.header["signature"]["xml"], "comments are not information"


def test_update_accessors_with_shuffled_header_and_optional_parts_missing() -> None:
    p = parse_packet(FIXTURES / "edoc_update.edxml")
    assert p.bussiness_doc_type == 2
    assert p.document_id == "000.00.00.H45,2024/03/15,125/QĐ-UBND"  # DocumentId was the last child
    assert p.document_type is not None
    assert p.document_type.type_detail is None
    assert "direction" not in p.message_header["other_info"]
    info = p.bussiness["bussiness_document_info"]  # type: ignore[index]
    assert info["receiver_list"] == [
        {"organ_id": "000.02.31.H45", "receiver_type": "0"},
        {"organ_id": "000.00.00.G22", "receiver_type": "1"},
    ]


def test_replacement_accessors() -> None:
    p = parse_packet(FIXTURES / "edoc_replacement.edxml")
    assert p.bussiness_doc_type == 3
    assert p.replacement_document_ids == [
        "000.00.00.H45,2024/03/15,125/QĐ-UBND",
        "000.00.00.H45,2024/01/10,12/QĐ-UBND",
    ]
    assert p.document_id == "7e1d9c52-84a0-4b7f-a3e6-0f5c2d9b8a41"  # a UUID DocumentId
    assert p.document_id_parts is None
    assert [t.organ_id for t in p.trace_headers] == ["000.00.00.H45", "000.00.00.G22"]
    assert not p.signature_present
    ref = p.attachments[0].reference
    assert ref["attributes"] == {"{http://www.w3.org/1999/xlink}href": "#attachment-1"}


@pytest.mark.parametrize("code", STATUS_CODES)
def test_status_packets(code: str) -> None:
    p = parse_packet(FIXTURES / f"status_{code}.edxml")
    assert p.kind == "status"
    assert p.status_code == code
    assert p.attachments == ()
    assert p.trace_headers == []
    assert p.bussiness_doc_type is None
    assert (p.code, p.subject, p.priority) == (None, None, None)
    assert p.document_id == "000.00.00.H45,2024/03/15,125/QĐ-UBND"  # the document the status is about
    assert p.status_description
    assert p.timestamp == f"2024/03/15 09:{int(code):02d}:00"
    if code == "13":  # the sender asks to take the document back: roles reversed
        assert (p.from_organ_id, p.to_organ_ids) == ("000.00.00.H45", ["000.02.31.H45"])
    else:
        assert (p.from_organ_id, p.to_organ_ids) == ("000.02.31.H45", ["000.00.00.H45"])
    assert p.response_for[0].promulgation_date == "2024/03/15"


@pytest.mark.parametrize("code", ["07", "12", "14", "99", "00"])
def test_unknown_status_codes_are_kept(code: str) -> None:
    data = fixture("status_05").replace(b"<edXML:StatusCode>05<", f"<edXML:StatusCode>{code}<".encode())
    assert parse_packet(data).status_code == code


@pytest.mark.parametrize(
    ("document_id", "parts"),
    [
        ("000.00.00.G22,2015/09/30,7816/VPCP-TTĐT", DocumentIdParts("000.00.00.G22", "2015/09/30", "7816/VPCP-TTĐT")),
        ("000.00.00.G22,2014/02/30,7806/VPCP", DocumentIdParts("000.00.00.G22", "2014/02/30", "7806/VPCP")),
        ("3f1c9a7e-0d4b-4c55-9e0a-6b8f2d1c7a90", None),
        ("only,two", None),
        ("a,b,c,d", None),
        ("x,,y", None),
        ("H45-125", None),
    ],
)
def test_document_id_forms(document_id: str, parts: DocumentIdParts | None) -> None:
    assert parse_document_id(document_id) == parts
    old = "<edXML:DocumentId>000.00.00.H45,2024/03/15,125/QĐ-UBND<".encode()
    data = fixture("edoc_new").replace(old, f"<edXML:DocumentId>{document_id}<".encode(), 1)
    p = parse_packet(data)
    assert p.document_id == document_id
    assert p.document_id_parts == parts


@pytest.mark.parametrize(
    ("raw", "key"),
    [("cid:209", "209"), ("209", "209"), ("CID:209", "209"), ("<209>", "209"), ("cid:<a-b>", "a-b"), (" cid: x ", "x")],
)
def test_content_key(raw: str, key: str) -> None:
    assert content_key(raw) == key


# ------------------------------------------------------------------------- attachments and sinks


def test_attachments_decoded_hashed_and_sunk(sink: RecordingSink) -> None:
    data = fixture("edoc_new")
    expected = payloads(data)
    p = parse_packet(data, attachment_sink=sink)
    assert [a.content_id for a in p.attachments] == ["101", "cid:102", "cid:c8a2f7d4-3b1e-4f0a-9d6c-2e7b5a1f0c93"]
    assert [a.name for a in p.attachments] == ["125-QD-UBND.doc", "ke-hoach.pdf", "phu-luc.txt"]
    assert [a.content_type for a in p.attachments] == ["application/zip", "application/pdf", "text/plain"]
    assert p.attachments[2].description == "Phụ lục – danh sách đơn vị"
    for info, writer, payload in zip(p.attachments, sink.writers, expected, strict=True):
        assert writer.data == payload
        assert info.size == len(payload)
        assert info.sha256 == hashlib.sha256(payload).hexdigest()
        assert (writer.closed, writer.aborted) == (1, 0)
        assert info.handle is writer
        assert info.ref == f"blob:{writer.meta.index}"  # what close() returned
    assert [w.meta.index for w in sink.writers] == [0, 1, 2]
    assert sink.writers[0].meta.content_key == "101"
    assert [a.is_zip for a in p.attachments] == [True, False, False]
    with zipfile.ZipFile(io.BytesIO(sink.writers[0].data)) as z:  # stored as decoded, still a ZIP
        assert z.namelist() == ["5f0c2a1e-quyet-dinh.edxml"]


def test_manifest_join_accepts_all_content_id_forms() -> None:
    p = parse_packet(FIXTURES / "edoc_new.edxml")
    # manifest says cid:101, the Attachment says 101: joined, both kept verbatim
    assert p.attachments[0].content_id == "101"
    assert p.attachments[0].reference["content_id"] == "cid:101"


def test_without_sink_payloads_are_still_checked_and_hashed() -> None:
    data = fixture("edoc_revocation")
    p = parse_packet(data)
    assert [a.sha256 for a in p.attachments] == [hashlib.sha256(b).hexdigest() for b in payloads(data)]
    assert all(a.handle is None and a.ref is None for a in p.attachments)


def test_file_objects_as_sink_record_their_name(tmp_path: Path) -> None:
    def to_file(meta: AttachmentMeta) -> BinaryIO:
        return open(tmp_path / f"{meta.index}.bin", "wb")

    p = parse_packet(FIXTURES / "edoc_revocation.edxml", attachment_sink=to_file)
    for i, info in enumerate(p.attachments):
        path = tmp_path / f"{i}.bin"
        assert info.ref == str(path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256


def test_sink_error_propagates_and_aborts_the_partial_attachment() -> None:
    sink = RecordingSink(fail_after=100)
    with pytest.raises(OSError, match="disk full"):
        parse_packet(FIXTURES / "edoc_new.edxml", attachment_sink=sink)
    assert sink.writers[0].aborted == 1
    assert sink.writers[0].closed == 0


def test_invalid_packet_reports_completed_attachments_and_aborts_current(sink: RecordingSink) -> None:
    data = fixture("edoc_new")
    # break the third payload: the first two were already handed to the sink
    third = data.rindex(b'QCVN_102_2016">') + len(b'QCVN_102_2016">') + 40
    bad = data[:third] + b"!" + data[third + 1 :]
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(bad, attachment_sink=sink)
    assert err.value.path == "/edXML/AttachmentEncoded/Attachment[3]/ContentTransferEncoded"
    assert [a.content_id for a in err.value.attachments] == ["101", "cid:102"]
    assert [w.closed for w in sink.writers] == [1, 1, 0]
    assert [w.aborted for w in sink.writers] == [0, 0, 1]


def test_header_error_fails_before_any_sink_call(sink: RecordingSink) -> None:
    data = fixture("edoc_new").replace(b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>9<")
    with pytest.raises(EdxmlInvalid):
        parse_packet(data, attachment_sink=sink)
    assert sink.writers == []


def test_writer_without_abort_is_closed_on_failure() -> None:
    closed: list[int] = []

    class Plain:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            closed.append(1)

    bad = fixture("edoc_update").replace(b"</edXML:ContentTransferEncoded>", b"A</edXML:ContentTransferEncoded>")
    with pytest.raises(EdxmlInvalid, match="multiple of 4"):
        parse_packet(bad, attachment_sink=lambda meta: Plain())
    assert closed == [1]


# ------------------------------------------------------------------------- sources


@pytest.mark.parametrize("kind", ["str", "path", "file", "bytes", "bytearray", "memoryview"])
def test_source_types(kind: str) -> None:
    path = FIXTURES / "edoc_update.edxml"
    raw = path.read_bytes()
    source: object = {
        "str": str(path),
        "path": path,
        "file": io.BytesIO(raw),
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
    }[kind]
    assert parse_packet(source).document_id == "000.00.00.H45,2024/03/15,125/QĐ-UBND"  # type: ignore[arg-type]


def test_caller_file_object_is_not_closed() -> None:
    fh = io.BytesIO(fixture("status_01"))
    parse_packet(fh)
    assert not fh.closed


def test_unsupported_source_type() -> None:
    with pytest.raises(TypeError):
        parse_packet(12345)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- chunking and encodings


def summary(p: Packet) -> tuple[object, ...]:
    return (p.kind, p.header, [(a.content_id, a.size, a.sha256) for a in p.attachments])


@pytest.mark.parametrize("name", EDOC_FIXTURES + STATUS_FIXTURES[:2])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_any_chunk_size_gives_the_same_result(name: str, chunk: int) -> None:
    """The byte splitter must handle every construct cut at every position."""
    data = fixture(name)
    expected = summary(parse_packet(data))
    assert summary(parse_packet(data, limits=ParseLimits(read_chunk_bytes=chunk))) == expected


class RaggedReader(io.RawIOBase):
    """Returns short reads of varying sizes, as sockets and pipes do."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._pos = 0
        self._sizes = sizes or [1]
        self._i = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._sizes[self._i % len(self._sizes)]
        self._i += 1
        out = self._data[self._pos : self._pos + min(n, size if size > 0 else n)]
        self._pos += len(out)
        return out


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=12))
def test_ragged_reads(sizes: list[int]) -> None:
    data = fixture("edoc_new")
    assert summary(parse_packet(RaggedReader(data, sizes))) == summary(parse_packet(data))  # type: ignore[arg-type]


def test_payload_forms_wrapped_cdata_and_comments() -> None:
    data = fixture("edoc_update")
    (payload,) = payloads(data)
    encoded = base64.b64encode(payload).decode()
    half = len(encoded) // 2
    variants = [
        "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)),  # MIME lines, CRLF
        f"<![CDATA[{encoded}]]>",
        f"{encoded[:half]}<!-- split -->{encoded[half:]}",
        f"  \t{encoded[:half]}<![CDATA[{encoded[half:]}]]>\n  ",
    ]
    start = data.index(b'QCVN_102_2016">', data.index(b"<edXML:ContentTransferEncoded")) + len(b'QCVN_102_2016">')
    end = data.index(b"</edXML:ContentTransferEncoded>")
    for variant in variants:
        mutated = data[:start] + variant.encode() + data[end:]
        for chunk in (1, 5, 1 << 20):
            p = parse_packet(mutated, limits=ParseLimits(read_chunk_bytes=chunk))
            assert p.attachments[0].sha256 == hashlib.sha256(payload).hexdigest(), (variant[:20], chunk)


def test_empty_payload_is_a_zero_byte_attachment(sink: RecordingSink) -> None:
    data = fixture("edoc_update")
    start = data.index(b'QCVN_102_2016">', data.index(b"<edXML:ContentTransferEncoded")) + len(b'QCVN_102_2016">')
    end = data.index(b"</edXML:ContentTransferEncoded>")
    for payload in (b"", b"   \n  "):
        p = parse_packet(data[:start] + payload + data[end:], attachment_sink=sink)
        assert (p.attachments[0].size, p.attachments[0].is_zip) == (0, False)
    self_closing = data[: start - 1] + b"/>" + data[end + len(b"</edXML:ContentTransferEncoded>") :]
    assert parse_packet(self_closing).attachments[0].size == 0


def test_utf8_bom_and_other_ascii_compatible_encodings() -> None:
    data = fixture("status_04")
    assert parse_packet(b"\xef\xbb\xbf" + data).status_code == "04"
    latin = data.decode("utf-8").replace("UTF-8", "ISO-8859-1")
    latin = latin.replace("Lãnh đạo Sở: Phân công xử lý cho Phòng Bưu chính – Viễn thông", "Lanh dao: Phan cong")
    latin = latin.replace("Thông tin và Truyền thông", "TTTT").replace("Quảng Nam", "Quang Nam")
    p = parse_packet(latin.encode("latin-1", errors="strict") if latin.isascii() else _latin(latin))
    assert p.status_code == "04"


def _latin(text: str) -> bytes:
    return text.encode("latin-1", errors="xmlcharrefreplace")


def test_packet_is_immutable_dataclass() -> None:
    p = parse_packet(FIXTURES / "status_01.edxml")
    with pytest.raises(AttributeError):
        p.kind = "edoc"  # type: ignore[misc]


def test_comments_cdata_and_pis_inside_text_are_not_information() -> None:
    data = fixture("status_05").replace(
        b"<edXML:Description>", b"<edXML:Description>A<!-- c --><![CDATA[ & <B> ]]>C<?pi x?>D", 1
    )
    assert parse_packet(data).status_description == "A & <B> CDChuyên viên: Đang xử lý văn bản đến"


def test_parallel_parsing_in_worker_threads() -> None:
    """The hub runs the parser in worker threads: shared schemas must not mix results."""
    from concurrent.futures import ThreadPoolExecutor

    good = {name: summary(parse_packet(fixture(name))) for name in EDOC_FIXTURES + STATUS_FIXTURES}
    bad = fixture("edoc_new").replace(b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>9<")

    def one(i: int) -> object:
        names = list(good)
        if i % 5 == 0:
            try:
                parse_packet(bad)
            except EdxmlInvalid as exc:
                return exc.path
            return "no error"
        name = names[i % len(names)]
        return name, summary(parse_packet(fixture(name))) == good[name]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(200)))
    for i, result in enumerate(results):
        if i % 5 == 0:
            assert result == "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType"
        else:
            assert isinstance(result, tuple)
            assert result[1], result[0]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4])
def test_document_start_split_across_reads(chunk: int) -> None:
    limits = ParseLimits(read_chunk_bytes=chunk)
    assert parse_packet(b"\xef\xbb\xbf" + fixture("status_06"), limits=limits).status_code == "06"
    without_declaration = fixture("status_06").split(b"?>", 1)[1]
    assert parse_packet(b"\xef\xbb\xbf \n\t" + without_declaration, limits=limits).status_code == "06"
