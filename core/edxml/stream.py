"""Streaming parse and validation of edXML packets (the hub's hot path).

How it works
------------
Attachments are Base64 text inside the XML and can be hundreds of MB, so they must never reach
the XML tree. A byte-level splitter (:class:`_Splitter`) walks the raw stream and separates
*payload text* (the content of ``ContentTransferEncoded``) from everything else:

* everything else (the envelope, attachment metadata, markup) goes to libxml2's push parser
  (``lxml.etree.XMLPullParser``), which builds the tree in C at full speed. That tree is the
  packet minus its payloads: kilobytes, bounded by ``ParseLimits.max_metadata_bytes``;
* payload text goes to a strict incremental Base64 decoder, then straight into the caller's
  sink, with SHA-256, size and ZIP sniffing computed on the way. libxml2 never sees the
  payloads, so its 10 MB text-node limit does not apply and memory stays flat.

The splitter only has to recognise comments, CDATA sections, processing instructions, DOCTYPE
and the ``ContentTransferEncoded`` start tag. That is exact for XML because a literal ``<``
cannot occur in character data or attribute values. The parser reports a handful of events
(envelope end, attachment boundaries), and the splitter waits for libxml2 to confirm each payload
element (edXML namespace, under ``/edXML/AttachmentEncoded/Attachment``) before any payload byte
is decoded.

Validation: the envelope is validated with libxml2 XMLSchema (plus the rules XSD 1.0 cannot
express) **as soon as ``</edXMLEnvelope>`` arrives**, before any attachment reaches the sink.
The attachment section is checked structurally as it streams (metadata first, ContentId
announced by the manifest, no duplicates, Base64 correct) and, at the end, the whole kept tree
is validated against the XSD and every manifest Reference must have had its Attachment.

Safety: packets must be in an ASCII-compatible encoding (UTF-8 in practice); any DOCTYPE is
refused before the parser sees it (``edxml.unsafe``); the parser itself never loads DTDs,
resolves entities or touches the network. Total bytes, kept bytes, attachment count and size are
bounded by :class:`ParseLimits`, and so is every dimension of the kept tree, as it is read and
before any validation (bounds.py): a scanner refuses a start tag with too many attributes before
libxml2 parses it, and a guard on libxml2's events checks depth, element count, attributes,
attribute and text lengths and namespace declarations exactly.

Payload text may be split by comments and may be wrapped in CDATA. Character references
(``&#65;``) inside a payload are not supported: no encoder produces them, and they are rejected
as invalid Base64.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import IO, Any, BinaryIO, Protocol, cast

from lxml import etree

from .bounds import MarkupScanner, TreeGuard, finding_error
from .errors import EdxmlError, EdxmlInvalid, EdxmlMalformed, EdxmlTooLarge, EdxmlUnsafe, NotAnEdoc
from .header import Manifest, check_envelope, detect_kind, find, header_json
from .limits import ParseLimits
from .model import AttachmentInfo, AttachmentMeta, Packet, content_key
from .schema import Kind, validate
from .spec import NS, element_path, q

__all__ = [
    "AttachmentSink",
    "BinaryWriter",
    "Source",
    "append_trace_header",
    "format_timestamp",
    "parse_packet",
]

#: Vietnam has used UTC+7 without daylight saving since 1975.
VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")

_META = ("ContentId", "AttachmentName", "Description", "ContentType")
_META_TAGS = {q(m): m for m in _META}
_REQUIRED_META = ("ContentId", "AttachmentName", "ContentType")
_ROOT = q("edXML")
_ENVELOPE = q("edXMLEnvelope")
_ENCODED = q("AttachmentEncoded")
_ATTACHMENT = q("Attachment")
_CTE = q("ContentTransferEncoded")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_WHITESPACE = b" \t\r\n"


class ByteSink(Protocol):
    """Where a converted packet is written: anything with ``write(bytes)`` (a file, a blob writer)."""

    def write(self, data: bytes, /) -> Any: ...


class BinaryWriter(Protocol):
    """What an attachment sink returns: a writable binary file-like object."""

    def write(self, data: bytes, /) -> Any: ...

    def close(self) -> Any: ...


#: ``attachment_sink(meta) -> writer``; called once per attachment, before its payload.
AttachmentSink = Callable[[AttachmentMeta], BinaryWriter]
#: A path, a readable binary file object, or the packet bytes themselves.
Source = str | os.PathLike[str] | BinaryIO | IO[bytes] | bytes | bytearray | memoryview


def format_timestamp(when: datetime | None = None) -> str:
    """``yyyy/MM/dd HH:mm:ss`` as edXML writes it; aware datetimes are shown in Vietnam time."""
    if when is None:
        when = datetime.now(VIETNAM_TZ)
    elif when.tzinfo is not None:
        when = when.astimezone(VIETNAM_TZ)
    return when.strftime("%Y/%m/%d %H:%M:%S")


def xml_text(text: str) -> bytes:
    """Escape element text; ``\\r`` becomes ``&#13;`` so it survives re-parsing."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
        .encode("utf-8")
    )


