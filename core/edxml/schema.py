"""Loading the XSDs and validating header trees.

Two engines, two jobs: libxml2 (through lxml) validates every packet because it is fast; when
it says "invalid", xmlschema re-validates the same small tree because its errors point at the
element and say which rule was broken, which libxml2's messages do not do reliably.

xmlschema is pure Python (about 16 µs per element here) and its errors carry a ``repr`` of what
they reject, so explaining must stay cheap whatever the sender wrote: it only runs on trees the
parser has already bounded (bounds.py), only on trees of at most ``EXPLAIN_MAX_ELEMENTS`` elements
and ``EXPLAIN_MAX_CHARS`` characters of text and attribute values, and stops at its first error.
A larger tree is explained from libxml2's first message, resolved to the same element path.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import xmlschema
from lxml import etree

from .errors import EdxmlInvalid
from .spec import element_path, local_name

__all__ = ["Kind", "schema_path", "validate"]

Kind = Literal["edoc", "status"]

_XSD_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_lock = threading.Lock()
_local = threading.local()

#: xmlschema explains an invalid tree only up to this size (about 35 ms of CPU at the limit).
EXPLAIN_MAX_ELEMENTS = 2_000
EXPLAIN_MAX_CHARS = 256 << 10


def schema_dir() -> Path:
    """Directory holding edoc.xsd, status.xsd and their includes (package data of lgsp.schemas)."""
    return Path(str(resources.files("lgsp.schemas").joinpath("edxml")))


def schema_path(kind: Kind) -> Path:
    """Path of the XSD for ``kind``; the hub may hand it to peers."""
    return schema_dir() / f"{kind}.xsd"


def lxml_schema(kind: Kind) -> etree.XMLSchema:
    """This thread's libxml2 schema object: building one takes milliseconds, validating microseconds.

    One per thread: validation contexts are per call, but the object's ``error_log`` is not, and
    two threads validating with one object would read (and report) each other's errors.
    """
    schemas: dict[str, etree.XMLSchema] | None = getattr(_local, "schemas", None)
    if schemas is None:
        schemas = _local.schemas = {}
    schema = schemas.get(kind)
    if schema is None:
        schema = schemas[kind] = etree.XMLSchema(etree.parse(str(schema_path(kind)), _XSD_PARSER))
    return schema


def _xmlschema(kind: Kind) -> xmlschema.XMLSchema10:
    # Loaded lazily: only needed to explain an invalid packet (~0.2 s to build).
    with _lock:
        return _xmlschema_cached(kind)


@cache
def _xmlschema_cached(kind: Kind) -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(schema_path(kind)), allow="sandbox")


def first_xmlschema_error(elem: etree._Element, kind: Kind) -> Any | None:
    """The first xmlschema error for ``elem`` (a root or a global element such as the envelope)."""
    resource = xmlschema.XMLResource(elem, allow="none")
    return next(iter(_xmlschema(kind).iter_errors(resource)), None)


def validate(elem: etree._Element, kind: Kind, context: str) -> None:
    """Validate ``elem`` (edXML root or edXMLEnvelope) against the ``kind`` schema.

    Raises :class:`EdxmlInvalid` with the path of the offending element and the rule.
    """
    schema = lxml_schema(kind)
    if schema.validate(elem):
        return
    raise explain(elem, kind, context, schema.error_log)


def small_enough_to_explain(elem: etree._Element) -> bool:
    """True when xmlschema may re-validate ``elem``: few elements, little text (see module docstring)."""
    chars = 0
    for count, node in enumerate(elem.iter(etree.Element), 1):
        chars += len(node.text or "") + len(node.tail or "")
        for value in node.values():
            chars += len(value)
        if count > EXPLAIN_MAX_ELEMENTS or chars > EXPLAIN_MAX_CHARS:
            return False
    return True


def explain(elem: etree._Element, kind: Kind, context: str, log: Any = None) -> EdxmlInvalid:
    """Build the precise error for an element libxml2 rejected."""
    if not small_enough_to_explain(elem):
        return _from_libxml2(elem, kind, context, log)
    err = first_xmlschema_error(elem, kind)
    if err is not None:
        target = err.elem if err.elem is not None else elem
        index = getattr(err, "index", None)
        # "unexpected child at position N": point at the child, not at its parent.
        if (
            isinstance(index, int)
            and "Unexpected child" in str(err.reason)
            and 0 <= index < len(target)
        ):
            target = target[index]
        reason = str(err.reason or err.message).strip()
        rule = _rule(err)
        return EdxmlInvalid(f"{reason} ({context})", path=element_path(target), rule=rule)
    # Engines disagree (should not happen; tests compare them on every fixture): report libxml2.
    return _from_libxml2(elem, kind, context, log)


_CLARK = re.compile(r"\{[^}\s']+\}(?=[^\W\d])")  # "{uri}Name" in a message (not a value set)
_FACET = re.compile(r"\[facet '(\w+)'\]")
_STEP = re.compile(r"^(?:(?P<prefix>[^:\[]*):)?(?P<name>[^\[]+)(?:\[(?P<index>\d+)\])?$")


def _from_libxml2(elem: etree._Element, kind: Kind, context: str, log: Any) -> EdxmlInvalid:
    """The error from libxml2's first message: its element resolved to our path, its facet as the rule."""
    first = None
    if log is not None:
        errors = log.filter_from_errors()
        first = errors[0] if len(errors) else None
    if first is None:
        return EdxmlInvalid(f"schema validation failed ({context})", path=element_path(elem), rule=f"{kind}.xsd")
    target = _resolve(elem, first.path or "")
    message = _CLARK.sub("", first.message or "schema validation failed").strip()
    return EdxmlInvalid(f"{message} ({context})", path=element_path(target), rule=_libxml2_rule(message, target))


