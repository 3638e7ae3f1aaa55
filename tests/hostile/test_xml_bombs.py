"""XML bombs of every dimension, through a real hub: REST upload and SOAP sendEdoc.

Each bomb gets a 4xx with a stable code naming the limit, nothing of the upload is kept, and the
hub keeps answering other clients while it reads one: a 1 MB packet whose Subject carried
100,000 attributes used to cost hours of CPU in the error explanation and stall every client.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from lgsp.client import LgspError
from lgsp.core.config import Config, load_config
from lgsp.core.edxml import EdxmlInvalid, ParseLimits, parse_packet
from lgsp.core.edxml.schema import lxml_schema
from lgsp.core.hub import Hub
from lgsp.plugins.edxml import SETTINGS, parse_limits

from ..conftest import Actor, MakeActor, base_env
from ..edxml_hub.support import HUB_ID, PLUGINS, A, B, add_units, blob_files, edoc, sha
from ..edxml_hub.test_edxml_rejections import LAUGHS, XXE
from ..soap.soap_support import TNS, envelope, fault, post, send_edoc_op

MH = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
SUBJECT = MH + "/Subject"
LIMITS = ParseLimits()


@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    return load_config(None, env=base_env(tmp_path / "var", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID))


# -- the bombs ---------------------------------------------------------------------------------------

def packet() -> bytes:
    data = edoc(A, [B])
    assert data.count(b"<Subject>") == 1 and data.count(b"</Subject>") == 1
    return data


def subject_start(start: bytes) -> bytes:
    return packet().replace(b"<Subject>", start, 1)


def after_subject(markup: bytes) -> bytes:
    return packet().replace(b"</Subject>", b"</Subject>" + markup, 1)


def attributes_bomb() -> bytes:
    """The probe's packet: about 1.1 MB, one Subject with 100,000 attributes."""
    return subject_start(b"<Subject" + b"".join(b' a%d="x"' % i for i in range(100_000)) + b">")


def text_of_subject(text: bytes) -> bytes:
    return re.sub(rb"<Subject>[^<]*</Subject>", lambda _: b"<Subject>" + text + b"</Subject>", packet(), count=1)


# name -> (packet maker, HTTP status, code, rule, path prefix)
BOMBS: dict[str, tuple[Callable[[], bytes], int, str, str | None, str | None]] = {
    "100,000 attributes on one element": (attributes_bomb, 413, "edxml.too_large", "max_attributes", SUBJECT),
    "33 attributes on one element": (
        lambda: subject_start(b"<Subject" + b"".join(b' a%d="x"' % i for i in range(33)) + b">"),
        413, "edxml.too_large", "max_attributes", SUBJECT),
    "2 MiB attribute value": (lambda: subject_start(b'<Subject a="' + b"v" * (2 << 20) + b'">'),
                              413, "edxml.too_large", "max_attribute_length", SUBJECT),
    "3 MiB text": (lambda: text_of_subject(b"t" * (3 << 20)), 413, "edxml.too_large", "max_text_length", SUBJECT),
    "10,000 nested elements": (lambda: after_subject(b"<x>" * 10_000 + b"</x>" * 10_000),
                               413, "edxml.too_large", "max_depth", MH + "/x/x/x"),
    "30,000 elements": (lambda: after_subject(b"<x/>" * 30_000), 413, "edxml.too_large", "max_elements", MH),
    "100,000 namespace declarations on one element": (
        lambda: subject_start(b"<Subject" + b"".join(b' xmlns:p%d="urn:p:%d"' % (i, i) for i in range(100_000)) + b">"),
        413, "edxml.too_large", "max_namespaces_per_element", SUBJECT),
    "2,000 namespace declarations in all": (
        lambda: after_subject(b"".join(b'<x xmlns:p="urn:p:%d"/>' % i for i in range(2_000))),
        413, "edxml.too_large", "max_namespaces", MH),
    "billion laughs": (lambda: LAUGHS, 400, "edxml.unsafe", "no DTD", None),
    "external entity": (lambda: XXE, 400, "edxml.unsafe", "no DTD", None),
}


async def two(hub: Hub, make_actor: MakeActor) -> tuple[Actor, Actor]:
    await add_units(hub)
    return await make_actor(A, existing=True), await make_actor(B, existing=True)


def nothing_kept(hub: Hub) -> bool:
    return blob_files(hub) == [] and list(hub.blobs.tmp.iterdir()) == []


async def rest_upload(actor: Actor, data: bytes) -> tuple[str, LgspError]:
    """Create a packet (destinations left to the content) and upload the bomb; returns the refusal."""
    created = await actor.client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                              "sha256": sha(data)})
    with pytest.raises(LgspError) as err:
        await actor.client.upload(created["upload"]["url"], data, sha(data))
    return created["id"], err.value


