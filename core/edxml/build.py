"""Building edXML packets from the JSON form plus attachment files.

The envelope and the attachment metadata are built as a small lxml tree from the JSON form,
validated exactly like an incoming packet (XSD + code rules), and serialised once with a
unique placeholder in each payload slot. The output is then written piece by piece: the
serialised text up to a placeholder, the attachment's Base64 encoded chunk by chunk from its
file (hashing and counting on the way), the text up to the next placeholder, and so on. Memory
stays flat whatever the attachment sizes, and nothing is written before the header is known to
be valid.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Mapping
from typing import IO, Any, BinaryIO, cast

from lxml import etree

from .bounds import check_tree, parse_bounded
from .errors import EdxmlInvalid, EdxmlTooLarge
from .header import check_envelope, find, header_json
from .limits import ParseLimits
from .model import JSON_FORMAT, AttachmentInfo, Packet, content_key
from .schema import Kind, validate
from .spec import (
    ATTACHMENT_META,
    DSIG_NS,
    EDOC_MESSAGE_HEADER,
    EDOC_TRACE_HEADER_LIST,
    NS,
    REFERENCE,
    STATUS_MESSAGE_HEADER,
    check_keys,
    from_json,
    q,
)
from .stream import ByteSink

__all__ = ["AttachmentOpener", "build_packet", "envelope_from_json"]

#: How the builder gets each attachment's bytes: a callable given the JSON attachment entry
#: (the returned stream is closed after use), or a mapping from ContentId (as written or
#: normalised) to a path (opened and closed here) or a binary stream (left open).
AttachmentOpener = (
    Callable[[Mapping[str, Any]], BinaryIO | IO[bytes]]
    | Mapping[str, "str | os.PathLike[str] | BinaryIO | IO[bytes]"]
)

#: The edXML namespace as the default one; lxml takes None for "no prefix", lxml-stubs only say str.
_DEFAULT_NAMESPACE = cast("dict[str, str]", {None: NS})

_EDOC_KEYS = ("format", "kind", "message_header", "trace_header_list", "signature", "manifest_version", "attachments")
_STATUS_KEYS = ("format", "kind", "message_header", "signature")
_ATTACHMENT_KEYS = (
    "content_id",
    "attachment_name",
    "description",
    "content_type",
    "size",
    "sha256",
    "is_zip",
    "ref",
    "reference",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 3 * (1 << 18)  # multiple of 3: Base64 of each chunk has no padding
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def _err(path: str, detail: str) -> EdxmlInvalid:
    return EdxmlInvalid(detail, path=path, rule="JSON form (docs/edxml.md)")


def _signature_from_json(value: Any, limits: ParseLimits) -> etree._Element:
    path = "$.signature"
    if not isinstance(value, Mapping):
        raise _err(path, "expected an object with 'xml' (and optionally 'namespace')")
    check_keys(value, ("namespace", "xml"), path)
    xml = value.get("xml")
    if not isinstance(xml, str) or not xml.strip():
        raise _err(path + ".xml", "expected the Signature element as XML text")
    if len(xml) > limits.max_metadata_bytes:
        raise EdxmlTooLarge("signature XML too large", path=path + ".xml", rule="max_metadata_bytes")
    if "<!DOCTYPE" in xml.upper() or "<!ENTITY" in xml.upper():
        raise _err(path + ".xml", "DOCTYPE/ENTITY is not allowed in the signature")
    try:
        sig = parse_bounded(xml.encode("utf-8"), limits)
    except (etree.XMLSyntaxError, UnicodeEncodeError) as exc:
        raise _err(path + ".xml", f"not well-formed XML: {exc}") from None
    except EdxmlTooLarge as exc:  # the element path, inside the JSON string that holds it
        raise EdxmlTooLarge(exc.detail, path=f"{path}.xml{exc.path or ''}", rule=exc.rule) from None
    ns = etree.QName(sig).namespace
    if etree.QName(sig).localname != "Signature" or ns not in (NS, DSIG_NS):
        raise _err(path + ".xml", f"root must be Signature in {NS} or {DSIG_NS}, got {sig.tag!r}")
    declared = value.get("namespace")
    if declared is not None and declared != ns:
        raise _err(path + ".namespace", f"says {declared!r} but the element is in {ns!r}")
    # Comments carry no information and the parser drops them too; keep the text around them.
    for node in list(sig.iter(etree.Comment, etree.ProcessingInstruction)):
        parent = node.getparent()
        if parent is not None:
            _drop_keep_tail(node, parent)
    return sig


def _drop_keep_tail(node: etree._Element, parent: etree._Element) -> None:
    prev = node.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + (node.tail or "")
    else:
        parent.text = (parent.text or "") + (node.tail or "")
    parent.remove(node)


def _check_attachment_entry(entry: Any, path: str) -> None:
    if not isinstance(entry, Mapping):
        raise _err(path, f"expected an object, got {type(entry).__name__}")
    check_keys(entry, _ATTACHMENT_KEYS, path)
    for key in ("content_id", "attachment_name", "content_type"):
        if not isinstance(entry.get(key), str):
            raise _err(f"{path}.{key}", "required string is missing")
    if "description" in entry and not isinstance(entry["description"], str):
        raise _err(f"{path}.description", "expected a string")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise _err(f"{path}.size", "expected a non-negative integer")
    sha = entry.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
        raise _err(f"{path}.sha256", "expected 64 lowercase hex digits")
    if "is_zip" in entry and not isinstance(entry["is_zip"], bool):
        raise _err(f"{path}.is_zip", "expected true or false")
    if "ref" in entry and not isinstance(entry["ref"], str):
        raise _err(f"{path}.ref", "expected a string")


def _reference_for(entry: Mapping[str, Any], path: str) -> dict[str, Any]:
    ref = entry.get("reference")
    if ref is None:
        derived = {"content_id": entry["content_id"], "content_type": entry["content_type"]}
        if "description" in entry:
            derived["description"] = entry["description"]
        derived["attachment_name"] = entry["attachment_name"]
        return derived
    if not isinstance(ref, Mapping):
        raise _err(path, f"expected an object, got {type(ref).__name__}")
    return dict(ref)


def envelope_from_json(document: Any, limits: ParseLimits | None = None) -> tuple[Kind, etree._Element]:
    """Build the root element (envelope + attachment metadata, empty payloads) from the JSON form.

    Raises :class:`EdxmlInvalid` naming the JSON path (``$.message_header.to[0].organ_id``)
    for shape errors, or the element path for schema errors.
    """
    limits = limits or ParseLimits()
    if not isinstance(document, Mapping):
        raise _err("$", f"expected an object, got {type(document).__name__}")
    kind = document.get("kind")
    if kind not in ("edoc", "status"):
        raise _err("$.kind", f"must be 'edoc' or 'status', got {kind!r}")
    check_keys(document, _EDOC_KEYS if kind == "edoc" else _STATUS_KEYS, "$")
    fmt = document.get("format", JSON_FORMAT)
    if fmt != JSON_FORMAT:
        raise _err("$.format", f"unsupported format {fmt!r}; this library reads {JSON_FORMAT!r}")
    if "message_header" not in document:
        raise _err("$.message_header", "required key is missing")

    root = etree.Element(q("edXML"), nsmap=_DEFAULT_NAMESPACE)
    envelope = etree.SubElement(root, q("edXMLEnvelope"))
    header = etree.SubElement(envelope, q("edXMLHeader"))
    if kind == "status":
        from_json(document["message_header"], STATUS_MESSAGE_HEADER, header, "$.message_header")
    else:
        from_json(document["message_header"], EDOC_MESSAGE_HEADER, header, "$.message_header")
        if "trace_header_list" not in document:
            raise _err("$.trace_header_list", "required key is missing")
        from_json(document["trace_header_list"], EDOC_TRACE_HEADER_LIST, header, "$.trace_header_list")
        _body_from_json(document, root, envelope)
    etree.indent(root, space="  ")
    if "signature" in document:
        sig = _signature_from_json(document["signature"], limits)
        last = header[-1]
        sig.tail = last.tail
        last.tail = header.text
        header.append(sig)
    check_tree(root, limits)  # before any validation, as for a parsed packet
    return kind, root


def _body_from_json(document: Mapping[str, Any], root: etree._Element, envelope: etree._Element) -> None:
    attachments = document.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        raise _err("$.attachments", "an edoc needs a non-empty array of attachments")
    body = etree.SubElement(envelope, q("edXMLBody"))
    manifest = etree.SubElement(body, q("edXMLManifest"))
    version = document.get("manifest_version", "1.0")
    if not isinstance(version, str):
        raise _err("$.manifest_version", "expected a string")
    manifest.set("version", version)
    encoded = etree.SubElement(root, q("AttachmentEncoded"))
    for i, entry in enumerate(attachments):
        path = f"$.attachments[{i}]"
        _check_attachment_entry(entry, path)
        ref = _reference_for(entry, f"{path}.reference")
        attributes = ref.pop("attributes", {})
        from_json(ref, REFERENCE, manifest, f"{path}.reference")
        if not isinstance(attributes, Mapping):
            raise _err(f"{path}.reference.attributes", "expected an object")
        for name, value in attributes.items():
            if not isinstance(value, str) or not name.startswith("{") or name.startswith(f"{{{NS}}}"):
                raise _err(
                    f"{path}.reference.attributes",
                    "attribute names must be Clark names ({namespace}local) outside the edXML namespace",
                )
            try:
                manifest[-1].set(name, value)
            except ValueError as exc:
                raise _err(f"{path}.reference.attributes", str(exc)) from None
        meta = {k: entry[k] for k in ("content_id", "attachment_name", "description", "content_type") if k in entry}
        from_json(meta, ATTACHMENT_META, encoded, path)
        etree.SubElement(encoded[-1], q("ContentTransferEncoded"))


def _open(
    opener: AttachmentOpener | None, entry: Mapping[str, Any], path: str
) -> tuple[BinaryIO | IO[bytes], bool]:
    """Return (stream, close_it)."""
    if opener is None:
        raise _err(path, "no attachment source given for this attachment")
    if callable(opener):
        return opener(entry), True
    cid = entry["content_id"]
    src = opener.get(cid)
    if src is None:
        src = opener.get(content_key(cid))
    if src is None:
        raise _err(path, f"no file supplied for ContentId {cid!r}")
    if isinstance(src, str | os.PathLike):
        return open(src, "rb"), True
    return src, False


def _copy_base64(
    src: BinaryIO | IO[bytes], dst: ByteSink, limit: int, path: str
) -> tuple[int, str, bool]:
    """Stream ``src`` into ``dst`` as one Base64 line; return (size, sha256, is_zip)."""
    sha = hashlib.sha256()
    size = 0
    head = b""
    pending = b""
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise EdxmlTooLarge(f"attachment exceeds {limit} bytes", path=path, rule="max_attachment_bytes")
        sha.update(chunk)
        if len(head) < 4:
            head += chunk[: 4 - len(head)]
        data = pending + chunk if pending else chunk
        cut = len(data) - len(data) % 3
        pending = data[cut:]
        if cut:
            dst.write(binascii.b2a_base64(data[:cut] if cut != len(data) else data, newline=False))
    if pending:
        dst.write(binascii.b2a_base64(pending, newline=False))
    return size, sha.hexdigest(), head[:4] in _ZIP_MAGIC


def build_packet(
    document: Mapping[str, Any],
    dst: ByteSink,
    *,
    attachments: AttachmentOpener | None = None,
    limits: ParseLimits | None = None,
) -> Packet:
    """Write the edXML packet described by the JSON form ``document`` to ``dst``.

    Works for ``kind`` ``edoc`` (attachments come from ``attachments``, see
    :data:`AttachmentOpener`) and ``status``. Entries' ``size``/``sha256``/``is_zip``, when
    given, are checked against the bytes actually encoded; ``ref`` is carried into the result.
    The header is validated before the first byte is written; an attachment mismatch is found
    while streaming, so on any error ``dst`` must be discarded. Returns the packet as written.
    """
    limits = limits or ParseLimits()
    kind, root = envelope_from_json(document, limits)
    envelope = root[0]
    manifest = check_envelope(envelope, kind)
    validate(root, kind, "packet built from JSON, attachment payloads excluded")
    entries: list[Mapping[str, Any]] = list(document.get("attachments", [])) if kind == "edoc" else []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        key = content_key(entry["content_id"])
        if key not in manifest:
            raise _err(f"$.attachments[{i}].content_id", "does not match its reference.content_id")
        if key in seen:  # pragma: no cover - caught as a manifest duplicate first
            raise _err(f"$.attachments[{i}].content_id", "duplicate ContentId")
        seen.add(key)
    header = header_json(envelope, kind)

    encoded = find(root, "AttachmentEncoded")
    tokens: list[bytes] = []
    if encoded is not None:
        for att in encoded:
            token = f"@{uuid.uuid4().hex}@"
            att[-1].text = token
            tokens.append(token.encode("ascii"))
    text = b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(
        root, encoding="UTF-8", xml_declaration=False
    )
    infos: list[AttachmentInfo] = []
    for i, (entry, placeholder) in enumerate(zip(entries, tokens, strict=True)):
        before, _, text = text.partition(placeholder)
        dst.write(before)
        path = f"$.attachments[{i}]"
        stream, close_it = _open(attachments, entry, path)
        try:
            size, sha, is_zip = _copy_base64(stream, dst, limits.max_attachment_bytes, path)
        finally:
            if close_it:
                stream.close()
        for key, actual in (("size", size), ("sha256", sha), ("is_zip", is_zip)):
            if key in entry and entry[key] != actual:
                raise _err(f"{path}.{key}", f"is {entry[key]!r} but the supplied bytes give {actual!r}")
        _, ref_json = manifest[content_key(entry["content_id"])]
        infos.append(
            AttachmentInfo(
                content_id=entry["content_id"],
                name=entry["attachment_name"],
                description=entry.get("description"),
                content_type=entry["content_type"],
                size=size,
                sha256=sha,
                is_zip=is_zip,
                reference=ref_json,
                ref=entry.get("ref"),
            )
        )
    dst.write(text)
    if not text.endswith(b"\n"):
        dst.write(b"\n")
    return Packet(kind=kind, header=header, attachments=tuple(infos))
