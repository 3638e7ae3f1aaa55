"""Hook `lgsp_web_routes`: an inbound adapter mounts routes that share the signed-request protocol."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from lgsp.core.hub import Hub
from lgsp.core.signing import Signer
from lgsp.core.web import authenticate, json_response
from lgsp.plugins.hookspecs import hookimpl
from lgsp.plugins.signatures import HMAC_SHA1

from ..conftest import raw_request
from .support import SRC, config


async def whoami(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return json_response({"unit": principal.unit_id})


class Adapter:
    @hookimpl
    def lgsp_web_routes(self, hub: Hub) -> list[web.RouteDef]:
        return [web.get("/x/whoami", whoami)]


async def test_mounted_routes_authenticate_like_the_hub(tmp_path: Path) -> None:
    async with Hub(config(tmp_path), extra_plugins=(Adapter(),)) as hub:
        await hub.directory.add_unit(SRC, "A")
        app = await hub.directory.add_application(SRC, "x")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA1")
        status, _, body = await raw_request(hub.url, "GET", "/x/whoami",
                                            signer=Signer(key.access_key, HMAC_SHA1, key.secret or ""))
        assert (status, body) == (200, {"unit": SRC})
        status, headers, body = await raw_request(hub.url, "GET", "/x/whoami")
        assert status == 401 and body["code"] == "auth.missing"
        assert headers["Content-Type"].startswith("application/problem+json")


async def test_without_the_plugin_the_route_does_not_exist(tmp_path: Path) -> None:
    async with Hub(config(tmp_path)) as hub:
        status, _, _ = await raw_request(hub.url, "GET", "/x/whoami")
        assert status == 404
