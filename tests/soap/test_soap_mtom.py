"""MTOM/XOP as JAX-WS and WCF send it, and inline Base64 in its usual shapes: both accepted, both served."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from requests_toolbelt.multipart.decoder import MultipartDecoder

from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from ..edxml_hub.support import HUB_ID, A, B, add_units, edoc
from .soap_support import TNS, answer, envelope, mtom, post, send_edoc_op, xop


async def pair(hub: Hub, make_actor: MakeActor) -> tuple[Any, Any]:
    await add_units(hub)
    return await make_actor(A, existing=True), await make_actor(B, existing=True)


def send_op(cid: str, to: str = "") -> str:
    return f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>{xop(cid)}</ns2:edxml>{to}</ns2:sendEdoc>'


async def test_jaxws_mtom_send(hub: Hub, make_actor: MakeActor) -> None:
    a, b = await pair(hub, make_actor)
    data = edoc(A, [B], files={"cid:1": bytes(range(256)) * 2000})
    body, ctype = mtom(send_op("8f2b1c4e-aa01@example.jaxws.sun.com"), {"8f2b1c4e-aa01@example.jaxws.sun.com": data})
    status, headers, raw = await post(a, hub.url, body, ctype)
    assert status == 200 and headers["Content-Type"].startswith("text/xml"), raw
    sent = answer(raw, "sendEdocResponse")
    assert sent.findtext(f"{{{TNS}}}documentId") == parse_packet(data).document_id
    packet_id = sent.findtext(f"{{{TNS}}}packetId")
    got = parse_packet(await b.client.fetch_bytes(packet_id))
    assert got.attachments[0].sha256 == parse_packet(data).attachments[0].sha256


async def test_mtom_root_last_encoded_cid_and_base64_part(hub: Hub, make_actor: MakeActor) -> None:
    """start= names the root, which comes last; the href is percent-encoded; the part is Base64."""
    a, b = await pair(hub, make_actor)
    data = edoc(A, [B])
    cid = "tệp<1>@lgsp.test"
    body, ctype = mtom(send_op(quote(cid, safe="@")), {cid: base64.encodebytes(data)}, root_last=True)
    body = body.replace(b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary",
                        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64")
    status, _, raw = await post(a, hub.url, body, ctype)
    assert status == 200, raw
    assert len(await b.client.inbox()) == 1


async def test_wcf_shaped_soap12_with_default_namespace_and_wrapped_base64(hub: Hub, make_actor: MakeActor) -> None:
    a, b = await pair(hub, make_actor)
    data = edoc(A, [B])
    wrapped = base64.encodebytes(data).decode().replace("\n", "&#xD;\n")  # 76-column lines, CR as a reference
    op = f'<sendEdoc xmlns="{TNS}"><edxml>{wrapped}</edxml><to>{B}</to><priority>2</priority></sendEdoc>'
    status, headers, raw = await post(a, hub.url, envelope(op, soap12=True),
                                      f'application/soap+xml; charset=utf-8; action="{TNS}#sendEdoc"')
    assert status == 200 and headers["Content-Type"].startswith("application/soap+xml"), raw
    (item,) = await b.client.inbox()
    assert item["priority"] == 2


async def test_getedoc_answers_mtom_to_an_mtom_caller(hub: Hub, make_actor: MakeActor) -> None:
    a, b = await pair(hub, make_actor)
    data = edoc(A, [B], files={"cid:1": bytes(range(256)) * 1000})
    status, _, raw = await post(a, hub.url, envelope(send_edoc_op(data)), "text/xml")
    packet_id = answer(raw, "sendEdocResponse").findtext(f"{{{TNS}}}packetId")
    body, ctype = mtom(f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:packetId>{packet_id}</ns2:packetId></ns2:getEdoc>', {})
    status, headers, raw = await post(b, hub.url, body, ctype)
    assert status == 200 and headers["Content-Type"].startswith("multipart/related")
    assert 'type="application/xop+xml"' in headers["Content-Type"] and int(headers["Content-Length"]) == len(raw)
    parts = MultipartDecoder(raw, headers["Content-Type"]).parts
    assert len(parts) == 2 and b"xop:Include" in parts[0].content
    got = parts[1].content
    assert [t.organ_id for t in parse_packet(got).trace_headers] == [A, HUB_ID]
    declared = answer(parts[0].content, "getEdocResponse").findtext(f"{{{TNS}}}sha256")
    assert hashlib.sha256(got).hexdigest() == declared

    # zeep never sends MTOM, so it never gets an MTOM answer; it could not use one as is anyway: its
    # reader strips CR/LF from the ends of "binary" parts, and an edXML file ends with a newline.
    assert got.endswith(b"\n")


async def test_getedoc_inline_base64_is_streamed_with_its_length(hub: Hub, make_actor: MakeActor) -> None:
    a, b = await pair(hub, make_actor)
    data = edoc(A, [B], files={"cid:1": bytes(3_000_001)})
    status, _, raw = await post(a, hub.url, envelope(send_edoc_op(data)), "text/xml")
    packet_id = answer(raw, "sendEdocResponse").findtext(f"{{{TNS}}}packetId")
    op = f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:packetId>{packet_id}</ns2:packetId></ns2:getEdoc>'
    status, headers, raw = await post(b, hub.url, envelope(op), "text/xml; charset=utf-8")
    assert status == 200 and int(headers["Content-Length"]) == len(raw)
    el = answer(raw, "getEdocResponse")
    got = base64.b64decode(el.findtext(f"{{{TNS}}}edxml"))
    assert hashlib.sha256(got).hexdigest() == el.findtext(f"{{{TNS}}}sha256")
    assert int(el.findtext(f"{{{TNS}}}size")) == len(got)
