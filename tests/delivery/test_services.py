"""Service proxy `/v1/services/{service}/...`: sessions, grants, streaming both ways, timeouts, errors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from lgsp.adapters.rest.proxy import CALLER_HEADERS
from lgsp.adapters.rest.receiver import HubVerifier
from lgsp.client import LgspClient, LgspError
from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.signing import metadata_digest

from .helpers import UNITS, _run_app, add_units, free_port

CALLER, OWNER, OTHER = UNITS[0], UNITS[1], UNITS[2]
SVC = "so-tu-phap.tra-cuu"


class Service:
    """A unit's REST service: echoes, streams, sleeps; remembers what it saw."""

    def __init__(self) -> None:
        self.verifier: HubVerifier | None = None
        self.seen: list[dict[str, Any]] = []
        self.complete_bodies = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/api/echo", self.echo)
        app.router.add_get("/api/big", self.big)
        app.router.add_get("/api/slow", self.slow)
        app.router.add_get("/api/items/{name}", self.items)
        return app

    async def _note(self, request: web.Request) -> dict[str, Any]:
        # The hub appends its signed digest of the caller headers; the rest is the caller's path and query.
        path, _, meta = request.raw_path.rpartition("lgsp_meta=")
        note = {"path": path[:-1], "meta_ok": meta == metadata_digest(request.headers, CALLER_HEADERS),
                "caller": request.headers.get("X-LGSP-Caller-Unit"),
                "service": request.headers.get("X-LGSP-Service"),
                "verified": await self.verifier(request) if self.verifier else "no verifier",
                "headers": dict(request.headers)}
        self.seen.append(note)
        return note

    async def echo(self, request: web.Request) -> web.StreamResponse:
        note = await self._note(request)
        resp = web.StreamResponse(headers={"X-Verified": str(note["verified"]), "Content-Type": "application/x-test"})
        await resp.prepare(request)
        sha = hashlib.sha256()
        async for chunk in request.content.iter_chunked(1 << 16):
            sha.update(chunk)
            await resp.write(chunk)
        self.complete_bodies += 1
        await resp.write_eof()
        return resp

    async def big(self, request: web.Request) -> web.StreamResponse:
        await self._note(request)
        n = int(request.query["n"])
        resp = web.StreamResponse()
        resp.content_length = n
        await resp.prepare(request)
        block = bytes(range(256)) * 256
        sent = 0
        while sent < n:
            part = block[: min(len(block), n - sent)]
            await resp.write(part)
            sent += len(part)
        await resp.write_eof()
        return resp

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({"late": True})

    async def items(self, request: web.Request) -> web.Response:
        note = await self._note(request)
        return web.json_response({"name": request.match_info["name"], "q": request.query.get("q"),
                                  "raw": note["path"]})


@contextlib.asynccontextmanager
async def service_and_hub(cfg: Config, timeout: float = 5.0) -> AsyncIterator[tuple[Hub, Service, dict[str, Any]]]:
    svc = Service()
    port = free_port()
    runner = await _run_app(svc.app(), port)
    try:
        async with Hub(cfg) as hub:
            creds = await add_units(hub, [CALLER, OWNER, OTHER])
            await hub.services.add(SVC, OWNER, f"http://127.0.0.1:{port}/api", timeout_seconds=timeout)
            await hub.services.grant(SVC, CALLER)
            key = await hub.identity.key()
            svc.verifier = HubVerifier(key.access_key, key.public_key_pem)
            yield hub, svc, creds
    finally:
        await runner.cleanup()


async def session_client(hub: Hub, creds: Any, target: str) -> LgspClient:
    client = creds.client(hub.url)
    token = (await client.open_session(target))["token"]
    client.session_token = token
    return client


