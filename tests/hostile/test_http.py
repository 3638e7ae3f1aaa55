"""Hostile HTTP: bad bytes in headers, wrong JSON types, calendar edges, deep nesting, huge numbers,
broken Range headers, bodies that differ from their declared hash, and HTTP aiohttp's parser refuses.

Every case must get a 4xx `application/problem+json` with its stable code, log no traceback, and
leave the hub answering `/v1/time`. One hub (on SQLite) serves the whole module; the cases that only
PostgreSQL used to trip over (NUL, lone surrogates reaching a query) run on a PostgreSQL hub too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp.http_parser
import aiohttp.web_protocol
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from yarl import URL

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.signing import EMPTY_SHA256, H_CONTENT, H_SESSION, SIGNED_HEADERS
from lgsp.core.store.tables import packets

from ..conftest import PG_ADMIN_URL, base_env, pg_skip_reason, raw_request
from ..test_auth import assert_problem

pytestmark = pytest.mark.asyncio(loop_scope="module")

A = "000.00.00.H23"  # sends
B = "000.00.01.H23"  # receives
CONTENT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 4  # no slice of it parses as JSON
Result = tuple[int, dict[str, str], Any]


@dataclass
class Bench:
    hub: Hub
    source: LgspClient
    dest: LgspClient
    packet_id: str  # A → B, accepted; B's delivery stays pending through the module
    download: str  # path and query of B's download URL

    @property
    def port(self) -> int:
        return int(URL(self.hub.url).port or 0)

    async def send(self, method: str, path: str, body: bytes = b"", *, as_dest: bool = False,
                   headers: dict[str, str] | None = None, content_sha256: str | None = None) -> Result:
        signer = (self.dest if as_dest else self.source).signer
        return await raw_request(self.hub.url, method, path, body, signer=signer, headers=headers,
                                 content_sha256=content_sha256)


async def _bench(hub: Hub) -> Bench:
    clients = []
    for unit in (A, B):
        await hub.directory.add_unit(unit, f"Đơn vị {unit}")
        app = await hub.directory.add_application(unit, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        clients.append(LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)))
    source, dest = clients
    packet_id = await source.send(CONTENT, [B], subject="Thử nghiệm")
    download = URL((await dest.ready(packet_id))["url"], encoded=True).path_qs
    return Bench(hub, source, dest, packet_id, download)


@contextlib.asynccontextmanager
async def hub_bench(config: Any) -> AsyncIterator[Bench]:
    """A hub on `config` with its bench (two units, a packet waiting): what each hostile fixture needs."""
    async with Hub(config) as hub:
        b = await _bench(hub)
        try:
            yield b
        finally:
            await b.source.close()
            await b.dest.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bench]:
    async with hub_bench(load_config(None, env=base_env(tmp_path_factory.mktemp("hostile") / "var"))) as b:
        yield b


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pg_bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bench]:
    """The same bench on a fresh PostgreSQL database (skipped, with the reason, without a server)."""
    reason = await pg_skip_reason()
    if reason:
        pytest.skip(reason)
    import asyncpg

    name = f"lgsp_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = str(URL(PG_ADMIN_URL).with_scheme("postgresql+asyncpg").with_path("/" + name))
    config = load_config(None, env=base_env(tmp_path_factory.mktemp("hostile-pg") / "var", LGSP_DATABASE_URL=url))
    try:
        async with hub_bench(config) as b:
            yield b
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# -- checks --------------------------------------------------------------------------------------

def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Bad input is the client's problem: nothing at ERROR, no traceback, no 'unhandled error'."""
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]


async def assert_alive(bench: Bench) -> None:
    status, _, body = await raw_request(bench.hub.url, "GET", "/v1/time")
    assert status == 200 and "now" in body


async def refused(bench: Bench, caplog: pytest.LogCaptureFixture, result: Result, status: int, code: str,
                  **fields: Any) -> dict[str, Any]:
    problem = assert_problem(*result, status, code)
    for name, value in fields.items():
        assert problem.get(name) == value, problem
    assert_quiet(caplog)
    await assert_alive(bench)
    return problem


