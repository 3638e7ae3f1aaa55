"""Every dimension of the kept XML is bounded while it is read, before any validation.

Library level: the byte scanner (tags cut between reads, look-alikes in comments and CDATA), the
exact checks on the parser's events, built trees and JSON forms, and the capped explanation of
an invalid packet. The hub-level attacks (REST and SOAP uploads) are in tests/hostile/.
"""

from __future__ import annotations

import io
import json
import re
import threading
from typing import Any

import pytest
from edxml_support import fixture
from lxml import etree

from lgsp.core.edxml import (
    EdxmlInvalid,
    EdxmlMalformed,
    EdxmlTooLarge,
    MarkupScanner,
    ParseLimits,
    build_packet,
    load_json,
    parse_packet,
)
from lgsp.core.edxml.schema import EXPLAIN_MAX_ELEMENTS, explain, lxml_schema, small_enough_to_explain

MH = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
SUBJECT = MH + "/Subject"
LIMITS = ParseLimits()


def with_subject_start(start: bytes, packet: str = "edoc_new") -> bytes:
    """The fixture with its Subject start tag replaced (e.g. to add attributes)."""
    data = fixture(packet)
    assert data.count(b"<edXML:Subject>") == 1
    return data.replace(b"<edXML:Subject>", start, 1)


def attributes(n: int, value: str = "x") -> bytes:
    return b"".join(b' a%d="%s"' % (i, value.encode()) for i in range(n))


def too_large(data: bytes, limits: ParseLimits = LIMITS) -> EdxmlTooLarge:
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(data, limits=limits)
    return err.value


# ----------------------------------------------------------------------------- attributes


def test_attributes_up_to_the_limit_reach_the_schema_which_names_path_and_rule() -> None:
    data = with_subject_start(b"<edXML:Subject" + attributes(LIMITS.max_attributes) + b">")
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(data)
    assert err.value.code == "edxml.invalid"
    assert (err.value.path, err.value.rule) == (SUBJECT, "Subject: attributes")


def test_one_attribute_over_the_limit_is_too_large_before_validation() -> None:
    err = too_large(with_subject_start(b"<edXML:Subject" + attributes(LIMITS.max_attributes + 1) + b">"))
    assert (err.code, err.rule, err.path) == ("edxml.too_large", "max_attributes", SUBJECT)
    assert str(LIMITS.max_attributes) in err.detail


@pytest.mark.parametrize("count", [49, 1_000, 100_000])
def test_crowded_start_tag_is_refused_before_libxml2_parses_it(count: int) -> None:
    err = too_large(with_subject_start(b"<edXML:Subject" + attributes(count) + b">"))
    assert (err.rule, err.path) == ("max_attributes", SUBJECT)
    assert "more than 32 attributes" in err.detail


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_crowded_tag_cut_between_reads_is_still_seen(chunk: int) -> None:
    # A ">" inside a value once made a cut tag look complete to the splitter.
    crowded = b'<edXML:Subject q=">"' + attributes(300) + b">"
    err = too_large(with_subject_start(crowded), ParseLimits(read_chunk_bytes=chunk))
    assert (err.rule, err.path) == ("max_attributes", SUBJECT)


def test_crowded_look_alikes_in_comments_cdata_and_pis_are_text() -> None:
    crowded = b"<x" + attributes(500) + b">"
    data = fixture("status_02")
    for wrapped in (b"<!-- " + crowded + b" -->", b"<?note " + crowded + b" ?>"):
        assert parse_packet(data.replace(b"<edXML xmlns=", wrapped + b"<edXML xmlns=", 1),
                            limits=ParseLimits(read_chunk_bytes=37)).status_code == "02"
    # In element text, CDATA carries markup-like text as characters.
    cdata = data.replace(b"</edXML:Description>", b"<![CDATA[" + crowded + b"]]></edXML:Description>", 1)
    assert b"CDATA" in cdata
    packet = parse_packet(cdata, limits=ParseLimits(read_chunk_bytes=41))
    assert crowded.decode() in (packet.status_description or "")


