"""append_trace_header: the hub's hop, copied stream to stream."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from edxml_support import EDOC_FIXTURES, RecordingSink, fixture
from lxml import etree

from lgsp.core.edxml import (
    EdxmlInvalid,
    EdxmlUnsafe,
    TraceHeader,
    append_trace_header,
    canonical_json,
    format_timestamp,
    parse_packet,
)

HUB = "000.00.99.H45"
NSB = b"http://www.mic.gov.vn/TBT/QCVN_102_2016"


def strip_trace(document: dict) -> dict:  # type: ignore[type-arg]
    doc = dict(document)
    doc["trace_header_list"] = dict(doc["trace_header_list"])
    doc["trace_header_list"]["trace_header"] = doc["trace_header_list"]["trace_header"][:-1]
    return doc


@pytest.mark.parametrize("name", EDOC_FIXTURES)
def test_append_keeps_everything_and_adds_one_hop(name: str) -> None:
    source = fixture(name)
    before = parse_packet(source)
    out = io.BytesIO()
    written = append_trace_header(io.BytesIO(source), out, organ_id=HUB, timestamp="2024/05/01 07:30:00")
    after = parse_packet(out.getvalue())  # the output is a valid packet
    assert after.trace_headers == [*before.trace_headers, TraceHeader(HUB, "2024/05/01 07:30:00")]
    assert canonical_json(after.to_json()) == canonical_json(written.to_json())
    assert canonical_json(strip_trace(after.to_json())) == canonical_json(before.to_json())


def test_new_hop_follows_the_last_trace_header() -> None:
    for name, expected in [
        ("edoc_new", ["TraceHeader", "TraceHeader", "Bussiness"]),
        ("edoc_replacement", ["Bussiness", "TraceHeader", "TraceHeader", "TraceHeader"]),
    ]:
        out = io.BytesIO()
        append_trace_header(io.BytesIO(fixture(name)), out, organ_id=HUB)
        root = etree.fromstring(out.getvalue())
        thl = root.find(".//{http://www.mic.gov.vn/TBT/QCVN_102_2016}TraceHeaderList")
        assert thl is not None
        assert [etree.QName(c).localname for c in thl] == expected, name


def test_output_keeps_the_senders_prefixes_and_indentation() -> None:
    out = io.BytesIO()
    append_trace_header(io.BytesIO(fixture("edoc_new")), out, organ_id=HUB, timestamp="2024/05/01 07:30:00")
    text = out.getvalue().decode("utf-8")
    assert "<edXML:edXMLEnvelope" in text
    assert (
        "        </edXML:TraceHeader>\n"
        "        <edXML:TraceHeader>\n"
        "          <edXML:OrganId>000.00.99.H45</edXML:OrganId>\n"
        "          <edXML:Timestamp>2024/05/01 07:30:00</edXML:Timestamp>\n"
        "        </edXML:TraceHeader>\n"
        "        <edXML:Bussiness>"
    ) in text


def test_attachments_pass_through_unchanged_and_can_be_stored(sink: RecordingSink) -> None:
    source = fixture("edoc_new")
    before = parse_packet(source)
    out = io.BytesIO()
    written = append_trace_header(io.BytesIO(source), out, organ_id=HUB, attachment_sink=sink)
    assert [a.sha256 for a in written.attachments] == [a.sha256 for a in before.attachments]
    assert [len(w.data) for w in sink.writers] == [a.size for a in before.attachments]
    # payloads are re-encoded on one line each
    payload_lines = re.findall(rb"<ContentTransferEncoded>([^<]*)</ContentTransferEncoded>", out.getvalue())
    assert len(payload_lines) == 3
    assert all(b"\n" not in p for p in payload_lines)


def test_default_timestamp_is_now_in_vietnam_time() -> None:
    out = io.BytesIO()
    append_trace_header(io.BytesIO(fixture("edoc_update")), out, organ_id=HUB)
    stamp = parse_packet(out.getvalue()).trace_headers[-1].timestamp
    when = datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S").replace(tzinfo=timezone(timedelta(hours=7)))
    assert abs((datetime.now(UTC) - when).total_seconds()) < 120


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2024, 1, 2, 3, 4, 5)) == "2024/01/02 03:04:05"  # naive: as given
    assert format_timestamp(datetime(2024, 1, 1, 20, 0, 0, tzinfo=UTC)) == "2024/01/02 03:00:00"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}", format_timestamp())


def test_status_packets_have_no_trace_list() -> None:
    out = io.BytesIO()
    with pytest.raises(EdxmlInvalid, match="only edoc"):
        append_trace_header(io.BytesIO(fixture("status_03")), out, organ_id=HUB)
    assert out.getvalue() == b""


def test_invalid_input_is_refused_before_output() -> None:
    bad = fixture("edoc_new").replace(b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>8<")
    out = io.BytesIO()
    with pytest.raises(EdxmlInvalid):
        append_trace_header(io.BytesIO(bad), out, organ_id=HUB)
    assert out.getvalue() == b""
    with pytest.raises(EdxmlUnsafe):
        append_trace_header(io.BytesIO(b"<!DOCTYPE x><x/>"), io.BytesIO(), organ_id=HUB)


def test_bad_hop_values() -> None:
    with pytest.raises(ValueError, match="organ_id"):
        append_trace_header(io.BytesIO(fixture("edoc_new")), io.BytesIO(), organ_id=" ")
    out = io.BytesIO()
    with pytest.raises(EdxmlInvalid) as err:
        append_trace_header(io.BytesIO(fixture("edoc_new")), out, organ_id=HUB, timestamp="yesterday")
    assert err.value.path == "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/TraceHeader[2]/Timestamp"
    assert out.getvalue() == b"", "an invalid output is never started"


def test_bad_payload_is_found_while_copying() -> None:
    bad = fixture("edoc_update").replace(b"</edXML:ContentTransferEncoded>", b"A</edXML:ContentTransferEncoded>")
    out = io.BytesIO()
    with pytest.raises(EdxmlInvalid, match="Base64"):
        append_trace_header(io.BytesIO(bad), out, organ_id=HUB)
    assert NSB in out.getvalue()  # partial output: the caller must discard it (documented)
