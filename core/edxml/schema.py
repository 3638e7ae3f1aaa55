"""Loading the XSDs and validating header trees.

Two engines, two jobs: libxml2 (through lxml) validates every packet because it is fast; when
it says "invalid", xmlschema re-validates the same small tree because its errors point at the
element and say which rule was broken, which libxml2's messages do not do reliably.
"""

from __future__ import annotations

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


def schema_dir() -> Path:
    """Directory holding edoc.xsd, status.xsd and their includes (package data of lgsp.schemas)."""
    return Path(str(resources.files("lgsp.schemas").joinpath("edxml")))


def schema_path(kind: Kind) -> Path:
    """Path of the XSD for ``kind``; the hub may hand it to peers."""
    return schema_dir() / f"{kind}.xsd"


@cache
def lxml_schema(kind: Kind) -> etree.XMLSchema:
    """libxml2 schema object. Cached: building one takes milliseconds, validating microseconds.

    lxml schema objects are safe to share between threads for validation (each call gets its
    own validation context).
    """
    return etree.XMLSchema(etree.parse(str(schema_path(kind)), _XSD_PARSER))


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


def explain(elem: etree._Element, kind: Kind, context: str, log: Any = None) -> EdxmlInvalid:
    """Build the precise error for an element libxml2 rejected."""
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
    last = log.last_error if log is not None else None
    message = last.message if last is not None else "schema validation failed"
    return EdxmlInvalid(f"{message} ({context})", path=element_path(elem), rule=f"{kind}.xsd")


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
