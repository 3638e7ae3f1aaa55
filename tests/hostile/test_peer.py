"""Hostile peering: what a peer hub (or whoever holds its key) may put in `POST /v1/peer/packets`.

The envelope header (Base64url JSON) with every field wrong in the ways a store cannot hold or the
hub's own rules refuse, headers that are not ASCII or too long, broken signatures and framing. Each
must get a 4xx `application/problem+json` with its stable code, log nothing at ERROR, and leave
nothing behind: no packet, and no unknown source added to the directory (the source is only added
once everything else has passed). One hub (on SQLite) with a peer route serves the module.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from sqlalchemy import func, select
from yarl import URL

from lgsp.adapters.peer.wire import H_ENVELOPE, PACKETS, envelope_query
from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.signing import EMPTY_SHA256, H_SIGNATURE, Signer
from lgsp.core.store.tables import deliveries, packets

from ..conftest import base_env
from ..test_auth import assert_problem
from .test_http import Result, assert_quiet, raw_http, request_bytes

pytestmark = pytest.mark.asyncio(loop_scope="module")

A, B = "000.00.00.H23", "000.00.01.H23"  # units of this hub
PEER = "000.00.99.H45"  # the peer hub of zone qnam, a unit here
NEWCOMER = "000.07.07.H45"  # matches qnam's pattern, unknown here: a successful push would add it
CONTENT = b"%PDF-1.4 peer"
HUGE = "1" + "0" * 5000


@dataclass
class PeerBench:
    hub: Hub
    peer: Signer
    local: Signer  # a unit of this hub that is no peer

    @property
    def port(self) -> int:
        return int(URL(self.hub.url).port or 0)

    async def push(self, encoded: str | bytes, *, body: bytes = CONTENT, signer: Signer | None = None,
                   query: str | None = None, headers: dict[str, str | bytes] | None = None,
                   length: bool = True) -> Result:
        """A signed push with `encoded` as the envelope, bound by lgsp_meta (unless `query` says otherwise)."""
        if query is None:
            query = envelope_query(encoded) if isinstance(encoded, str) else "lgsp_meta=" + "0" * 64
        signed: dict[str, str | bytes] = dict((signer or self.peer).headers(
            "POST", PACKETS, query, hashlib.sha256(body).hexdigest()))
        signed[H_ENVELOPE] = encoded
        signed.update(headers or {})
        data = request_bytes("POST", f"{PACKETS}?{query}", signed, body, chunked=not length)
        return await raw_http(self.port, data)

    async def kept(self) -> tuple[int, bool]:
        """(packets in the store, whether NEWCOMER has been added to the directory)."""
        async with self.hub.db.read() as conn:
            count = (await conn.execute(select(func.count()).select_from(packets))).scalar_one()
        return int(count), await self.hub.directory.get_unit(NEWCOMER) is not None


def peer_zone_config(tmp: Path, plugins: str) -> Any:
    """A hub whose zone `qnam` (units ….H45) is reached through the peer hub PEER (not listening)."""
    route = {"adapter": "peer", "patterns": [r"\d{3}\.\d{2}\.\d{2}\.H45"], "url": "http://127.0.0.1:9",
             "unit": A, "key_id": "pending", "secret": "peer-qnam", "peer_unit": PEER}
    (tmp / "lgsp.yaml").write_text(yaml.safe_dump({"routes": {"qnam": route}}), encoding="utf-8")
    return load_config(tmp / "lgsp.yaml", env=base_env(tmp / "var", LGSP_PLUGINS_ENABLED=plugins))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeerBench]:
    config = peer_zone_config(tmp_path_factory.mktemp("hostile-peer"), "[rest, edxml, peer]")
    async with Hub(config) as hub:
        signers = []
        for unit, zone in ((A, "local"), (B, "local"), (PEER, "qnam")):
            await hub.directory.add_unit(unit, f"Đơn vị {unit}", zone=zone)
            app = await hub.directory.add_application(unit, "vbql")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            client = LgspClient(Credentials(hub.url, key.access_key, secret=key.secret))
            signers.append(client.signer)
            await client.close()
        yield PeerBench(hub, peer=signers[2], local=signers[0])


def envelope(**fields: Any) -> dict[str, Any]:
    return {"packet": "p-1", "source": NEWCOMER, "to": [A], "subject": "Công văn", "priority": 0,
            "data_type": "pdf", "hub": PEER, **fields}


def encode(doc: Any = None, *, raw: bytes | None = None, escaped: tuple[str, str] | None = None) -> str:
    """Base64url of `doc` as JSON (or of `raw`); `escaped` replaces a JSON string by an escape json.dumps
    would not write (a lone surrogate)."""
    data = raw if raw is not None else json.dumps(doc).encode()
    if escaped is not None:
        data = data.replace(json.dumps(escaped[0]).encode(), escaped[1].encode())
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def refused(bench: PeerBench, caplog: pytest.LogCaptureFixture, request: Coroutine[Any, Any, Result],
                  status: int, code: str) -> dict[str, Any]:
    """Send `request` (not awaited yet): the problem it gets, nothing logged, nothing kept."""
    before = await bench.kept()
    problem = assert_problem(*await request, status, code)
    assert_quiet(caplog)
    assert await bench.kept() == before == (before[0], False)
    return problem


# -- the envelope --------------------------------------------------------------------------------

BAD_ENVELOPES: dict[str, str] = {
    # a store could not hold it (a lone surrogate used to be a 500; a NUL reached the store)
    "packet-surrogate": encode(envelope(packet="X"), escaped=("X", "\\ud800")),
    "packet-nul": encode(envelope(packet="a\x00b")),
    "source-surrogate": encode(envelope(source="X"), escaped=("X", "\\udc80")),
    "source-nul": encode(envelope(source=NEWCOMER + "\x00")),
    "to-surrogate": encode(envelope(to=["X"]), escaped=("X", "\\ud800")),
    "to-nul": encode(envelope(to=[A + "\x00"])),
    "to-control": encode(envelope(to=[A + "\n"])),
    "subject-surrogate": encode(envelope(subject="X"), escaped=("X", "\\ud800")),
    "subject-nul": encode(envelope(subject="a\x00b")),
    "subject-control": encode(envelope(subject="a\x1bb")),
    "hub-surrogate": encode(envelope(hub="X"), escaped=("X", "\\ud800")),
    "hub-nul": encode(envelope(hub="a\x00")),
    "data-type-nul": encode(envelope(data_type="edxml\x00")),
    # the rules any new packet follows (a priority of 10**30 was a 500; 99 broke the inbox's cursor)
    "priority-huge": encode(envelope(priority=10**30)),
    "priority-99": encode(envelope(priority=99)),
    "priority-negative": encode(envelope(priority=-1)),
    "priority-bool": encode(envelope(priority=True)),
    "priority-string": encode(envelope(priority="1")),
    "data-type-shape": encode(envelope(data_type="PDF files!")),
    "to-too-long": encode(envelope(to=["9" * 65])),
    "to-empty": encode(envelope(to=[])),
    "to-not-list": encode(envelope(to=A)),
    "subject-list": encode(envelope(subject=["a"])),
    "hub-list": encode(envelope(hub=["x"])),
    # deadlines: the calendar's edges overflowed in UTC (500), far ones passed the hub's bound
    "deadline-overflow-high": encode(envelope(deadline="9999-12-31T23:59:59-01:00")),
    "deadline-overflow-low": encode(envelope(deadline="0001-01-01T00:00:00+01:00")),
    "deadline-beyond-bound": encode(envelope(deadline="9500-01-01T00:00:00+00:00")),
    "deadline-naive": encode(envelope(deadline="2030-01-01T00:00:00")),
    "deadline-number": encode(envelope(deadline=5)),
    # not JSON the hub reads
    "huge-number": encode(raw=b'{"priority": ' + HUGE.encode() + b"}"),
    "nan": encode(raw=b'{"priority": NaN}'),
    "deep": encode(raw=b"[" * 65 + b"]" * 65),
    "not-utf8": encode(raw=b'{"packet": "\xff"}'),
    "utf16": encode(raw='{"packet": "p"}'.encode("utf-16")),
    "not-object": encode([1]),
    "null": encode(None),
    "truncated": encode(raw=b'{"packet": '),
    # not Base64url
    "standard-alphabet": "ab+/cd",
    "inner-padding": "ab=cd",
    "spaces": "eyJh IjoxfQ",
}


@pytest.mark.parametrize("encoded", BAD_ENVELOPES.values(), ids=BAD_ENVELOPES.keys())
async def test_a_bad_envelope_is_refused_and_nothing_is_kept(bench: PeerBench, caplog: pytest.LogCaptureFixture,
                                                             encoded: str) -> None:
    problem = await refused(bench, caplog, bench.push(encoded), 422, "request.invalid")
    assert problem["field"] == H_ENVELOPE and problem["detail"].startswith(H_ENVELOPE + ": "), problem
    assert "\\x" not in problem["detail"]


@pytest.mark.parametrize("value", [b"eyJ\xff\xfe", "eyJé".encode(), b"\xc3\xa9" * 10],
                         ids=["latin1", "utf8", "utf8-only"])
async def test_an_envelope_header_that_is_not_ascii(bench: PeerBench, caplog: pytest.LogCaptureFixture,
                                                    value: bytes) -> None:
    """Used to be a 500: its lgsp_meta digest was taken before the header was read (UTF-8 encoding)."""
    problem = await refused(bench, caplog, bench.push(value), 422, "request.invalid")
    assert problem["field"] == H_ENVELOPE


async def test_an_envelope_longer_than_a_header_may_be(bench: PeerBench, caplog: pytest.LogCaptureFixture) -> None:
    encoded = encode(envelope(to=[A] * 1500))
    await refused(bench, caplog, bench.push(encoded), 400, "request.malformed")


async def test_a_missing_envelope(bench: PeerBench, caplog: pytest.LogCaptureFixture) -> None:
    problem = await refused(bench, caplog, bench.push(""), 422, "request.invalid")
    assert problem["field"] == H_ENVELOPE


# -- signatures, callers and framing -------------------------------------------------------------

async def test_an_envelope_not_bound_by_lgsp_meta(bench: PeerBench, caplog: pytest.LogCaptureFixture) -> None:
    encoded = encode(envelope())
    for query in ("", "lgsp_meta=", envelope_query(encode(envelope(packet="another")))):
        await refused(bench, caplog, bench.push(encoded, query=query), 401, "auth.bad_signature")


@pytest.mark.parametrize(("header", "value", "code"), [
    ("X-LGSP-Signature", "AAAA", "auth.missing"),
    ("X-LGSP-Signature", "another request's", "auth.bad_signature"),
    ("X-LGSP-Signature", b"\xff\xfe", "auth.missing"),
    ("X-LGSP-Key", "AK" + "0" * 30, "auth.unknown_key"),
    ("X-LGSP-Content-SHA256", "F" * 64, "auth.missing"),
    ("X-LGSP-Content-SHA256", hashlib.sha256(b"other").hexdigest(), "auth.bad_signature"),
])
async def test_a_broken_signature(bench: PeerBench, caplog: pytest.LogCaptureFixture, header: str,
                                  value: str | bytes, code: str) -> None:
    if value == "another request's":
        value = bench.peer.headers("POST", PACKETS, "lgsp_meta=" + "1" * 64, EMPTY_SHA256)[H_SIGNATURE]
    await refused(bench, caplog, bench.push(encode(envelope()), headers={header: value}), 401, code)


async def test_a_unit_that_is_no_peer(bench: PeerBench, caplog: pytest.LogCaptureFixture) -> None:
    await refused(bench, caplog, bench.push(encode(envelope(source=B)), signer=bench.local), 403, "peer.not_a_peer")


async def test_a_chunked_body_without_its_length(bench: PeerBench, caplog: pytest.LogCaptureFixture) -> None:
    await refused(bench, caplog, bench.push(encode(envelope()), length=False), 422, "request.invalid")


async def test_a_body_other_than_the_signed_one(bench: PeerBench, caplog: pytest.LogCaptureFixture) -> None:
    """Non-UTF-8 bytes of the signed length: refused once read, and no packet is accepted."""
    encoded = encode(envelope(packet="wrong-body", source=PEER))
    query = envelope_query(encoded)
    signed: dict[str, str | bytes] = dict(bench.peer.headers("POST", PACKETS, query,
                                                             hashlib.sha256(CONTENT).hexdigest()))
    signed[H_ENVELOPE] = encoded
    body = b"\xff\xfe\x00" * len(CONTENT)
    result = await raw_http(bench.port, request_bytes("POST", f"{PACKETS}?{query}", signed, body[:len(CONTENT)]))
    assert_problem(*result, 400, "content.hash_mismatch")
    assert_quiet(caplog)
    async with bench.hub.db.read() as conn:
        states = (await conn.execute(select(packets.c.state).where(packets.c.source_unit == PEER))).scalars().all()
    assert "accepted" not in states


# -- what is still taken -------------------------------------------------------------------------

async def test_a_deadline_passed_on_the_way_and_repeated_destinations_are_taken(bench: PeerBench) -> None:
    """A deadline may have passed while the packet travelled: kept as sent. A destination named twice
    is one delivery (it used to be a 500 on the deliveries' unique key)."""
    encoded = encode(envelope(packet="late-1", source=A.replace("H23", "H45"), to=[A, A, B],
                              deadline="2020-01-01T07:00:00+07:00"))
    status, _, body = await bench.push(encoded)
    assert status == 201, body
    async with bench.hub.db.read() as conn:
        units = (await conn.execute(select(deliveries.c.unit_id).where(deliveries.c.packet_id == body["id"]))).all()
        deadline = (await conn.execute(select(packets.c.deadline).where(packets.c.id == body["id"]))).scalar_one()
    assert sorted(u for (u,) in units) == [A, B]
    assert deadline.isoformat().startswith("2020-01-01T00:00:00")


async def test_an_envelope_refusal_reads_in_the_readers_language(bench: PeerBench,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The reason after the header's name comes from the catalogues too: Vietnamese by default (the
    other hub's operators read it in its log), English when asked."""
    vi = await refused(bench, caplog, bench.push(encode([1])), 422, "request.invalid")
    assert vi["detail"] == f"{H_ENVELOPE}: phải là một đối tượng JSON", vi
    en = await refused(bench, caplog, bench.push(encode([1]), headers={"Accept-Language": "en"}), 422,
                       "request.invalid")
    assert en["detail"] == f"{H_ENVELOPE}: must be a JSON object", en
