"""The edXML header structure as data, and the JSON form derived from it.

One table drives the XML -> JSON mapping, the JSON -> XML builder and the cardinality checks
that XSD 1.0 cannot express, so the three cannot drift apart. The mapping rules (documented in
docs/edxml.md):

* JSON key = the element's local name in snake_case, spelled as the standard spells it
  (``Bussiness`` -> ``bussiness``).
* A text element becomes a string, verbatim (no trimming, no type conversion: ``"01"`` stays
  ``"01"``, ``"false"`` stays ``"false"``), so conversions are lossless.
* An element with children becomes an object; an element that may repeat becomes an array.
* A pure wrapper (``ToPlaces``, ``Appendixes``, ``ReplacementInfoList``, ``OrganIdList``,
  ``ReceiverList``) becomes the array of its items.
* An absent optional element is an absent key; repeated elements are always an array.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .errors import EdxmlInvalid

__all__ = [
    "DSIG_NS",
    "EDOC_MESSAGE_HEADER",
    "EDOC_TRACE_HEADER_LIST",
    "NS",
    "STATUS_MESSAGE_HEADER",
    "Node",
    "element_path",
    "snake",
]

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(tag: str) -> str:
    """``OrganizationInCharge`` -> ``organization_in_charge``."""
    return _SNAKE.sub("_", tag).lower()


def q(local: str) -> str:
    """Clark name in the edXML namespace."""
    return f"{{{NS}}}{local}"


def local_name(tag: object) -> str:
    """Local part of a Clark name (``{ns}local`` -> ``local``); comments have none."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


@dataclass(frozen=True, slots=True)
class Node:
    """One element of the structure.

    ``children`` empty and ``item`` None: a text leaf. ``item`` set: a pure wrapper whose JSON
    value is the array of its items. Otherwise a group (JSON object). ``max`` None means
    unbounded.
    """

    tag: str
    min: int = 1
    max: int | None = 1
    children: tuple[Node, ...] = ()
    item: Node | None = None
    key: str = field(init=False)
    qname: str = field(init=False)
    repeated: bool = field(init=False)
    is_leaf: bool = field(init=False)
    index: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed: these are read for every element of every packet.
        object.__setattr__(self, "key", snake(self.tag))
        object.__setattr__(self, "qname", q(self.tag))
        object.__setattr__(self, "repeated", self.max != 1)
        object.__setattr__(self, "is_leaf", not self.children and self.item is None)
        object.__setattr__(self, "index", {c.qname: c for c in self.children})


def leaf(tag: str, min: int = 1, max: int | None = 1) -> Node:
    return Node(tag, min, max)


def group(tag: str, *children: Node, min: int = 1, max: int | None = 1) -> Node:
    return Node(tag, min, max, children=children)


def wrapper(tag: str, item: Node, min: int = 1) -> Node:
    return Node(tag, min, 1, item=item)


#: From / To: the contact details are optional (other vendors and the axis leave them out).
_ORGAN = (
    leaf("OrganId"),
    leaf("OrganizationInCharge"),
    leaf("OrganName"),
    leaf("OrganAdd", min=0),
    leaf("Email", min=0),
    leaf("Telephone", min=0),
    leaf("Fax", min=0),
    leaf("Website", min=0),
)
_RESPONSE_FOR = (leaf("OrganId"), leaf("Code"), leaf("DocumentId"), leaf("PromulgationDate"))
_STAFF_INFO = group("StaffInfo", leaf("Department"), leaf("Staff"), leaf("Email"), leaf("Mobile"))
_OPTIONAL_STAFF_INFO = group("StaffInfo", *_STAFF_INFO.children, min=0)

#: edoc MessageHeader, children in the order the builder writes them (the samples' order).
EDOC_MESSAGE_HEADER = group(
    "MessageHeader",
    group("From", *_ORGAN),
    group("To", *_ORGAN, max=None),
    leaf("DocumentId"),
    group("Code", leaf("CodeNumber"), leaf("CodeNotation")),
    group("PromulgationInfo", leaf("Place"), leaf("PromulgationDate")),
    group("DocumentType", leaf("Type"), leaf("TypeDetail", min=0), leaf("TypeName")),
    leaf("Subject"),
    leaf("Content"),
    group("SignerInfo", leaf("Competence"), leaf("Position"), leaf("FullName")),
    leaf("DueDate", min=0),
    group(
        "OtherInfo",
        leaf("Priority"),
        leaf("SphereOfPromulgation"),
        leaf("TyperNotation"),
        leaf("PromulgationAmount"),
        leaf("PageAmount"),
        leaf("Direction", min=0),
        wrapper("Appendixes", leaf("Appendix", min=0, max=None), min=0),
    ),
    group("ResponseFor", *_RESPONSE_FOR, min=0, max=None),
    leaf("SteeringType"),
    wrapper("ToPlaces", leaf("Place", max=None), min=0),
)

