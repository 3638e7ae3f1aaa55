"""A test double of a VBQL system's SOAP receive service: real HTTP, its own WSDL, real SOAP.

Stands in for a unit's document-management software (which we cannot run): it serves a WSDL with
one document/literal operation `nhanVanBan(maDonViGui, maGoiTin, noiDung: base64Binary)`, checks
the LGSP1 signature of each POST over the exact body when it knows the hub's key, and answers as
`mode` says: a result, a SOAP fault (Client or Server), HTTP 503 with Retry-After, or garbage.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from lxml import etree

from lgsp.core.auth import parse_signed_request
from lgsp.core.errors import Problem
from lgsp.plugins.signatures import BUILTIN_ALGORITHMS

NS = "http://vbql.example.vn/lienthong"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
HMAC = {a.name: a for a in BUILTIN_ALGORITHMS}["HMAC-SHA256"]

WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
             xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{ns}" targetNamespace="{ns}" name="LienThong">
  <types>
    <xs:schema targetNamespace="{ns}" elementFormDefault="unqualified">
      <xs:element name="nhanVanBan">
        <xs:complexType><xs:sequence>
          <xs:element name="maDonViGui" type="xs:string"/>
          <xs:element name="maGoiTin" type="xs:string"/>
          <xs:element name="noiDung" type="xs:base64Binary"/>
        </xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="nhanVanBanResponse">
        <xs:complexType><xs:sequence>
          <xs:element name="ketQua" type="xs:string"/>
          <xs:element name="maVanBan" type="xs:string"/>
        </xs:sequence></xs:complexType>
      </xs:element>
    </xs:schema>
  </types>
  <message name="nhanVanBanIn"><part name="parameters" element="tns:nhanVanBan"/></message>
  <message name="nhanVanBanOut"><part name="parameters" element="tns:nhanVanBanResponse"/></message>
  <portType name="LienThongPort">
    <operation name="nhanVanBan"><input message="tns:nhanVanBanIn"/><output message="tns:nhanVanBanOut"/></operation>
  </portType>
  <binding name="LienThongBinding" type="tns:LienThongPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="nhanVanBan">
      <soap:operation soapAction="nhanVanBan"/>
      <input><soap:body use="literal"/></input>
      <output><soap:body use="literal"/></output>
    </operation>
  </binding>
  <service name="LienThongService">
    <port name="LienThongPort" binding="tns:LienThongBinding"><soap:address location="{address}"/></port>
  </service>
</definitions>
"""


@dataclass
class Received:
    sender: str
    packet: str
    content: bytes
    headers: dict[str, str]


@dataclass
class VbqlReceiver:
    access_key: str | None = None
    secret: str | None = None
    mode: str = "ok"
    basic: tuple[str, str] | None = None  # (user, password) the WSDL and the service both demand
    wsdl_reads: int = 0
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    url: str = ""
    ssl: ssl.SSLContext | None = None  # serve HTTPS with this context
    _runner: web.AppRunner | None = None

    async def start(self) -> VbqlReceiver:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/ws", self.wsdl)
        app.router.add_post("/ws", self.receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.ssl else 'http'}://127.0.0.1:{port}/ws"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        if self.basic is None:
            return True
        expected = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
        return request.headers.get("Authorization") == expected

    async def wsdl(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="qlvb"'})
        self.wsdl_reads += 1
        return web.Response(text=WSDL.format(ns=NS, address=self.url), content_type="text/xml")

    def _fault(self, code: str, text: str) -> web.Response:
        body = (f'<?xml version="1.0"?><S:Envelope xmlns:S="{SOAP11}"><S:Body><S:Fault>'
                f"<faultcode>S:{code}</faultcode><faultstring>{text}</faultstring></S:Fault></S:Body></S:Envelope>")
        return web.Response(status=500, text=body, content_type="text/xml")

    async def _check_signature(self, request: web.Request, body: bytes) -> str | None:
        """Why the request is not signed by the hub's key over this very body (None when it is)."""
        try:
            signed = parse_signed_request("POST", request.raw_path.partition("?")[0],
                                          request.raw_path.partition("?")[2], request.headers)
        except Problem as problem:
            return problem.code
        if signed.access_key != self.access_key:
            return "unknown key"
        if signed.content_sha256 != hashlib.sha256(body).hexdigest():
            return "body hash differs"
        if not HMAC.verify(self.secret or "", signed.message(), signed.signature):
            return "bad signature"
        return None

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._authorised(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="qlvb"'})
        if self.mode == "busy":
            return web.Response(status=503, headers={"Retry-After": "7"})
        if self.mode == "garbage":
            return web.Response(text="<html><body>Bảo trì hệ thống</body></html>", content_type="text/html")
        if self.access_key is not None:
            why = await self._check_signature(request, body)
            if why is not None:
                self.refused.append(why)
                return self._fault("Client", f"xac thuc that bai: {why}")
        if self.mode == "server-fault":
            return self._fault("Server", "Loi he thong QLVB")
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
        op = root.find(f"{{{SOAP11}}}Body/{{{NS}}}nhanVanBan")
        if op is None or self.mode == "client-fault":
            return self._fault("Client", "Goi tin khong hop le")
        item = Received(sender=op.findtext("maDonViGui") or "", packet=op.findtext("maGoiTin") or "",
                        content=base64.b64decode(op.findtext("noiDung") or ""), headers=dict(request.headers))
        self.received.append(item)
        reply = (f'<?xml version="1.0"?><S:Envelope xmlns:S="{SOAP11}"><S:Body><ns:nhanVanBanResponse xmlns:ns="{NS}">'
                 f"<ketQua>OK</ketQua><maVanBan>VB-{len(self.received)}</maVanBan></ns:nhanVanBanResponse>"
                 "</S:Body></S:Envelope>")
        return web.Response(text=reply, content_type="text/xml")


def target(receiver: VbqlReceiver, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": "soap", "wsdl": receiver.url + "?wsdl", "operation": "nhanVanBan",
                           "parameters": {"maDonViGui": "{from}", "maGoiTin": "{packet_id}"},
                           "result_field": "maVanBan"}
    out.update(extra)
    return out
