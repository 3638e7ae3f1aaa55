"""SOAP header blocks: mustUnderstand blocks the hub does not process are refused with the
MustUnderstand fault of each SOAP version, before anything of the Body is done; others are ignored."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from lgsp.adapters.soap_edxml import service
from lgsp.core.hub import Hub

from ..conftest import Actor, MakeActor
from ..edxml_hub.support import A, B, add_units, blob_files, edoc
from .soap_support import SOAP11, SOAP12, TNS, answer, fault, post, send_edoc_op

LIST = f'<ns2:getReceivedEdocList xmlns:ns2="{TNS}"/>'
TRACE = "urn:example:tracing"
XML = etree.XMLParser(resolve_entities=False, no_network=True)


def envelope_with_header(op: str, header: str, *, soap12: bool = False) -> bytes:
    ns = SOAP12 if soap12 else SOAP11
    return (f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{ns}"><S:Header>{header}</S:Header>'
            f"<S:Body>{op}</S:Body></S:Envelope>").encode()


def block(must: str | None, *, role: str | None = None, soap12: bool = False, attr_ns: str | None = None) -> str:
    """A tracing header block; `must` is its mustUnderstand value (None: no attribute)."""
    ns = attr_ns or (SOAP12 if soap12 else SOAP11)
    attrs = f' xmlns:E="{ns}"'
    if must is not None:
        attrs += f' E:mustUnderstand="{must}"'
    if role is not None:
        attrs += f' E:{"role" if soap12 else "actor"}="{role}"'
    return f'<t:Trace xmlns:t="{TRACE}"{attrs}><t:id>42</t:id></t:Trace>'


def qname_value(element: etree._Element, text: str) -> str:
    """A QName-valued text or attribute resolved against the element's namespaces (Clark notation)."""
    prefix, _, local = text.rpartition(":")
    return f"{{{element.nsmap[prefix or None]}}}{local}"


async def two(hub: Hub, make_actor: MakeActor) -> tuple[Actor, Actor]:
    await add_units(hub)
    return await make_actor(A, existing=True), await make_actor(B, existing=True)


async def test_soap11_must_understand_fault(hub: Hub, make_actor: MakeActor) -> None:
    a, _ = await two(hub, make_actor)
    body = envelope_with_header(LIST, block("1"))
    status, headers, raw = await post(a, hub.url, body, "text/xml; charset=utf-8")
    assert status == 500 and headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(raw, XML)
    f = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert f is not None
    code = f.find("faultcode")
    assert code is not None and qname_value(code, code.text or "") == f"{{{SOAP11}}}MustUnderstand"
    assert (f.findtext("faultstring") or "").startswith("soap.must_understand: ")
    assert TRACE in (f.findtext("faultstring") or "")
    # SOAP 1.1 §4.4: no `detail` for header errors; the problem travels in a header entry instead.
    assert f.find("detail") is None
    problem = root.find(f"{{{SOAP11}}}Header/{{{TNS}}}problem")
    assert problem is not None and problem.findtext(f"{{{TNS}}}code") == "soap.must_understand"


async def test_soap12_must_understand_fault_names_the_blocks(hub: Hub, make_actor: MakeActor) -> None:
    a, _ = await two(hub, make_actor)
    other = '<o:Session xmlns:o="urn:example:other" E:mustUnderstand="1" xmlns:E="' + SOAP12 + '"/>'
    body = envelope_with_header(LIST, block("true", soap12=True) + other, soap12=True)
    status, headers, raw = await post(a, hub.url, body, "application/soap+xml; charset=utf-8",
                                      headers={"Accept-Language": "en"})
    assert status == 500 and headers["Content-Type"].startswith("application/soap+xml")
    root = etree.fromstring(raw, XML)
    value = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault/{{{SOAP12}}}Code/{{{SOAP12}}}Value")
    assert value is not None and qname_value(value, value.text or "") == f"{{{SOAP12}}}MustUnderstand"
    missing = root.findall(f"{{{SOAP12}}}Header/{{{SOAP12}}}NotUnderstood")
    assert [qname_value(n, n.get("qname", "")) for n in missing] == [f"{{{TRACE}}}Trace",
                                                                     "{urn:example:other}Session"]
    f = fault(raw)
    assert (f["code"], f["title"]) == ("soap.must_understand",
                                       "SOAP header block marked mustUnderstand is not understood")


