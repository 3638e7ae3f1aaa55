"""Reading From/To leniently from edXML headers, safely and within bounds."""

from __future__ import annotations

import pytest

from lgsp.adapters.national_axis.edxml_addresses import EdxmlAddressError, read_addresses

from .conftest import fixture_bytes


def test_an_edoc_gives_sender_recipients_and_what_the_sent_list_shows() -> None:
    head = read_addresses(fixture_bytes("edoc_new.edxml"))
    assert head.from_ == "000.00.00.H45"
    assert head.to == ("000.02.31.H45", "28.22.H17", "000.00.00.H41")
    assert head.notation == "125/QĐ-UBND" and head.subject.startswith("V/v triển khai")


def test_a_status_packet_names_its_addressee_in_response_for() -> None:
    head = read_addresses(fixture_bytes("status_01.edxml"))
    assert head.from_ == "000.02.31.H45" and head.to == () and head.response_for == ("000.00.00.H45",)


def test_a_vendor_packet_without_namespace_or_optional_elements_is_read() -> None:
    packet = (b"\xef\xbb\xbf<edXML><edXMLEnvelope><edXMLHeader><MessageHeader>"
              b"<From><OrganId>000.00.00.G22</OrganId></From><To><OrganId>000.00.00.H45</OrganId></To>"
              b"<To><OrganId> 000.00.00.H45 </OrganId></To></MessageHeader></edXMLHeader></edXMLEnvelope>"
              b"<edXMLBody><unclosed>")  # whatever follows the header is never parsed
    head = read_addresses(packet)
    assert head.from_ == "000.00.00.G22" and head.to == ("000.00.00.H45",) and head.notation == ""


def test_organ_ids_outside_the_message_header_are_not_addresses() -> None:
    packet = (b"<edXML><TraceHeaderList><TraceHeader><OrganId>000.00.00.X99</OrganId></TraceHeader>"
              b"</TraceHeaderList><MessageHeader><To><OrganId>000.00.00.H45</OrganId></To></MessageHeader></edXML>")
    assert read_addresses(packet).to == ("000.00.00.H45",)


@pytest.mark.parametrize(("packet", "match"), [
    (b'<!DOCTYPE x [<!ENTITY e "000.00.00.H99">]><edXML><MessageHeader><To><OrganId>&e;</OrganId></To>'
     b"</MessageHeader></edXML>", "DOCTYPE"),
    (b"not xml at all", "well-formed"),
    (b"<edXML><MessageHeader><To></MessageHeader></edXML>", "well-formed"),
    (b"<edXML><Other/></edXML>", "no MessageHeader"),
    (b"", "well-formed"),
    (b"<a>" * 40 + b"<MessageHeader/>", "deeply"),
    (b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><edXML><MessageHeader/></edXML>', "DOCTYPE"),
])
def test_bad_or_hostile_packets_are_refused(packet: bytes, match: str) -> None:
    with pytest.raises(EdxmlAddressError, match=match):
        read_addresses(packet)


def test_a_header_larger_than_the_bound_is_refused_without_reading_on() -> None:
    packet = b"<edXML><MessageHeader><Subject>" + b"x" * 300_000 + b"</Subject></MessageHeader></edXML>"
    with pytest.raises(EdxmlAddressError, match="first 100000 bytes"):
        read_addresses(packet, max_header_bytes=100_000)
    assert read_addresses(packet, max_header_bytes=400_000).subject == "x" * 1000  # text kept is bounded too
