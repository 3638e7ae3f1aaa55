"""The XSDs themselves: both engines load them, agree on every fixture, and document leniency."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import xmlschema
from edxml_support import EDOC_FIXTURES, FIXTURES, STATUS_FIXTURES, fixture
from lxml import etree

from lgsp.core.edxml import NS, schema_path

XS = "{http://www.w3.org/2001/XMLSchema}"
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def lxml_valid(data: bytes, kind: str) -> bool:
    schema = etree.XMLSchema(etree.parse(str(schema_path(kind)), SAFE))  # type: ignore[arg-type]
    return bool(schema.validate(etree.fromstring(data, SAFE)))


def xmlschema_valid(data: bytes, kind: str) -> bool:
    schema = xmlschema.XMLSchema10(str(schema_path(kind)), allow="sandbox")  # type: ignore[arg-type]
    resource = xmlschema.XMLResource(etree.fromstring(data, SAFE), allow="none")
    return bool(schema.is_valid(resource))


def test_schema_files_are_package_data() -> None:
    for kind in ("edoc", "status"):
        path = schema_path(kind)  # type: ignore[arg-type]
        assert path.is_file(), path
        assert path.parent.name == "edxml"
    assert (schema_path("edoc").parent / "common.xsd").is_file()


@pytest.mark.parametrize("name", EDOC_FIXTURES)
def test_edoc_fixtures_valid_in_both_engines(name: str) -> None:
    data = (FIXTURES / f"{name}.edxml").read_bytes()
    assert lxml_valid(data, "edoc")
    assert xmlschema_valid(data, "edoc")
    assert not lxml_valid(data, "status"), "an edoc must not pass as a status packet"


@pytest.mark.parametrize("name", STATUS_FIXTURES)
def test_status_fixtures_valid_in_both_engines(name: str) -> None:
    data = (FIXTURES / f"{name}.edxml").read_bytes()
    assert lxml_valid(data, "status")
    assert xmlschema_valid(data, "status")
    assert not lxml_valid(data, "edoc"), "a status packet must not pass as an edoc"


def test_reference_samples_validate(reference_samples: Path) -> None:
    """Every real-world sample of the public repository validates, in both engines."""
    files = sorted(reference_samples.glob("*.edxml"))
    names = {f.name for f in files}
    for expected in ("edoc_new.edxml", "edoc_replacement.edxml", "edoc_revocation.edxml", "edoc_update.edxml"):
        assert expected in names
    assert any(n.startswith("dc0bdef0-") for n in names)
    assert sum(n.startswith("status") for n in names) >= 9
    for f in files:
        kind = "status" if f.name.startswith("status") else "edoc"
        data = f.read_bytes()
        assert lxml_valid(data, kind), f.name
        assert xmlschema_valid(data, kind), f.name


def test_malformed_template_is_rejected_by_any_parser() -> None:
    data = (FIXTURES / "malformed_template.edxml").read_bytes()
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(data, SAFE)


# Mutations that must be invalid for both engines (structure the schema itself can express).
SCHEMA_MUTATIONS = [
    ("edoc_new", b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>4<"),
    ("edoc_new", b"<edXML:Direction>false<", b"<edXML:Direction>maybe<"),
    ("edoc_new", b"<edXML:PageAmount>12<", b"<edXML:PageAmount>twelve<"),
    ("edoc_new", b"<edXML:Priority>1<", b"<edXML:Priority>high<"),
    ("edoc_new", "<edXML:DocumentId>000.00.00.H45,2024/03/15,125/QĐ-UBND<".encode(), b"<edXML:DocumentId> <"),
    ("edoc_new", b"<edXML:Timestamp>2024/03/15 08:15:30<", b"<edXML:Timestamp>15/03/2024<"),
    ("edoc_new", b"<edXML:MessageHeader>", b"<edXML:MessageHeader id='1'>"),
    ("edoc_new", b"<edXML:Subject>", b"<edXML:Unknown/><edXML:Subject>"),
    ("edoc_new", b"<edXML:Code>", b"<edXML:Code><edXML:CodeNumber>1</edXML:CodeNumber>"),
    ("edoc_update", b"<edXML:ReceiverType>1<", b"<edXML:ReceiverType>x<"),
    ("edoc_replacement", b"<edXML:OrganIdList>", b"<edXML:OrganIdList></edXML:OrganIdList><edXML:OrganIdList>"),
    ("status_01", b"<edXML:StatusCode>01<", b"<edXML:StatusCode>1<"),
    ("status_01", b"<edXML:StatusCode>01<", b"<edXML:StatusCode>ab<"),
    ("status_03", b"<edXML:Timestamp>", b"<edXML:Timestamp>x</edXML:Timestamp><edXML:Timestamp>"),
]


@pytest.mark.parametrize(("name", "old", "new"), SCHEMA_MUTATIONS)
def test_mutations_invalid_in_both_engines(name: str, old: bytes, new: bytes) -> None:
    data = (FIXTURES / f"{name}.edxml").read_bytes()
    assert old in data
    mutated = data.replace(old, new, 1)
    kind = "status" if name.startswith("status") else "edoc"
    assert not lxml_valid(mutated, kind)
    assert not xmlschema_valid(mutated, kind)


@pytest.mark.parametrize(
    "signature",
    [
        b"<Signature><SignedInfo><Reference URI=''><DigestValue>x</DigestValue></Reference></SignedInfo></Signature>",
        b"<ds:Signature xmlns:ds='http://www.w3.org/2000/09/xmldsig#'><ds:SignedInfo/></ds:Signature>",
        b"",
    ],
)
def test_signature_in_either_namespace_or_absent(signature: bytes) -> None:
    data = fixture("edoc_replacement")  # has no signature
    marker = b"      </edXML:TraceHeaderList>\n"
    assert marker in data
    mutated = data.replace(marker, marker + signature, 1)
    assert lxml_valid(mutated, "edoc")
    assert xmlschema_valid(mutated, "edoc")


@pytest.mark.parametrize(
    "signature",
    [
        b"<x:Signature xmlns:x='urn:other'/>",  # a third namespace
        b"<ds:Sig xmlns:ds='http://www.w3.org/2000/09/xmldsig#'/>",  # xmldsig, wrong name
        b"<Signature/><Signature/>",  # twice
    ],
)
def test_signature_variants_rejected(signature: bytes) -> None:
    data = fixture("edoc_replacement")
    marker = b"      </edXML:TraceHeaderList>\n"
    mutated = data.replace(marker, marker + signature, 1)
    assert not lxml_valid(mutated, "edoc")
    assert not xmlschema_valid(mutated, "edoc")


def test_every_lenient_construct_is_annotated() -> None:
    """Each unbounded choice, xs:all, wildcard and optional element carries its reason."""
    for name in ("edoc.xsd", "status.xsd", "common.xsd"):
        tree = etree.parse(str(schema_path("edoc").parent / name), SAFE)
        lenient = [
            *tree.iter(f"{XS}all"),
            *tree.iter(f"{XS}any"),
            *tree.iter(f"{XS}anyAttribute"),
            *(c for c in tree.iter(f"{XS}choice") if c.get("maxOccurs") == "unbounded"),
        ]
        for node in lenient:
            owner = node.getparent()
            while owner is not None and owner.find(f"{XS}annotation") is None:
                owner = owner.getparent()
            assert owner is not None, f"{name}: {node.tag} at line {node.sourceline} has no annotation"
        optional = [e for e in tree.iter(f"{XS}element") if e.get("minOccurs") == "0"]
        for element in optional:
            owner = element.getparent()
            while owner is not None and owner.find(f"{XS}annotation") is None:
                owner = owner.getparent()
            assert owner is not None, f"{name}: optional {element.get('name')} is not explained"


def test_only_roots_are_global_in_edxml_namespace() -> None:
    """The lax Signature wildcard must not pick up our declarations (see common.xsd)."""
    for kind in ("edoc", "status"):
        schema = xmlschema.XMLSchema10(str(schema_path(kind)), allow="sandbox")  # type: ignore[arg-type]
        ours = sorted(k for k in schema.maps.elements if k.startswith(f"{{{NS}}}"))
        assert ours == [f"{{{NS}}}edXML", f"{{{NS}}}edXMLEnvelope"]


def test_schemas_declare_no_network_locations() -> None:
    for f in schema_path("edoc").parent.glob("*.xsd"):
        text = f.read_text(encoding="utf-8")
        assert not re.search(r'schemaLocation="(https?|ftp):', text), f.name