# --------------------------------------------------------------------------- splitter

XML, PAYLOAD_START, PAYLOAD = 0, 1, 2

_SPECIAL = re.compile(
    rb"<(?:!--|!\[CDATA\[|\?|!|(?:[A-Za-z_\x80-\xff][\w.\-\x80-\xff]*:)?ContentTransferEncoded(?=[\s/>]))"
)
_TAG_REST = re.compile(rb"""(?:[^>"']|"[^"]*"|'[^']*')*>""")
_NORMAL, _COMMENT, _CDATA, _PI, _PAYLOAD, _PAYLOAD_COMMENT, _PAYLOAD_CDATA = range(7)
_TERMINATORS = {
    _COMMENT: b"-->",
    _CDATA: b"]]>",
    _PI: b"?>",
    _PAYLOAD_COMMENT: b"-->",
    _PAYLOAD_CDATA: b"]]>",
}
_OPENERS = {b"<!--": _COMMENT, b"<![CDATA[": _CDATA, b"<?": _PI}
_LOOKAHEAD = 9  # len("<![CDATA[") == len("<!DOCTYPE")


class _Splitter:
    """Separate payload text from markup in a raw byte stream (see module docstring).

    ``feed`` yields ``(XML, bytes)`` for libxml2, ``(PAYLOAD_START, b"")`` right after a
    ``ContentTransferEncoded`` start tag has been yielded, and ``(PAYLOAD, bytes)`` for its
    text. Incomplete constructs at a chunk end are carried over to the next chunk.
    """

    __slots__ = ("_carry", "_carry_limit", "_mode")

    def __init__(self, carry_limit: int) -> None:
        self._carry = b""
        self._mode = _NORMAL
        self._carry_limit = carry_limit

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        buf = self._carry + chunk if self._carry else chunk
        self._carry = b""
        pos = 0
        n = len(buf)
        while pos < n:
            mode = self._mode
            if mode == _NORMAL:
                m = _SPECIAL.search(buf, pos)
                if m is None:
                    lt = buf.rfind(b"<", pos)
                    cut = lt if lt >= 0 and buf.find(b">", lt) < 0 else n
                    if cut > pos:
                        yield XML, buf[pos:cut]
                    pos = cut
                    break
                start = m.start()
                if start > pos:
                    yield XML, buf[pos:start]
                    pos = start
                token = m.group()
                if token == b"<!":
                    if n - start < _LOOKAHEAD:
                        break  # cannot tell "<!DOCTYPE" from "<!--" yet
                    if buf.startswith(b"<!DOCTYPE", start):
                        raise EdxmlUnsafe(
                            "DOCTYPE declarations are refused: edXML uses no DTD, and DTDs enable "
                            "entity expansion and external references",
                            rule="no DTD",
                        )
                    yield XML, token  # anything else is malformed; libxml2 will say so
                    pos = m.end()
                elif token in _OPENERS:
                    yield XML, token
                    pos = m.end()
                    self._mode = _OPENERS[token]
                else:
                    rest = _TAG_REST.match(buf, m.end())
                    if rest is None:
                        break  # start tag not complete yet
                    end = rest.end()
                    yield XML, buf[start:end]
                    pos = end
                    if buf[end - 2 : end - 1] != b"/":
                        self._mode = _PAYLOAD
                        yield PAYLOAD_START, b""
            elif mode == _PAYLOAD:
                lt = buf.find(b"<", pos)
                if lt < 0:
                    yield PAYLOAD, buf[pos:]
                    pos = n
                    break
                if lt > pos:
                    yield PAYLOAD, buf[pos:lt]
                    pos = lt
                if n - lt < _LOOKAHEAD and buf[lt + 1 : lt + 2] in (b"!", b""):
                    break  # cannot tell a comment or CDATA from the end of the payload yet
                if buf.startswith(b"<!--", lt):
                    self._mode = _PAYLOAD_COMMENT
                    yield XML, b"<!--"
                    pos = lt + 4
                elif buf.startswith(b"<![CDATA[", lt):
                    self._mode = _PAYLOAD_CDATA
                    pos = lt + 9
                else:
                    self._mode = _NORMAL
            else:
                term = _TERMINATORS[mode]
                end = buf.find(term, pos)
                if end < 0:
                    keep = max(pos, n - len(term) + 1)
                    if keep > pos:
                        yield (PAYLOAD if mode == _PAYLOAD_CDATA else XML), buf[pos:keep]
                    pos = keep
                    break
                if mode == _PAYLOAD_CDATA:
                    if end > pos:
                        yield PAYLOAD, buf[pos:end]
                else:
                    yield XML, buf[pos : end + len(term)]
                pos = end + len(term)
                self._mode = _PAYLOAD if mode in (_PAYLOAD_COMMENT, _PAYLOAD_CDATA) else _NORMAL
        self._carry = buf[pos:]
        if len(self._carry) > self._carry_limit:
            raise EdxmlTooLarge(
                f"a single markup construct exceeds {self._carry_limit} bytes", rule="max_metadata_bytes"
            )

    def close(self) -> Iterator[tuple[int, bytes]]:
        """Flush what is left; incomplete markup goes to libxml2, which reports it."""
        carry, self._carry = self._carry, b""
        if carry:
            yield (PAYLOAD if self._mode == _PAYLOAD else XML), carry


