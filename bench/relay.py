"""The raw relay: the hub's pull exchange with everything but HTTP taken out.

It answers the same routes the LgspClient calls, in the same number of round trips (create,
upload, a `packet.available` over the WebSocket, ready, download, ack), with no auth, no database,
no hashing and no disk: bodies live in memory and are dropped on the last ack. Whatever the hub
does beyond this is what the ratio to the relay measures. Run as its own process, like the hub:

    python -m bench.relay --port 0      # prints "relay listening on http://127.0.0.1:PORT"

Push mode (for the push-delivery rows): a destination registered with `--push UNIT=URL` gets each
packet POSTed to URL on upload instead of a notification, as the hub's REST push adapter will.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web

H_KEY = "X-LGSP-Key"
H_CONTENT = "X-LGSP-Content-SHA256"
MAX_BODY = 3 * 1024**3
CHUNK = 1 << 20


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Packet:
    source: str
    to: set[str]
    sha256: str
    size: int
    subject: str
    body: bytes | None = None
    acked: set[str] = field(default_factory=set)


class Relay:
    """In-memory state of the relay; one instance per process."""

    def __init__(self, push: dict[str, str] | None = None) -> None:
        self.packets: dict[str, _Packet] = {}
        self.streams: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.push = push or {}
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([
            web.get("/v1/time", self.time),
            web.post("/v1/packets", self.create),
            web.put("/v1/packets/{id}/content", self.upload),
            web.get("/v1/packets/{id}/content", self.download),
            web.post("/v1/packets/{id}/ready", self.ready),
            web.post("/v1/packets/{id}/ack", self.ack),
            web.get("/v1/inbox", self.inbox),
            web.get("/v1/events", self.events),
        ])
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    @staticmethod
    def _expires() -> str:
        return _iso(datetime.now(UTC) + timedelta(hours=1))

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"now": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        packet_id = str(uuid.uuid4())
        self.packets[packet_id] = _Packet(source=request.headers.get(H_KEY, ""), to=set(body["to"]),
                                          sha256=body["sha256"], size=int(body["size"]),
                                          subject=body.get("subject", ""))
        url = f"{self._base(request)}/v1/packets/{packet_id}/content?expires=0&token=relay"
        return web.json_response({"id": packet_id, "upload": {"method": "PUT", "url": url,
                                                              "expires_at": self._expires()}}, status=201)

    async def upload(self, request: web.Request) -> web.Response:
        packet = self.packets.get(request.match_info["id"])
        if packet is None:
            raise web.HTTPNotFound()
        packet.body = await request.read()
        packet_id = request.match_info["id"]
        message = json.dumps({"type": "packet.available", "id": packet_id, "at": _iso(datetime.now(UTC)),
                              "from": packet.source, "subject": packet.subject, "size": packet.size,
                              "sha256": packet.sha256})
        for unit in packet.to:
            if unit in self.push:
                await self._push(packet_id, packet, unit)
                continue
            for ws in tuple(self.streams.get(unit, ())):
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(message)
        return web.json_response({"id": packet_id, "state": "accepted", "size": len(packet.body),
                                  "sha256": packet.sha256})

    async def _push(self, packet_id: str, packet: _Packet, unit: str) -> None:
        """Deliver by POSTing to the receiver, as a push adapter would; 2xx means delivered."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {H_CONTENT: packet.sha256, "X-LGSP-Idempotency-Key": f"{packet_id}:{unit}",
                   "Content-Type": "application/octet-stream"}
        async with self._http.post(self.push[unit], data=packet.body, headers=headers) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                self._acked(packet_id, packet, unit)

    async def ready(self, request: web.Request) -> web.Response:
        packet_id = request.match_info["id"]
        if packet_id not in self.packets:
            raise web.HTTPNotFound()
        await request.read()
        url = f"{self._base(request)}/v1/packets/{packet_id}/content?expires=0&token=relay"
        return web.json_response({"download": {"method": "GET", "url": url, "expires_at": self._expires()}})

    async def download(self, request: web.Request) -> web.StreamResponse:
        packet = self.packets.get(request.match_info["id"])
        if packet is None or packet.body is None:
            raise web.HTTPNotFound()
        headers = {H_CONTENT: packet.sha256, "Content-Type": "application/octet-stream"}
        if len(packet.body) <= CHUNK:
            return web.Response(body=packet.body, headers=headers)
        # Large bodies go out in slices: one huge write makes asyncio's transport buffer shuffle the
        # whole remainder after every send (quadratic on Python 3.11), which no real server does.
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(packet.body)
        await resp.prepare(request)
        view = memoryview(packet.body)
        for start in range(0, len(view), CHUNK):
            await resp.write(view[start:start + CHUNK])
        await resp.write_eof()
        return resp

    async def ack(self, request: web.Request) -> web.Response:
        packet_id = request.match_info["id"]
        packet = self.packets.get(packet_id)
        await request.read()
        if packet is not None:
            self._acked(packet_id, packet, request.headers.get(H_KEY, ""))
        return web.json_response({"state": "delivered"})

    def _acked(self, packet_id: str, packet: _Packet, unit: str) -> None:
        packet.acked.add(unit)
        if packet.acked >= packet.to:  # purge, as the hub does after the last ack
            del self.packets[packet_id]

    async def inbox(self, request: web.Request) -> web.Response:
        unit = request.headers.get(H_KEY, "")
        items = [{"id": pid, "from": p.source, "size": p.size, "sha256": p.sha256}
                 for pid, p in self.packets.items() if unit in p.to and p.body is not None and unit not in p.acked]
        return web.json_response({"items": items})

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        unit = request.headers.get(H_KEY, "")
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        self.streams[unit].add(ws)
        try:
            await ws.send_json({"type": "hello", "at": _iso(datetime.now(UTC)), "unit": unit, "inbox": [],
                                "changes": []})
            async for _msg in ws:
                pass
        finally:
            self.streams[unit].discard(ws)
        return ws


async def serve(host: str, port: int, push: dict[str, str]) -> None:
    runner = web.AppRunner(Relay(push).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"relay listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="raw relay baseline for the lgsp benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--push", action="append", default=[], metavar="UNIT=URL",
                        help="deliver this unit's packets by POST to URL instead of notifying it")
    args = parser.parse_args(argv)
    push = dict(item.split("=", 1) for item in args.push)
    asyncio.run(serve(args.host, args.port, push))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