def test_greater_than_in_values_does_not_confuse_the_scanner() -> None:
    data = fixture("edoc_replacement").replace(b'xlink:href="', b'xlink:href="a>b&gt;c', 1)
    assert b'xlink:href="a>b' in data
    for chunk in (1, 5, 333):
        packet = parse_packet(data, limits=ParseLimits(read_chunk_bytes=chunk))
        assert packet.attachments


def test_scanner_offsets_and_carry() -> None:
    scanner = MarkupScanner(max_items=2, max_construct=100)
    assert scanner.feed(b'<a x="1" y="2"><b') is None
    found = scanner.feed(b' x="1" y="2" z="3"/></a>')
    assert found is not None and (found.kind, found.name, found.offset) == ("items", "b", -2)
    long_tag = MarkupScanner(max_items=2, max_construct=100)
    assert long_tag.feed(b"<a>") is None
    found = long_tag.feed(b'<b x="' + b"y" * 200)
    assert found is not None and found.kind == "construct"


def test_attribute_value_length() -> None:
    limit = LIMITS.max_attribute_length
    data = with_subject_start(b'<edXML:Subject a="' + b"v" * limit + b'">')
    with pytest.raises(EdxmlInvalid):  # long but allowed: the schema refuses the attribute itself
        parse_packet(data)
    err = too_large(with_subject_start(b'<edXML:Subject a="' + b"v" * (limit + 1) + b'">'))
    assert (err.rule, err.path) == ("max_attribute_length", SUBJECT)
    assert "attribute a" in err.detail


# ------------------------------------------------------------------------------ namespaces


def test_namespace_declarations_per_element() -> None:
    decls = b"".join(b' xmlns:p%d="urn:p:%d"' % (i, i) for i in range(LIMITS.max_namespaces_per_element + 1))
    err = too_large(with_subject_start(b"<edXML:Subject" + decls + b">"))
    assert (err.rule, err.path) == ("max_namespaces_per_element", SUBJECT)
    crowded = b"".join(b' xmlns:p%d="urn:p:%d"' % (i, i) for i in range(100_000))
    err = too_large(with_subject_start(b"<edXML:Subject" + crowded + b">"))
    assert (err.rule, err.path) == ("max_namespaces_per_element", SUBJECT)
    fewer = b"".join(b' xmlns:p%d="urn:p:%d"' % (i, i) for i in range(LIMITS.max_namespaces_per_element))
    assert parse_packet(with_subject_start(b"<edXML:Subject" + fewer + b">")).subject


def test_namespace_declarations_in_total() -> None:
    data = fixture("edoc_new")  # declares 5 namespaces
    assert parse_packet(data, limits=ParseLimits(max_namespaces=5)).subject
    err = too_large(data, ParseLimits(max_namespaces=4))
    assert err.rule == "max_namespaces" and err.path and err.path.startswith("/edXML")


def test_namespace_name_length() -> None:
    uri = b"urn:" + b"n" * LIMITS.max_attribute_length
    err = too_large(with_subject_start(b'<edXML:Subject xmlns:long="' + uri + b'">'))
    assert (err.rule, err.path) == ("max_attribute_length", SUBJECT)


# -------------------------------------------------------------------------------- text