async def soap_send(hub: Hub, actor: Actor, op: str) -> tuple[int, dict[str, Any]]:
    status, _, raw = await post(actor, hub.url, envelope(op, soap12=True), "application/soap+xml; charset=utf-8")
    return status, fault(raw)


# -- REST ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(BOMBS))
async def test_rest_upload_of_a_bomb(hub: Hub, make_actor: MakeActor, name: str) -> None:
    make, status, code, rule, path = BOMBS[name]
    a, b = await two(hub, make_actor)
    packet_id, err = await rest_upload(a, make())
    assert (err.status, err.code) == (status, code), err.body
    assert err.body["rule"] == rule
    if path is not None:
        assert err.body["path"].startswith(path) and err.body["path"] in err.detail
    if status == 413:
        limit = getattr(LIMITS, rule or "")
        assert str(limit) in err.detail  # the dimension (rule), its limit and the element path
    assert nothing_kept(hub)
    view = await a.client.status(packet_id)
    assert (view["state"], view["content"]) == ("created", "none")
    assert view["events"][-1]["type"] == "content.rejected"
    assert await b.client.inbox() == []


# -- SOAP sendEdoc: the same packets as the Base64 payload -----------------------------------------------

@pytest.mark.parametrize("name", list(BOMBS))
async def test_soap_send_edoc_of_a_bomb(hub: Hub, make_actor: MakeActor, name: str) -> None:
    make, status, code, rule, path = BOMBS[name]
    a, b = await two(hub, make_actor)
    http_status, f = await soap_send(hub, a, send_edoc_op(make(), to=[B]))
    assert http_status == 400 and f["faultcode"] == "soap:Sender"  # SOAP 1.2: a 4xx for a client fault
    assert (f["code"], f["status"], f["rule"]) == (code, str(status), rule)
    if path is not None:
        assert f["path"].startswith(path)
    assert nothing_kept(hub)
    assert await b.client.inbox() == []


# -- SOAP envelopes: everything outside the Base64 payload is bounded too ------------------------------

def op_with(start: str = "", inside: str = "", to: str = B) -> str:
    """A sendEdoc whose operation element gets `start` in its start tag and `inside` before the payload."""
    payload = base64.b64encode(edoc(A, [B])).decode()
    return (f'<ns2:sendEdoc xmlns:ns2="{TNS}"{start}>{inside}<ns2:edxml>{payload}</ns2:edxml>'
            f"<ns2:to>{to}</ns2:to></ns2:sendEdoc>")


OP = "/Envelope/Body/sendEdoc"
ENVELOPE_BOMBS: dict[str, tuple[Callable[[], bytes], str, str | None, str | None]] = {
    "100,000 attributes": (lambda: envelope(op_with("".join(f' a{i}="x"' for i in range(100_000))), soap12=True),
                           "content.too_large", "max_attributes", OP),
    "33 attributes": (lambda: envelope(op_with("".join(f' a{i}="x"' for i in range(33))), soap12=True),
                      "content.too_large", "max_attributes", OP),
    "2 MiB attribute value": (lambda: envelope(op_with(' a="' + "v" * (2 << 20) + '"'), soap12=True),
                              "content.too_large", "max_attribute_length", OP),
    "2 MiB text": (lambda: envelope(op_with(to="t" * (2 << 20)), soap12=True),
                   "content.too_large", "max_text_length", OP + "/to"),
    "100,000 namespace declarations": (
        lambda: envelope(op_with("".join(f' xmlns:p{i}="urn:p:{i}"' for i in range(100_000))), soap12=True),
        "content.too_large", "max_namespaces_per_element", OP),
    "300 namespace declarations in all": (
        lambda: envelope(op_with(inside="".join(f'<p{i}:x xmlns:p{i}="urn:p:{i}"/>' for i in range(300))),
                         soap12=True),
        "content.too_large", "max_namespaces", OP),
    "deep nesting": (lambda: envelope(op_with(inside="<x>" * 10_000 + "</x>" * 10_000), soap12=True),
                     "request.malformed", None, None),
    "20,000 elements": (lambda: envelope(op_with(inside="<x/>" * 20_000), soap12=True),
                        "content.too_large", None, None),
    "billion laughs": (lambda: LAUGHS.split(b"<edXML", 1)[0] + envelope(op_with(), soap12=True).split(b"?>", 1)[1],
                       "soap.unsafe", None, None),
}


@pytest.mark.parametrize("name", list(ENVELOPE_BOMBS))
async def test_soap_envelope_bomb(hub: Hub, make_actor: MakeActor, name: str) -> None:
    make, code, rule, path = ENVELOPE_BOMBS[name]
    a, b = await two(hub, make_actor)
    body = make()
    status, _, raw = await post(a, hub.url, body, "application/soap+xml; charset=utf-8")
    f = fault(raw)
    assert status == 400 and f["faultcode"] == "soap:Sender"
    assert f["code"] == code and f["status"].startswith("4")
    if rule is not None:
        assert f["rule"] == rule and f["path"] == path and path in f["detail"]
    assert nothing_kept(hub)
    assert await b.client.inbox() == []
    # The hub is healthy: the same operation without the bomb goes through.
    status, _, raw = await post(a, hub.url, envelope(op_with(), soap12=True), "application/soap+xml")
    assert status == 200, raw[:300]