async def raw_http(port: int, data: bytes, *, half_close: bool = False) -> Result:
    """Bytes on a socket, for what no HTTP client will send; the hub closes the connection after."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not answer:
        return 0, {}, None
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    body: Any = json.loads(payload) if "json" in headers.get("Content-Type", "") and payload else payload
    return int(lines[0].split()[1]), headers, body


def request_bytes(method: str, target: str, headers: dict[str, str | bytes], body: bytes = b"", *,
                  chunked: bool = False) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    elif body:
        lines.append(b"Content-Length: %d" % len(body))
    for name, value in headers.items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# -- X-LGSP-* headers ----------------------------------------------------------------------------

@pytest.mark.parametrize("header", SIGNED_HEADERS)
@pytest.mark.parametrize(("bad", "status", "code"), [
    (b"AK\xff\xfeX", 401, "auth.missing"),  # non-ASCII: refused before any lookup, naming the header
    ("AKé".encode(), 401, "auth.missing"),
    (b"A" * 3000, 401, "auth.missing"),  # longer than any value of the protocol
    (b"AK\x00X", 400, "request.malformed"),  # aiohttp's parser refuses NUL in a header
    (b"A" * 9000, 400, "request.malformed"),  # beyond aiohttp's max_field_size
], ids=["latin1", "utf8", "long", "nul", "huge"])
async def test_bad_bytes_in_every_signed_header(bench: Bench, caplog: pytest.LogCaptureFixture, header: str,
                                                bad: bytes, status: int, code: str) -> None:
    headers: dict[str, str | bytes] = dict(bench.source.signer.headers("GET", "/v1/inbox", session="ST" + "x" * 43))
    headers[header] = bad
    problem = await refused(bench, caplog, await raw_http(bench.port, request_bytes("GET", "/v1/inbox", headers)),
                            status, code)
    if status == 401:
        assert problem["header"] == header and header in problem["detail"]


@pytest.mark.parametrize(("date", "code"), [
    ("0000-01-01T00:00:00Z", "auth.missing"),  # no year 0
    ("0001-01-01T00:00:00Z", "auth.clock_skew"),
    ("9999-12-31T23:59:59Z", "auth.clock_skew"),
    ("2026-02-30T00:00:00Z", "auth.missing"),
])
async def test_request_dates_at_the_calendar_edges(bench: Bench, caplog: pytest.LogCaptureFixture, date: str,
                                                   code: str) -> None:
    headers = bench.source.signer.headers("GET", "/v1/inbox", date=date)
    await refused(bench, caplog, await raw_request(bench.hub.url, "GET", "/v1/inbox", headers=headers), 401, code)


# -- Host ----------------------------------------------------------------------------------------

async def _packets_count(bench: Bench) -> int:
    async with bench.hub.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(packets))).scalar_one())


def _with_host(data: bytes, *hosts: bytes) -> bytes:
    return data.replace(b"Host: 127.0.0.1\r\n", b"".join(b"Host: " + h + b"\r\n" for h in hosts), 1)


@pytest.mark.parametrize("hosts", [
    (b"hub\xff",), ("hub\u00e9".encode(),), (b"",), (b"a b",), (b"[::1",), (b"hub/x",), (b"user@hub",),
    (b"hub:80:80",), (b"hub", b"other"),
], ids=["latin1", "utf8", "empty", "space", "open-bracket", "slash", "userinfo", "two-ports", "two-hosts"])
async def test_a_host_that_is_not_a_host_name_is_refused_first(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                               hosts: tuple[bytes, ...]) -> None:
    """The upload URL in the answer is made of Host: one that is not UTF-8 used to fail encoding the
    answer after the packet was created (a 500 and a packet nobody knew of)."""
    before = await _packets_count(bench)
    body = _body(PACKET)
    headers: dict[str, str | bytes] = dict(bench.source.signer.headers(
        "POST", "/v1/packets", content_sha256=hashlib.sha256(body).hexdigest()))
    result = await raw_http(bench.port, _with_host(request_bytes("POST", "/v1/packets", headers, body), *hosts))
    await refused(bench, caplog, result, 400, "request.malformed")
    assert await _packets_count(bench) == before


@pytest.mark.parametrize("host", [b"lgsp.example.vn:8443", b"[::1]:8080", b"127.0.0.1", b"hub_1.local"])
async def test_a_well_formed_host_makes_the_urls(bench: Bench, host: bytes) -> None:
    body = _body(PACKET)
    headers: dict[str, str | bytes] = dict(bench.source.signer.headers(
        "POST", "/v1/packets", content_sha256=hashlib.sha256(body).hexdigest()))
    data = _with_host(request_bytes("POST", "/v1/packets", headers, body), host)
    status, _, answer = await raw_http(bench.port, data)
    assert status == 201, answer
    assert answer["upload"]["url"].startswith(f"http://{host.decode()}/v1/packets/")


# -- JSON bodies: every field of every endpoint, every wrong type --------------------------------

HUGE = "1" + "0" * 5000  # 10**5000, spliced in as a JSON literal (json.dumps refuses such an int)
KINDS: dict[str, Any] = {
    "null": None, "bool": True, "number": 7, "huge": "@@HUGE@@", "string": "text", "list": [1],
    "object": {"k": 1}, "surrogate": "\ud800", "nul": "a\x00b",
}
SHA = hashlib.sha256(b"abc").hexdigest()
PACKET = {"to": [B], "subject": "Công văn", "data_type": "binary", "size": 3, "sha256": SHA}


def _body(doc: Any) -> bytes:
    return json.dumps(doc).replace('"@@HUGE@@"', HUGE).encode()


def _verify_body(bench: Bench) -> dict[str, Any]:
    return {"method": "GET", "path": "/v1/inbox", "query": "",
            "headers": bench.source.signer.headers("GET", "/v1/inbox")}


# endpoint → (method, path template, signed by the destination?, base body, {field: kinds that are valid})
ENDPOINTS: dict[str, tuple[str, bool, dict[str, Any], dict[str, set[str]]]] = {
    "packets": ("/v1/packets", False, PACKET, {
        "to": set(), "subject": {"string"}, "priority": set(), "data_type": {"string"},
        "protocol": {"null", "string"}, "size": {"number"}, "sha256": set(), "deadline": {"null"},
        "policy": {"null", "object"}}),
    "sessions": ("/v1/sessions", False, {}, {"target": {"null", "string"}}),
    "verify": ("/v1/verify", True, {}, {"method": {"string"}, "path": set(), "query": {"string"}, "headers": set()}),
    "ack": ("/v1/packets/{id}/ack", True, {"sha256": SHA}, {"sha256": set()}),
    "fail": ("/v1/packets/{id}/fail", True, {"reason": "x"}, {"reason": {"string"}}),
    "ready": ("/v1/packets/{id}/ready", True, {}, {}),
    "cancel": ("/v1/packets/{id}/cancel", False, {}, {}),
}

FIELD_CASES = [(endpoint, field, kind)
               for endpoint, (_, _, _, fields) in ENDPOINTS.items()
               for field, valid in fields.items()
               for kind in KINDS if kind not in valid]
# Shaped bad text: inside the list `to` and the object `headers`, where a string is expected.
FIELD_CASES += [("packets", "to", "surrogate-in-list"), ("packets", "to", "nul-in-list"),
                ("packets", "to", "control-in-list"), ("packets", "subject", "control"),
                ("verify", "headers", "nul-in-object"), ("sessions", "target", "control")]
SHAPED = {"surrogate-in-list": ["\ud800"], "nul-in-list": [B + "\x00"], "control-in-list": [B + "\n"],
          "control": "a\x07b", "nul-in-object": {"X-LGSP-Key": "AK\x00"}}


async def _post(bench: Bench, endpoint: str, body: bytes) -> Result:
    path, as_dest, _, _ = ENDPOINTS[endpoint]
    return await bench.send("POST", path.format(id=bench.packet_id), body, as_dest=as_dest)


@pytest.mark.parametrize(("endpoint", "field", "kind"), FIELD_CASES)
async def test_every_field_with_every_wrong_type(bench: Bench, caplog: pytest.LogCaptureFixture, endpoint: str,
                                                 field: str, kind: str) -> None:
    _, _, base, _ = ENDPOINTS[endpoint]
    doc = dict(_verify_body(bench) if endpoint == "verify" else base)
    doc[field] = SHAPED[kind] if kind in SHAPED else KINDS[kind]
    result = await _post(bench, endpoint, _body(doc))
    if kind == "huge":
        await refused(bench, caplog, result, 400, "request.malformed")
    else:
        await refused(bench, caplog, result, 422, "request.invalid", field=field)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("body", "status", "code"), [
    (b"[" * 100_000 + b"]" * 100_000, 400, "request.malformed"),
    (b'{"a": ' * 65 + b"1" + b"}" * 65, 400, "request.malformed"),  # one level over the limit
    (b"{", 400, "request.malformed"),
    (b'{"a": "\xff"}', 400, "request.malformed"),
    ('{"a": 1}'.encode("utf-16"), 400, "request.malformed"),
    (b'{"a": NaN}', 400, "request.malformed"),
    (b'{"a": 1e999}', 400, "request.malformed"),
    (b'{"a": ' + HUGE.encode() + b"}", 400, "request.malformed"),
    (b'{"\\ud800": 1}', 422, "request.invalid"),
    (b'{"a": {"b": ["\\u0000"]}}', 422, "request.invalid"),
    (b'"\\udfff"', 422, "request.invalid"),
], ids=["deep", "depth-65", "truncated", "bad-utf8", "utf16", "nan", "inf", "huge", "surrogate-key", "nested-nul",
        "lone-low-surrogate"])
async def test_every_endpoint_refuses_unreadable_json(bench: Bench, caplog: pytest.LogCaptureFixture, endpoint: str,
                                                      body: bytes, status: int, code: str) -> None:
    await refused(bench, caplog, await _post(bench, endpoint, body), status, code)


@pytest.mark.parametrize(("policy", "why"), [
    ({"a\x1cb\x00": 1}, "NUL"), ({"k": "\x07\x00"}, "NUL"), ({"k": ["\x1b\ud800"]}, "nửa cặp thay thế"),
])
async def test_the_reason_names_the_refused_character(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                      policy: dict[str, Any], why: str) -> None:
    """Found by the fuzzer (tests/fuzz): a policy key with a control character before its NUL was
    refused "for control characters", which a JSON string may hold; the reason is the NUL. (The
    detail is in the default language, Vietnamese: "ký tự điều khiển" are control characters.)"""
    result = await bench.send("POST", "/v1/packets", _body({**PACKET, "policy": policy}))
    problem = await refused(bench, caplog, result, 422, "request.invalid", field="policy")
    assert why in problem["detail"] and "điều khiển" not in problem["detail"], problem


async def test_json_nested_within_the_limit_is_read(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    """64 levels (the policy object counts as one) are accepted and kept as sent."""
    policy: dict[str, Any] = {}
    inner = policy
    for _ in range(62):
        inner["n"] = {}
        inner = inner["n"]
    inner["s"] = "[[[ {{{ \\\" not nesting"
    status, _, body = await bench.send("POST", "/v1/packets", _body({**PACKET, "policy": policy}))
    assert status == 201, body
    assert_quiet(caplog)


@pytest.mark.parametrize("deadline", [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z", "9000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z", "2026-12-01T17:00:00", "2026-13-01T00:00:00Z", "x" * 100, "",
])
async def test_deadlines_at_the_calendar_edges(bench: Bench, caplog: pytest.LogCaptureFixture, deadline: str) -> None:
    result = await bench.send("POST", "/v1/packets", _body({**PACKET, "deadline": deadline}))
    await refused(bench, caplog, result, 422, "request.invalid", field="deadline")


async def test_a_deadline_just_inside_the_bound_is_kept(bench: Bench) -> None:
    doc = {**PACKET, "deadline": "8999-12-31T22:59:59-01:00"}
    status, _, body = await bench.send("POST", "/v1/packets", _body(doc))
    assert status == 201, body
    view = await bench.source.status(body["id"])
    assert view["deadline"].startswith("8999-12-31T23:59:59")


# -- path and query ------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "status", "code", "field"), [
    ("/v1/inbox?limit=" + "9" * 5000, 422, "request.invalid", "limit"),
    ("/v1/inbox?limit=-1", 422, "request.invalid", "limit"),
    ("/v1/inbox?limit=1e3", 422, "request.invalid", "limit"),
    ("/v1/inbox?limit=%D9%A1", 422, "request.invalid", "limit"),  # ARABIC-INDIC DIGIT ONE: int() takes it
    ("/v1/inbox?limit=%00", 422, "request.invalid", "limit"),
    ("/v1/units?limit=" + "9" * 5000, 422, "request.invalid", "limit"),
    ("/v1/units?q=%00", 422, "request.invalid", "q"),
    ("/v1/units?q=a%1Bb", 422, "request.invalid", "q"),
    ("/v1/units?q=%FF", 400, "request.malformed", None),
    ("/v1/units?q=%ED%A0%80", 400, "request.malformed", None),  # an encoded surrogate is not UTF-8
    ("/v1/units?%00=1", 422, "request.invalid", "\ufffd"),
    ("/v1/units/A%00/presence", 422, "request.invalid", "id"),
    ("/v1/units/A%0A/presence", 422, "request.invalid", "id"),
    ("/v1/units/A%FF/presence", 400, "request.malformed", None),
    ("/v1/packets/%00", 422, "request.invalid", "id"),
    ("/v1/packets/%ED%A0%80", 400, "request.malformed", None),
])
async def test_bad_text_in_path_and_query(bench: Bench, caplog: pytest.LogCaptureFixture, path: str, status: int,
                                          code: str, field: str | None) -> None:
    problem = await refused(bench, caplog, await bench.send("GET", path), status, code)
    assert problem.get("field") == field


@pytest.mark.parametrize("query", [
    "day=0001-01-01&period=day", "day=0001-01-01&period=year",  # Vietnam midnight of year 1 is before it in UTC
    "day=9999-12-31", "day=9999-12-31&period=day", "day=9999-12-31&period=quarter", "day=9999-12-31&period=year",
    "day=1969-12-31", "day=9001-01-01",
    "day=20261206", "day=2026-W49-1",  # date.fromisoformat takes these; the document says YYYY-MM-DD
])
async def test_report_days_past_the_calendar_or_not_a_date(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                           query: str) -> None:
    """Found by the fuzzer (tests/fuzz): a day at the calendar's ends made the period overflow (500)."""
    await refused(bench, caplog, await bench.send("GET", "/v1/stats?" + query), 422, "request.invalid", field="day")


