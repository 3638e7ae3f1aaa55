"""Every refusal over SOAP: faults carry the REST codes; hostile XML is refused; nothing is kept."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zeep
from yarl import URL

from lgsp.client import Credentials
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.signing import Signer
from lgsp.plugins.signatures import BUILTIN_ALGORITHMS

from ..conftest import Actor, MakeActor, base_env
from ..edxml_hub.support import HUB_ID, PLUGINS, A, B, add_units, blob_files, edoc
from ..edxml_hub.test_edxml_rejections import LAUGHS, XXE, schema_violation
from .soap_support import SOAP11, SOAP12, TNS, envelope, fault, mtom, post, send_edoc_op, xop, zeep_client

HMAC = {a.name: a for a in BUILTIN_ALGORITHMS}["HMAC-SHA256"]
LIST = f'<ns2:getReceivedEdocList xmlns:ns2="{TNS}"/>'


async def two(hub: Hub, make_actor: MakeActor) -> tuple[Actor, Actor]:
    await add_units(hub)
    return await make_actor(A, existing=True), await make_actor(B, existing=True)


def leftovers(hub: Hub) -> list[Path]:
    return [p for p in hub.blobs.tmp.iterdir()] + blob_files(hub)


async def test_auth_faults_carry_the_rest_codes(hub: Hub, make_actor: MakeActor) -> None:
    a, _ = await two(hub, make_actor)
    body = envelope(LIST)
    status, headers, raw = await post(None, hub.url, body, "text/xml; charset=utf-8")
    f = fault(raw)
    assert status == 500 and headers["Content-Type"].startswith("text/xml")
    assert (f["faultcode"], f["code"], f["status"]) == ("soap:Client", "auth.missing", "401")
    assert f["faultstring"].startswith("auth.missing: ")

    signed = a.signer.headers("POST", "/soap/edxml", "", hashlib.sha256(body).hexdigest())
    assert (await post(None, hub.url, body, "text/xml", headers=signed))[0] == 200
    status, _, raw = await post(None, hub.url, body, "text/xml", headers=signed)  # the same request again
    assert fault(raw)["code"] == "auth.replay"

    wrong = Signer(a.key.access_key, HMAC, "not-the-secret")
    assert fault((await post(None, hub.url, body, "text/xml", signer=wrong))[2])["code"] == "auth.bad_signature"
    tampered = await post(a, hub.url, body.replace(b"getReceivedEdocList", b"getReceivedEdocList "),
                          "text/xml", sha256=hashlib.sha256(body).hexdigest())
    assert fault(tampered[2])["code"] == "content.hash_mismatch"

    # SOAP 1.2: HTTP 400, Code soap:Sender, English title on request.
    body12 = envelope(LIST, soap12=True)
    status, headers, raw = await post(None, hub.url, body12, "application/soap+xml; charset=utf-8",
                                      headers={"Accept-Language": "en"})
    f = fault(raw)
    assert status == 400 and headers["Content-Type"].startswith("application/soap+xml")
    assert (f["faultcode"], f["code"], f["title"]) == ("soap:Sender", "auth.missing",
                                                      "Authentication header missing or malformed")


async def test_soap_signing_accepts_fractional_dates(hub: Hub, make_actor: MakeActor) -> None:
    """A JAX-WS or WCF client stamping `Instant.now().toString()` / `"o"` (7 digits) is accepted; other
    shapes are the same `auth.missing` fault as on REST, naming the header."""
    a, _ = await two(hub, make_actor)
    body = envelope(LIST)
    digest = hashlib.sha256(body).hexdigest()
    whole = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for date in (f"{whole}.123Z", f"{whole}.1234567Z", f"{whole}.123456789Z"):
        signed = a.signer.headers("POST", "/soap/edxml", "", digest, date=date)
        status, _, raw = await post(None, hub.url, body, "text/xml", headers=signed)
        assert status == 200, raw[:300]
    signed = a.signer.headers("POST", "/soap/edxml", "", digest, date=f"{whole}.Z")
    f = fault((await post(None, hub.url, body, "text/xml", headers=signed))[2])
    assert f["code"] == "auth.missing" and "X-LGSP-Date" in f["detail"]


async def test_zeep_without_signing_gets_a_typed_fault(hub: Hub, make_actor: MakeActor) -> None:
    a, _ = await two(hub, make_actor)
    plain = await asyncio.to_thread(zeep.Client, hub.url + "/soap/edxml?wsdl")
    with pytest.raises(zeep.exceptions.Fault) as err:
        await asyncio.to_thread(plain.service.getReceivedEdocList)
    assert err.value.code == "soap:Client"
    assert err.value.detail.find(f"{{{TNS}}}problem/{{{TNS}}}code").text == "auth.missing"
    revoked = await hub.directory.revoke_key(a.key.access_key)
    assert revoked.revoked_at is not None
    signed = await asyncio.to_thread(zeep_client, a)
    with pytest.raises(zeep.exceptions.Fault) as err:
        await asyncio.to_thread(signed.service.getReceivedEdocList)
    assert err.value.detail.find(f"{{{TNS}}}problem/{{{TNS}}}code").text == "auth.revoked_key"


EDXML_CASES = [
    ("malformed", lambda: edoc(A, [B])[:-40], "edxml.malformed", None),
    ("schema violation", schema_violation, "edxml.invalid",
     "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType"),
    ("sender mismatch", lambda: edoc(B, [A]), "edxml.sender_mismatch",
     "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/From/OrganId"),
    ("external entity", lambda: XXE, "edxml.unsafe", None),
    ("billion laughs", lambda: LAUGHS, "edxml.unsafe", None),
]


@pytest.mark.parametrize(("case", "make", "code", "path"), EDXML_CASES, ids=[c[0] for c in EDXML_CASES])
@pytest.mark.parametrize("transport", ["base64", "mtom"])
async def test_bad_edxml_is_refused(hub: Hub, make_actor: MakeActor, case: str, make: Any, code: str,
                                    path: str | None, transport: str) -> None:
    a, b = await two(hub, make_actor)
    data = make()
    if transport == "base64":
        body, ctype = envelope(send_edoc_op(data)), "text/xml; charset=utf-8"
    else:
        body, ctype = mtom(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>{xop("p1@x")}</ns2:edxml></ns2:sendEdoc>',
                           {"p1@x": data})
    status, _, raw = await post(a, hub.url, body, ctype)
    f = fault(raw)
    assert status == 500 and f["code"] == code and f["faultcode"] == "soap:Client", f
    if path:
        assert f["path"] == path and path in f["detail"] and f["rule"]
    assert await b.client.inbox() == [] and leftovers(hub) == []
    # The hub stays healthy.
    status, _, _ = await post(a, hub.url, envelope(send_edoc_op(edoc(A, [B]))), "text/xml")
    assert status == 200 and len(await b.client.inbox()) == 1


SOAP_CASES = [
    ("doctype in the envelope", b'<?xml version="1.0"?><!DOCTYPE S [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     + envelope(f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:packetId>&x;</ns2:packetId></ns2:getEdoc>')[38:],
     "text/xml", "soap.unsafe"),
    ("laughs in the envelope", LAUGHS.replace(b"<edXML", b"<S:Envelope xmlns:S=\"" + SOAP11.encode() + b"\"><x")
     .replace(b"</edXML>", b"</x></S:Envelope>"), "text/xml", "soap.unsafe"),
    ("not well-formed", envelope(LIST)[:-12], "text/xml", "request.malformed"),
    ("undefined entity", envelope(f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:packetId>&x;</ns2:packetId></ns2:getEdoc>'),
     "text/xml", "soap.unsafe"),
    ("bad base64", envelope(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>AAAA$$$$</ns2:edxml></ns2:sendEdoc>'),
     "text/xml", "request.malformed"),
    ("base64 after padding", envelope(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>AA==AAAA</ns2:edxml>'
                                      "</ns2:sendEdoc>"), "text/xml", "request.malformed"),
    ("unknown operation", envelope(f'<ns2:deleteAgency xmlns:ns2="{TNS}"/>'), "text/xml", "request.invalid"),
    ("unknown element", envelope(f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:docId>x</ns2:docId></ns2:getEdoc>'),
     "text/xml", "request.invalid"),
    ("two operations", envelope(LIST + LIST), "text/xml", "request.malformed"),
    ("not an envelope", b'<Envelope xmlns="urn:other"><Body/></Envelope>', "text/xml", "request.malformed"),
    ("not SOAP at all", b'{"docId": 1}', "application/json", "request.malformed"),
    ("no edxml", envelope(f'<ns2:sendEdoc xmlns:ns2="{TNS}"/>'), "text/xml", "request.invalid"),
    ("bad priority", envelope(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>AAAA</ns2:edxml>'
                              "<ns2:priority>9</ns2:priority></ns2:sendEdoc>"), "text/xml", "request.invalid"),
    ("deep nesting", envelope("<a>" * 40 + "</a>" * 40), "text/xml", "request.malformed"),
    ("xop part missing", mtom(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>{xop("nope@x")}</ns2:edxml>'
                              "</ns2:sendEdoc>", {"other@x": b"abc"})[0], "MTOM", "request.malformed"),
    ("mtom cut short", mtom(LIST, {})[0][:-20], "MTOM", "request.malformed"),
    # String fields are checked like any text at the edge (core/text.py): bounded, single-line ids.
    ("long packetId", envelope(f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:packetId>{"a" * 300}</ns2:packetId>'
                               "</ns2:getEdoc>"), "text/xml", "request.invalid"),
    ("long to", envelope(send_edoc_op(b"<x/>", ["A" * 100])), "text/xml", "request.invalid"),
    ("long query", envelope(f'<ns2:getAgenciesList xmlns:ns2="{TNS}"><ns2:query>{"s" * 300}</ns2:query>'
                            "</ns2:getAgenciesList>"), "text/xml", "request.invalid"),
    ("line break in documentId", envelope(f'<ns2:getSentEdocList xmlns:ns2="{TNS}"><ns2:documentId>a&#10;b'
                                          "</ns2:documentId></ns2:getSentEdocList>"), "text/xml", "request.invalid"),
]


@pytest.mark.parametrize(("case", "body", "ctype", "code"), SOAP_CASES, ids=[c[0] for c in SOAP_CASES])
async def test_bad_soap_is_refused(hub: Hub, make_actor: MakeActor, case: str, body: bytes, ctype: str,
                                   code: str) -> None:
    a, _ = await two(hub, make_actor)
    if ctype == "MTOM":
        boundary = body[2:body.index(b"\r\n")].decode()
        ctype = f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start-info="text/xml"'
    status, _, raw = await post(a, hub.url, body, ctype)
    f = fault(raw)
    assert status == 500 and f["code"] == code and f["faultcode"] == "soap:Client", f
    assert leftovers(hub) == []
    assert b"root:" not in raw  # nothing of /etc/passwd came back


async def test_bad_query_text_is_a_fault(hub: Hub, make_actor: MakeActor) -> None:
    """The URL's text is checked by the shared authentication, so SOAP callers get a fault, not JSON."""
    a, _ = await two(hub, make_actor)
    body = envelope(LIST)
    headers = {"Content-Type": "text/xml", **a.signer.headers("POST", "/soap/edxml", "x=%00",
                                                              hashlib.sha256(body).hexdigest())}
    async with aiohttp.ClientSession() as http, http.post(URL(hub.url + "/soap/edxml?x=%00", encoded=True),
                                                          data=body, headers=headers) as resp:
        status, raw = resp.status, await resp.read()
    assert status == 500 and resp.headers["Content-Type"].startswith("text/xml")
    assert fault(raw)["code"] == "request.invalid"