def _libxml2_rule(message: str, target: etree._Element) -> str:
    """Name the XSD rule of a libxml2 message the way ``_rule`` names xmlschema's."""
    facet = _FACET.search(message)
    if facet:
        return f"{local_name(target.tag)}: {facet.group(1)}"
    lowered = message.lower()
    if "attribute" in lowered:
        return f"{local_name(target.tag)}: attributes"
    if "not expected" in lowered:  # an unexpected child: the parent's content model is broken
        parent = target.getparent()
        return f"{local_name((parent if parent is not None else target).tag)}: content model"
    if "missing child" in lowered or "not complete" in lowered:
        return f"{local_name(target.tag)}: content model"
    return f"{local_name(target.tag)}: type"


def _resolve(elem: etree._Element, path: str) -> etree._Element:
    """The element a libxml2 node path names, counted from ``elem`` (the root of the validation).

    libxml2 writes ``prefix:name[n]``, or ``*[n]`` for an element in a default namespace; the
    element itself is returned when the path cannot be followed.
    """
    steps = [s for s in path.split("/") if s][1:]
    node = elem
    for step in steps:
        m = _STEP.match(step)
        if m is None:
            return node
        name, prefix, index = m.group("name"), m.group("prefix") or "", int(m.group("index") or 1)
        found = None
        for child in node:  # counted, not collected: a refused element may have thousands of siblings
            if isinstance(child.tag, str) and (name == "*" or (local_name(child.tag) == name
                                                               and (child.prefix or "") == prefix)):
                index -= 1
                if index == 0:
                    found = child
                    break
        if found is None:
            return node
        node = found
    return node


_FACETS = {
    "XsdPatternFacets": "pattern",
    "XsdEnumerationFacets": "enumeration",
    "XsdMinLengthFacet": "minLength",
    "XsdMaxLengthFacet": "maxLength",
    "XsdLengthFacet": "length",
    "XsdGroup": "content model",
    "XsdAttributeGroup": "attributes",
}


def _rule(err: Any) -> str:
    """Name the XSD component broken, e.g. ``BussinessDocTypeCode: enumeration``."""
    validator = getattr(err, "validator", None)
    what = _FACETS.get(type(validator).__name__, "type")
    node = validator
    while node is not None:
        name = getattr(node, "name", None)
        if name:
            return f"{local_name(str(name))}: {what}"
        node = getattr(node, "parent", None)
    return what
