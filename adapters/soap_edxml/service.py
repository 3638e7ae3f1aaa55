"""The SOAP service: WSDL, dispatch, the six operations, streamed responses and faults.

Thin like the REST handlers: authenticate (the shared signed-request check), read the message
(envelope.py: streamed, hashed, safe), call `hub.exchange` / `hub.content` / `hub.directory`,
answer. Errors are `Problem`s everywhere and leave as SOAP faults with the same stable code.
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from aiohttp import web
from lxml import etree

from lgsp.core.api import (
    H_CONTENT,
    MAX_DESTINATION,
    MAX_REASON,
    PENDING_SUBJECT,
    PRIORITIES,
    InboxPosition,
    NewPacket,
    Principal,
    Problem,
    Text,
    authenticate,
    base_url,
    bounded_int,
    check_text,
    hub_of,
    i18n,
    iso,
    language,
    printable,
)

from .envelope import SOAP11, SOAP12, TNS, XOP, Limits, Message, MessageReader, Payload, not_understood

if TYPE_CHECKING:
    from lgsp.core.api import Hub, Notice

log = logging.getLogger("lgsp.soap")

PATH = "/soap/edxml"
WSDL_ADDRESS = "http://lgsp.invalid/soap/edxml"  # replaced by the hub's own URL when served
CHUNK = 3 << 18  # 768 KiB: a multiple of 3, so each Base64 chunk needs no padding
NAME = "soap_edxml"
_INBOX_PAGE = 500  # inbox rows read per query while filtering getReceivedEdocList
MAX_FIELD = 256  # longest value of a SOAP string field (identifiers, queries); reasons: MAX_REASON
#: SOAP header blocks the hub processes (Clark names). None yet: calls are signed with the X-LGSP-*
#: HTTP headers, not with SOAP headers, so a block marked mustUnderstand gets a MustUnderstand fault.
UNDERSTOOD_HEADERS: frozenset[str] = frozenset()

SETTINGS: dict[str, tuple[int, str]] = {
    "max_envelope_bytes": (4 << 20, "largest SOAP message without its Base64 payloads and MTOM parts"),
    "max_parts": (16, "most MIME parts in an MTOM request"),
}


def limits_of(hub: Hub) -> Limits:
    raw = hub.config.adapters.get(NAME) or {}
    return Limits(max_envelope_bytes=raw.get("max_envelope_bytes", SETTINGS["max_envelope_bytes"][0]),
                  max_parts=raw.get("max_parts", SETTINGS["max_parts"][0]),
                  max_payload_bytes=int(hub.config.limits.max_packet_size))


def q(name: str) -> str:
    return f"{{{TNS}}}{name}"


# -- WSDL ------------------------------------------------------------------------------------------

def wsdl_text(address: str) -> str:
    text = (resources.files("lgsp.schemas") / "soap" / "edxml.wsdl").read_text(encoding="utf-8")
    return text.replace(WSDL_ADDRESS, address)


async def get_wsdl(request: web.Request) -> web.Response:
    """The WSDL (unsigned, like /v1/openapi.yaml) at /soap/edxml?wsdl, /soap/edxml and /soap/edxml.wsdl."""
    return web.Response(text=wsdl_text(base_url(request) + PATH), content_type="text/xml", charset="utf-8")


# -- requests --------------------------------------------------------------------------------------

async def read_message(request: web.Request, hub: Hub) -> Message:
    """Stream the body through the reader (off the event loop), then check its declared hash."""
    limits = limits_of(hub)
    max_body = limits.max_payload_bytes * 4 // 3 + limits.max_envelope_bytes + (1 << 20)
    if request.content_length is not None and request.content_length > max_body:
        raise Problem("content.too_large", Text("request body is larger than {max_body} bytes", max_body=max_body),
                      limit=max_body)
    reader = MessageReader(request.headers.get("Content-Type", ""), hub.content.scratch_dir, limits)
    try:
        pending = bytearray()
        async for chunk in request.content.iter_any():
            if reader.size + len(pending) + len(chunk) > max_body:
                raise Problem("content.too_large", Text("request body is larger than {max_body} bytes",
                                                        max_body=max_body), limit=max_body)
            pending += chunk
            if len(pending) >= 1 << 20:
                data = bytes(pending)
                pending.clear()
                await asyncio.to_thread(reader.feed, data)
        if pending:
            await asyncio.to_thread(reader.feed, bytes(pending))
        message = await asyncio.to_thread(reader.finish)
    except BaseException:
        await asyncio.to_thread(reader.discard)
        raise
    if not hmac.compare_digest(message.content_sha256, request.headers.get(H_CONTENT, "")):
        await asyncio.to_thread(message.discard)
        raise Problem("content.hash_mismatch", Text("the body's SHA-256 differs from X-LGSP-Content-SHA256"))
    return message


def _children(op: etree._Element, allowed: tuple[str, ...]) -> dict[str, list[etree._Element]]:
    out: dict[str, list[etree._Element]] = {name: [] for name in allowed}
    for child in op:
        qn = etree.QName(child)
        if qn.namespace != TNS or qn.localname not in out:
            raise Problem("request.invalid",
                          Text("{localname}: unexpected element {localname2} (expected {allowed} in {TNS})",
                               localname=etree.QName(op).localname, localname2=qn.localname,
                               allowed=", ".join(allowed), TNS=TNS), field=qn.localname)
        out[qn.localname].append(child)
    return out


def _one(found: dict[str, list[etree._Element]], name: str, *, required: bool = False,
         max_length: int = MAX_FIELD, multiline: bool = False) -> str | None:
    """The text of a field given at most once, checked like any text at the edge (core/text.py)."""
    items = found[name]
    if len(items) > 1:
        raise Problem("request.invalid", Text("{name}: given more than once", name=name), field=name)
    if not items:
        if required:
            raise Problem("request.invalid", Text("{name}: required", name=name), field=name)
        return None
    text = (items[0].text or "").strip()
    if text:
        check_text(text, name, max_length=max_length, multiline=multiline)
    return text


# -- responses -------------------------------------------------------------------------------------

def _sub(parent: etree._Element, name: str, value: Any) -> etree._Element:
    el = etree.SubElement(parent, q(name))
    if value is not None:
        el.text = str(value)
    return el


def _envelope(version: str, child: etree._Element, notices: Sequence[Notice] = ()) -> bytes:
    """The answer envelope; maintenance notices in force or coming ride in its header (`tns:HubNotice`)."""
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns, "tns": TNS})
    if notices:
        header = etree.SubElement(env, f"{{{ns}}}Header")
        for notice in notices:
            shown = notice.public()
            el = etree.SubElement(header, q("HubNotice"), id=notice.id, start=shown["from"], end=shown["to"])
            el.text = notice.message
    etree.SubElement(env, f"{{{ns}}}Body").append(child)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def _media(version: str) -> str:
    return "text/xml" if version == "1.1" else "application/soap+xml"


def soap_response(version: str, child: etree._Element, notices: Sequence[Notice] = ()) -> web.Response:
    return web.Response(body=_envelope(version, child, notices), content_type=_media(version), charset="utf-8")


def fault_response(problem: Problem, version: str, lang: str) -> web.Response:
    """A fault carrying the problem: faultcode Client/Sender for 4xx, Server/Receiver for 5xx."""
    client = problem.status < 500
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns, "tns": TNS})
    fault = etree.SubElement(etree.SubElement(env, f"{{{ns}}}Body"), f"{{{ns}}}Fault")
    # printable(): a detail may repeat client text, and XML cannot carry every character.
    detail = i18n.render(problem.detail, lang)
    summary = printable(f"{problem.code}: {problem.title(lang)}" + (f" — {detail}" if detail else ""))
    detail_problem = etree.Element(q("problem"))
    for name, value in (("code", problem.code), ("status", problem.status), ("title", problem.title(lang)),
                        ("detail", detail), ("path", problem.extra.get("path")),
                        ("rule", problem.extra.get("rule"))):
        if value is not None:
            _sub(detail_problem, name, printable(str(value)))
    xml_lang = "{http://www.w3.org/XML/1998/namespace}lang"
    if version == "1.1":
        etree.SubElement(fault, "faultcode").text = f"soap:{'Client' if client else 'Server'}"
        fs = etree.SubElement(fault, "faultstring")
        fs.text = summary
        fs.set(xml_lang, lang)
        etree.SubElement(fault, "detail").append(detail_problem)
        status = 500  # SOAP 1.1 over HTTP: every fault is a 500
    else:
        code = etree.SubElement(fault, f"{{{ns}}}Code")
        etree.SubElement(code, f"{{{ns}}}Value").text = f"soap:{'Sender' if client else 'Receiver'}"
        reason = etree.SubElement(etree.SubElement(fault, f"{{{ns}}}Reason"), f"{{{ns}}}Text")
        reason.text = summary
        reason.set(xml_lang, lang)
        etree.SubElement(fault, f"{{{ns}}}Detail").append(detail_problem)
        status = 400 if client else 500
    return web.Response(status=status, body=etree.tostring(env, xml_declaration=True, encoding="UTF-8"),
                        content_type=_media(version), charset="utf-8")


def must_understand_response(blocks: list[etree.QName], version: str, lang: str) -> web.Response:
    """The MustUnderstand fault, in the structure each SOAP version prescribes.

    SOAP 1.1 (§4.4): faultcode MustUnderstand and no `detail` (it is for errors of the Body), so the
    problem travels in a header entry. SOAP 1.2 (§5.4.8): Code MustUnderstand, one `NotUnderstood`
    header block per block not understood, the problem in `Detail`; HTTP 500 for both.
    """
    names = ", ".join(q.text for q in blocks)
    problem = Problem("soap.must_understand",
                      Text("header blocks marked mustUnderstand that this hub does not process: {names}", names=names))
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns, "tns": TNS})
    header = etree.SubElement(env, f"{{{ns}}}Header")
    fault = etree.SubElement(etree.SubElement(env, f"{{{ns}}}Body"), f"{{{ns}}}Fault")
    detail_problem = etree.Element(q("problem"))
    for name, value in (("code", problem.code), ("status", problem.status), ("title", problem.title(lang)),
                        ("detail", i18n.render(problem.detail, lang))):
        _sub(detail_problem, name, value)
    summary = f"{problem.code}: {problem.title(lang)} — {i18n.render(problem.detail, lang)}"
    xml_lang = "{http://www.w3.org/XML/1998/namespace}lang"
    if version == "1.1":
        header.append(detail_problem)
        etree.SubElement(fault, "faultcode").text = "soap:MustUnderstand"
        fs = etree.SubElement(fault, "faultstring")
        fs.text = summary
        fs.set(xml_lang, lang)
    else:
        for i, qname in enumerate(blocks):
            prefix = f"nu{i}"
            block = etree.SubElement(header, f"{{{ns}}}NotUnderstood", nsmap={prefix: qname.namespace}
                                     if qname.namespace else None)
            block.set("qname", f"{prefix}:{qname.localname}" if qname.namespace else qname.localname)
        code = etree.SubElement(fault, f"{{{ns}}}Code")
        etree.SubElement(code, f"{{{ns}}}Value").text = "soap:MustUnderstand"
        reason = etree.SubElement(etree.SubElement(fault, f"{{{ns}}}Reason"), f"{{{ns}}}Text")
        reason.text = summary
        reason.set(xml_lang, lang)
        etree.SubElement(fault, f"{{{ns}}}Detail").append(detail_problem)
    return web.Response(status=500, body=etree.tostring(env, xml_declaration=True, encoding="UTF-8"),
                        content_type=_media(version), charset="utf-8")


async def _file_chunks(path: Path, size: int = CHUNK,
                       opener: Callable[[], BinaryIO] | None = None) -> AsyncIterator[bytes]:
    """A file's bytes; a stored blob is read through `opener` (it is encrypted at rest)."""
    fh = await asyncio.to_thread(opener or (lambda: open(path, "rb")))  # noqa: SIM115 - closed below
    try:
        while block := await asyncio.to_thread(fh.read, size):
            yield block
    finally:
        await asyncio.to_thread(fh.close)


