"""Property-based fuzzing of the REST API from schemas/openapi.yaml (schemathesis on a live hub).

Every operation of the document, three ways: unsigned, signed with a wrong signature, and signed
correctly exactly as the Python client signs (`lgsp.client`: path and query as sent, SHA-256 of the
body as sent), with bodies, queries, path parameters and headers the schema allows (positive) and
ones it forbids (negative). The hub runs in a thread of this process on a loopback port (SQLite;
PostgreSQL with LGSP_FUZZ_DB=postgres). Each answer must:

- come within 10 s, never be a 5xx, and carry no ERROR/traceback in the hub's log;
- unsigned or badly signed (on a signed operation): a 4xx problem+json with a stable `code`;
- signed: a status the document lists for the operation, with the documented media type and body
  schema (schemathesis' conformance checks); a problem's `code` is one of the document's codes and
  its `status` that code's `x-lgsp-status`.

Deterministic (hypothesis `derandomize`): LGSP_FUZZ_EXAMPLES cases per operation and mode (default
10, the suite's budget); `make fuzz` runs more (docs/security.md, section 5).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.signing import H_SESSION, H_SIGNATURE, Signer
from lgsp.plugins.manager import BUILTIN_PLUGINS

from ..conftest import PG_ADMIN_URL, base_env, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schemas" / "openapi.yaml"
EXAMPLES = int(os.environ.get("LGSP_FUZZ_EXAMPLES", "10"))
DB = os.environ.get("LGSP_FUZZ_DB", "sqlite")
TIMEOUT = 10.0
A = "000.00.00.H23"  # source
B = "000.00.01.H23"  # destination
SERVICE = "fuzz.echo"  # B's REST service, granted to A: answers any call with what it received
UNSIGNED = {("GET", "/v1/time"), ("GET", "/v1/openapi.yaml")}
#: Operations a destination calls; the rest are signed by the source.
AS_DEST = {"/v1/packets/{id}/ready", "/v1/packets/{id}/ack", "/v1/packets/{id}/fail",
           "/v1/packets/{id}/attachments/{n}", "/v1/inbox"}
T = TypeVar("T")
#: (test, operation, status) → answers; LGSP_FUZZ_REPORT=1 prints them (is the fuzzer past the edge?)
STATS: Counter[tuple[str, str, int]] = Counter()


def load_schema() -> Any:
    schema = schemathesis.openapi.from_path(SCHEMA_PATH)
    # The signature headers are the auth hook's (Sign), never generated: a "missing X-LGSP-Key" case would
    # be signed all the same.
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    with_security_parameters=False)
    # A schema-violating request must be refused: any 4xx the hub answers with a problem.
    schema.config.checks.negative_data_rejection.expected_statuses = [
        "400", "401", "403", "404", "409", "410", "413", "416", "422"]
    return schema


SCHEMA = load_schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CODES: dict[str, int] = SCHEMA.raw_schema["components"]["schemas"]["Problem"]["properties"]["code"]["x-lgsp-status"]


class HubThread:
    """A hub on its own event loop in a thread, so that schemathesis' synchronous requests reach it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-hub", daemon=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def __enter__(self) -> HubThread:
        self.thread.start()
        self.run(self.hub.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.hub.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()


@dataclass
class Bench:
    url: str
    source: Signer
    dest: Signer
    packets: list[str]  # A → B, accepted
    session: str  # A's session towards SERVICE
    service: web.AppRunner  # SERVICE's server, B's


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.path_qs, "size": len(body)})


