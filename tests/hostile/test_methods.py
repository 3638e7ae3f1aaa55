"""Every route the hub serves, with every method: HEAD, OPTIONS, TRACE, WebDAV's, and the usual ones
where a route does not take them; unsigned and signed.

The routes are read from the running hub's router (REST, events, peering, console, SOAP, VXP,
health, metrics), so a route added later is covered too. No answer is a 5xx or logs at ERROR; a
method a route does not take is `405 method_not_allowed` with an `Allow` header naming the ones it
does (RFC 9110 15.5.6); any other refusal outside the console (HTML pages) is problem+json, HEAD
included (its type says so, without a body).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from yarl import URL

from lgsp.client import Credentials, LgspClient
from lgsp.core.hub import Hub
from lgsp.core.signing import Signer

from .test_peer import PEER, A, B, peer_zone_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLUGINS = "[rest, edxml, soap_edxml, console, vxp, peer]"
#: Methods aiohttp's parser knows (an unknown token is refused before routing, as malformed HTTP).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "SEARCH")
#: A SOAP 1.1 fault travels with HTTP 500, whoever is at fault (the SOAP tests check its content).
SOAP_FAULTS = {("POST", "/soap/edxml")}


@dataclass
class Routes:
    hub: Hub
    signers: dict[str, Signer]
    packet_id: str

    def paths(self) -> dict[str, tuple[str, set[str]]]:
        """template → (a path that reaches it, the methods it takes)."""
        found: dict[str, tuple[str, set[str]]] = {}
        for route in self.hub.app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            template = info.get("path") or info.get("formatter")
            if not template:
                continue
            if template not in found:
                found[template] = (self._reach(route.resource, template), set())
            found[template][1].add(route.method)
        return found

    def _reach(self, resource: web.AbstractResource | None, template: str) -> str:
        """The template filled with values its placeholders' patterns take (`{action:grant|revoke}`)."""
        names = re.findall(r"\{[^}]+\}", template)
        candidates = (self.packet_id, "x", "a/b", "01", "retry", "reset", "grant", "csv")
        for values in itertools.product(candidates, repeat=len(names)):
            path = template
            for name, value in zip(names, values, strict=True):
                path = path.replace(name, value, 1)
            if resource is not None and resource._match(path) is not None:  # aiohttp's own matcher
                return path
        raise AssertionError(f"no test value reaches {template}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def routes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Routes]:
    config = peer_zone_config(tmp_path_factory.mktemp("hostile-methods"), PLUGINS)
    async with Hub(config) as hub:
        clients: dict[str, LgspClient] = {}
        for unit, zone in ((A, "local"), (B, "local"), (PEER, "qnam")):
            await hub.directory.add_unit(unit, f"Đơn vị {unit}", zone=zone)
            app = await hub.directory.add_application(unit, "vbql")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            clients[unit] = LgspClient(Credentials(hub.url, key.access_key, secret=key.secret))
        try:
            packet_id = await clients[A].send(b"methods", [B], subject="Phương thức")
            yield Routes(hub, {u: c.signer for u, c in clients.items()}, packet_id)
        finally:
            for client in clients.values():
                await client.close()


def _signer_for(routes: Routes, template: str) -> Signer:
    if template.startswith("/v1/peer/"):
        return routes.signers[PEER]
    return routes.signers[B]  # the destination: it may read the packet, its content and its inbox


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
async def test_every_route_with_every_method(routes: Routes, caplog: pytest.LogCaptureFixture, signed: bool) -> None:
    caplog.set_level(logging.INFO)
    wrong: list[str] = []
    found = routes.paths()
    assert {"/v1/inbox", "/v1/peer/packets", "/console/login", "/v1/events", "/soap/edxml"} <= set(found)
    async with aiohttp.ClientSession() as http:
        for template, (path, allowed) in sorted(found.items()):
            url = URL(routes.hub.url + path, encoded=True)
            for method in METHODS:
                headers = dict(_signer_for(routes, template).headers(
                    method, url.raw_path, url.raw_query_string, hashlib.sha256(b"").hexdigest())) if signed else {}
                seen = len(caplog.records)
                async with http.request(method, url, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
                    status, kind = resp.status, resp.headers.get("Content-Type", "")
                    allow = resp.headers.get("Allow")
                where = f"{method} {template}: {status} {kind}"
                loud = [r.getMessage() for r in caplog.records[seen:] if r.levelno >= logging.ERROR or r.exc_info]
                if loud:
                    wrong.append(f"{where} logged {loud}")
                if status >= 500 and (method, template) not in SOAP_FAULTS:
                    wrong.append(where)
                if method not in allowed and "*" not in allowed:
                    if status != 405 or allow is None or set(allow.split(",")) != allowed:
                        wrong.append(f"{where}, Allow {allow!r}, takes {sorted(allowed)}")
                elif 400 <= status < 500 and not template.startswith("/console") \
                        and not kind.startswith("application/problem+json"):
                    wrong.append(where)
    assert not wrong, "\n".join(wrong)


async def test_a_method_not_allowed_names_the_allowed_ones(routes: Routes) -> None:
    async with aiohttp.ClientSession() as http, http.request("DELETE", routes.hub.url + "/v1/inbox") as resp:
        problem = await resp.json(content_type=None)
        assert (resp.status, problem["code"]) == (405, "method_not_allowed")
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
