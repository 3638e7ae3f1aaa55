"""Typed results of parsing: the packet, its attachments, and small value objects.

The header is kept in its documented JSON form (``Packet.header``) so that what the hub
stores, what it converts and what it inspects are the same data; the properties below are
read-only conveniences over it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "JSON_FORMAT",
    "AttachmentInfo",
    "AttachmentMeta",
    "DocumentCode",
    "DocumentIdParts",
    "DocumentType",
    "Packet",
    "ResponseFor",
    "TraceHeader",
    "content_key",
    "parse_document_id",
]

#: Value of the ``format`` key of the JSON form; bumped on incompatible changes.
JSON_FORMAT = "edxml-json/1"


def content_key(content_id: str) -> str:
    """Normalise a ContentId for the manifest/attachment join.

    ``cid:209``, ``209``, ``<209>`` and ``cid:<209>`` all give ``209``: the VNPT builder
    passes "209" and its library prefixes "cid:"; MIME habits add angle brackets.
    """
    key = content_id.strip()
    if key[:4].lower() == "cid:":
        key = key[4:].strip()
    if key.startswith("<") and key.endswith(">"):
        key = key[1:-1].strip()
    return key


@dataclass(frozen=True, slots=True)
class DocumentIdParts:
    """The comma triple ``OrganId,yyyy/MM/dd,number/notation`` when a DocumentId has that shape.

    The date is kept as text: samples carry impossible dates (2014/02/30).
    """

    organ_id: str
    date: str
    code: str


def parse_document_id(document_id: str) -> DocumentIdParts | None:
    """Split a DocumentId triple; ``None`` for other forms (UUIDs). Never validates the date."""
    parts = document_id.split(",")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        return None
    organ_id, date, code = (p.strip() for p in parts)
    return DocumentIdParts(organ_id, date, code)


@dataclass(frozen=True, slots=True)
class DocumentCode:
    """Code/CodeNumber and Code/CodeNotation (``7816`` / ``VPCP-TTĐT``)."""

    number: str
    notation: str

    def __str__(self) -> str:
        return f"{self.number}/{self.notation}" if self.notation else self.number


@dataclass(frozen=True, slots=True)
class DocumentType:
    """DocumentType: ``type`` code, optional ``type_detail`` and the display ``type_name``."""

    type: str
    type_detail: str | None
    type_name: str


@dataclass(frozen=True, slots=True)
class ResponseFor:
    """A referenced earlier document (status reply, revocation). ``code`` is one string."""

    organ_id: str
    code: str
    document_id: str
    promulgation_date: str


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """One hop: the organisation that handled the packet and when (``yyyy/MM/dd HH:mm:ss``)."""

    organ_id: str
    timestamp: str


@dataclass(frozen=True, slots=True)
class AttachmentMeta:
    """What the sink is told before an attachment's payload streams in."""

    index: int
    content_id: str
    name: str
    description: str | None
    content_type: str

    @property
    def content_key(self) -> str:
        return content_key(self.content_id)


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """One decoded attachment. Bytes are stored as decoded (a ZIP stays a ZIP).

    ``handle`` is what the sink returned for it; ``ref`` is a string reference to the stored
    bytes when one is known (the value ``close()`` returned, else the writer's ``name``), and
    is what the JSON form records.
    """

    content_id: str
    name: str
    description: str | None
    content_type: str
    size: int
    sha256: str
    is_zip: bool
    reference: Mapping[str, Any] = field(default_factory=dict)
    handle: Any = None
    ref: str | None = None

    @property
    def content_key(self) -> str:
        return content_key(self.content_id)

    def to_json(self) -> dict[str, Any]:
        """The attachment entry of the JSON form."""
        out: dict[str, Any] = {"content_id": self.content_id, "attachment_name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["content_type"] = self.content_type
        out["size"] = self.size
        out["sha256"] = self.sha256
        out["is_zip"] = self.is_zip
        if self.ref is not None:
            out["ref"] = self.ref
        out["reference"] = copy.deepcopy(dict(self.reference))
        return out


@dataclass(frozen=True, slots=True)
class Packet:
    """A parsed, validated edXML packet.

    ``header`` is the JSON form without ``attachments`` (see docs/edxml.md); treat it as
    read-only. For a status packet the routing accessors describe the document the status is
    about: ``document_id`` is ResponseFor/DocumentId and ``to_organ_ids`` is
    ``[ResponseFor/OrganId]``, "the other party".
    """

    kind: Literal["edoc", "status"]
    header: Mapping[str, Any]
    attachments: tuple[AttachmentInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The full JSON form (a fresh copy)."""
        out = copy.deepcopy(dict(self.header))
        if self.kind == "edoc":
            out["attachments"] = [a.to_json() for a in self.attachments]
        return out

    # -- common -------------------------------------------------------------------------

    @property
    def message_header(self) -> Mapping[str, Any]:
        return self.header["message_header"]  # type: ignore[no-any-return]

    @property
    def from_organ_id(self) -> str:
        return str(self.message_header["from"]["organ_id"])

    @property
    def to_organ_ids(self) -> list[str]:
        """To/OrganId of an edoc; ``[ResponseFor/OrganId]`` of a status, ``[]`` when it has none."""
        mh = self.message_header
        if self.kind == "status":
            rf = mh.get("response_for")
            return [rf["organ_id"]] if rf else []
        return [to["organ_id"] for to in mh["to"]]

    @property
    def document_id(self) -> str:
        """DocumentId of an edoc; ResponseFor/DocumentId of a status, ``""`` when it has none."""
        mh = self.message_header
        if self.kind == "status":
            rf = mh.get("response_for")
            return str(rf["document_id"]) if rf else ""
        return str(mh["document_id"])

    @property
    def document_id_parts(self) -> DocumentIdParts | None:
        return parse_document_id(self.document_id)

    @property
    def response_for(self) -> list[ResponseFor]:
        mh = self.message_header
        if self.kind == "status":
            raw = [mh["response_for"]] if "response_for" in mh else []
        else:
            raw = mh.get("response_for", [])
        return [ResponseFor(r["organ_id"], r["code"], r["document_id"], r["promulgation_date"]) for r in raw]

    @property
    def signature_present(self) -> bool:
        return "signature" in self.header

    # -- edoc ---------------------------------------------------------------------------

    @property
    def code(self) -> DocumentCode | None:
        c = self.message_header.get("code")
        return DocumentCode(c["code_number"], c["code_notation"]) if c else None

    @property
    def subject(self) -> str | None:
        return self.message_header.get("subject")

    @property
    def document_type(self) -> DocumentType | None:
        d = self.message_header.get("document_type")
        return DocumentType(d["type"], d.get("type_detail"), d["type_name"]) if d else None

    @property
    def priority(self) -> int | None:
        """OtherInfo/Priority as an int (the schema allows digits only)."""
        other = self.message_header.get("other_info")
        return int(other["priority"]) if other else None

    @property
    def due_date(self) -> str | None:
        """DueDate verbatim (``yyyy/MM/dd`` or empty)."""
        return self.message_header.get("due_date")

    @property
    def promulgation_date(self) -> str | None:
        info = self.message_header.get("promulgation_info")
        return info["promulgation_date"] if info else None

    @property
    def trace_headers(self) -> list[TraceHeader]:
        thl = self.header.get("trace_header_list")
        if not thl:
            return []
        return [TraceHeader(th["organ_id"], th["timestamp"]) for th in thl["trace_header"]]

    @property
    def bussiness(self) -> Mapping[str, Any] | None:
        thl = self.header.get("trace_header_list")
        return thl.get("bussiness") if thl else None

    @property
    def bussiness_doc_type(self) -> int | None:
        """0 new, 1 revocation, 2 update, 3 replacement; ``None`` without a Bussiness block."""
        b = self.bussiness
        return int(b["bussiness_doc_type"]) if b else None

    @property
    def replacement_document_ids(self) -> list[str]:
        """DocumentIds that a replacement (type 3) replaces, duplicates removed, order kept."""
        b = self.bussiness
        if not b:
            return []
        seen: dict[str, None] = {}
        for info in b.get("replacement_info_list", []):
            seen.setdefault(info["document_id"], None)
        return list(seen)

    # -- status -------------------------------------------------------------------------

    @property
    def status_code(self) -> str | None:
        """StatusCode verbatim (``"01"``); unknown codes are kept, not rejected."""
        return self.message_header.get("status_code") if self.kind == "status" else None

    @property
    def status_description(self) -> str | None:
        return self.message_header.get("description") if self.kind == "status" else None

    @property
    def timestamp(self) -> str | None:
        """Status Timestamp; for an edoc, the last TraceHeader's."""
        if self.kind == "status":
            return self.message_header.get("timestamp")
        th = self.trace_headers
        return th[-1].timestamp if th else None