class Base64Decoder:
    """Strict, incremental Base64: whitespace is ignored, anything else must be the alphabet.

    `error(why)` makes the exception to raise, so each caller reports in its own terms (an edXML
    rule here, a SOAP problem in the SOAP adapter).
    """

    __slots__ = ("_error", "_padded", "_rest")

    def __init__(self, error: Callable[[str], Exception]) -> None:
        self._rest = b""
        self._padded = False
        self._error = error

    def feed(self, raw: bytes) -> bytes:
        # Most encoders write one unbroken line: only strip whitespace when there is some.
        if b"\n" in raw or b" " in raw or b"\r" in raw or b"\t" in raw:
            raw = raw.translate(None, _WHITESPACE)
        if not raw:
            return b""
        if self._padded:
            raise self._error("data after '=' padding")
        buf = self._rest + raw if self._rest else raw
        cut = len(buf) - (len(buf) & 3)
        self._rest = buf[cut:]
        if not cut:
            return b""
        block = buf[:cut] if cut != len(buf) else buf
        try:
            out = binascii.a2b_base64(block, strict_mode=True)
        except binascii.Error as exc:
            hint = " (character references are not supported)" if b"&" in block else ""
            raise self._error(f"{exc}{hint}") from None
        if block.endswith(b"="):
            self._padded = True
        return out

    def finish(self) -> None:
        if self._rest:
            raise self._error(f"length is not a multiple of 4 ({len(self._rest)} character(s) left over)")


