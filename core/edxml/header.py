"""Envelope-level logic shared by the parser and the builder.

The envelope (headers, signature, manifest) is small and is held as an lxml tree; this module
decides the packet kind, validates the envelope, applies the rules XSD 1.0 cannot express and
maps the envelope to the JSON form.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .errors import EdxmlInvalid
from .model import JSON_FORMAT, content_key
from .schema import Kind, validate
from .spec import (
    DSIG_NS,
    EDOC_MESSAGE_HEADER,
    EDOC_TRACE_HEADER_LIST,
    REFERENCE,
    STATUS_MESSAGE_HEADER,
    check_counts,
    element_path,
    q,
    to_json,
)

__all__ = [
    "Manifest",
    "check_envelope",
    "detect_kind",
    "find",
    "header_json",
    "reference_json",
    "signature_element",
    "signature_json",
]

#: content key -> (Reference element, Reference JSON)
Manifest = dict[str, tuple[etree._Element, dict[str, Any]]]

_SIGNATURE_TAGS = (q("Signature"), f"{{{DSIG_NS}}}Signature")


def find(parent: etree._Element | None, local: str) -> etree._Element | None:
    """First child in the edXML namespace with this local name."""
    if parent is None:
        return None
    tag = q(local)
    for child in parent:
        if child.tag == tag:
            return child
    return None


def detect_kind(envelope: etree._Element) -> Kind:
    """``status`` when MessageHeader has a StatusCode child, else ``edoc``.

    StatusCode is the one element only status packets have; everything else a status carries
    (From, ResponseFor, StaffInfo) also occurs in documents.
    """
    mh = find(find(envelope, "edXMLHeader"), "MessageHeader")
    if mh is not None and find(mh, "StatusCode") is not None:
        return "status"
    return "edoc"


def signature_element(header: etree._Element) -> etree._Element | None:
    for child in header:
        if child.tag in _SIGNATURE_TAGS:
            return child
    return None


def _context(kind: Kind) -> str:
    if kind == "status":
        return "validated as a status packet: MessageHeader has StatusCode"
    return "validated as an edoc packet: MessageHeader has no StatusCode"


def check_envelope(envelope: etree._Element, kind: Kind) -> Manifest:
    """Schema-validate the envelope and apply the code-level rules; return the manifest."""
    validate(envelope, kind, _context(kind))
    if kind == "status":
        return {}
    header = find(envelope, "edXMLHeader")
    mh = find(header, "MessageHeader")
    assert mh is not None  # guaranteed by the schema
    check_counts(mh, EDOC_MESSAGE_HEADER)
    manifest: Manifest = {}
    body_manifest = find(find(envelope, "edXMLBody"), "edXMLManifest")
    assert body_manifest is not None
    for ref in body_manifest:
        if ref.tag != q("Reference"):
            continue
        entry = reference_json(ref)
        key = content_key(entry["content_id"])
        if key in manifest:
            raise EdxmlInvalid(
                f"duplicate ContentId {entry['content_id']!r} in the manifest",
                path=element_path(ref) + "/ContentId",
                rule="manifest ContentIds are unique (compared without 'cid:' and '<>')",
            )
        if not key:
            raise EdxmlInvalid(
                f"ContentId {entry['content_id']!r} is empty once 'cid:' is removed",
                path=element_path(ref) + "/ContentId",
                rule="ContentId names an attachment",
            )
        manifest[key] = (ref, entry)
    return manifest


def reference_json(ref: etree._Element) -> dict[str, Any]:
    """A manifest Reference, verbatim, plus its foreign attributes (Clark-named)."""
    entry: dict[str, Any] = to_json(ref, REFERENCE)
    if len(ref.attrib):
        entry["attributes"] = {str(k): str(v) for k, v in ref.attrib.items()}
    return entry


def signature_json(sig: etree._Element) -> dict[str, str]:
    """The signature block as exclusive-C14N text (the sender's prefixes kept).

    Exclusive C14N makes the text self-contained (it declares the namespaces it uses) and
    stable, so edXML -> JSON -> edXML -> JSON gives the same string.
    """
    ns = etree.QName(sig).namespace or ""
    xml = etree.tostring(sig, method="c14n", exclusive=True, with_comments=False)
    return {"namespace": ns, "xml": xml.decode("utf-8")}


def header_json(envelope: etree._Element, kind: Kind) -> dict[str, Any]:
    """The JSON form of a validated envelope (everything but the attachment entries)."""
    header = find(envelope, "edXMLHeader")
    assert header is not None
    mh = find(header, "MessageHeader")
    assert mh is not None
    out: dict[str, Any] = {"format": JSON_FORMAT, "kind": kind}
    if kind == "status":
        out["message_header"] = to_json(mh, STATUS_MESSAGE_HEADER)
    else:
        out["message_header"] = to_json(mh, EDOC_MESSAGE_HEADER)
        thl = find(header, "TraceHeaderList")
        assert thl is not None
        out["trace_header_list"] = to_json(thl, EDOC_TRACE_HEADER_LIST)
    sig = signature_element(header)
    if sig is not None:
        out["signature"] = signature_json(sig)
    if kind == "edoc":
        manifest = find(find(envelope, "edXMLBody"), "edXMLManifest")
        version = manifest.get("version") if manifest is not None else None
        if version is not None:
            out["manifest_version"] = version
    return out

