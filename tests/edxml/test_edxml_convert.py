"""Conversions: edXML <-> JSON form, building from JSON + files, converter plugins."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from edxml_support import EDOC_FIXTURES, FIXTURES, STATUS_FIXTURES, RecordingSink, fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from lgsp.core.edxml import (
    CONVERTERS,
    JSON_FORMAT,
    AttachmentStore,
    DirectoryAttachmentStore,
    EdxmlInvalid,
    EdxmlJsonConverter,
    EdxmlMalformed,
    JsonEdxmlConverter,
    Packet,
    PacketConverter,
    build_packet,
    canonical_json,
    envelope_from_json,
    parse_packet,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "edxml.md"


def without_refs(document: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(document)
    for entry in out.get("attachments", []):
        entry.pop("ref", None)
    return out


def roundtrip(data: bytes) -> tuple[Packet, Packet, bytes]:
    """edXML -> JSON text -> edXML -> parsed again, attachments through a RecordingSink."""
    sink = RecordingSink()
    first = parse_packet(data, attachment_sink=sink)
    text = json.dumps(first.to_json(), ensure_ascii=False)
    files = {w.meta.content_id: io.BytesIO(w.data) for w in sink.writers}
    out = io.BytesIO()
    build_packet(json.loads(text), out, attachments=files)
    second = parse_packet(out.getvalue())
    return first, second, out.getvalue()


def c14n_infoset(data: bytes) -> bytes:
    """Normalised XML: prefixes, whitespace-only text and element order inside "any order" parents ignored."""
    root = etree.fromstring(data, etree.XMLParser(remove_blank_text=True, remove_comments=True, huge_tree=True))
    for el in root.iter():
        if el.text is not None and not el.text.strip() and len(el):
            el.text = None
    return etree.tostring(root, method="c14n2", strip_text=False)


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", EDOC_FIXTURES + STATUS_FIXTURES)
def test_roundtrip_is_lossless(name: str) -> None:
    first, second, _ = roundtrip(fixture(name))
    assert canonical_json(without_refs(first.to_json())) == canonical_json(without_refs(second.to_json()))


def test_roundtrip_keeps_every_leaf_text() -> None:
    """Independent check: every text of the original header appears in the rebuilt packet."""
    original = fixture("edoc_new")
    _, _, rebuilt = roundtrip(original)
    ns = {"e": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}

    def leaves(data: bytes) -> list[tuple[str, str]]:
        root = etree.fromstring(data)
        header = root.find("e:edXMLEnvelope/e:edXMLHeader", ns)
        assert header is not None
        return sorted(
            (etree.QName(el).localname, el.text or "")
            for el in header.iter()
            if isinstance(el.tag, str) and not len(el)
        )

    assert leaves(original) == leaves(rebuilt)


def test_roundtrip_of_canonical_output_is_byte_identical() -> None:
    """Building is deterministic: JSON -> edXML -> JSON -> edXML gives the same bytes."""
    _, _, once = roundtrip(fixture("edoc_revocation"))
    _, _, twice = roundtrip(once)
    assert once == twice
    assert c14n_infoset(once) == c14n_infoset(twice)


def test_roundtrip_reference_samples(reference_samples: Path) -> None:
    for f in sorted(reference_samples.glob("*.edxml")):
        first, second, _ = roundtrip(f.read_bytes())
        assert canonical_json(without_refs(first.to_json())) == canonical_json(without_refs(second.to_json())), f
        assert [a.sha256 for a in first.attachments] == [a.sha256 for a in second.attachments]


def test_canonical_order_is_documented_normalisation() -> None:
    """Order inside "any order" parents is not information: the builder writes the canonical order."""
    p = parse_packet(FIXTURES / "edoc_replacement.edxml")  # Bussiness before TraceHeader
    _, _, rebuilt = roundtrip(fixture("edoc_replacement"))
    root = etree.fromstring(rebuilt)
    thl = root.find(".//{http://www.mic.gov.vn/TBT/QCVN_102_2016}TraceHeaderList")
    assert thl is not None
    assert [etree.QName(c).localname for c in thl] == ["TraceHeader", "TraceHeader", "Bussiness"]
    assert [t.organ_id for t in parse_packet(rebuilt).trace_headers] == [t.organ_id for t in p.trace_headers]


# ------------------------------------------------------------------------- the JSON form


def test_json_form_shape_for_edoc() -> None:
    doc = parse_packet(FIXTURES / "edoc_new.edxml").to_json()
    assert list(doc) == [
        "format",
        "kind",
        "message_header",
        "trace_header_list",
        "signature",
        "manifest_version",
        "attachments",
    ]
    assert doc["format"] == JSON_FORMAT
    mh = doc["message_header"]
    assert list(mh["from"]) == [
        "organ_id",
        "organization_in_charge",
        "organ_name",
        "organ_add",
        "email",
        "telephone",
        "fax",
        "website",
    ]
    assert isinstance(mh["to"], list)
    assert len(mh["to"]) == 3
    assert mh["other_info"]["priority"] == "1"  # verbatim strings, no type conversion
    assert mh["other_info"]["direction"] == "false"
    assert doc["trace_header_list"]["bussiness"]["bussiness_doc_type"] == "0"
    entry = doc["attachments"][0]
    assert entry == {
        "content_id": "101",
        "attachment_name": "125-QD-UBND.doc",
        "description": "Quyết định 125/QĐ-UBND",
        "content_type": "application/zip",
        "size": entry["size"],
        "sha256": entry["sha256"],
        "is_zip": True,
        "reference": {
            "content_id": "cid:101",
            "content_type": "application/zip",
            "description": "Quyết định 125/QĐ-UBND",
            "attachment_name": "125-QD-UBND.doc",
        },
    }
    assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])


def test_json_form_shape_for_status() -> None:
    doc = parse_packet(FIXTURES / "status_13.edxml").to_json()
    assert list(doc) == ["format", "kind", "message_header"]
    assert list(doc["message_header"]) == [
        "from",
        "response_for",
        "staff_info",
        "status_code",
        "description",
        "timestamp",
    ]
    assert doc["message_header"]["response_for"]["organ_id"] == "000.02.31.H45"


def test_docs_example_builds_and_matches_its_description() -> None:
    """The JSON example in docs/edxml.md is a working document."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- example:edoc -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/edxml.md must contain the edoc JSON example"
    document = json.loads(match.group(1))
    payload = "Nội dung công văn mẫu\n".encode()
    assert document["attachments"][0]["sha256"] == hashlib.sha256(payload).hexdigest()
    out = io.BytesIO()
    built = build_packet(document, out, attachments={"cid:1": io.BytesIO(payload)})
    again = parse_packet(out.getvalue())
    assert canonical_json(without_refs(again.to_json())) == canonical_json(without_refs(document))
    assert built.to_json()["attachments"][0]["size"] == len(payload)


