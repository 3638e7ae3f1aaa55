"""Hand-made SOAP requests (as JAX-WS and WCF send them), signed with LGSP1, and fault parsing."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterable
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import zeep
from lxml import etree

from lgsp.client.zeep_signing import edxml_client
from lgsp.core.signing import Signer

from ..conftest import Actor

TNS = "urn:lgsp:soap:edxml:1"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
PATH = "/soap/edxml"


def zeep_client(actor: Actor) -> zeep.Client:
    creds = actor.client.credentials
    return edxml_client(actor.hub.url, creds)


def envelope(op: str, soap12: bool = False) -> bytes:
    ns = SOAP12 if soap12 else SOAP11
    return (f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{ns}"><S:Body>{op}</S:Body>'
            f"</S:Envelope>").encode()


def send_edoc_op(edxml: bytes, to: list[str] | None = None) -> str:
    tos = "".join(f"<ns2:to>{escape(t)}</ns2:to>" for t in to or [])
    return (f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>{base64.b64encode(edxml).decode()}</ns2:edxml>{tos}'
            "</ns2:sendEdoc>")


def mtom(op_xml: str, parts: dict[str, bytes], *, soap12: bool = False, root_last: bool = False
         ) -> tuple[bytes, str]:
    """A JAX-WS-style MTOM request: root part application/xop+xml, binary parts with Content-IDs."""
    boundary = f"uuid:{uuid.uuid4()}"
    root_id = f"rootpart*{uuid.uuid4()}@example.jaxws.sun.com"
    media = "application/soap+xml" if soap12 else "text/xml"
    root = (f"--{boundary}\r\nContent-Id: <{root_id}>\r\nContent-Type: application/xop+xml;charset=utf-8;"
            f'type="{media}"\r\nContent-Transfer-Encoding: binary\r\n\r\n').encode() + envelope(op_xml, soap12)
    others = b"".join(
        f"\r\n--{boundary}\r\nContent-Id: <{cid}>\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Transfer-Encoding: binary\r\n\r\n".encode() + data for cid, data in parts.items())
    body = others[2:] + b"\r\n" + root if root_last else root + others
    body += f"\r\n--{boundary}--\r\n".encode()
    ctype = (f'multipart/related;start="<{root_id}>";type="application/xop+xml";boundary="{boundary}";'
             f'start-info="{media}"')
    return body, ctype


def xop(cid: str) -> str:
    return f'<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:{cid}"/>'


async def post(actor: Actor | None, url: str, body: bytes | AsyncIterable[bytes], content_type: str, *,
               sha256: str | None = None, signer: Signer | None = None, headers: dict[str, str] | None = None,
               length: int | None = None) -> tuple[int, dict[str, str], bytes]:
    """A signed POST of exactly these bytes (or of a streamed body whose hash is given)."""
    all_headers = {"Content-Type": content_type, "SOAPAction": '""'}
    signer = signer or (actor.signer if actor else None)
    if signer is not None:
        digest = sha256 or hashlib.sha256(body).hexdigest()  # type: ignore[arg-type]
        all_headers.update(signer.headers("POST", PATH, "", digest))
    if length is not None:
        all_headers["Content-Length"] = str(length)
    all_headers.update(headers or {})
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(url + PATH, data=body,
                                                                          headers=all_headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def fault(body: bytes) -> dict[str, Any]:
    """faultcode/Code, the problem's members and the faultstring, from a SOAP 1.1 or 1.2 fault."""
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = etree.QName(root).namespace
    f = root.find(f"{{{ns}}}Body/{{{ns}}}Fault")
    assert f is not None, body[:500]
    out: dict[str, Any] = {}
    if ns == SOAP11:
        out["faultcode"] = f.findtext("faultcode")
        out["faultstring"] = f.findtext("faultstring")
        problem = f.find(f"detail/{{{TNS}}}problem")
    else:
        out["faultcode"] = f.findtext(f"{{{ns}}}Code/{{{ns}}}Value")
        out["faultstring"] = f.findtext(f"{{{ns}}}Reason/{{{ns}}}Text")
        problem = f.find(f"{{{ns}}}Detail/{{{TNS}}}problem")
    assert problem is not None
    for child in problem:
        out[etree.QName(child).localname] = child.text
    return out


def answer(body: bytes, name: str) -> etree._Element:
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    ns = etree.QName(root).namespace
    el = root.find(f"{{{ns}}}Body/{{{TNS}}}{name}")
    assert el is not None, body[:500]
    return el


class RssProbe:
    """Samples this process's RSS in a thread while a block runs; `growth` is the peak above the start."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.baseline = self.peak = 0

    def __enter__(self) -> RssProbe:
        import threading

        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.process.memory_info().rss)
                self._stop.wait(0.005)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