#: edoc TraceHeaderList. Written TraceHeaders first, then Bussiness (most samples).
EDOC_TRACE_HEADER_LIST = group(
    "TraceHeaderList",
    group("TraceHeader", leaf("OrganId"), leaf("Timestamp"), max=None),
    group(
        "Bussiness",
        leaf("DocumentId", min=0),
        leaf("BussinessDocType"),
        leaf("BussinessDocReason", min=0),
        leaf("Paper"),
        wrapper(
            "ReplacementInfoList",
            group(
                "ReplacementInfo",
                leaf("DocumentId"),
                wrapper("OrganIdList", leaf("OrganId", max=None)),
                max=None,
            ),
            min=0,
        ),
        group(
            "BussinessDocumentInfo",
            leaf("DocumentInfo"),
            leaf("DocumentReceiver"),
            wrapper("ReceiverList", group("Receiver", leaf("OrganId"), leaf("ReceiverType"), max=None)),
            min=0,
        ),
        _OPTIONAL_STAFF_INFO,
        min=0,
    ),
)

#: status MessageHeader.
STATUS_MESSAGE_HEADER = group(
    "MessageHeader",
    group("From", *_ORGAN),
    group("ResponseFor", *_RESPONSE_FOR, min=0),
    _STAFF_INFO,
    leaf("StatusCode"),
    leaf("Description"),
    leaf("Timestamp"),
)

#: manifest Reference and Attachment metadata (both written in this order).
REFERENCE = group(
    "Reference", leaf("ContentId"), leaf("ContentType"), leaf("Description", min=0), leaf("AttachmentName")
)
ATTACHMENT_META = group(
    "Attachment", leaf("ContentId"), leaf("AttachmentName"), leaf("Description", min=0), leaf("ContentType")
)


def _repeatable_pairs(*roots: Node) -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = {("edXMLManifest", "Reference"), ("AttachmentEncoded", "Attachment")}

    def walk(node: Node) -> None:
        kids = node.children if node.item is None else (node.item,)
        for c in kids:
            if c.repeated:
                pairs.add((node.tag, c.tag))
            walk(c)

    for r in roots:
        walk(r)
    return frozenset(pairs)


#: (parent, child) local names whose child repeats: paths always index them (``To[1]``).
REPEATABLE = _repeatable_pairs(EDOC_MESSAGE_HEADER, EDOC_TRACE_HEADER_LIST, STATUS_MESSAGE_HEADER)


def element_path(elem: etree._Element) -> str:
    """XPath-like path with local names, e.g. ``/edXML/.../MessageHeader/To[2]/OrganId``.

    Prefixes are left out on purpose: senders use ``edXML:`` or none for the same element.
    Repeatable elements are always indexed (1-based), others only when they have twins. Siblings
    are counted, never collected: an element may have thousands of them in a refused packet.
    """
    steps: list[str] = []
    node: etree._Element | None = elem
    while node is not None:
        parent = node.getparent()
        local = local_name(node.tag)
        if parent is None:
            steps.append(local)
        else:
            tag = node.tag
            index = 1 + sum(1 for _ in node.itersiblings(tag, preceding=True))
            later_twin = next(node.itersiblings(tag), None) is not None
            if index > 1 or later_twin or (local_name(parent.tag), local) in REPEATABLE:
                steps.append(f"{local}[{index}]")
            else:
                steps.append(local)
        node = parent
    return "/" + "/".join(reversed(steps))


# --------------------------------------------------------------------------- XML -> JSON


def _children_by_tag(elem: etree._Element) -> dict[Any, list[etree._Element]]:
    out: dict[Any, list[etree._Element]] = {}
    for child in elem:
        out.setdefault(child.tag, []).append(child)
    return out