def test_docs_status_example_builds() -> None:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- example:status -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/edxml.md must contain the status JSON example"
    document = json.loads(match.group(1))
    out = io.BytesIO()
    build_packet(document, out)
    assert canonical_json(parse_packet(out.getvalue()).to_json()) == canonical_json(document)


# ------------------------------------------------------------------------- building from JSON


def base_document() -> dict[str, Any]:
    return parse_packet(FIXTURES / "edoc_update.edxml").to_json()


def update_payload() -> bytes:
    sink = RecordingSink()
    parse_packet(FIXTURES / "edoc_update.edxml", attachment_sink=sink)
    return sink.writers[0].data


def build(document: Any, files: Any = None) -> bytes:
    out = io.BytesIO()
    if files is None:
        files = {"cid:301": io.BytesIO(update_payload())}
    build_packet(document, out, attachments=files)
    return out.getvalue()


def test_build_with_file_paths_and_callable_opener(tmp_path: Path) -> None:
    payload = update_payload()
    path = tmp_path / "payload.zip"
    path.write_bytes(payload)
    assert parse_packet(build(base_document(), {"301": str(path)})).attachments[0].size == len(payload)
    opened: list[io.BytesIO] = []

    def opener(entry: dict[str, Any]) -> io.BytesIO:
        stream = io.BytesIO(payload)
        opened.append(stream)
        return stream

    p = parse_packet(build(base_document(), opener))
    assert p.attachments[0].sha256 == hashlib.sha256(payload).hexdigest()
    assert opened[0].closed, "streams returned by an opener are closed after use"
    mine = io.BytesIO(payload)
    build(base_document(), {"cid:301": mine})
    assert not mine.closed, "streams given in a mapping belong to the caller"


