"""Who an edXML packet is from and to, read leniently from its MessageHeader.

The axis routes on the ``To`` OrganIds when sendEdoc has no ``to`` (and status packets on
``ResponseFor``). Packets from other vendors often miss elements the project's strict parser
(core/edxml) requires, so this reads only the header, matching local names in any namespace, and
stops at the end of MessageHeader without touching the attachments. The parse is bounded and
safe: no DTD, no entities, no network, limited bytes, depth and element count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lxml import etree

__all__ = ["EdxmlAddressError", "EdxmlAddresses", "read_addresses"]

MAX_HEADER_BYTES: Final = 4 << 20
MAX_DEPTH: Final = 32
MAX_ELEMENTS: Final = 20_000
_CHUNK: Final = 64 << 10
_TEXT_CHARS: Final = 1000


class EdxmlAddressError(ValueError):
    """The packet's header cannot be read (not XML, unsafe, too large, no MessageHeader)."""


@dataclass(frozen=True, slots=True)
class EdxmlAddresses:
    from_: str = ""
    to: tuple[str, ...] = ()
    response_for: tuple[str, ...] = ()
    document_id: str = ""
    subject: str = ""
    code_number: str = ""
    code_notation: str = ""

    @property
    def notation(self) -> str:
        """``số/ký hiệu`` as printed on a document, e.g. ``7816/VPCP-TTĐT``."""
        return "/".join(part for part in (self.code_number, self.code_notation) if part)


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def read_addresses(data: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES) -> EdxmlAddresses:
    """Read From/To/ResponseFor OrganIds, DocumentId, Subject and Code of one packet.

    Raises EdxmlAddressError. Synchronous; cheap because it stops after the header, but run it in
    a worker thread from async code all the same.
    """
    parser = etree.XMLPullParser(
        events=("start", "end"), resolve_entities=False, no_network=True, load_dtd=False,
        dtd_validation=False, huge_tree=False, remove_comments=True, remove_pis=True,
    )
    found: dict[str, list[str]] = {}
    path: list[str] = []
    elements = 0
    fed = 0
    view = memoryview(data)
    try:
        while fed < len(data):
            if fed >= max_header_bytes:
                raise EdxmlAddressError(f"no end of MessageHeader within the first {max_header_bytes} bytes")
            chunk = view[fed:fed + min(_CHUNK, max_header_bytes - fed)]
            fed += len(chunk)
            parser.feed(bytes(chunk))
            for event, element in parser.read_events():
                if not isinstance(element, etree._Element):
                    continue  # only "start"/"end" are asked for; this narrows the type
                if event == "start":
                    elements += 1
                    if elements == 1 and element.getroottree().docinfo.doctype:  # type: ignore[attr-defined]  # lxml-stubs lack DocInfo.doctype
                        raise EdxmlAddressError("DOCTYPE declarations are refused")
                    if elements > MAX_ELEMENTS or len(path) >= MAX_DEPTH:
                        raise EdxmlAddressError("header nested too deeply or too many elements")
                    path.append(_local(element.tag))
                    continue
                name = path.pop()
                if name == "MessageHeader":
                    return _addresses(found)
                if "MessageHeader" in path:
                    where = "/".join([*path[path.index("MessageHeader") + 1:], name])
                    found.setdefault(where, []).append((element.text or "").strip()[:_TEXT_CHARS])
                if len(path) > 1:
                    element.clear()  # keep memory flat; parents still hold nothing large
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise EdxmlAddressError(f"not well-formed XML: {exc}") from None
    raise EdxmlAddressError("no MessageHeader in the packet")


def _addresses(found: dict[str, list[str]]) -> EdxmlAddresses:
    def first(path: str) -> str:
        return next(iter(found.get(path, [])), "")

    def codes(path: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for c in found.get(path, []) if c))

    return EdxmlAddresses(
        from_=first("From/OrganId"),
        to=codes("To/OrganId"),
        response_for=codes("ResponseFor/OrganId"),
        document_id=first("DocumentId"),
        subject=first("Subject"),
        code_number=first("Code/CodeNumber"),
        code_notation=first("Code/CodeNotation"),
    )