async def _setup(hub: Hub) -> Bench:
    service = web.Application()
    service.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(service, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    signers: list[Signer] = []
    clients: list[LgspClient] = []
    for unit in (A, B):
        await hub.directory.add_unit(unit, f"Đơn vị {unit}")
        app = await hub.directory.add_application(unit, "fuzz")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        client = LgspClient(Credentials(hub.url, key.access_key, secret=key.secret))
        clients.append(client)
        signers.append(client.signer)
    await hub.services.add(SERVICE, B, f"http://127.0.0.1:{port}/api", timeout_seconds=5)
    await hub.services.grant(SERVICE, A)
    try:
        packets = [await clients[0].send(b"fuzz %d" % i, [B], subject=f"Thử nghiệm {i}") for i in range(3)]
        session = (await clients[0].open_session(SERVICE))["token"]
    finally:
        for client in clients:
            await client.close()
    return Bench(hub.url, signers[0], signers[1], packets, session, runner)


class ErrorLog(logging.Handler):
    """ERROR records and tracebacks the hub logs while a case runs (bad input must log none)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def take(self) -> list[str]:
        out = [f"{r.name}: {r.getMessage()}" for r in self.records]
        self.records.clear()
        return out


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str | None]:
    if DB != "postgres":
        yield None
        return
    import asyncpg

    name = f"lgsp_fuzz_{secrets.token_hex(6)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    base = urlsplit(PG_ADMIN_URL)
    yield base._replace(scheme="postgresql+asyncpg", path="/" + name).geturl()
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, pg_database: str | None) -> Iterator[Bench]:
    # Every built-in plugin, so that every route of the document is mounted (peering, edXML, ...).
    extra = {"LGSP_PLUGINS_ENABLED": "[" + ", ".join(BUILTIN_PLUGINS) + "]"}
    if pg_database:
        extra.update(LGSP_DATABASE_URL=pg_database, LGSP_DATABASE_POOL_SIZE="3")
    config = load_config(None, env=base_env(tmp_path_factory.mktemp("fuzz") / "var", **extra))
    with HubThread(Hub(config)) as thread:
        bench = thread.run(_setup(thread.hub))
        try:
            yield bench
        finally:
            thread.run(bench.service.cleanup())


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if os.environ.get("LGSP_FUZZ_REPORT"):
        for (test, op, status), n in sorted(STATS.items()):
            print(f"{test:10} {op:45} {status} {n}", file=sys.stderr)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


class Sign(requests.auth.AuthBase):
    """Signs the prepared request as `lgsp.client` does: the path and query exactly as sent, the
    SHA-256 of the body exactly as sent, the session header when the case carries one. `bad`
    replaces the signature by random bytes of the same length."""

    def __init__(self, signer: Signer, *, bad: bool = False) -> None:
        self.signer = signer
        self.bad = bad

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(r.url or "")
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        session = r.headers.get(H_SESSION)
        headers = self.signer.headers(r.method or "GET", parts.path, parts.query, hashlib.sha256(body).hexdigest(),
                                      session=session if session and session.isascii() else None)
        if self.bad:
            alg, _, signature = headers[H_SIGNATURE].partition(" ")
            forged = base64.b64encode(secrets.token_bytes(len(base64.b64decode(signature)))).decode()
            headers[H_SIGNATURE] = f"{alg} {forged}"
        r.headers.update(headers)
        return r


def _send(case: Any, bench: Bench, auth: requests.auth.AuthBase | None) -> Any:
    with requests.Session() as session:
        session.auth = auth
        return case.call(base_url=bench.url, session=session, timeout=TIMEOUT, allow_redirects=False)


def _content_type(response: Any) -> str:
    """schemathesis' Response keeps headers as lowercase names with lists of values."""
    return "".join(response.headers.get("content-type", []))


def _problem(response: Any, *, signed_status: int | None = None) -> dict[str, Any]:
    """The answer is a problem+json whose `code` is documented and whose `status` is that code's."""
    assert _content_type(response).startswith("application/problem+json"), (
        response.status_code, _content_type(response), response.content[:200])
    problem = response.json()
    code = problem.get("code")
    assert code in CODES, problem
    assert problem.get("status") == response.status_code == CODES[code], problem
    if signed_status is not None:
        assert response.status_code == signed_status, problem
    return problem


def _empty_query_value(response: Any) -> bool:
    """Whether the request sent a query parameter with an empty value (`limit=`): schemathesis sends
    an empty object or list that way, and the hub reads `limit=`, `day=`, ... as absent parameters."""
    query = urlsplit(response.request.url or "").query
    return any(not part.partition("=")[2] for part in query.split("&") if part)


def _cases(operation: Any, mode: GenerationMode, bench_packets: list[str] | None = None,
           session: str | None = None) -> st.SearchStrategy[Any]:
    strategy = operation.as_strategy(generation_mode=mode)
    names = {p.name for p in operation.path_parameters}
    if bench_packets and "id" in names and operation.path.startswith("/v1/packets/"):
        # Half the cases name a real packet, so that the handlers past the lookup are reached too.
        real = st.sampled_from(bench_packets).flatmap(
            lambda pid: operation.as_strategy(generation_mode=mode, path_parameters={"id": pid}))
        return st.one_of(strategy, real)
    if bench_packets and "id" in names and operation.path.startswith("/v1/units/"):
        real = st.sampled_from([A, B]).flatmap(
            lambda unit: operation.as_strategy(generation_mode=mode, path_parameters={"id": unit}))
        return st.one_of(strategy, real)
    if session and operation.path == "/v1/services/{service}/{tail}":
        # Half the calls reach the proxy: the granted service with A's session towards it.
        real = operation.as_strategy(generation_mode=mode, path_parameters={"service": SERVICE},
                                     headers={H_SESSION: session})
        return st.one_of(strategy, real)
    if bench_packets and (operation.method.upper(), operation.path) in KNOWN_NAMES:
        # Half the cases name a real unit in the body: past the directory, into creation and sessions.
        # (`to` and `subject` may be absent from a valid body: the edXML plugin reads them from the content).
        fields = KNOWN_NAMES[operation.method.upper(), operation.path]
        return st.one_of(strategy, strategy.map(lambda case: _with_body_fields(case, fields)))
    return strategy


KNOWN_NAMES = {("POST", "/v1/packets"): {"to": [B], "subject": "Thử nghiệm"},
               ("POST", "/v1/sessions"): {"target": B}}


def _with_body_fields(case: Any, fields: dict[str, Any]) -> Any:
    if isinstance(case.body, dict):
        case.body = {**case.body, "to": fields["to"]} if "to" in fields else {**case.body, **fields}
        if "subject" in fields and not isinstance(case.body.get("subject"), str):
            case.body["subject"] = fields["subject"]
    return case


UPLOAD = ("PUT", "/v1/packets/{id}/content")
#: Most uploads go to a packet created for them (with the body's size and hash, as each data type):
#: the upload handler and the content inspectors get the generated bytes. None: as generated.
UPLOAD_TYPES = [None, "binary", "edxml", "edxml+json", "json"]


def _fresh_upload(case: Any, bench: Bench, data_type: str) -> None:
    """Point the case at a packet created for its body, with the hub's upload token."""
    body = getattr(case.body, "data", case.body)  # schemathesis wraps generated bytes in a `Binary` str
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, bytes):
        return
    doc = {"to": [B], "subject": "Thử nghiệm", "data_type": data_type, "size": len(body),
           "sha256": hashlib.sha256(body).hexdigest()}
    with requests.Session() as session:
        created = session.post(bench.url + "/v1/packets", json=doc, auth=Sign(bench.source), timeout=TIMEOUT)
    assert created.status_code == 201, created.text
    upload = urlsplit(created.json()["upload"]["url"])
    case.path_parameters = {**(case.path_parameters or {}), "id": created.json()["id"]}
    case.query = {**(case.query or {}), **dict(part.split("=", 1) for part in upload.query.split("&"))}


SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))
OP_IDS = [f"{op.method.upper()} {op.path}" for op in OPERATIONS]


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
@pytest.mark.parametrize("bad", [False, True], ids=["unsigned", "bad-signature"])
def test_unauthenticated_requests_get_a_problem(bench: Bench, error_log: ErrorLog, operation: Any, bad: bool) -> None:
    if (operation.method.upper(), operation.path) in UNSIGNED:
        pytest.skip("an unsigned operation")
    signer = bench.dest if operation.path in AS_DEST else bench.source

    @SETTINGS
    @given(case=_cases(operation, GenerationMode.POSITIVE))
    def run(case: Any) -> None:
        response = _send(case, bench, Sign(signer, bad=True) if bad else None)
        STATS["bad-sig" if bad else "unsigned", f"{case.method.upper()} {operation.path}", response.status_code] += 1
        assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance])
        _problem(response)
        assert not error_log.take()

    run()


@pytest.mark.parametrize("operation", OPERATIONS, ids=OP_IDS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_signed_requests_get_documented_answers(bench: Bench, error_log: ErrorLog, operation: Any,
                                                mode: GenerationMode) -> None:
    signer = bench.dest if operation.path in AS_DEST else bench.source
    auth = None if (operation.method.upper(), operation.path) in UNSIGNED else Sign(signer)

    uploads = st.sampled_from(UPLOAD_TYPES) if (operation.method.upper(), operation.path) == UPLOAD else st.none()

    @SETTINGS
    @given(case=_cases(operation, mode, bench.packets, bench.session), upload=uploads)
    def run(case: Any, upload: str | None) -> None:
        if upload is not None:
            _fresh_upload(case, bench, upload)
        response = _send(case, bench, auth)
        STATS[mode.value, f"{case.method.upper()} {operation.path}", response.status_code] += 1
        assert response.status_code < 500, (response.status_code, response.content[:300])
        checks = [status_code_conformance, content_type_conformance, response_headers_conformance,
                  response_schema_conformance]
        if not _empty_query_value(response):  # `limit=` is read as absent (the document's description)
            checks.append(negative_data_rejection)
        case.validate_response(response, checks=checks)
        if _content_type(response).startswith("application/problem+json"):
            _problem(response)
        assert not error_log.take()

    try:
        run()
    except Unsatisfiable:  # no parameter, header or body: nothing the schema forbids to send
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("nothing in this operation can be made invalid")
        raise


#: The same document for schemathesis' deterministic phases: the document's examples, then the
#: coverage phase's boundary values (lengths and numbers at and past each bound, each required part
#: missing, wrong types, each enum value) for every parameter and body.
BOUNDARIES = load_schema()
BOUNDARIES.config.phases.update(phases=["examples", "coverage"])


@BOUNDARIES.parametrize()
@settings(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_boundary_values_get_documented_answers(case: Any, bench: Bench, error_log: ErrorLog) -> None:
    signer = bench.dest if case.operation.path in AS_DEST else bench.source
    auth = None if (case.method.upper(), case.operation.path) in UNSIGNED else Sign(signer)
    response = _send(case, bench, auth)
    STATS["boundary", f"{case.method.upper()} {case.operation.path}", response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.content[:300])
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                              response_headers_conformance, response_schema_conformance])
    if _content_type(response).startswith("application/problem+json"):
        _problem(response)
    assert not error_log.take()