def test_build_minimal_entry_derives_the_manifest() -> None:
    doc = base_document()
    entry = doc["attachments"][0]
    doc["attachments"] = [{k: entry[k] for k in ("content_id", "attachment_name", "content_type")}]
    p = parse_packet(build(doc))
    assert p.attachments[0].reference == {
        "content_id": "cid:301",
        "content_type": "application/zip",
        "attachment_name": "125-QD-UBND-sua-doi.zip",
    }
    assert p.attachments[0].description is None


def test_build_status_packet() -> None:
    doc = parse_packet(FIXTURES / "status_06.edxml").to_json()
    doc["message_header"]["status_code"] = "11"
    out = io.BytesIO()
    built = build_packet(doc, out)
    assert built.status_code == "11"
    assert parse_packet(out.getvalue()).status_code == "11"
    assert b"AttachmentEncoded" not in out.getvalue()


JSON_ERRORS = [
    ("not an object", lambda d: [], "$", "expected an object"),
    ("bad kind", lambda d: {**d, "kind": "memo"}, "$.kind", "edoc"),
    ("bad format", lambda d: {**d, "format": "edxml-json/99"}, "$.format", "unsupported"),
    ("unknown top key", lambda d: {**d, "extra": 1}, "$", "unknown key"),
    ("missing header", lambda d: {k: v for k, v in d.items() if k != "message_header"}, "$.message_header", "missing"),
    ("missing trace list", lambda d: {k: v for k, v in d.items() if k != "trace_header_list"},
     "$.trace_header_list", ""),
    ("unknown header key", lambda d: _set(d, ("message_header", "subjet"), "x"), "$.message_header", "subjet"),
    ("missing subject", lambda d: _del(d, ("message_header", "subject")), "$.message_header.subject", "missing"),
    ("subject not string", lambda d: _set(d, ("message_header", "subject"), 5), "$.message_header.subject", "string"),
    ("to not array", lambda d: _set(d, ("message_header", "to"), {}), "$.message_header.to", "array"),
    ("to empty", lambda d: _set(d, ("message_header", "to"), []), "$.message_header.to", "at least 1"),
    ("from twice", lambda d: _set(d, ("message_header", "from"), [d["message_header"]["from"]] * 2),
     "$.message_header.from", "object"),
    ("organ id missing", lambda d: _del(d, ("message_header", "to", 1, "organ_id")),
     "$.message_header.to[1].organ_id", "missing"),
    ("control character", lambda d: _set(d, ("message_header", "content"), "a\x00b"),
     "$.message_header.content", "XML 1.0"),
    ("lone surrogate", lambda d: _set(d, ("message_header", "content"), "a\ud800b"),
     "$.message_header.content", "XML 1.0"),
    ("empty organ id (schema)", lambda d: _set(d, ("message_header", "to", 0, "organ_id"), ""),
     "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[1]/OrganId", "pattern"),
    ("bad doc type (schema)", lambda d: _set(d, ("trace_header_list", "bussiness", "bussiness_doc_type"), "5"),
     "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType", "one of"),
    ("no attachments", lambda d: {**d, "attachments": []}, "$.attachments", "non-empty"),
    ("attachment not object", lambda d: {**d, "attachments": ["x"]}, "$.attachments[0]", "object"),
    ("attachment unknown key", lambda d: _set(d, ("attachments", 0, "blob"), "x"), "$.attachments[0]", "unknown"),
    ("attachment bad sha", lambda d: _set(d, ("attachments", 0, "sha256"), "ABC"), "$.attachments[0].sha256", "hex"),
    ("attachment bad size", lambda d: _set(d, ("attachments", 0, "size"), -1), "$.attachments[0].size", "integer"),
    ("reference mismatch", lambda d: _set(d, ("attachments", 0, "content_id"), "cid:999"),
     "$.attachments[0].content_id", "reference"),
    ("bad signature xml", lambda d: _set(d, ("signature", "xml"), "<Signature>"), "$.signature.xml", "well-formed"),
    ("signature wrong element", lambda d: _set(d, ("signature", "xml"), "<Foo/>"), "$.signature.xml", "Signature"),
    ("signature namespace lies", lambda d: _set(d, ("signature", "namespace"), "urn:x"), "$.signature.namespace", ""),
    ("attribute in edXML ns", lambda d: _set(d, ("attachments", 0, "reference", "attributes"),
     {"{http://www.mic.gov.vn/TBT/QCVN_102_2016}x": "1"}), "$.attachments[0].reference.attributes", "Clark"),
]