@pytest.mark.parametrize("query", ["day=1970-01-01&period=year", "day=9000-12-31&period=year",
                                   "day=9000-12-31&period=quarter"])
async def test_report_days_at_the_bounds_are_served(bench: Bench, query: str) -> None:
    status, _, body = await bench.send("GET", "/v1/stats?" + query)
    assert status == 200 and body["sent"] == {"packets": 0, "bytes": 0}


async def test_search_text_may_hold_line_breaks_and_tabs(bench: Bench) -> None:
    status, _, body = await bench.send("GET", "/v1/units?q=%C4%90%C6%A1n%09v%E1%BB%8B%0A")
    assert status == 200 and isinstance(body["items"], list)


# -- Range ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=0-" + "9" * 5000, "bytes=-0", "bytes=-",
    "bytes=0-1,3-4", "bytes=5-2", f"bytes={len(CONTENT)}-", "items=0-1", "bytes=1.5-", "bytes= 1-",
])
async def test_unservable_ranges(bench: Bench, caplog: pytest.LogCaptureFixture, value: str) -> None:
    result = await bench.send("GET", bench.download, as_dest=True, headers={"Range": value})
    problem = await refused(bench, caplog, result, 416, "content.range_not_satisfiable")
    assert problem["size"] == len(CONTENT)


