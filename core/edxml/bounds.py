"""Bounds on untrusted XML, enforced while it is read and before anything else looks at it.

Every later step (libxml2 schema validation, xmlschema's explanation of an error, the JSON
mapping, the hub's document index) costs CPU and memory in proportion to what the sender wrote,
and some more than linearly: xmlschema builds one error per unexpected attribute, each with a
``repr`` of all of them, so 5,000 attributes on one element cost minutes of CPU. Two layers keep
every dimension small:

* :class:`MarkupScanner` reads the raw bytes *before* libxml2 does and stops at a start tag with
  more attribute-like items (attributes plus namespace declarations) than allowed, so the parser
  never builds an element with 100,000 attributes. It is a handful of regular expressions run in
  C over the bytes, with a little state for comments, CDATA, processing instructions and tags cut
  between two reads.
* :class:`TreeGuard` checks exactly, on the parser's ``start``/``end``/``start-ns`` events (or on a
  walk of a tree built in memory): depth, element count, attributes per element, attribute value
  length, text length per node, namespace declarations per element and in total. It raises
  :class:`EdxmlTooLarge` naming the dimension (``rule``), the limit and the element ``path``.

Both are shared: the edXML streaming parser, the builder (signature XML of a JSON form) and the
SOAP adapter's envelope parser use them, each with its own limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from lxml import etree

from .errors import EdxmlTooLarge
from .limits import ParseLimits
from .spec import element_path, local_name

__all__ = ["MarkupScanner", "ScanFinding", "TreeGuard", "check_tree", "crowded", "finding_error", "parse_bounded"]

_TEXT, _COMMENT, _CDATA, _PI = range(4)
_TERMINATORS = {_COMMENT: b"-->", _CDATA: b"]]>", _PI: b"?>"}
_OPENERS = {b"<!--": _COMMENT, b"<![CDATA[": _CDATA, b"<?": _PI}
_LOOKAHEAD = 9  # len("<![CDATA["): enough to tell what a "<" starts
# One attribute or namespace declaration. Values cannot hold "<" in XML, so a match never runs
# past the next tag; atomic groups and possessive quantifiers keep the engine from backtracking.
_ITEM = rb"""(?>\s++[^\s=/>"'<]++\s*+=\s*+(?:"[^"<]*+"|'[^'<]*+'))"""
_TAG_END = re.compile(rb"""(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")
_XMLNS_ITEM = re.compile(rb"""\sxmlns(?::[^\s=]*+)?\s*+=""")


@cache
def _scan_pattern(max_items: int) -> re.Pattern[bytes]:
    """Next comment/CDATA/PI/declaration opener, or a start tag with more than ``max_items`` items."""
    return re.compile(rb"<(?:!--|!\[CDATA\[|\?|!|([^\s/>!?<\"'=][^\s/>\"'<=]*+)" + _ITEM + b"{%d})" % (max_items + 1))


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """What the scanner refused.

    ``kind`` is ``items`` (a start tag with too many attributes + namespace declarations) or
    ``construct`` (one tag longer than the scanner may hold). ``offset`` is where it begins in the
    data of the ``feed`` call that found it (negative when it began in an earlier call: everything
    before it has been fed already); ``name`` is the tag name as written (``prefix:local``);
    ``namespaces`` counts the namespace declarations among the first ``max_items + 1`` items, so a
    caller can tell which of its two limits the tag breaks (at least one must be).
    """

    kind: Literal["items", "construct"]
    offset: int
    name: str
    namespaces: int = 0


class MarkupScanner:
    """Finds a crowded start tag in a byte stream before the XML parser sees it.

    Feed it exactly the bytes given to the parser, in the same order. Items are attributes plus
    namespace declarations: the parser events tell them apart exactly afterwards (TreeGuard), the
    scanner only has to keep the parser's work per element small. Constructs cut between two
    calls are held back (at most ``max_construct`` bytes) and scanned once complete.
    """

    __slots__ = ("_carry", "_max_construct", "_mode", "_next", "max_items")

    def __init__(self, max_items: int, max_construct: int) -> None:
        self.max_items = max_items
        self._next = _scan_pattern(max_items)
        self._max_construct = max_construct
        self._carry = b""
        self._mode = _TEXT

    def feed(self, data: bytes) -> ScanFinding | None:
        """Scan the next bytes; a finding means: refuse the document, do not feed the parser further."""
        buf = self._carry + data if self._carry else data
        shift = len(self._carry)
        self._carry = b""
        n = len(buf)
        pos = 0
        while True:
            if self._mode != _TEXT:
                term = _TERMINATORS[self._mode]
                end = buf.find(term, pos)
                if end < 0:
                    self._carry = buf[max(pos, n - len(term) + 1):]  # the terminator may be cut
                    return None
                pos = end + len(term)
                self._mode = _TEXT
                continue
            stop = _complete_until(buf, pos)
            m = self._next.search(buf, pos, stop)
            if m is None:
                self._carry = buf[stop:]
                if len(self._carry) > self._max_construct:
                    return ScanFinding("construct", stop - shift, "")
                return None
            name = m.group(1)
            if name is not None:
                namespaces = len(_XMLNS_ITEM.findall(buf, m.start(), m.end()))
                return ScanFinding("items", m.start() - shift, name.decode("utf-8", "replace"), namespaces)
            pos = m.end()
            self._mode = _OPENERS.get(m.group(), _TEXT)  # "<!" of a declaration: keep scanning


def _complete_until(buf: bytes, pos: int) -> int:
    """Where the bytes from ``pos`` stop being known-complete markup (the start of a cut tag)."""
    n = len(buf)
    lt = buf.rfind(b"<", pos)
    if lt < 0:
        return n
    if n - lt < _LOOKAHEAD:
        return lt
    if buf[lt + 1:lt + 2] in (b"!", b"?"):
        return n  # comments, CDATA and PIs are followed across calls by the scanner's mode
    return n if _TAG_END.match(buf, lt + 1) else lt


def crowded(found: ScanFinding, max_attributes: int, max_namespaces: int) -> tuple[str, str, int]:
    """(detail, rule, limit) of an ``items`` finding: the limit it breaks, shared wording for every caller."""
    if found.namespaces > max_namespaces:
        return (f"more than {max_namespaces} namespace declarations on one element", "max_namespaces_per_element",
                max_namespaces)
    return f"more than {max_attributes} attributes on one element", "max_attributes", max_attributes


def local_name_of(qualified: str) -> str:
    """``prefix:local`` -> ``local`` (a name as written in a tag)."""
    return qualified.rpartition(":")[2]


class TreeGuard:
    """Exact bounds on an element tree as it is built, fed the parser's events in order.

    ``event(kind, item)`` takes ``start-ns`` (item = ``(prefix, uri)``), ``start`` and ``end``
    (item = the element). Each text node is checked once it is complete: an element's leading text
    when its first child starts (or when it ends, childless), a tail when the next sibling starts
    or the parent ends. ``current`` is the innermost open element (for error paths).
    """

    __slots__ = ("_limits", "_max_attr_len", "_max_attributes", "_max_depth", "_max_elements", "_max_text",
                 "_pending_ns", "_pending_uri", "current", "depth", "elements", "namespaces")

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        # Read once: start() and end() run for every element of every packet.
        self._max_depth = limits.max_depth
        self._max_elements = limits.max_elements
        self._max_attributes = limits.max_attributes
        self._max_attr_len = limits.max_attribute_length
        self._max_text = limits.max_text_length
        self.depth = 0
        self.elements = 0
        self.namespaces = 0
        self._pending_ns = 0
        self._pending_uri = 0
        self.current: etree._Element | None = None

    def path_of_next(self, local: str) -> str:
        """Path of an element about to start under ``current`` (for errors found before the parser)."""
        parent = element_path(self.current) if self.current is not None else ""
        return f"{parent}/{local}"

    def event(self, kind: str, item: Any) -> None:
        if kind == "start":
            self.start(item)
        elif kind == "end":
            self.end(item)
        elif kind == "start-ns":
            self.namespace(item[1])

    def namespace(self, uri: str) -> None:
        self.namespaces += 1
        self._pending_ns += 1
        self._pending_uri = max(self._pending_uri, len(uri))
        if self.namespaces > self._limits.max_namespaces:
            raise EdxmlTooLarge(f"more than {self._limits.max_namespaces} namespace declarations in the packet",
                                path=self.path_of_next("*") if self.current is not None else None,
                                rule="max_namespaces")

    def start(self, elem: etree._Element) -> None:
        self.depth += 1
        self.elements += 1
        if self.depth > self._max_depth:
            raise _refuse(elem, f"elements nested deeper than {self._max_depth}", "max_depth")
        if self.elements > self._max_elements:
            raise _refuse(elem, f"more than {self._max_elements} elements", "max_elements")
        if self._pending_ns:
            self._start_namespaces(elem)
        values = elem.values()
        if values:
            if len(values) > self._max_attributes:
                raise _refuse(elem, f"more than {self._max_attributes} attributes on one element", "max_attributes")
            for name, value in elem.items():
                if len(value) > self._max_attr_len:
                    raise _refuse(elem, f"attribute {local_name(name) or str(name)} longer than {self._max_attr_len} "
                                  "characters", "max_attribute_length")
        prev = elem.getprevious()
        if prev is not None:
            text = prev.tail
            if text is not None and len(text) > self._max_text:
                raise self._long_text(prev, "text after")
        else:
            parent = elem.getparent()
            if parent is not None:
                text = parent.text
                if text is not None and len(text) > self._max_text:
                    raise self._long_text(parent, "text of")
        self.current = elem

    def _start_namespaces(self, elem: etree._Element) -> None:
        limits = self._limits
        if self._pending_ns > limits.max_namespaces_per_element:
            raise _refuse(elem, f"more than {limits.max_namespaces_per_element} namespace declarations on one "
                          "element", "max_namespaces_per_element")
        if self._pending_uri > self._max_attr_len:
            raise _refuse(elem, f"a namespace name longer than {self._max_attr_len} characters",
                          "max_attribute_length")
        self._pending_ns = self._pending_uri = 0

    def end(self, elem: etree._Element) -> None:
        if len(elem):
            last = elem[-1]
            text = last.tail
            if text is not None and len(text) > self._max_text:
                raise self._long_text(last, "text after")
        else:
            text = elem.text
            if text is not None and len(text) > self._max_text:
                raise self._long_text(elem, "text of")
        self.depth -= 1
        self.current = elem.getparent()

    def _long_text(self, where: etree._Element, what: str) -> EdxmlTooLarge:
        return _refuse(where, f"{what} the element is longer than {self._max_text} characters", "max_text_length")


def _refuse(elem: etree._Element, detail: str, rule: str) -> EdxmlTooLarge:
    return EdxmlTooLarge(detail, path=element_path(elem), rule=rule)


def check_tree(root: etree._Element, limits: ParseLimits) -> None:
    """Apply the TreeGuard to a tree built in memory (e.g. from a JSON form) before validating it."""
    guard = TreeGuard(limits)
    walk: Iterable[tuple[str, Any]] = etree.iterwalk(root, events=("start-ns", "start", "end"))
    for kind, item in walk:
        if kind == "start" and not isinstance(item.tag, str):
            continue  # comments and PIs: iterwalk reports them with the elements
        guard.event(kind, item)


def parse_bounded(data: bytes, limits: ParseLimits) -> etree._Element:
    """Parse a small standalone XML text (no DTD, no entities, no network) within ``limits``.

    The scanner runs before libxml2 and the guard on its events, exactly as for a packet; raises
    :class:`EdxmlTooLarge` or :class:`lxml.etree.XMLSyntaxError`.
    """
    scanner = MarkupScanner(limits.max_attributes + limits.max_namespaces_per_element, limits.max_metadata_bytes)
    guard = TreeGuard(limits)
    parser = etree.XMLPullParser(events=("start-ns", "start", "end"), resolve_entities=False, no_network=True,
                                 load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True,
                                 remove_pis=True)
    found = scanner.feed(data)
    if found is not None:
        if found.offset > 0:
            parser.feed(data[:found.offset])
            for kind, item in parser.read_events():
                guard.event(kind, item)
        raise finding_error(found, guard, limits)
    def events() -> None:
        for kind, item in parser.read_events():
            guard.event(kind, item)

    try:  # in 1 KiB slices, as the streaming parser feeds libxml2 (stream.py)
        for start in range(0, len(data), 1024):
            parser.feed(data[start:start + 1024])
            events()
        root: etree._Element = parser.close()
    finally:  # a bound broken before a syntax error is the better answer
        events()
    return root


def finding_error(found: ScanFinding, guard: TreeGuard, limits: ParseLimits) -> EdxmlTooLarge:
    """The error for a scanner finding, with the path of the refused element under ``guard.current``."""
    if found.kind == "items":
        detail, rule, _ = crowded(found, limits.max_attributes, limits.max_namespaces_per_element)
        return EdxmlTooLarge(f"{detail} (refused before parsing)", path=guard.path_of_next(local_name_of(found.name)),
                             rule=rule)
    return EdxmlTooLarge("a single tag is longer than the packet's metadata may be", rule="max_metadata_bytes")