@pytest.mark.parametrize(("soap12", "header"), [
    (False, block("0")),
    (False, block("false")),
    (False, block(None)),
    (False, block("1", role="urn:example:some-other-node")),  # an actor that is not the hub
    (False, block("1", attr_ns=SOAP12)),  # SOAP 1.2's attribute means nothing in a SOAP 1.1 envelope
    (True, block("false", soap12=True)),
    (True, block("0", soap12=True)),
    (True, block("true", soap12=True, role="http://www.w3.org/2003/05/soap-envelope/role/none")),
    (True, block("1", soap12=True, role="urn:example:some-other-node")),
], ids=["11-0", "11-false", "11-absent", "11-other-actor", "11-foreign-attribute", "12-false", "12-0",
        "12-role-none", "12-other-role"])
async def test_blocks_not_for_the_hub_or_optional_are_ignored(hub: Hub, make_actor: MakeActor, soap12: bool,
                                                              header: str) -> None:
    a, _ = await two(hub, make_actor)
    body = envelope_with_header(LIST, header, soap12=soap12)
    status, _, raw = await post(a, hub.url, body, "application/soap+xml" if soap12 else "text/xml")
    assert status == 200, raw[:500]
    assert answer(raw, "getReceivedEdocListResponse") is not None


@pytest.mark.parametrize("soap12", [False, True])
async def test_next_role_and_ultimate_receiver_address_the_hub(hub: Hub, make_actor: MakeActor,
                                                               soap12: bool) -> None:
    a, _ = await two(hub, make_actor)
    role = ("http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver" if soap12
            else "http://schemas.xmlsoap.org/soap/actor/next")
    body = envelope_with_header(LIST, block("1", role=role, soap12=soap12), soap12=soap12)
    status, _, raw = await post(a, hub.url, body, "application/soap+xml" if soap12 else "text/xml")
    assert status == 500 and fault_code(raw).endswith("}MustUnderstand")


def fault_code(raw: bytes) -> str:
    root = etree.fromstring(raw, XML)
    ns = etree.QName(root).namespace
    el = root.find(f"{{{ns}}}Body/{{{ns}}}Fault/faultcode" if ns == SOAP11
                   else f"{{{ns}}}Body/{{{ns}}}Fault/{{{ns}}}Code/{{{ns}}}Value")
    assert el is not None
    return qname_value(el, el.text or "")


async def test_a_bad_must_understand_value_is_malformed(hub: Hub, make_actor: MakeActor) -> None:
    a, _ = await two(hub, make_actor)
    status, _, raw = await post(a, hub.url, envelope_with_header(LIST, block("yes")), "text/xml")
    assert status == 500 and fault(raw)["code"] == "request.malformed"


async def test_send_edoc_with_a_must_understand_block_sends_nothing(hub: Hub, make_actor: MakeActor) -> None:
    """The fault comes before the Body is processed: no packet, nothing stored, nothing delivered."""
    a, b = await two(hub, make_actor)
    body = envelope_with_header(send_edoc_op(edoc(A, [B])), block("true", soap12=True), soap12=True)
    status, _, raw = await post(a, hub.url, body, "application/soap+xml")
    assert status == 500 and fault_code(raw) == f"{{{SOAP12}}}MustUnderstand"
    assert await b.client.inbox() == [] and blob_files(hub) == [] and list(hub.blobs.tmp.iterdir()) == []
    async with hub.db.read() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM packets")).scalar() == 0


async def test_blocks_the_hub_processes_may_be_marked_must_understand(
        hub: Hub, make_actor: MakeActor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule refuses only what the hub does not process: a block it lists as understood passes."""
    a, b = await two(hub, make_actor)
    monkeypatch.setattr(service, "UNDERSTOOD_HEADERS", frozenset({f"{{{TRACE}}}Trace"}))
    data = edoc(A, [B])
    body = envelope_with_header(send_edoc_op(data), block("1"))
    status, _, raw = await post(a, hub.url, body, "text/xml")
    assert status == 200, raw[:500]
    sent: Any = answer(raw, "sendEdocResponse")
    assert sent.findtext(f"{{{TNS}}}to") == B
    assert len(await b.client.inbox()) == 1