def to_json(elem: etree._Element, node: Node) -> Any:
    """Map a schema-valid element to its JSON value (see module doc)."""
    item = node.item
    if item is not None:
        if item.is_leaf:
            return [c.text or "" for c in elem if c.tag == item.qname]
        return [to_json(c, item) for c in elem if c.tag == item.qname]
    if node.is_leaf:
        return elem.text or ""
    index = node.index
    values: dict[str, Any] = {}
    for child in elem:
        c = index.get(child.tag)
        if c is None:
            continue
        value = (child.text or "") if c.is_leaf else to_json(child, c)
        if c.repeated:
            values.setdefault(c.key, []).append(value)
        elif c.key not in values:
            values[c.key] = value
    # Keys in the structure's order; repeated elements always present.
    return {c.key: values.get(c.key, []) for c in node.children if c.repeated or c.key in values}


def check_counts(elem: etree._Element, node: Node) -> None:
    """Enforce ``node``'s child cardinalities on ``elem`` (for content models XSD 1.0 can't count)."""
    found = _children_by_tag(elem)
    for c in node.children:
        elems = found.get(c.qname, [])
        if len(elems) < c.min:
            raise EdxmlInvalid(
                f"missing required element {c.tag} in {node.tag}",
                path=element_path(elem),
                rule=f"{node.tag}/{c.tag} must occur at least {c.min} time(s)",
            )
        if c.max is not None and len(elems) > c.max:
            raise EdxmlInvalid(
                f"element {c.tag} occurs {len(elems)} times in {node.tag}, at most {c.max} allowed",
                path=element_path(elems[c.max]),
                rule=f"{node.tag}/{c.tag} may occur at most {c.max} time(s)",
            )


# --------------------------------------------------------------------------- JSON -> XML


def _json_error(path: str, detail: str) -> EdxmlInvalid:
    return EdxmlInvalid(detail, path=path, rule="JSON form (docs/edxml.md)")


def _set_text(elem: etree._Element, value: object, path: str) -> None:
    if not isinstance(value, str):
        raise _json_error(path, f"expected a string, got {type(value).__name__}")
    try:
        elem.text = value
    except ValueError as exc:  # control characters, lone surrogates: not representable in XML 1.0
        raise _json_error(path, f"text cannot be represented in XML 1.0: {exc}") from None


def check_keys(value: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    """Reject unknown keys: a typo must not silently drop a field."""
    unknown = set(value) - set(allowed)
    if unknown:
        named = sorted(unknown)[:5]  # a hostile object may hold thousands: name a few, count the rest
        more = f" and {len(unknown) - len(named)} more" if len(unknown) > len(named) else ""
        raise _json_error(path, f"unknown key(s): {', '.join(repr(k[:64]) for k in named)}{more}")


def from_json(value: Any, node: Node, parent: etree._Element, path: str) -> None:
    """Append the element(s) for ``value`` (the JSON value of ``node``) under ``parent``."""
    if node.item is not None:
        if not isinstance(value, list):
            raise _json_error(path, f"expected an array, got {type(value).__name__}")
        wrap = etree.SubElement(parent, q(node.tag))
        if len(value) < node.item.min:
            raise _json_error(path, f"needs at least {node.item.min} item(s)")
        for i, item in enumerate(value):
            _one(item, node.item, wrap, f"{path}[{i}]")
        return
    _one(value, node, parent, path)


def _one(value: Any, node: Node, parent: etree._Element, path: str) -> None:
    elem = etree.SubElement(parent, q(node.tag))
    if node.is_leaf:
        _set_text(elem, value, path)
        return
    if not isinstance(value, Mapping):
        raise _json_error(path, f"expected an object, got {type(value).__name__}")
    check_keys(value, (c.key for c in node.children), path)
    for c in node.children:
        sub = f"{path}.{c.key}"
        if c.key not in value:
            if c.min > 0:
                raise _json_error(sub, "required key is missing")
            continue
        v = value[c.key]
        if c.repeated:
            if not isinstance(v, list):
                raise _json_error(sub, f"expected an array, got {type(v).__name__}")
            if len(v) < c.min:
                raise _json_error(sub, f"needs at least {c.min} item(s)")
            if c.max is not None and len(v) > c.max:
                raise _json_error(sub, f"allows at most {c.max} item(s)")
            for i, item in enumerate(v):
                from_json(item, c, elem, f"{sub}[{i}]")
        else:
            from_json(v, c, elem, sub)