@pytest.mark.parametrize(("value", "part"), [
    ("bytes=-2", CONTENT[-2:]), ("bytes=-5000", CONTENT), ("bytes=1-", CONTENT[1:]), ("bytes=3-5", CONTENT[3:6]),
    ("BYTES=0-0", CONTENT[:1]), (f"bytes={len(CONTENT) - 1}-{10**18}", CONTENT[-1:]),
])
async def test_servable_ranges(bench: Bench, value: str, part: bytes) -> None:
    status, headers, body = await bench.send("GET", bench.download, as_dest=True, headers={"Range": value})
    assert (status, body) == (206, part)
    assert headers["Content-Range"].endswith(f"/{len(CONTENT)}")


# -- the body against its declared hash, on every method -----------------------------------------

@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_body_must_match_its_hash_even_where_it_is_ignored(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                                   method: str) -> None:
    result = await bench.send(method, "/v1/inbox", b"12345678", as_dest=True, content_sha256=EMPTY_SHA256)
    if method == "HEAD":  # no body in the answer: status and type say it
        assert result[0] == 400 and result[1]["Content-Type"].startswith("application/problem+json")
        assert_quiet(caplog)
    else:
        await refused(bench, caplog, result, 400, "content.hash_mismatch")
    status, _, _ = await bench.send(method, "/v1/inbox", b"12345678", as_dest=True)  # hash of those bytes
    assert status == 200