async def _stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def test_size_limits(tmp_path: Path, make_actor: MakeActor) -> None:
    env = base_env(tmp_path / "v", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID,
                   LGSP_LIMITS_MAX_PACKET_SIZE="64KiB",
                   LGSP_ADAPTERS="{edxml: {max_attachment_bytes: 20000}, soap_edxml: {max_envelope_bytes: 3000}}")
    async with Hub(load_config(None, env=env)) as hub:
        await add_units(hub)
        app = await hub.directory.add_application(A, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        signer = Credentials(hub.url, key.access_key, secret=key.secret).signer()
        # Oversized packet: the decoded payload passes max_packet_size (no Content-Length: streamed).
        big = edoc(A, [B], files={"cid:1": bytes(90_000)})
        body = envelope(send_edoc_op(big))
        status, _, raw = await post(None, hub.url, _stream([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                                    "text/xml", sha256=hashlib.sha256(body).hexdigest(), signer=signer)
        f = fault(raw)
        assert (f["code"], f["status"]) == ("content.too_large", "413")
        # A declared Content-Length beyond what any packet may need is refused before reading.
        status, _, raw = await post(None, hub.url, body, "text/xml", signer=signer)
        assert fault(raw)["code"] == "content.too_large"
        # An attachment beyond adapters.edxml.max_attachment_bytes.
        status, _, raw = await post(None, hub.url, envelope(send_edoc_op(edoc(A, [B], files={"cid:1": bytes(30_000)}))),
                                    "text/xml", signer=signer)
        f = fault(raw)
        assert (f["code"], f["status"]) == ("edxml.too_large", "413") and "max_attachment_bytes" in f["detail"]
        # The envelope without payloads beyond adapters.soap_edxml.max_envelope_bytes.
        op = send_edoc_op(edoc(A, [B]), to=["X" * 4000])
        status, _, raw = await post(None, hub.url, envelope(op), "text/xml", signer=signer)
        assert fault(raw)["code"] == "content.too_large"
        assert [p for p in hub.blobs.tmp.iterdir()] == [] and blob_files(hub) == []
        # Within the limits all is well.
        status, _, raw = await post(None, hub.url, envelope(send_edoc_op(edoc(A, [B]))), "text/xml", signer=signer)
        assert status == 200, raw


def test_soap_adapter_settings_are_checked(tmp_path: Path) -> None:
    from lgsp.core.config import ConfigError

    config = tmp_path / "lgsp.yaml"
    config.write_text("plugins:\n  enabled: [rest, soap_edxml]\nadapters:\n  soap_edxml:\n    max_parts: 0\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(config, env={})).check_config()
    issues = {i.path: i.message for i in err.value.issues}
    assert "needs the edxml plugin" in issues["plugins.enabled"]
    assert issues["adapters.soap_edxml.max_parts"] == "must be a positive integer"


def test_base64_payload_b64_helper_is_exact() -> None:
    """The test's own envelope builder puts the exact Base64 of the packet in the request."""
    data = edoc(A, [B])
    op = send_edoc_op(data)
    assert base64.b64decode(op.split("<ns2:edxml>")[1].split("</ns2:edxml>")[0]) == data
    assert SOAP12 != SOAP11
