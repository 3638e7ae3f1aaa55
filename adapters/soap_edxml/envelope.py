"""Reading SOAP requests safely and in constant memory: plain SOAP 1.1/1.2 and MTOM/XOP.

A request can carry a 200 MB edXML packet, inline as Base64 text or as an MTOM attachment part,
so nothing here ever holds the body in memory:

* the body streams in chunk by chunk (hashed on the way: the signature covers its SHA-256);
* plain SOAP goes through libxml2 with a *parser target* (SAX-style callbacks) instead of a tree:
  the envelope is rebuilt as a small tree, except the text of payload elements (`tns:edxml`),
  which goes through a strict incremental Base64 decoder straight into a temporary file;
* MTOM (`multipart/related`, root part `application/xop+xml`, as JAX-WS and WCF send it) is split
  by a streaming MIME parser: the root part feeds the same envelope parser, every other part
  streams into a temporary file, and `xop:Include href="cid:…"` links a payload to its part.

Safety: no DTD (a DOCTYPE stops the parse before any declaration is read), no entity expansion,
no network access; depth, element count, envelope size, MIME part count and header size are
bounded, and so is everything outside the Base64 payloads as it is read: a byte scanner (core's
MarkupScanner) refuses a start tag with too many attributes before libxml2 parses it, and the
parser callbacks check attributes per element, attribute and text length and namespace
declarations (per element and in total). Problems are raised with the hub's stable codes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

from lxml import etree

from lgsp.core.api import Problem, SealedSpool, Text
from lgsp.core.api.edxml import Base64Decoder, MarkupScanner, crowded

TNS = "urn:lgsp:soap:edxml:1"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XOP = "http://www.w3.org/2004/08/xop/include"
#: Marks a payload element in the rebuilt tree (index into Message.payloads). Senders' attributes in
#: this namespace are dropped, so it cannot be forged.
MARK = "{urn:lgsp:internal}payload"
PAYLOADS = frozenset({f"{{{TNS}}}edxml"})
_PARSER_SLICE = 64 << 10  # bytes handed to libxml2 per call (see EnvelopeParser.feed)


@dataclass(frozen=True)
class Limits:
    max_envelope_bytes: int = 4 << 20  # the message without its Base64 payloads and attachment parts
    max_payload_bytes: int = 2 << 30  # decoded bytes of one payload
    max_depth: int = 32
    max_elements: int = 10_000
    max_parts: int = 16
    max_part_headers: int = 16 << 10
    max_attributes: int = 32  # per element, namespace declarations not counted
    max_attribute_length: int = 8_192  # characters of one attribute value or namespace name
    max_text_length: int = 1 << 20  # characters of one text outside the Base64 payloads
    max_namespaces_per_element: int = 16
    max_namespaces: int = 256  # declarations in the whole message


class Payload:
    """Decoded bytes of one base64Binary element, in a temporary file (inline Base64 or an MTOM part)."""

    def __init__(self, path: Path | None = None, spool: SealedSpool | None = None) -> None:
        self.path = path
        #: The file is sealed (content is encrypted at rest) under a key only this object holds.
        self.spool = spool
        self.size = 0
        self.sha256 = ""
        self.href: str | None = None  # xop:Include target, resolved after the MIME parse

    def open(self) -> BinaryIO:
        """The decoded bytes, decrypted as they are read (blocking: call from a worker thread)."""
        if self.spool is None:
            raise FileNotFoundError("this payload has no file")
        return self.spool.open()

    def discard(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class _HashingFile:
    """A temporary file receiving bytes, with size, SHA-256 and a byte limit."""

    def __init__(self, tmp_dir: Path, limit: int, what: str) -> None:
        self.path = tmp_dir / f"soap-{secrets.token_hex(8)}.part"
        self._fh = SealedSpool(self.path)  # closed in close()/abort()
        self._sha = hashlib.sha256()
        self.size = 0
        self.limit = limit
        self.what = what

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.limit:
            raise Problem("content.too_large", Text("{what} is larger than {limit} bytes", what=self.what,
                                                    limit=self.limit), limit=self.limit)
        self._sha.update(data)
        self._fh.write(data)

    def close(self) -> tuple[int, str]:
        self._fh.close()
        return self.size, self._sha.hexdigest()

    @property
    def spool(self) -> SealedSpool:
        return self._fh

    def abort(self) -> None:
        self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Base64Sink:
    """Strict incremental Base64 decoding into a file (core's decoder), errors as SOAP problems."""

    def __init__(self, out: _HashingFile, what: str) -> None:
        self.out = out
        self._decoder = Base64Decoder(lambda why: Problem("request.malformed", Text("{what}: not valid Base64: {why}",
                                                                                    what=what, why=why)))

    def feed(self, text: bytes) -> None:
        decoded = self._decoder.feed(text)
        if decoded:
            self.out.write(decoded)

    def finish(self) -> None:
        self._decoder.finish()


class EnvelopeParser:
    """libxml2 parser target: rebuilds the envelope without payload text; payload Base64 -> files.

    Feed bytes with `feed()`, then `close()` returns the envelope element. `payloads` lists one
    Payload per payload element, in document order; each element carries MARK = its index.
    """

    def __init__(self, tmp_dir: Path, limits: Limits) -> None:
        self.tmp_dir = tmp_dir
        self.limits = limits
        self.payloads: list[Payload] = []
        self._tree = etree.TreeBuilder()
        self._parser = etree.XMLParser(target=self,  # type: ignore[arg-type]  # lxml-stubs: str|bytes in callbacks
                                       resolve_entities=False, no_network=True, load_dtd=False,
                                       dtd_validation=False, huge_tree=False, remove_comments=True, remove_pis=True)
        self._depth = 0
        self._elements = 0
        self._kept = 0  # bytes of markup and text kept in the tree
        self._payload_depth = 0  # depth of the payload element we are inside, 0 when outside
        self._sink: Base64Sink | None = None
        self._file: _HashingFile | None = None
        self._error: BaseException | None = None
        self._scanner = MarkupScanner(limits.max_attributes + limits.max_namespaces_per_element,
                                      limits.max_envelope_bytes)
        self._names: list[str] = []  # local names of the open elements, for error paths
        self._namespaces = 0  # declarations so far
        self._pending_ns = 0  # declarations of the element about to start
        self._text = 0  # characters of the current text node (outside payloads)

    # -- lxml target interface ------------------------------------------------------------------------
    # An exception raised in a callback stops libxml2, but lxml may then report a syntax error
    # instead of it; `_guard` keeps the first one so feed()/finish() raise what really happened.
    def start(self, tag: str, attrib: dict[str, str], nsmap: dict[str | None, str] | None = None) -> None:
        with self._guard():
            self._start(tag, attrib, nsmap)

    def end(self, tag: str) -> None:
        with self._guard():
            self._end(tag)

    def data(self, text: str) -> None:
        with self._guard():
            self._data(text)

    def start_ns(self, prefix: str, uri: str) -> None:
        with self._guard():
            self._namespace(uri)

    def doctype(self, *_: Any) -> None:
        with self._guard():
            raise Problem("soap.unsafe",
                          Text("DOCTYPE declarations are refused in SOAP messages (no DTD, no entities)"))

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        if self._error is not None:
            raise self._error
        try:
            yield
        except BaseException as exc:
            self._error = exc
            raise

    def _path(self) -> str:
        return "/" + "/".join(self._names)

    def _too_large(self, what: str, rule: str, limit: int) -> Problem:
        path = self._path()
        return Problem("content.too_large", Text("SOAP message: {path}: {what}", path=path, what=what), path=path,
                       rule=rule, limit=limit)

    def _namespace(self, uri: str) -> None:
        limits = self.limits
        self._namespaces += 1
        self._pending_ns += 1
        if self._namespaces > limits.max_namespaces:
            raise self._too_large(f"more than {limits.max_namespaces} namespace declarations in the message",
                                  "max_namespaces", limits.max_namespaces)
        if len(uri) > limits.max_attribute_length:
            raise self._too_large(f"a namespace name longer than {limits.max_attribute_length} characters",
                                  "max_attribute_length", limits.max_attribute_length)

    def _start(self, tag: str, attrib: dict[str, str], nsmap: dict[str | None, str] | None) -> None:
        limits = self.limits
        self._depth += 1
        self._elements += 1
        self._names.append(etree.QName(tag).localname)
        if self._depth > limits.max_depth:
            raise Problem("request.malformed", Text("SOAP message nested deeper than {max_depth} elements",
                                                    max_depth=limits.max_depth))
        if self._elements > limits.max_elements:
            raise Problem("content.too_large", Text("SOAP message has more than {max_elements} elements",
                                                    max_elements=limits.max_elements))
        pending, self._pending_ns, self._text = self._pending_ns, 0, 0
        if pending > limits.max_namespaces_per_element:
            raise self._too_large(f"more than {limits.max_namespaces_per_element} namespace declarations",
                                  "max_namespaces_per_element", limits.max_namespaces_per_element)
        if len(attrib) > limits.max_attributes:
            raise self._too_large(f"more than {limits.max_attributes} attributes", "max_attributes",
                                  limits.max_attributes)
        for name, value in attrib.items():
            if len(value) > limits.max_attribute_length:
                raise self._too_large(f"attribute {etree.QName(name).localname} is longer than "
                                      f"{limits.max_attribute_length} characters", "max_attribute_length",
                                      limits.max_attribute_length)
        self._count(len(tag) + sum(len(k) + len(v) for k, v in attrib.items()))
        attrs = {k: v for k, v in attrib.items() if not k.startswith("{urn:lgsp:internal}")}
        if self._payload_depth:
            if tag != f"{{{XOP}}}Include" or self._depth != self._payload_depth + 1:
                raise Problem("request.malformed", Text("a base64Binary element holds Base64 text or one xop:Include"))
            href = attrib.get("href")
            if not href:
                raise Problem("request.malformed", Text("xop:Include needs an href"))
            payload = self.payloads[-1]
            if payload.href is not None or (self._file is not None and self._file.size):
                raise Problem("request.malformed", Text("a base64Binary element holds Base64 text or one xop:Include"))
            payload.href = href
        elif tag in PAYLOADS:
            self._payload_depth = self._depth
            attrs[MARK] = str(len(self.payloads))
            self.payloads.append(Payload())
            self._file = _HashingFile(self.tmp_dir, self.limits.max_payload_bytes, etree.QName(tag).localname)
            self.payloads[-1].path, self.payloads[-1].spool = self._file.path, self._file.spool
            self._sink = Base64Sink(self._file, etree.QName(tag).localname)
        # lxml hands the default namespace over with the prefix '' but wants None back.
        self._tree.start(tag, attrs,  # type: ignore[call-arg, arg-type]  # lxml-stubs lack the nsmap argument
                         {(k or None): v for k, v in nsmap.items()} if nsmap else None)

    def _end(self, tag: str) -> None:
        if self._payload_depth == self._depth and self._file is not None and self._sink is not None:
            self._sink.finish()
            payload = self.payloads[-1]
            payload.size, payload.sha256 = self._file.close()
            if payload.href is not None:  # MTOM: the bytes are in a MIME part
                with contextlib.suppress(FileNotFoundError):
                    payload.path.unlink()  # type: ignore[union-attr]
                payload.path = payload.spool = None
            self._file = self._sink = None
            self._payload_depth = 0
        self._depth -= 1
        self._text = 0
        if self._names:
            self._names.pop()
        self._tree.end(tag)

    def _data(self, text: str) -> None:
        if self._payload_depth and self._depth == self._payload_depth:
            assert self._sink is not None
            try:
                raw = text.encode("ascii")
            except UnicodeEncodeError:
                raise Problem("request.malformed", Text("a base64Binary element holds non-ASCII text")) from None
            self._sink.feed(raw)
            return
        self._text += len(text)  # libxml2 hands long texts over in pieces
        if self._text > self.limits.max_text_length:
            raise self._too_large(f"a text longer than {self.limits.max_text_length} characters", "max_text_length",
                                  self.limits.max_text_length)
        self._count(len(text))
        self._tree.data(text)

    def comment(self, text: str) -> None:  # dropped
        pass

    def pi(self, target: str, data: str | None = None) -> None:  # dropped
        pass

    def close(self) -> etree._Element:
        return self._tree.close()

    def _count(self, n: int) -> None:
        self._kept += n
        if self._kept > self.limits.max_envelope_bytes:
            raise Problem("content.too_large",
                          Text("the SOAP envelope (without its Base64 payloads) exceeds {max_envelope_bytes} bytes",
                               max_envelope_bytes=self.limits.max_envelope_bytes), limit=self.limits.max_envelope_bytes)

    # -- driving ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        found = self._scanner.feed(data)
        if found is not None:  # libxml2 never parses the tag; what precedes it names the path
            if found.offset > 0:
                self._drive(self._parser.feed, data[:found.offset])
            limits = self.limits
            if found.kind == "items":
                self._names.append(found.name.rpartition(":")[2])
                raise self._too_large(*crowded(found, limits.max_attributes, limits.max_namespaces_per_element))
            raise self._too_large(f"a single tag is longer than {limits.max_envelope_bytes} bytes",
                                  "max_envelope_bytes", limits.max_envelope_bytes)
        # In slices: libxml2 and lxml hold the GIL through one feed() call, and a 1 MiB read of
        # dense markup would hold it for tens of milliseconds while other clients wait.
        for start in range(0, len(data), _PARSER_SLICE):
            self._drive(self._parser.feed, data[start:start + _PARSER_SLICE])

    def finish(self) -> etree._Element:
        root = self._drive(self._parser.close)
        if root is None:  # pragma: no cover - libxml2 reports an empty document as a syntax error
            raise Problem("request.malformed", Text("empty SOAP message"))
        return root

    def _drive(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run one parser step; an error our own callbacks recorded wins over what libxml2 says of it."""
        if self._error is not None:
            raise self._error
        try:
            result = step(*args)
        except etree.XMLSyntaxError as exc:
            raise self._error or _syntax(exc) from None
        except BaseException:
            if self._error is not None:
                raise self._error from None
            raise
        if self._error is not None:
            raise self._error
        return result

    def discard(self) -> None:
        if self._file is not None:
            self._file.abort()
        for p in self.payloads:
            p.discard()


def _syntax(exc: etree.XMLSyntaxError) -> Problem:
    message = str(getattr(exc, "msg", None) or exc)
    for entry in getattr(exc, "error_log", None) or ():
        if "ENTITY" in (entry.type_name or "") or "entity" in (entry.message or "").lower():
            return Problem("soap.unsafe", Text("entities are refused in SOAP messages: {message}",
                                               message=entry.message))
    lowered = message.lower()
    if "entity" in lowered and ("declar" in lowered or "undefined" in lowered or "not defined" in lowered):
        return Problem("soap.unsafe", Text("entities are refused in SOAP messages: {message}", message=message))
    where = f" (line {exc.lineno}, column {exc.offset})" if getattr(exc, "lineno", None) else ""
    return Problem("request.malformed", Text("the SOAP message is not well-formed XML: {message}{where}",
                                             message=message, where=where))


# -- MTOM ------------------------------------------------------------------------------------------

_HEADER_RE = re.compile(rb"^([A-Za-z0-9!#$%&'*+.^_`|~-]+):[ \t]*(.*?)[ \t]*$")


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    """`multipart/related; boundary="x"; start="<y>"` -> ("multipart/related", {...}); quotes removed."""
    parts = re.findall(r'(?:[^;"]|"(?:[^"\\]|\\.)*")+', value)
    media = parts[0].strip().lower() if parts else ""
    params: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, raw = part.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name.strip().lower()] = raw
    return media, params


def _cid(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip()


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    root: bool = False
    file: _HashingFile | None = None
    sink: Base64Sink | None = None
    content_id: str = ""


class MultipartParser:
    """A streaming `multipart/related` (MTOM/XOP) parser: the root part to the envelope parser,
    the other parts to temporary files. Never buffers more than a boundary's length of a part."""

    PREAMBLE, HEADERS, BODY, AFTER, EPILOGUE = range(5)

    def __init__(self, boundary: str, start: str | None, envelope: EnvelopeParser, tmp_dir: Path,
                 limits: Limits) -> None:
        if not boundary or len(boundary) > 200:
            raise Problem("request.malformed",
                          Text("multipart/related needs a boundary parameter (1 to 200 characters)"))
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self.start = _cid(start) if start else None
        self.envelope = envelope
        self.tmp_dir = tmp_dir
        self.limits = limits
        self.state = self.PREAMBLE
        self.buf = b"\r\n"  # so a boundary on the very first line is found like the others
        self.parts: dict[str, Payload] = {}
        self.count = 0
        self.root_seen = False
        self.part: _Part | None = None
        self.root_content_type = ""

    def feed(self, data: bytes) -> None:
        self.buf += data
        self._run(final=False)

    def finish(self) -> dict[str, Payload]:
        self._run(final=True)
        if self.state != self.EPILOGUE:
            raise Problem("request.malformed", Text("the multipart body ends before its closing boundary"))
        if not self.root_seen:
            raise Problem("request.malformed", Text("the multipart body has no root part (the SOAP envelope)"))
        return self.parts

    def discard(self) -> None:
        if self.part is not None and self.part.file is not None:
            self.part.file.abort()
        for p in self.parts.values():
            p.discard()

    # -- the state machine -------------------------------------------------------------------------
    def _run(self, final: bool) -> None:
        while True:
            if self.state == self.PREAMBLE:
                i = self.buf.find(self.delimiter)
                if i < 0:
                    self.buf = self.buf[-len(self.delimiter):]
                    if len(self.buf) > self.limits.max_part_headers:  # pragma: no cover - trimmed above
                        raise Problem("request.malformed", Text("no multipart boundary found"))
                    return
                self.buf = self.buf[i + len(self.delimiter):]
                self.state = self.AFTER
            elif self.state == self.AFTER:
                stripped = self.buf.lstrip(b" \t")
                if len(stripped) < 2:
                    return
                if stripped.startswith(b"--"):
                    self.state = self.EPILOGUE
                    self.buf = b""
                    return
                if not stripped.startswith(b"\r\n"):
                    raise Problem("request.malformed", Text("malformed multipart boundary line"))
                self.buf = stripped[2:]
                self.state = self.HEADERS
            elif self.state == self.HEADERS:
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(self.buf) > self.limits.max_part_headers:
                        raise Problem("request.malformed", Text("multipart part headers are too long"))
                    return
                self._begin_part(self.buf[:i])
                self.buf = self.buf[i + 4:]
                self.state = self.BODY
            elif self.state == self.BODY:
                i = self.buf.find(self.delimiter)
                if i < 0:
                    keep = len(self.delimiter) - 1
                    if len(self.buf) > keep:
                        self._part_data(self.buf[:-keep])
                        self.buf = self.buf[-keep:]
                    return
                self._part_data(self.buf[:i])
                self._end_part()
                self.buf = self.buf[i + len(self.delimiter):]
                self.state = self.AFTER
            else:  # EPILOGUE: ignored
                self.buf = b""
                return

    def _begin_part(self, raw: bytes) -> None:
        self.count += 1
        if self.count > self.limits.max_parts:
            raise Problem("request.malformed", Text("more than {max_parts} MIME parts",
                                                    max_parts=self.limits.max_parts))
        headers: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            if not line.strip():
                continue
            m = _HEADER_RE.match(line)
            if m is None:
                raise Problem("request.malformed", Text("malformed MIME part header"))
            try:  # RFC 2045 says ASCII; senders put UTF-8 in Content-IDs, rarely Latin-1
                value = m.group(2).decode("utf-8")
            except UnicodeDecodeError:
                value = m.group(2).decode("latin-1")
            headers[m.group(1).decode("ascii").lower()] = value
        part = _Part(headers=headers, content_id=_cid(headers.get("content-id", "")))
        part.root = (part.content_id == self.start) if self.start else not self.root_seen
        cte = headers.get("content-transfer-encoding", "binary").strip().lower()
        if cte not in ("binary", "8bit", "7bit", "base64"):
            raise Problem("request.malformed", Text("Content-Transfer-Encoding {cte} is not supported in MTOM parts",
                                                    cte=cte))
        if part.root:
            if self.root_seen:
                raise Problem("request.malformed", Text("two root parts"))
            self.root_seen = True
            self.root_content_type = headers.get("content-type", "")
            if cte == "base64":
                raise Problem("request.malformed", Text("the root part must not be Base64-encoded"))
        else:
            if not part.content_id:
                raise Problem("request.malformed", Text("an MTOM attachment part needs a Content-ID"))
            if part.content_id in self.parts:
                raise Problem("request.malformed", Text("duplicate Content-ID {content_id}",
                                                        content_id=part.content_id))
            part.file = _HashingFile(self.tmp_dir, self.limits.max_payload_bytes, f"MIME part {part.content_id}")
            payload = Payload(part.file.path, part.file.spool)
            self.parts[part.content_id] = payload
            if cte == "base64":
                part.sink = Base64Sink(part.file, f"MIME part {part.content_id}")
        self.part = part

    def _part_data(self, data: bytes) -> None:
        part = self.part
        if part is None or not data:
            return
        if part.root:
            self.envelope.feed(data)
        elif part.sink is not None:
            part.sink.feed(data)
        else:
            assert part.file is not None
            part.file.write(data)

    def _end_part(self) -> None:
        part = self.part
        self.part = None
        if part is None or part.root:
            return
        assert part.file is not None
        if part.sink is not None:
            part.sink.finish()
        payload = self.parts[part.content_id]
        payload.size, payload.sha256 = part.file.close()


# -- the message -----------------------------------------------------------------------------------

@dataclass
class Message:
    """A parsed SOAP request: version, the operation element, decoded payloads (files)."""

    version: str  # "1.1" or "1.2"
    operation: etree._Element
    payloads: list[Payload]
    mtom: bool
    content_sha256: str
    header: etree._Element | None = None  # soap:Header, if the message has one

    @property
    def name(self) -> str:
        return etree.QName(self.operation).localname

    def payload(self, element: etree._Element) -> Payload:
        mark = element.get(MARK)
        if mark is None:  # pragma: no cover - every payload element is marked while parsing
            raise Problem("request.invalid", Text("{localname} is not a payload element",
                                                  localname=etree.QName(element).localname))
        return self.payloads[int(mark)]

    def discard(self) -> None:
        for p in self.payloads:
            p.discard()


class MessageReader:
    """Feed the raw body chunk by chunk (`feed`), then `finish()` gives the Message."""

    def __init__(self, content_type: str, tmp_dir: Path, limits: Limits) -> None:
        media, params = content_type_params(content_type)
        self.limits = limits
        self.envelope = EnvelopeParser(tmp_dir, limits)
        self.mime: MultipartParser | None = None
        self.sha = hashlib.sha256()
        self.size = 0
        if media == "multipart/related":
            self.mime = MultipartParser(params.get("boundary", ""), params.get("start"), self.envelope, tmp_dir,
                                        limits)
        elif media not in ("text/xml", "application/soap+xml"):
            raise Problem("request.malformed",
                          Text("Content-Type {value} is not SOAP: use text/xml (SOAP 1.1), "
                               "application/soap+xml (SOAP 1.2) or multipart/related (MTOM)", value=media or '(none)'))
        self._feed: Callable[[bytes], None] = self.mime.feed if self.mime else self.envelope.feed

    def feed(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self._feed(data)

    def finish(self) -> Message:
        parts = self.mime.finish() if self.mime else {}
        root = self.envelope.finish()
        payloads = self.envelope.payloads
        try:
            for payload in payloads:
                if payload.href is None:
                    continue
                href = payload.href
                if not href.lower().startswith("cid:"):
                    raise Problem("request.malformed", Text("xop:Include href {href!r} is not a cid: URL", href=href))
                part = parts.pop(_cid(unquote(href[4:])), None)
                if part is None:
                    raise Problem("request.malformed", Text("xop:Include refers to a missing MIME part {href!r}",
                                                            href=href))
                payload.path, payload.spool = part.path, part.spool
                payload.size, payload.sha256 = part.size, part.sha256
        finally:
            for unused in parts.values():
                unused.discard()
        ns = etree.QName(root).namespace
        if etree.QName(root).localname != "Envelope" or ns not in (SOAP11, SOAP12):
            raise Problem("request.malformed", Text("not a SOAP envelope (Envelope in the SOAP 1.1 or 1.2 namespace)"))
        body = root.find(f"{{{ns}}}Body")
        children = list(body) if body is not None else []
        if len(children) != 1:
            raise Problem("request.malformed", Text("the SOAP Body must hold exactly one operation element"))
        return Message(version="1.1" if ns == SOAP11 else "1.2", operation=children[0], payloads=payloads,
                       mtom=self.mime is not None, content_sha256=self.sha.hexdigest(),
                       header=root.find(f"{{{ns}}}Header"))

    def discard(self) -> None:
        self.envelope.discard()
        if self.mime is not None:
            self.mime.discard()



# -- header blocks ---------------------------------------------------------------------------------

#: Roles (SOAP 1.2) and actors (SOAP 1.1) that address the hub: absent means the ultimate receiver.
_OUR_ROLES = {SOAP11: frozenset({None, "http://schemas.xmlsoap.org/soap/actor/next"}),
              SOAP12: frozenset({None, "http://www.w3.org/2003/05/soap-envelope/role/next",
                                 "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"})}
_TRUE, _FALSE = frozenset({"1", "true"}), frozenset({"0", "false"})


def not_understood(message: Message, understood: frozenset[str]) -> list[etree.QName]:
    """Header blocks addressed to the hub with mustUnderstand on that it does not process.

    Both SOAP versions require such a message to be refused with a MustUnderstand fault rather than
    processed without them. `understood` holds Clark names (`{ns}local`). A block for another role
    or actor, or with mustUnderstand "0"/"false", is ignored; any other value is malformed.
    """
    if message.header is None:
        return []
    ns = SOAP11 if message.version == "1.1" else SOAP12
    role_attr = f"{{{ns}}}actor" if ns == SOAP11 else f"{{{ns}}}role"
    out: list[etree.QName] = []
    for block in message.header:
        if not isinstance(block.tag, str):  # pragma: no cover - comments and PIs are dropped while parsing
            continue
        raw = block.get(f"{{{ns}}}mustUnderstand")
        if raw is None:
            continue
        value = raw.strip()
        if value not in _TRUE | _FALSE:
            raise Problem("request.malformed",
                          Text("mustUnderstand of header block {tag} must be 1/0 or true/false, not {raw!r}",
                               tag=block.tag, raw=raw[:20]))
        role = block.get(role_attr)
        if value in _TRUE and (role.strip() if role else None) in _OUR_ROLES[ns] and block.tag not in understood:
            out.append(etree.QName(block))
    return out