@pytest.mark.parametrize("declared", ["matching", "empty"])
async def test_chunked_bodies_are_checked_too(bench: Bench, caplog: pytest.LogCaptureFixture, declared: str) -> None:
    body = b"12345678"
    digest = hashlib.sha256(body).hexdigest() if declared == "matching" else EMPTY_SHA256
    path = f"/v1/packets/{bench.packet_id}"
    headers: dict[str, str | bytes] = dict(bench.dest.signer.headers("GET", path, content_sha256=digest))
    result = await raw_http(bench.port, request_bytes("GET", path, headers, body, chunked=True))
    if declared == "matching":
        assert result[0] == 200 and result[2]["id"] == bench.packet_id
    else:
        await refused(bench, caplog, result, 400, "content.hash_mismatch")


async def test_a_large_body_on_a_get_is_refused_at_the_json_limit(bench: Bench,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    body = b"x" * (bench.hub.config.limits.max_json_body + 1)
    await refused(bench, caplog, await bench.send("GET", "/v1/inbox", body, as_dest=True), 413, "content.too_large")


# -- HTTP aiohttp's parser refuses ---------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello on the plain port
    b"GET /v1/time\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/time HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n",
    b"GET /v1/time HTTP/1.1\r\nHost: x\r\nX-Note: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/time HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: a\r\n" % i for i in range(200)) + b"\r\n",
    b"GET /v1/time HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /v1/time HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\nZZ\r\n",
    b"GET /v1/time HTTP/9.9\r\nHost: x\r\n\r\n",
], ids=["not-http", "tls", "nul-in-target", "nul-in-header", "long-header", "long-line", "many-headers",
        "length-and-chunked", "bad-length", "bad-chunk", "bad-version"])