async def raw(client: LgspClient, method: str, path: str, body: bytes = b"",
              declared: str | None = None) -> tuple[int, dict[str, str], bytes]:
    url = URL(client.base + path, encoded=True)
    headers = client.signed_headers(method, url, declared or hashlib.sha256(body).hexdigest())
    async with client.http.request(method, url, data=body or None, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_call_is_forwarded_streamed_both_ways_and_signed_by_the_hub(cfg: Config) -> None:
    async with service_and_hub(cfg) as (hub, svc, creds):
        client = await session_client(hub, creds[CALLER], SVC)
        async with client:
            body = os.urandom(3 * (1 << 20) + 5)
            code, headers, echoed = await raw(client, "POST", f"/v1/services/{SVC}/echo", body)
            assert code == 200
            assert echoed == body
            assert headers["X-Verified"] == "None"  # the service verified the hub's signature itself
            assert headers["Content-Type"] == "application/x-test"
            seen = svc.seen[-1]
            assert (seen["path"], seen["caller"], seen["service"]) == ("/api/echo", CALLER, SVC)
            assert seen["meta_ok"] is True  # the caller headers are covered by the hub's signature
            # the caller's own credentials never reach the service
            assert seen["headers"]["X-LGSP-Key"] != creds[CALLER].access_key
            assert "X-LGSP-Session" not in seen["headers"]
            # 5 MB answer streamed back
            code, _, big = await raw(client, "GET", f"/v1/services/{SVC}/big?n={5 << 20}")
            assert code == 200
            assert len(big) == 5 << 20
            assert big[:512] == bytes(range(256)) * 2
            # path and query pass through exactly as encoded
            code, _, text = await raw(client, "GET", f"/v1/services/{SVC}/items/s%E1%BB%9F?q=a%20b")
            assert code == 200
            answer = json.loads(text)
            assert answer == {"name": "sở", "q": "a b", "raw": "/api/items/s%E1%BB%9F?q=a%20b"}


async def test_owner_verifies_a_direct_call_made_under_a_service_session(cfg: Config) -> None:
    """Direct mode: the caller calls the service itself; the owner asks POST /v1/verify."""
    from lgsp.core.signing import EMPTY_SHA256

    async with service_and_hub(cfg) as (hub, _svc, creds):
        caller = await session_client(hub, creds[CALLER], SVC)
        async with caller, creds[OWNER].client(hub.url) as owner, creds[OTHER].client(hub.url) as other:
            headers = caller.signer.headers("GET", "/api/items/x", "", EMPTY_SHA256, session=caller.session_token)
            with contextlib.suppress(LgspError):
                assert (await other.verify("GET", "/api/items/x", "", headers))["valid"] is False
            answer = await owner.verify("GET", "/api/items/x", "", headers)
            assert answer["valid"] is True
            assert (answer["unit"], answer["target"]) == (CALLER, SVC)


async def test_refusals(cfg: Config) -> None:
    async with service_and_hub(cfg) as (hub, svc, creds):
        path = f"/v1/services/{SVC}/items/a"
        async with creds[CALLER].client(hub.url) as plain:
            code, _, body = await raw(plain, "GET", path)  # no session
            assert (code, _code(body)) == (403, "forbidden")
        wrong = await session_client(hub, creds[CALLER], OWNER)  # a session for a unit, not the service
        async with wrong:
            code, _, body = await raw(wrong, "GET", path)
            assert (code, _code(body)) == (403, "forbidden")
        async with creds[OTHER].client(hub.url) as other:  # never granted: no session for it
            with pytest.raises(LgspError, match="forbidden"):
                await other.open_session(SVC)
        caller = await session_client(hub, creds[CALLER], SVC)
        async with caller:
            code, _, _ = await raw(caller, "GET", path)
            assert code == 200
            await hub.services.revoke(SVC, CALLER)  # takes effect on the next call
            code, _, body = await raw(caller, "GET", path)
            assert (code, _code(body)) == (403, "forbidden")
            await hub.services.grant(SVC, CALLER)
            await hub.services.set_status(SVC, "suspended")
            code, _, body = await raw(caller, "GET", path)
            assert (code, _code(body)) == (403, "forbidden")
            await hub.services.set_status(SVC, "active")
            code, _, body = await raw(caller, "GET", "/v1/services/khong-co/x")
            assert (code, _code(body)) == (404, "not_found")
            # a body that does not match its declared hash never reaches the service whole
            before = svc.complete_bodies
            body_bytes = os.urandom(300_000)
            code, _, body = await raw(caller, "POST", f"/v1/services/{SVC}/echo", body_bytes, declared="0" * 64)
            assert (code, _code(body)) == (400, "content.hash_mismatch")
            await asyncio.sleep(0.2)
            assert svc.complete_bodies == before
        assert len(svc.seen) >= 1


async def test_service_down_and_slow(cfg: Config) -> None:
    async with service_and_hub(cfg, timeout=0.5) as (hub, _svc, creds):
        caller = await session_client(hub, creds[CALLER], SVC)
        async with caller:
            code, _, body = await raw(caller, "GET", f"/v1/services/{SVC}/slow")
            assert (code, _code(body)) == (504, "service.timeout")
            await hub.services.remove(SVC)
            await hub.services.add(SVC, OWNER, f"http://127.0.0.1:{free_port()}/api", timeout_seconds=0.5)
            await hub.services.grant(SVC, CALLER)
            code, _, body = await raw(caller, "GET", f"/v1/services/{SVC}/items/a")
            assert (code, _code(body)) == (502, "service.unavailable")


async def test_registry_rejects_bad_input(cfg: Config) -> None:
    from lgsp.core.errors import Problem

    async with service_and_hub(cfg) as (hub, _svc, _creds):
        for args, match in (((SVC, OWNER, "http://x/api"), "conflict"), (("Bad_Id", OWNER, "http://x"), "service id"),
                            (("ok-id", OWNER, "ftp://x"), "url"), (("ok-id", "000.00.99.H23", "http://x"), "unit")):
            with pytest.raises(Problem, match=match):
                await hub.services.add(*args)


def _code(body: bytes) -> str:
    return json.loads(body)["code"]