def test_text_length_counts_the_whole_node_even_split_by_comments() -> None:
    half = b"t" * (LIMITS.max_text_length // 2 + 1)
    data = fixture("edoc_new")
    data = re.sub(rb"<edXML:Content>[^<]*</edXML:Content>",
                  b"<edXML:Content>" + half + b"<!-- split -->" + half + b"</edXML:Content>", data, count=1)
    err = too_large(data)
    assert (err.rule, err.path) == ("max_text_length", MH + "/Content")


def test_text_between_elements_is_bounded_too() -> None:
    spaces = b" " * (LIMITS.max_text_length + 1)
    data = fixture("edoc_new").replace(b"</edXML:Subject>", b"</edXML:Subject>" + spaces, 1)
    err = too_large(data)
    assert (err.rule, err.path) == ("max_text_length", SUBJECT)
    assert "after" in err.detail


def test_text_at_the_limit_is_fine() -> None:
    data = fixture("edoc_new")
    data = re.sub(rb"<edXML:Content>[^<]*</edXML:Content>",
                  b"<edXML:Content>" + b"t" * LIMITS.max_text_length + b"</edXML:Content>", data, count=1)
    assert len(parse_packet(data).message_header["content"]) == LIMITS.max_text_length


def test_attachment_payloads_are_not_text_nodes() -> None:
    document = json_form("edoc_replacement")
    size = 3 * LIMITS.max_text_length
    files = {a["content_id"]: io.BytesIO(bytes(size)) for a in document["attachments"]}
    for entry in document["attachments"]:
        for key in ("size", "sha256", "is_zip"):
            entry.pop(key)
    out = io.BytesIO()
    build_packet(document, out, attachments=files)
    packet = parse_packet(out.getvalue())
    assert [a.size for a in packet.attachments] == [size] * len(files)


# ------------------------------------------------------------------------ depth, elements


def test_depth_is_checked_on_events_before_libxml2s_own_limit() -> None:
    deep = b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">' + b"<a>" * 1000
    err = too_large(deep)
    assert err.rule == "max_depth"
    assert err.path == "/edXML" + "/a" * LIMITS.max_depth


def test_element_count_is_exact() -> None:
    data = fixture("status_01")
    count = len(etree.fromstring(data).xpath("//*"))
    assert parse_packet(data, limits=ParseLimits(max_elements=count)).status_code == "01"
    err = too_large(data, ParseLimits(max_elements=count - 1))
    assert err.rule == "max_elements" and err.path


# ---------------------------------------------------------------------------- syntax first


def test_a_bound_broken_before_a_syntax_error_is_reported_as_the_bound() -> None:
    data = with_subject_start(b"<edXML:Subject" + attributes(40) + b">")[:-500]
    assert too_large(data).rule == "max_attributes"
    with pytest.raises(EdxmlMalformed):  # no bound broken: the truncation is what is wrong
        parse_packet(fixture("edoc_new")[:-500])


# ----------------------------------------------------------------------- JSON forms, builds


def json_form(packet: str = "status_01") -> dict[str, Any]:
    return parse_packet(fixture(packet)).to_json()


def test_json_keys_per_object() -> None:
    document = json_form()
    document["message_header"]["from"].update({f"k{i}": "" for i in range(LIMITS.max_json_keys)})
    with pytest.raises(EdxmlTooLarge) as err:
        load_json(io.BytesIO(json.dumps(document).encode()))
    assert (err.value.rule, err.value.path) == ("max_json_keys", "$.message_header.from")


def test_json_string_length_and_depth() -> None:
    document = json_form()
    document["message_header"]["status_description"] = "d" * (LIMITS.max_text_length + 1)
    with pytest.raises(EdxmlTooLarge) as err:
        load_json(io.BytesIO(json.dumps(document).encode()))
    assert (err.value.rule, err.value.path) == ("max_text_length", "$.message_header.status_description")
    nested: Any = "x"
    for _ in range(LIMITS.max_depth + 1):
        nested = [nested]
    with pytest.raises(EdxmlTooLarge) as err:
        load_json(io.BytesIO(json.dumps({"kind": nested}).encode()))
    assert err.value.rule == "max_depth" and err.value.path.startswith("$.kind[0][0]")


def test_json_values_are_bounded_before_decoding() -> None:
    raw = b"[" + b"0," * (4 * 100 + 1) + b"0]"
    with pytest.raises(EdxmlTooLarge) as err:
        load_json(io.BytesIO(raw), ParseLimits(max_elements=100))
    assert err.value.rule == "max_elements"
    assert len(load_json(io.BytesIO(raw), ParseLimits(max_elements=101))) == 402


def test_unknown_keys_are_named_a_few_at_a_time() -> None:
    document = json_form()
    document["message_header"].update({f"unknown_{i:03}": "" for i in range(40)})
    with pytest.raises(EdxmlInvalid) as err:
        build_packet(document, io.BytesIO())
    assert "unknown_000" in err.value.detail and "and 35 more" in err.value.detail
    assert "unknown_039" not in err.value.detail


def test_built_tree_is_bounded_before_validation() -> None:
    document = json_form("edoc_replacement")
    files = {a["content_id"]: io.BytesIO(b"x") for a in document["attachments"]}
    reference = document["attachments"][0]["reference"]
    reference["attributes"] = {f"{{urn:x}}a{i}": "v" for i in range(LIMITS.max_attributes + 1)}
    with pytest.raises(EdxmlTooLarge) as err:
        build_packet(document, io.BytesIO(), attachments=files)
    assert err.value.rule == "max_attributes"
    assert err.value.path == "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference[1]"


def test_signature_xml_of_a_json_form_is_scanned_before_parsing() -> None:
    document = json_form()
    document["signature"] = {"xml": '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">'
                                    f"<SignedInfo{attributes(100_000).decode()}/></Signature>"}
    with pytest.raises(EdxmlTooLarge) as err:
        build_packet(document, io.BytesIO())
    assert (err.value.rule, err.value.path) == ("max_attributes", "$.signature.xml/Signature/SignedInfo")


# ---------------------------------------------------------------------------- explanation


def big_invalid_envelope(copies: int) -> etree._Element:
    data = fixture("edoc_new")
    to = re.search(rb"<edXML:To>.*?</edXML:To>", data, re.S)
    assert to is not None
    data = data.replace(to.group(), to.group() * copies, 1).replace(
        b"<edXML:BussinessDocType>0</edXML:BussinessDocType>", b"<edXML:BussinessDocType>9</edXML:BussinessDocType>", 1)
    return etree.fromstring(data)[0]


def test_small_trees_are_explained_by_xmlschema() -> None:
    envelope = big_invalid_envelope(1)
    assert small_enough_to_explain(envelope)
    schema = lxml_schema("edoc")
    assert not schema.validate(envelope)
    err = explain(envelope, "edoc", "ctx", schema.error_log)
    assert err.path == "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType"
    assert err.rule == "BussinessDocTypeCode: enumeration"


def test_large_trees_are_explained_from_libxml2_with_the_same_path() -> None:
    envelope = big_invalid_envelope(EXPLAIN_MAX_ELEMENTS // 8)
    assert len(envelope.xpath("//*")) > EXPLAIN_MAX_ELEMENTS
    assert not small_enough_to_explain(envelope)
    schema = lxml_schema("edoc")
    assert not schema.validate(envelope)
    err = explain(envelope, "edoc", "ctx", schema.error_log)
    assert err.path == "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType"
    assert err.rule == "BussinessDocType: enumeration"
    assert "{'0', '1', '2', '3'}" in err.detail and "{http" not in err.detail


def test_large_tree_with_an_unexpected_child_in_a_default_namespace() -> None:
    root = etree.fromstring(fixture("status_02"))
    header = root[0][0]
    for _ in range(EXPLAIN_MAX_ELEMENTS):
        etree.SubElement(header, "{http://www.mic.gov.vn/TBT/QCVN_102_2016}Extra")
    schema = lxml_schema("status")
    assert not schema.validate(root)
    err = explain(root, "status", "ctx", schema.error_log)
    assert err.path == "/edXML/edXMLEnvelope/edXMLHeader/Extra[1]"
    assert err.rule == "edXMLHeader: content model"


def test_each_thread_has_its_own_schema_and_error_log() -> None:
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(lxml_schema("edoc")))
    thread.start()
    thread.join()
    assert seen[0] is not lxml_schema("edoc") and lxml_schema("edoc") is lxml_schema("edoc")


def test_a_packet_of_tiny_elements_leaves_no_garbage_for_the_collector() -> None:
    """Parsing must not promote thousands of objects: in a hub that sets off full collections of its
    heap, with the GIL held while other clients wait. Counted in young-generation collections, which
    depend on how many objects stay alive at once, not on time."""
    import gc

    data = fixture("edoc_new").replace(b"</edXML:Subject>", b"</edXML:Subject>" + b"<x/>" * 19_000, 1)
    gc.collect()
    before = gc.get_stats()[0]["collections"]
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(data)
    assert err.value.path == MH + "/x[1]"
    assert gc.get_stats()[0]["collections"] - before <= 10