async def stream_with_payload(request: web.Request, version: str, mtom: bool, child: etree._Element,
                              slot: etree._Element, path: Path, size: int,
                              opener: Callable[[], BinaryIO] | None = None) -> web.StreamResponse:
    """Send `child` with the file's bytes in `slot`: inline Base64 or an MTOM part, streamed."""
    if not mtom:
        token = f"@@lgsp-{uuid.uuid4().hex}@@"
        slot.text = token
        head, tail = _envelope(version, child, hub_of(request).notices.active()).split(token.encode("ascii"))
        length = len(head) + 4 * ((size + 2) // 3) + len(tail)
        resp = web.StreamResponse(headers={"Content-Type": f"{_media(version)}; charset=utf-8"})
        resp.content_length = length
        await resp.prepare(request)
        await resp.write(head)
        async for block in _file_chunks(path, opener=opener):
            await resp.write(binascii.b2a_base64(block, newline=False))
        await resp.write(tail)
        await resp.write_eof()
        return resp
    boundary = f"uuid:{uuid.uuid4()}"
    root_id, part_id = f"root.{uuid.uuid4().hex}@lgsp", f"edxml.{uuid.uuid4().hex}@lgsp"
    etree.SubElement(slot, f"{{{XOP}}}Include", nsmap={"xop": XOP}).set("href", f"cid:{part_id}")
    head = (f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"{_media(version)}\"\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: <{root_id}>\r\n\r\n").encode("ascii")
    head += _envelope(version, child, hub_of(request).notices.active())
    head += (f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
             f"Content-Transfer-Encoding: binary\r\nContent-ID: <{part_id}>\r\n\r\n").encode("ascii")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    resp = web.StreamResponse(headers={"Content-Type": (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{root_id}>"; '
        f'start-info="{_media(version)}"')})
    resp.content_length = len(head) + size + len(tail)
    await resp.prepare(request)
    await resp.write(head)
    async for block in _file_chunks(path, opener=opener):
        await resp.write(block)
    await resp.write(tail)
    await resp.write_eof()
    return resp


# -- operations ------------------------------------------------------------------------------------

@dataclass
class Call:
    request: web.Request
    hub: Hub
    principal: Principal
    message: Message

    @property
    def op(self) -> etree._Element:
        return self.message.operation

    def reply(self, child: etree._Element) -> web.Response:
        return soap_response(self.message.version, child, self.hub.notices.active())


async def _chunks_of(payload: Payload) -> AsyncIterator[bytes]:
    assert payload.path is not None
    async for block in _file_chunks(payload.path, 1 << 20, opener=payload.open):
        yield block


async def send_edoc(call: Call) -> web.StreamResponse:
    found = _children(call.op, ("edxml", "to", "priority"))
    if len(found["edxml"]) != 1:
        raise Problem("request.invalid", Text("edxml: exactly one packet is required"), field="edxml")
    payload = call.message.payload(found["edxml"][0])
    if payload.path is None or payload.size == 0:
        raise Problem("request.invalid", Text("edxml: the packet is empty"), field="edxml")
    to = tuple(dict.fromkeys(check_text(t, "to", max_length=MAX_DESTINATION)
                             for t in ((e.text or "").strip() for e in found["to"]) if t))
    priority_text = _one(found, "priority")
    priority = None if priority_text in (None, "") else bounded_int(priority_text, "priority", 0, 0, max(PRIORITIES))
    implicit = ["subject"] + ([] if to else ["to"]) + ([] if priority is not None else ["priority"])
    new = NewPacket(to=to, subject=PENDING_SUBJECT, priority=priority or 0, data_type="edxml", protocol="soap",
                    size=payload.size, sha256=payload.sha256, deadline=None, policy=None,
                    meta={"implicit": implicit, "via": "soap"})
    info = await call.hub.exchange.submit(call.principal.unit_id, new, _chunks_of(payload),
                                          application=call.principal.application_id or None)
    edxml_meta = (info.meta or {}).get("edxml", {})
    out = etree.Element(q("sendEdocResponse"))
    _sub(out, "packetId", info.id)
    _sub(out, "messageType", edxml_meta.get("kind", "edoc"))
    _sub(out, "documentId", edxml_meta.get("document_id", ""))
    for unit in info.to:
        _sub(out, "to", unit)
    _sub(out, "size", info.size)
    _sub(out, "sha256", info.sha256)
    return call.reply(out)


async def get_received_list(call: Call) -> web.StreamResponse:
    found = _children(call.op, ("messageType", "limit"))
    kind = _one(found, "messageType") or "all"
    if kind not in ("edoc", "status", "all"):
        raise Problem("request.invalid", Text("messageType: must be edoc, status or all"), field="messageType")
    limit = bounded_int(_one(found, "limit"), "limit", 100, 1, 1000)
    out = etree.Element(q("getReceivedEdocListResponse"))
    listed = 0
    after: InboxPosition | None = None
    # The inbox holds every data type; read it page by page until `limit` edXML items of the asked
    # kind are found, so packets behind a long queue of others are not hidden. Each page starts after
    # the last row read (keyset): a packet acknowledged meanwhile would shift an offset past one unread.
    while listed < limit:
        page = await call.hub.exchange.inbox_page(call.principal, limit=_INBOX_PAGE, after=after)
        after = page.next
        rows = await call.hub.documents.get_many([i.id for i in page.items])
        for item in page.items:
            row = rows.get(item.id)
            # Only edXML the caller receives as edXML (a unit set to json fetches over REST).
            if row is None or item.data_type != "edxml" or (kind != "all" and row.kind != kind):
                continue
            entry = _sub(out, "item", None)
            for name, value in (("packetId", item.id), ("from", item.source), ("messageType", row.kind),
                                ("documentId", row.document_id), ("codeNumber", row.code_number),
                                ("codeNotation", row.code_notation), ("subject", item.subject),
                                ("statusCode", row.status_code), ("priority", item.priority),
                                ("size", item.size), ("sha256", item.sha256),
                                ("createdTime", iso(item.created_at))):
                if value is not None:
                    _sub(entry, name, value)
            listed += 1
            if listed >= limit:
                break
        if after is None:
            break
    return call.reply(out)


async def get_edoc(call: Call) -> web.StreamResponse:
    found = _children(call.op, ("packetId",))
    packet_id = _one(found, "packetId", required=True) or ""
    exchange = call.hub.exchange
    ref = await exchange.offer(call.principal, packet_id)  # visibility, a pending delivery, its variant
    if ref.data_type != "edxml":
        raise Problem("conflict", Text("this unit takes this packet as {data_type}, not edXML; fetch it over REST",
                                       data_type=ref.data_type))
    readable = await exchange.open_content(call.principal, packet_id)  # the signed call suffices
    info, path = readable.info, readable.path
    if not await call.hub.content.holds(path):
        raise Problem("content.gone", Text("the content of this packet is no longer held by the hub"))
    out = etree.Element(q("getEdocResponse"))
    _sub(out, "packetId", info.id)
    _sub(out, "size", info.size)
    _sub(out, "sha256", info.sha256)
    slot = _sub(out, "edxml", None)
    return await stream_with_payload(call.request, call.message.version, call.message.mtom, out, slot, path,
                                     info.size, opener=await call.hub.content.opener(path, data_key=readable.data_key))


async def update_status(call: Call) -> web.StreamResponse:
    found = _children(call.op, ("packetId", "status", "sha256", "reason"))
    packet_id = _one(found, "packetId", required=True) or ""
    status = _one(found, "status", required=True)
    exchange = call.hub.exchange
    if status == "done":
        sha = _one(found, "sha256")
        if not sha:
            view = await exchange.view(call.principal, packet_id)
            own = view.delivery_to(call.principal.unit_id)
            state = own.state if own else None
            if state not in ("fetched", "delivered"):
                raise Problem("conflict",
                              Text("fetch the packet with getEdoc before reporting done, or give its sha256"),
                              state=state)
            sha = view.sha256  # the variant this unit received
        state = await exchange.ack(call.principal, packet_id, sha)
    elif status == "fail":
        reason = _one(found, "reason", max_length=MAX_REASON, multiline=True) \
            or "refused by the document-management system (updateStatus fail)"
        state = await exchange.fail(call.principal, packet_id, reason)
    else:
        raise Problem("request.invalid", Text("status: must be done or fail"), field="status")
    out = etree.Element(q("updateStatusResponse"))
    _sub(out, "packetId", packet_id)
    _sub(out, "state", state)
    return call.reply(out)


async def get_sent_list(call: Call) -> web.StreamResponse:
    found = _children(call.op, ("packetId", "documentId"))
    packet_id, document_id = _one(found, "packetId"), _one(found, "documentId")
    if bool(packet_id) == bool(document_id):
        raise Problem("request.invalid", Text("give either packetId or documentId"), field="packetId")
    if packet_id:
        ids = [packet_id]
    else:
        ids = await call.hub.documents.sent_packets(document_id or "", call.principal.unit_id)
    out = etree.Element(q("getSentEdocListResponse"))
    for pid in ids:
        view = await call.hub.exchange.view(call.principal, pid)
        edxml_meta = (view.metadata or {}).get("edxml")
        if view.to is None or edxml_meta is None:  # not the caller's own edXML packet
            raise Problem("not_found", Text("no such edXML packet sent by this unit"))
        statuses = {s["unit"]: s for s in view.described.get("business_status", [])}
        for d in view.deliveries:
            entry = _sub(out, "item", None)
            st = statuses.get(d.unit)
            for name, value in (("packetId", pid), ("messageType", edxml_meta["kind"]),
                                ("documentId", edxml_meta["document_id"]), ("to", d.unit),
                                ("deliveryState", d.state), ("updatedTime", iso(d.updated_at)),
                                ("reason", d.reason), ("statusCode", st and st["status_code"]),
                                ("statusDescription", st and st["description"]),
                                ("statusTime", st and st["timestamp"]),
                                ("statusPacketId", st and st["status_packet"])):
                if value is not None:
                    _sub(entry, name, value)
    return call.reply(out)


async def get_agencies(call: Call) -> web.StreamResponse:
    found = _children(call.op, ("query", "limit"))
    limit = bounded_int(_one(found, "limit"), "limit", 500, 1, 5000)
    units = await call.hub.directory.search_units(_one(found, "query") or "", limit=limit)
    formats = await call.hub.content.formats_of("edxml", [u.id for u in units], "edxml")
    out = etree.Element(q("getAgenciesListResponse"))
    for unit in units:
        entry = _sub(out, "agency", None)
        _sub(entry, "code", unit.id)
        _sub(entry, "name", unit.name)
        if unit.parent_id:
            _sub(entry, "parentCode", unit.parent_id)
        _sub(entry, "zone", unit.zone)
        _sub(entry, "status", unit.status)
        _sub(entry, "format", formats.get(unit.id, "edxml"))
    return call.reply(out)


OPERATIONS: dict[str, Callable[[Call], Awaitable[web.StreamResponse]]] = {
    "sendEdoc": send_edoc,
    "getReceivedEdocList": get_received_list,
    "getEdoc": get_edoc,
    "updateStatus": update_status,
    "getSentEdocList": get_sent_list,
    "getAgenciesList": get_agencies,
}


async def post_soap(request: web.Request) -> web.StreamResponse:
    """Every operation: authenticate, read the message, dispatch; any error leaves as a fault."""
    hub = hub_of(request)
    version = "1.2" if "application/soap+xml" in request.headers.get("Content-Type", "") else "1.1"
    lang = language(request)
    try:
        principal = await authenticate(request, streams_body=True)  # read_message checks the hash
        message = await read_message(request, hub)
        try:
            version = message.version
            blocks = not_understood(message, UNDERSTOOD_HEADERS)
            if blocks:  # refused before anything of the Body is processed
                return must_understand_response(blocks, version, lang)
            handler = OPERATIONS.get(message.name) if etree.QName(message.operation).namespace == TNS else None
            if handler is None:
                raise Problem("request.invalid", Text("unknown operation {tag}; see {PATH}?wsdl",
                                                      tag=message.operation.tag, PATH=PATH),
                              field="operation")
            return await handler(Call(request, hub, principal, message))
        finally:
            await asyncio.to_thread(message.discard)
    except Problem as problem:
        return fault_response(problem, version, lang)
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unhandled error in SOAP call")
        return fault_response(Problem("internal", Text("an internal error occurred; it has been logged")), version,
                              lang)


routes = [
    web.get(PATH, get_wsdl),
    web.get(PATH + ".wsdl", get_wsdl),
    web.post(PATH, post_soap),
]