# -- the key property: one packet never stalls other clients ---------------------------------------------

#: Another client, in its own process (in the test's process it would share the hub's GIL and
#: event loop, and could not see a stall): GET /v1/time every 20 ms until the stop file exists,
#: printing "finished-at latency" per request; a request without an answer in 10 s counts as 10 s.
POLLER = """
import sys, time, urllib.request
from pathlib import Path
url, stop = sys.argv[1] + "/v1/time", Path(sys.argv[2])
while not stop.exists():
    started = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=10).read()
        latency = time.perf_counter() - started
    except OSError:
        latency = 10.0
    print(f"{time.time():.3f} {latency:.4f}", flush=True)
    time.sleep(0.02)
"""


@pytest.mark.serial  # a latency bound: run alone (make test), not beside another xdist worker
async def test_other_clients_are_answered_while_bombs_are_read(hub: Hub, make_actor: MakeActor,
                                                                tmp_path: Path) -> None:
    a, _ = await two(hub, make_actor)
    bomb = attributes_bomb()
    assert 1_000_000 < len(bomb) < 1_200_000
    stop = tmp_path / "stop-polling"
    poller = await asyncio.create_subprocess_exec(sys.executable, "-c", POLLER, hub.url, str(stop),
                                                  stdout=asyncio.subprocess.PIPE)
    assert poller.stdout is not None
    await poller.stdout.readline()  # the poller is up (its first answer, before any bomb)
    began = time.time()
    rounds = 0
    try:
        while rounds < 3 or time.time() - began < 1.5:  # long enough for dozens of samples
            _, err = await rest_upload(a, bomb)
            assert (err.status, err.code, err.body["rule"]) == (413, "edxml.too_large", "max_attributes")
            status, f = await soap_send(hub, a, send_edoc_op(bomb, to=[B]))
            assert (status, f["code"], f["rule"]) == (400, "edxml.too_large", "max_attributes")
            rounds += 1
        ended = time.time()
    finally:
        stop.touch()
        output, _ = await poller.communicate()
    samples = [(float(at) - float(latency), float(latency)) for at, latency in
               (line.split() for line in output.decode().splitlines())]
    during = [latency for started, latency in samples if began <= started <= ended]
    assert len(during) >= 5, samples
    assert max(during) < 1.0, during
    assert nothing_kept(hub)


# -- settings and the explanation of an ordinary invalid packet --------------------------------------------

async def test_the_bounds_are_settings(tmp_path: Path, make_actor: MakeActor) -> None:
    assert {k: getattr(LIMITS, k) for k in SETTINGS} == {k: v for k, (v, _) in SETTINGS.items()}
    env = base_env(tmp_path / "v", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID,
                   LGSP_ADAPTERS="{edxml: {max_attributes: 2, max_text_length: 100}}")
    async with Hub(load_config(None, env=env)) as hub:
        limits = parse_limits(hub)
        assert (limits.max_attributes, limits.max_text_length, limits.max_depth) == (2, 100, LIMITS.max_depth)
        await add_units(hub)
        app = await hub.directory.add_application(A, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.client import Credentials, LgspClient

        async with LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)) as client:
            actor = Actor(A, key, client, hub)
            _, err = await rest_upload(actor, subject_start(b'<Subject a="1" b="2" c="3">'))
            assert (err.code, err.body["rule"], err.body["path"]) == ("edxml.too_large", "max_attributes", SUBJECT)
            _, err = await rest_upload(actor, text_of_subject(b"s" * 101))
            assert (err.code, err.body["rule"]) == ("edxml.too_large", "max_text_length")


def test_an_invalid_but_bounded_packet_is_still_explained_with_path_and_rule() -> None:
    data = subject_start(b'<Subject lang="vi">').replace(b"<Priority>1</Priority>", b"<Priority>cao</Priority>", 1)
    assert b"<Priority>cao</Priority>" in data
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(data)
    # xmlschema names the first broken rule and its element, as it did before the bounds.
    assert (err.value.path, err.value.rule) == (SUBJECT, "Subject: attributes")
    assert "lang" in err.value.detail
    fixed = data.replace(b'<Subject lang="vi">', b"<Subject>", 1)
    with pytest.raises(EdxmlInvalid) as err:
        parse_packet(fixed)
    assert err.value.path == MH + "/OtherInfo/Priority"
    assert err.value.rule == "DigitCode: pattern"
    envelope_ = etree.fromstring(fixed)[0]
    assert not lxml_schema("edoc").validate(envelope_)