async def test_malformed_http_is_answered_as_a_problem(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                       data: bytes) -> None:
    problem = await refused(bench, caplog, await raw_http(bench.port, data), 400, "request.malformed")
    assert "\\x" not in problem["detail"] and "aaaa" not in problem["detail"]  # the bytes are not echoed


async def test_a_chunk_broken_while_the_handler_reads_is_malformed(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With aiohttp's pure-Python parser (no C extension), a chunk broken after the handler began
    reading reaches it as an exception: 400, not a logged 500. (The C parser leaves that handler
    waiting for the rest until the connection closes; the test above covers a chunk broken on arrival.)"""
    monkeypatch.setattr(aiohttp.web_protocol, "HttpRequestParser", aiohttp.http_parser.HttpRequestParserPy)
    body = b"12345678"
    headers: dict[str, str | bytes] = dict(bench.source.signer.headers(
        "POST", "/v1/sessions", content_sha256=hashlib.sha256(body).hexdigest()))
    head = request_bytes("POST", "/v1/sessions", headers, chunked=True)[:-len(b"0\r\n\r\n")]
    reader, writer = await asyncio.open_connection("127.0.0.1", bench.port)
    try:
        writer.write(head + b"8\r\n" + body + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body by now
        writer.write(b"ZZ\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    payload = answer.partition(b"\r\n\r\n")[2]
    assert answer.startswith(b"HTTP/1.1 400 ") and json.loads(payload)["code"] == "request.malformed"
    assert_quiet(caplog)
    await assert_alive(bench)


async def test_a_body_cut_short_is_dropped_quietly(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    headers: dict[str, str | bytes] = dict(bench.source.signer.headers(
        "POST", "/v1/sessions", content_sha256=hashlib.sha256(b"x" * 100).hexdigest()))
    data = request_bytes("POST", "/v1/sessions", headers, b"x" * 100)[:-60]
    status, _, _ = await raw_http(bench.port, data, half_close=True)
    assert status == 0  # nobody to answer
    assert_quiet(caplog)
    await assert_alive(bench)


async def test_an_internal_error_shows_no_traceback(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here: the store failing) is a 500 `internal` problem; the traceback goes to the log only."""
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("store exploded at /srv/lgsp/secret/path")

    monkeypatch.setattr(bench.hub.exchange, "inbox_page", broken)
    status, headers, body = await bench.send("GET", "/v1/inbox", as_dest=True)
    problem = assert_problem(status, headers, body, 500, "internal")
    assert "Traceback" not in json.dumps(problem) and "exploded" not in json.dumps(problem)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["unhandled error in GET /v1/inbox"]


# -- PostgreSQL: what used to reach the store ----------------------------------------------------

PG_CASES: list[tuple[str, str, str, dict[str, Any] | None, int, str]] = [
    # (id, method, path, JSON body, status, code)
    ("subject-nul", "POST", "/v1/packets", {**PACKET, "subject": "a\x00b"}, 422, "request.invalid"),
    ("subject-surrogate", "POST", "/v1/packets", {**PACKET, "subject": "\ud800"}, 422, "request.invalid"),
    ("to-nul", "POST", "/v1/packets", {**PACKET, "to": [B + "\x00"]}, 422, "request.invalid"),
    ("policy-nul", "POST", "/v1/packets", {**PACKET, "policy": {"k": "\x00"}}, 422, "request.invalid"),
    ("target-nul", "POST", "/v1/sessions", {"target": "A\x00"}, 422, "request.invalid"),
    ("target-surrogate", "POST", "/v1/sessions", {"target": "\udc80"}, 422, "request.invalid"),
    ("q-nul", "GET", "/v1/units?q=%00", None, 422, "request.invalid"),
    ("unit-nul", "GET", "/v1/units/A%00/presence", None, 422, "request.invalid"),
    ("packet-nul", "GET", "/v1/packets/%00", None, 422, "request.invalid"),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("method", "path", "doc", "status", "code"),
                         [case[1:] for case in PG_CASES], ids=[c[0] for c in PG_CASES])
async def test_postgres_never_sees_what_it_cannot_hold(pg_bench: Bench, caplog: pytest.LogCaptureFixture,
                                                       method: str, path: str, doc: dict[str, Any] | None,
                                                       status: int, code: str) -> None:
    result = await pg_bench.send(method, path, _body(doc) if doc is not None else b"")
    await refused(pg_bench, caplog, result, status, code)


@pytest.mark.postgres
@pytest.mark.parametrize("header", ["X-LGSP-Key", H_SESSION, H_CONTENT])
async def test_postgres_non_ascii_signed_headers(pg_bench: Bench, caplog: pytest.LogCaptureFixture,
                                                 header: str) -> None:
    headers: dict[str, str | bytes] = dict(pg_bench.source.signer.headers("GET", "/v1/inbox", session="ST" + "x" * 43))
    headers[header] = b"AK\xff\xfeX"
    result = await raw_http(pg_bench.port, request_bytes("GET", "/v1/inbox", headers))
    problem = await refused(pg_bench, caplog, result, 401, "auth.missing")
    assert problem["header"] == header


async def test_fail_reason_with_bad_text_keeps_the_delivery_pending(bench: Bench,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    for reason in ("\ud800", "a\x00b", "a\x1bb"):
        result = await _post(bench, "fail", _body({"reason": reason}))
        await refused(bench, caplog, result, 422, "request.invalid", field="reason")
    view = await bench.dest.status(bench.packet_id)
    assert view["deliveries"][0]["state"] in ("notified", "fetched")