def _walk(d: Any, keys: tuple[Any, ...]) -> Any:
    for k in keys:
        d = d[k]
    return d


def _set(d: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    _walk(d, path[:-1])[path[-1]] = value
    return d


def _del(d: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    d = copy.deepcopy(d)
    del _walk(d, path[:-1])[path[-1]]
    return d


@pytest.mark.parametrize(("case", "change", "path", "detail"), JSON_ERRORS, ids=[c[0] for c in JSON_ERRORS])
def test_json_errors_name_the_path(case: str, change: Any, path: str, detail: str) -> None:
    document = change(base_document())
    out = io.BytesIO()
    with pytest.raises(EdxmlInvalid) as err:
        build_packet(document, out, attachments={"cid:301": io.BytesIO(update_payload())})
    assert err.value.path == path, err.value.message
    assert detail in err.value.detail, err.value.message
    assert out.getvalue() == b"", "nothing is written before the header is known to be valid"


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", 1), ("sha256", "0" * 64), ("is_zip", False)],
)
def test_build_checks_declared_size_hash_and_zip(field: str, value: Any) -> None:
    document = _set(base_document(), ("attachments", 0, field), value)
    with pytest.raises(EdxmlInvalid) as err:
        build(document)
    assert err.value.path == f"$.attachments[0].{field}"


def test_build_without_a_file_for_an_attachment() -> None:
    with pytest.raises(EdxmlInvalid, match="no file supplied"):
        build(base_document(), {"cid:999": io.BytesIO(b"")})
    with pytest.raises(EdxmlInvalid, match="no attachment source"):
        build_packet(base_document(), io.BytesIO())


def test_envelope_from_json_is_reusable_for_validation() -> None:
    kind, root = envelope_from_json(base_document())
    assert kind == "edoc"
    assert etree.QName(root).localname == "edXML"


# ------------------------------------------------------------------------- hypothesis

XML_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=("Cs",),
        exclude_characters="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16"
        "\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\ufffe\uffff",
    )
    | st.sampled_from(list("&<>\"'\r\n\tĐđăâêôơưẠạỹỸ ]]>")),
    max_size=60,
)
NON_EMPTY = XML_TEXT.filter(lambda s: s.strip() != "")
VIETNAMESE = st.sampled_from(
    ["Công văn", "Quyết định số 1/QĐ-UBND", "Ủy ban nhân dân tỉnh Hà Giang", "Thông tư <liên tịch> & phụ lục"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=XML_TEXT,
    content=XML_TEXT,
    organ_name=VIETNAMESE | XML_TEXT,
    organ_id=NON_EMPTY,
    places=st.lists(XML_TEXT, min_size=1, max_size=3),
    appendixes=st.none() | st.lists(XML_TEXT, max_size=3),
    attachment_name=NON_EMPTY,
    description=st.none() | XML_TEXT,
    payload=st.binary(max_size=300),
)
def test_random_texts_survive_the_roundtrip(
    subject: str,
    content: str,
    organ_name: str,
    organ_id: str,
    places: list[str],
    appendixes: list[str] | None,
    attachment_name: str,
    description: str | None,
    payload: bytes,
) -> None:
    doc = base_document()
    mh = doc["message_header"]
    mh["subject"] = subject
    mh["content"] = content
    mh["to"][0]["organ_name"] = organ_name
    mh["to"][1]["organ_id"] = organ_id
    mh["to_places"] = places
    if appendixes is None:
        mh["other_info"].pop("appendixes", None)
    else:
        mh["other_info"]["appendixes"] = appendixes
    entry = {"content_id": "cid:301", "attachment_name": attachment_name, "content_type": "application/octet-stream"}
    if description is not None:
        entry["description"] = description
    doc["attachments"] = [entry]
    out = io.BytesIO()
    built = build_packet(doc, out, attachments={"cid:301": io.BytesIO(payload)})
    parsed = parse_packet(out.getvalue())
    assert canonical_json(parsed.to_json()) == canonical_json(built.to_json())
    assert parsed.subject == subject
    assert parsed.message_header["to"][0]["organ_name"] == organ_name
    assert parsed.attachments[0].name == attachment_name
    assert parsed.attachments[0].sha256 == hashlib.sha256(payload).hexdigest()


# ------------------------------------------------------------------------- converters and store


def test_converter_interface() -> None:
    assert (EdxmlJsonConverter.source_format, EdxmlJsonConverter.target_format) == ("edxml", "json")
    assert (JsonEdxmlConverter.source_format, JsonEdxmlConverter.target_format) == ("json", "edxml")
    assert set(CONVERTERS) == {EdxmlJsonConverter, JsonEdxmlConverter}
    for cls in CONVERTERS:
        assert isinstance(cls(), PacketConverter)


@pytest.mark.parametrize("name", ["edoc_new", "edoc_replacement", "status_16"])
def test_converters_roundtrip_through_a_directory_store(name: str, tmp_path: Path) -> None:
    store = DirectoryAttachmentStore(tmp_path / "blobs")
    assert isinstance(store, AttachmentStore)
    json_out = io.BytesIO()
    first = EdxmlJsonConverter().convert(io.BytesIO(fixture(name)), json_out, store=store)
    document = json.loads(json_out.getvalue())
    for entry in document.get("attachments", []):
        assert entry["ref"] == entry["sha256"]  # content-addressed file name
        assert (tmp_path / "blobs" / entry["ref"]).is_file()
    assert not list((tmp_path / "blobs").glob(".partial-*"))
    xml_out = io.BytesIO()
    second = JsonEdxmlConverter().convert(io.BytesIO(json_out.getvalue()), xml_out, store=store)
    third = parse_packet(xml_out.getvalue())
    assert canonical_json(first.to_json()) == canonical_json(second.to_json())
    assert canonical_json(without_refs(first.to_json())) == canonical_json(third.to_json())


def test_directory_store_discards_partial_files(tmp_path: Path) -> None:
    store = DirectoryAttachmentStore(tmp_path)
    bad = fixture("edoc_new")
    third = bad.rindex(b'QCVN_102_2016">') + len(b'QCVN_102_2016">') + 40
    bad = bad[:third] + b"!" + bad[third + 1 :]
    with pytest.raises(EdxmlInvalid) as err:
        EdxmlJsonConverter().convert(io.BytesIO(bad), io.BytesIO(), store=store)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(a.ref for a in err.value.attachments if a.ref)
    assert len(kept) == 2


@pytest.mark.parametrize("ref", ["../etc/passwd", "/etc/passwd", ".partial-x", "", "a/b"])
def test_directory_store_refuses_paths_outside(ref: str, tmp_path: Path) -> None:
    store = DirectoryAttachmentStore(tmp_path)
    with pytest.raises(EdxmlInvalid):
        store.reader({"content_id": "cid:1", "ref": ref})


def test_json_converter_rejects_bad_json(tmp_path: Path) -> None:
    with pytest.raises(EdxmlMalformed):
        JsonEdxmlConverter().convert(io.BytesIO(b"\xff{"), io.BytesIO(), store=DirectoryAttachmentStore(tmp_path))