class _AttachmentStream:
    """One attachment being decoded: sink, hash, size, ZIP sniffing, optional re-encoding."""

    __slots__ = ("_decoder", "_echo", "_head", "_limit", "_path", "_sha", "_size", "meta", "reference", "writer")

    def __init__(
        self,
        meta: AttachmentMeta,
        reference: dict[str, Any],
        writer: BinaryWriter | None,
        limit: int,
        echo: ByteSink | None,
        path: str,
    ) -> None:
        self.meta = meta
        self.reference = reference
        self.writer = writer
        self._decoder = Base64Decoder(lambda why: EdxmlInvalid(f"attachment payload is not valid Base64: {why}",
                                                               path=path, rule="base64"))
        self._sha = hashlib.sha256()
        self._size = 0
        self._head = b""
        self._limit = limit
        self._echo = echo
        self._path = path

    def feed(self, raw: bytes) -> None:
        data = self._decoder.feed(raw)
        if not data:
            return
        self._size += len(data)
        if self._size > self._limit:
            raise EdxmlTooLarge(
                f"attachment exceeds {self._limit} decoded bytes", path=self._path, rule="max_attachment_bytes"
            )
        if len(self._head) < 4:
            self._head += data[: 4 - len(self._head)]
        self._sha.update(data)
        if self.writer is not None:
            self.writer.write(data)
        if self._echo is not None:
            self._echo.write(binascii.b2a_base64(data, newline=False))

    def finish(self) -> AttachmentInfo:
        self._decoder.finish()
        writer, self.writer = self.writer, None
        result = writer.close() if writer is not None else None
        ref = result if isinstance(result, str) else None
        name = getattr(writer, "name", None)
        if ref is None and isinstance(name, str):
            ref = name
        m = self.meta
        return AttachmentInfo(
            content_id=m.content_id,
            name=m.name,
            description=m.description,
            content_type=m.content_type,
            size=self._size,
            sha256=self._sha.hexdigest(),
            is_zip=self._head[:4] in _ZIP_MAGIC,
            reference=self.reference,
            handle=writer,
            ref=ref,
        )

    def abort(self) -> None:
        """Give the sink a chance to discard a partial blob (``abort()`` if it has one)."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        abort = getattr(writer, "abort", None)
        if callable(abort):
            abort()
        else:
            writer.close()


EnvelopeHook = Callable[[etree._Element, Kind], None]


_BOM = b"\xef\xbb\xbf"
_PARSER_SLICE = 1 << 10  # bytes handed to libxml2 per call (see _Streamer._feed_parser)
_DEFAULT_LIMITS = ParseLimits()


def _start_of_document(head: bytes) -> bool | None:
    """Check the first bytes: ``None`` = need more bytes, ``True`` = fine, else raise.

    The splitter reads bytes, so the packet must be in an ASCII-compatible encoding; UTF-16/32
    and EBCDIC are refused here (edXML packets are UTF-8).
    """
    if len(head) < 3 and _BOM.startswith(head):
        return None
    body = (head[3:] if head.startswith(_BOM) else head).lstrip(b" \t\r\n")
    if not body:
        return None
    if body[:1] != b"<":
        raise EdxmlMalformed(
            "not XML in an ASCII-compatible encoding (edXML packets are UTF-8)",
            path="line 1, column 1",
            rule="XML 1.0 well-formedness / UTF-8",
        )
    return True


class _Streamer:
    """Drives splitter, parser and decoder; see the module docstring for the design."""

    def __init__(
        self,
        limits: ParseLimits,
        sink: AttachmentSink | None,
        echo: ByteSink | None = None,
        hook: EnvelopeHook | None = None,
    ) -> None:
        self.limits = limits
        self.sink = sink
        self.echo = echo
        self.hook = hook
        self.kind: Kind | None = None
        self.root_seen = False
        self.wrong_root: EdxmlInvalid | None = None
        self.envelope_done = False
        self.manifest: Manifest = {}
        self.header: dict[str, Any] | None = None
        self.done: list[AttachmentInfo] = []
        self.seen_keys: set[str] = set()
        self.current: _AttachmentStream | None = None
        self.attachments = 0
        self.markup_bytes = 0
        self.markup_tags = 0
        self.guard = TreeGuard(limits)
        self.scanner = MarkupScanner(limits.max_attributes + limits.max_namespaces_per_element,
                                     limits.max_metadata_bytes)

    # -- events from libxml2 ----------------------------------------------------------------

    def _events(self, parser: etree.XMLPullParser, *, bounds_only: bool = False) -> None:
        """Handle the parser's events; after a syntax error only the bounds are checked."""
        guard = self.guard
        for event, item in parser.read_events():
            # Bounds first: nothing below runs on an oversized element.
            if event not in ("start", "end"):
                guard.namespace(cast("tuple[str, str]", item)[1])  # "start-ns": (prefix, uri)
                continue
            elem = cast(etree._Element, item)
            if event == "start":
                guard.start(elem)
            else:
                guard.end(elem)
            if bounds_only:
                continue
            tag = elem.tag
            if event == "start":
                if not self.root_seen:
                    self.root_seen = True
                    if tag != _ROOT:  # reported instead of the next invalidity; malformed XML still wins
                        self.wrong_root = _wrong_root(elem)
                if tag == _CTE:
                    self._payload_start(elem)
                elif tag == _ATTACHMENT:
                    self._attachment_start(elem)
                elif tag == _ENCODED:
                    self._encoded_start(elem)
            elif tag == _CTE:
                self._payload_end(elem)
            elif tag == _ATTACHMENT:
                self._attachment_end(elem)
            elif tag == _ENVELOPE:
                self._envelope_end(elem)
            elif tag == _ENCODED and self.echo is not None and self.envelope_done:
                self.echo.write(b"\n  </AttachmentEncoded>")

    def _envelope_end(self, envelope: etree._Element) -> None:
        root = envelope.getparent()
        if root is None or root.tag != _ROOT or root[0] is not envelope:
            return  # misplaced envelope: the final schema validation reports it
        kind = detect_kind(envelope)
        self.kind = kind
        self.manifest = check_envelope(envelope, kind)
        if self.hook is not None:
            self.hook(envelope, kind)
            self.manifest = check_envelope(envelope, kind)
        self.header = header_json(envelope, kind)
        self.envelope_done = True
        if self.echo is not None:
            self.echo.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="%s">\n  ' % NS.encode())
            self.echo.write(etree.tostring(envelope, encoding="UTF-8", xml_declaration=False, with_tail=False))

    def _encoded_start(self, elem: etree._Element) -> None:
        root = elem.getparent()
        if not self.envelope_done or root is None or root.tag != _ROOT or len(root) != 2:
            raise EdxmlInvalid(
                "AttachmentEncoded must directly follow edXMLEnvelope under edXML",
                path=element_path(elem),
                rule="edXML: edXMLEnvelope, then AttachmentEncoded",
            )
        if self.kind == "status":
            raise EdxmlInvalid(
                "a status packet carries no attachments",
                path=element_path(elem),
                rule="status.xsd: edXML contains only edXMLEnvelope",
            )
        if self.echo is not None:
            self.echo.write(b"\n  <AttachmentEncoded>")

    def _attachment_start(self, elem: etree._Element) -> None:
        parent = elem.getparent()
        if parent is None or parent.tag != _ENCODED:
            return  # not in the attachment section: left to schema validation
        self.attachments += 1
        if self.attachments > self.limits.max_attachments:
            raise EdxmlTooLarge(
                f"more than {self.limits.max_attachments} attachments",
                path=element_path(elem),
                rule="max_attachments",
            )

    def _payload_start(self, cte: etree._Element) -> None:
        att = cte.getparent()
        encoded = att.getparent() if att is not None else None
        root = encoded.getparent() if encoded is not None else None
        if (
            att is None
            or encoded is None
            or att.tag != _ATTACHMENT
            or encoded.tag != _ENCODED
            or not self.envelope_done
            or root is None
            or root.tag != _ROOT
        ):
            raise EdxmlInvalid(
                "ContentTransferEncoded is only allowed in /edXML/AttachmentEncoded/Attachment",
                path=element_path(cte),
                rule="edXML structure",
            )
        if len(cte.attrib):
            raise EdxmlInvalid("ContentTransferEncoded takes no attributes", path=element_path(cte), rule="edoc.xsd")
        meta: dict[str, str] = {}
        for child in att:
            if child is cte:
                break
            if child.tag == _CTE:
                raise EdxmlInvalid(
                    "Attachment has more than one ContentTransferEncoded",
                    path=element_path(cte),
                    rule="Attachment: exactly one ContentTransferEncoded, last",
                )
            name = _META_TAGS.get(child.tag)
            if name is None:
                raise EdxmlInvalid(
                    f"unexpected element {child.tag!r} in Attachment",
                    path=element_path(child),
                    rule="Attachment: ContentId, AttachmentName, Description?, ContentType, "
                    "then ContentTransferEncoded",
                )
            if name in meta:
                raise EdxmlInvalid(
                    f"duplicate {name} in Attachment", path=element_path(child), rule=f"{name} occurs once"
                )
            if len(child) or len(child.attrib):
                raise EdxmlInvalid(f"{name} must be plain text", path=element_path(child), rule="edoc.xsd")
            meta[name] = child.text or ""
        here = element_path(cte)  # also names the payload in Base64 errors
        missing = [m for m in _REQUIRED_META if m not in meta]
        if missing:
            raise EdxmlInvalid(
                f"Attachment lacks {', '.join(missing)} before ContentTransferEncoded",
                path=here,
                rule="ContentId, AttachmentName and ContentType precede the payload",
            )
        cid = meta["ContentId"]
        key = content_key(cid)
        ref = self.manifest.get(key)
        if ref is None:
            raise EdxmlInvalid(
                f"Attachment ContentId {cid!r} has no Reference in the manifest",
                path=element_path(att) + "/ContentId",
                rule="manifest/attachment join by ContentId",
            )
        if key in self.seen_keys:
            raise EdxmlInvalid(
                f"second Attachment for ContentId {cid!r}",
                path=element_path(att) + "/ContentId",
                rule="one Attachment per manifest Reference",
            )
        self.seen_keys.add(key)
        info = AttachmentMeta(
            index=len(self.done),
            content_id=cid,
            name=meta["AttachmentName"],
            description=meta.get("Description"),
            content_type=meta["ContentType"],
        )
        writer = self.sink(info) if self.sink is not None else None
        self.current = _AttachmentStream(info, ref[1], writer, self.limits.max_attachment_bytes, self.echo, here)
        if self.echo is not None:
            parts = [b"\n    <Attachment>"]
            for name in _META:
                if name in meta:
                    tag = name.encode()
                    parts.append(b"\n      <%s>%s</%s>" % (tag, xml_text(meta[name]), tag))
            parts.append(b"\n      <ContentTransferEncoded>")
            self.echo.write(b"".join(parts))

    def _payload_end(self, cte: etree._Element) -> None:
        current = self.current
        if current is None:  # pragma: no cover - _payload_start raises first
            return
        if len(cte) or (cte.text and cte.text.strip()):
            raise EdxmlInvalid(
                "ContentTransferEncoded must contain Base64 text only",
                path=element_path(cte),
                rule="xs:base64Binary",
            )
        info = current.finish()  # on error, run() aborts the still-current writer
        self.current = None
        self.done.append(info)
        if self.echo is not None:
            self.echo.write(b"</ContentTransferEncoded>")

    def _attachment_end(self, att: etree._Element) -> None:
        parent = att.getparent()
        if parent is None or parent.tag != _ENCODED:
            return
        if not any(c.tag == _CTE for c in att):
            raise EdxmlInvalid(
                "Attachment has no ContentTransferEncoded",
                path=element_path(att),
                rule="Attachment: ContentTransferEncoded is required",
            )
        last = att[-1]
        if last.tag != _CTE:
            raise EdxmlInvalid(
                "Attachment must end with its ContentTransferEncoded",
                path=element_path(last),
                rule="Attachment: metadata, then ContentTransferEncoded last",
            )
        if self.echo is not None:
            self.echo.write(b"\n    </Attachment>")

    # -- driver -------------------------------------------------------------------------

    def _feed_xml(self, parser: etree.XMLPullParser, data: bytes) -> None:
        self.markup_bytes += len(data)
        if self.markup_bytes > self.limits.max_metadata_bytes:
            raise EdxmlTooLarge(
                f"packet without its attachment payloads exceeds {self.limits.max_metadata_bytes} bytes",
                rule="max_metadata_bytes",
            )
        # Each element costs one or two "<": this bounds the tree while it is being built
        # (max_elements is checked exactly once the envelope and the packet are complete).
        self.markup_tags += data.count(b"<")
        if self.markup_tags > 2 * self.limits.max_elements + 16:
            raise EdxmlTooLarge(f"more than {self.limits.max_elements} elements", rule="max_elements")
        found = self.scanner.feed(data)
        if found is not None:  # libxml2 never sees the crowded tag; what precedes it names the path
            if found.offset > 0:
                self._feed_parser(parser, data[:found.offset])
            raise finding_error(found, self.guard, self.limits)
        self._feed_parser(parser, data)

    def _feed_parser(self, parser: etree.XMLPullParser, data: bytes) -> None:
        # In small slices: lxml holds the GIL while it collects the events of one feed() call
        # (about 2.5 µs per element), and keeps every element of them alive until all are read.
        # A 1 MiB segment of tiny elements held the GIL for ~48 ms, and the thousands of queued
        # objects outlived the young GC generations, so each such packet set off a full
        # collection of the hub's heap (60-260 ms with the GIL held). 1 KiB costs nothing
        # measurable on real packets and queues at most a few hundred elements.
        for start in range(0, len(data), _PARSER_SLICE):
            try:
                parser.feed(data[start:start + _PARSER_SLICE])
            except etree.XMLSyntaxError:
                self._events(parser, bounds_only=True)  # a bound broken before the syntax error wins
                raise
            self._events(parser)

    def _segments(self, segments: Iterator[tuple[int, bytes]], parser: etree.XMLPullParser) -> None:
        for kind, data in segments:
            if kind == XML:
                self._feed_xml(parser, data)
            elif self.current is None:
                # A payload-looking element libxml2 did not confirm as ours (wrong namespace).
                raise EdxmlInvalid(
                    "ContentTransferEncoded outside the edXML namespace or outside an Attachment",
                    rule="edXML structure",
                )
            elif kind == PAYLOAD:
                self.current.feed(data)

    def run(self, fh: IO[bytes]) -> Packet:
        parser = etree.XMLPullParser(
            events=("start-ns", "start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        splitter = _Splitter(self.limits.max_metadata_bytes)
        total = 0
        chunk_size = self.limits.read_chunk_bytes
        head: bytes | None = b""  # bytes held back until the start of the document is checked
        try:
            try:
                while chunk := fh.read(chunk_size):
                    total += len(chunk)
                    if total > self.limits.max_packet_bytes:
                        raise EdxmlTooLarge(
                            f"packet exceeds {self.limits.max_packet_bytes} bytes", rule="max_packet_bytes"
                        )
                    if head is not None:
                        head += chunk
                        if _start_of_document(head) is None and len(head) < self.limits.max_metadata_bytes:
                            continue
                        chunk, head = head, None
                    self._segments(splitter.feed(chunk), parser)
                if head:
                    self._segments(splitter.feed(head), parser)
                self._segments(splitter.close(), parser)
                try:
                    root = parser.close()
                except etree.XMLSyntaxError:
                    self._events(parser, bounds_only=True)
                    raise
                self._events(parser)
            except etree.XMLSyntaxError as exc:
                raise _syntax_error(exc) from None
            if self.wrong_root is not None:
                raise self.wrong_root
            return self._finish(root)
        except BaseException as exc:
            current, self.current = self.current, None
            if current is not None:
                with contextlib.suppress(Exception):  # the original error matters more
                    current.abort()
            if isinstance(exc, EdxmlInvalid) and self.wrong_root is not None and exc is not self.wrong_root:
                self.wrong_root.attachments = tuple(self.done)
                raise self.wrong_root from None  # the cause of whatever broke after a wrong root
            if isinstance(exc, EdxmlError):
                exc.attachments = tuple(self.done)
            raise

    def _finish(self, root: etree._Element) -> Packet:
        # lxml-stubs lack DocInfo.doctype
        if getattr(root.getroottree().docinfo, "doctype", None):  # pragma: no cover - refused by the splitter
            raise EdxmlUnsafe("DOCTYPE declarations are refused", rule="no DTD")
        kind: Kind = self.kind or "edoc"
        validate(root, kind, "whole packet, attachment payloads excluded")
        if self.header is None:  # pragma: no cover - the schema requires the envelope
            raise EdxmlInvalid("no edXMLEnvelope", path="/edXML", rule="edXML: edXMLEnvelope")
        for key, (ref, entry) in self.manifest.items():
            if key not in self.seen_keys:
                raise EdxmlInvalid(
                    f"manifest Reference {entry['content_id']!r} has no Attachment",
                    path=_ref_path(ref),
                    rule="manifest/attachment join by ContentId",
                )
        if self.echo is not None:
            self.echo.write(b"\n</edXML>\n")
        return Packet(kind=kind, header=self.header, attachments=tuple(self.done))


def _wrong_root(elem: etree._Element) -> EdxmlInvalid:
    """Say what the root should have been: a vendor's namespace slip is otherwise reported far away
    (at the first attachment payload, or as an unexpected child)."""
    qname = etree.QName(elem)
    local, ns = qname.localname[:200], (qname.namespace or "")[:200]
    expected = f"an edXML packet's root is <edXML> in the namespace {NS}"
    if local != "edXML":
        where = f" in the namespace {ns}" if ns else " without a namespace"
        detail = f"the root element is <{local}>{where}: {expected}"
    elif not ns:
        detail = (f"the root element <edXML> has no namespace: {expected} "
                  f'(declare xmlns="{NS}" or a prefix bound to it)')
    else:
        near = ns.strip().rstrip("/").lower().replace("https://", "http://") == NS.lower()
        hint = " (namespaces are compared exactly, character by character)" if near else ""
        detail = f"the root element <edXML> is in the namespace {ns}: {expected}{hint}"
    return EdxmlInvalid(detail, path=f"/{local}", rule="root: edXML in the QCVN 102:2016 namespace")


def _ref_path(ref: etree._Element) -> str:
    return element_path(ref) + "/ContentId"


_TOO_LARGE_HINTS = ("excessive depth", "huge", "too big", "too long", "limit", "memory", "amplification")


def _syntax_error(exc: etree.XMLSyntaxError) -> EdxmlError:
    message = str(exc.msg if getattr(exc, "msg", None) else exc)
    lowered = message.lower()
    where = f"line {exc.lineno}, column {exc.offset}" if getattr(exc, "lineno", None) else None
    if any(h in lowered for h in _TOO_LARGE_HINTS):
        return EdxmlTooLarge(f"libxml2 limit: {message}", path=where, rule="parser limit")
    if "doctype" in lowered or ("entity" in lowered and "declar" in lowered):
        return EdxmlUnsafe(f"refused: {message}", path=where, rule="no DTD")
    return EdxmlMalformed(f"not well-formed XML: {message}", path=where, rule="XML 1.0 well-formedness")


@contextmanager
def open_source(source: Source) -> Iterator[IO[bytes]]:
    """Yield a binary reader for a path, a file object or bytes; close only what we opened."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            yield fh
    elif hasattr(source, "read"):
        yield source
    else:
        raise TypeError(f"source must be a path, a binary file object or bytes, not {type(source).__name__}")


def parse_packet(
    source: Source,
    *,
    attachment_sink: AttachmentSink | None = None,
    limits: ParseLimits | None = None,
) -> Packet:
    """Parse and validate one edXML packet, streaming attachments into ``attachment_sink``.

    ``source`` is a path, a readable binary file object (read to EOF, not closed) or bytes.
    ``attachment_sink(meta)`` is called once per attachment before its payload and must return
    a writable binary object; it receives the decoded bytes and is closed at the end of the
    attachment. If the packet turns out bad, the attachment in progress is ``abort()``-ed
    (or closed when the writer has no ``abort``) and the raised :class:`EdxmlError` lists the
    attachments already completed in ``.attachments``. Without a sink, payloads are only
    checked, hashed and measured.

    Raises :class:`EdxmlInvalid`, :class:`EdxmlMalformed`, :class:`EdxmlUnsafe` or
    :class:`EdxmlTooLarge`; exceptions from the sink or the source propagate unchanged.
    Synchronous and CPU-bound: run it in a worker thread from async code.
    """
    limits = limits or _DEFAULT_LIMITS
    with open_source(source) as fh:
        return _Streamer(limits, attachment_sink).run(fh)


def append_trace_header(
    source: Source,
    dst: ByteSink,
    *,
    organ_id: str,
    timestamp: datetime | str | None = None,
    limits: ParseLimits | None = None,
    attachment_sink: AttachmentSink | None = None,
) -> Packet:
    """Copy an edoc from ``source`` to ``dst`` with one more TraceHeader (the hub's hop).

    The packet is fully validated on the way, the new TraceHeader goes after the last existing
    one, and the output is validated before it is written. Memory stays flat: attachments are
    decoded, checked and re-encoded chunk by chunk. The output is a normalised serialisation
    (same information, not the same bytes; payloads become one Base64 line). Appending a
    TraceHeader changes the signed content, as it does in every edXML hub. On error ``dst``
    holds a partial packet and must be discarded. Returns the packet as written.
    """
    if not isinstance(organ_id, str) or not organ_id.strip():
        raise ValueError("organ_id must be a non-empty string")
    stamp = timestamp if isinstance(timestamp, str) else format_timestamp(timestamp)

    def hook(envelope: etree._Element, kind: Kind) -> None:
        if kind != "edoc":
            raise NotAnEdoc(
                "only edoc packets carry TraceHeaders", path="/edXML/edXMLEnvelope", rule="status packets have none"
            )
        thl = find(find(envelope, "edXMLHeader"), "TraceHeaderList")
        assert thl is not None
        last = [c for c in thl if c.tag == q("TraceHeader")][-1]
        new = etree.Element(q("TraceHeader"))
        for name, value in (("OrganId", organ_id), ("Timestamp", stamp)):
            etree.SubElement(new, q(name)).text = value
        # Copy the sender's indentation so the output stays readable.
        prev = last.getprevious()
        lead = prev.tail if prev is not None else thl.text
        if lead is not None and not lead.strip():
            new.text = last.text
            if len(last):
                new[0].tail = last[0].tail
                new[1].tail = last[-1].tail
            new.tail, last.tail = last.tail, lead
        last.addnext(new)

    limits = limits or _DEFAULT_LIMITS
    with open_source(source) as fh:
        return _Streamer(limits, attachment_sink, echo=dst, hook=hook).run(fh)
