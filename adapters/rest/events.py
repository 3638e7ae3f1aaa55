"""`GET /v1/events`: the WebSocket a unit keeps open to hear of packets as they happen.

On connect: a `hello` with the pending inbox and the changes to the unit's sent packets since its
last stream; then live events. Subscribing happens before the hello is read from the store, so
nothing committed in between is missed; what the hello already covered is not sent twice.

The upgrade request is signed like any request, or, where no header can be set (a browser's
WebSocket), carries a single-use ticket from `POST /v1/events/tickets` (core/tickets.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from lgsp.core.api import (
    PRINCIPAL,
    SIGNED_HEADERS,
    Event,
    Principal,
    Problem,
    Text,
    authenticate,
    base_url,
    hub_of,
    json_response,
    read_json,
)

from . import render

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CURSOR_EVERY = 50  # persist the stream position at least this often (events)
CLOSE_REFUSED = 4401  # WebSocket close code: the key or unit is no longer allowed (reason = problem code)


@routes.post("/v1/events/tickets")
async def issue_ticket(request: web.Request) -> web.Response:
    """A single-use ticket for a client that cannot sign the upgrade request (a browser page)."""
    principal = await authenticate(request)
    body = await read_json(request, required=False)
    if body != {}:
        raise Problem("request.invalid", Text("this call takes no body (or an empty JSON object)"))
    ticket = await hub_of(request).tickets.issue(principal)
    base = base_url(request)
    stream = ("wss" if base.startswith("https:") else "ws") + base[base.index(":"):] + "/v1/events"
    return json_response(ticket.public(stream), status=201)


async def _stream_principal(request: web.Request, ws: web.WebSocketResponse) -> Principal:
    """The signed upgrade request's principal, or the one its `ticket` stands for (spent here)."""
    ticket = request.query.get("ticket")
    if ticket is None:
        principal = await authenticate(request)
        _require_handshake(request, ws, Text("GET /v1/events opens a WebSocket; send an upgrade request"))
        return principal
    if any(name in request.headers for name in SIGNED_HEADERS):
        raise Problem("request.malformed", Text("send either a stream ticket or the signature headers, not both"))
    # not a WebSocket handshake: keep the ticket for the real one
    _require_handshake(request, ws, Text("GET /v1/events?ticket= opens a WebSocket; send an upgrade request"))
    principal = await hub_of(request).tickets.redeem(ticket)
    request[PRINCIPAL] = principal
    return principal


#: The headers aiohttp's handshake reads. One that is not ASCII (no WebSocket client sends that) makes
#: the handshake fail with an exception of its own (500), not a refusal: checked first.
HANDSHAKE_HEADERS = ("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
                     "Sec-WebSocket-Extensions")


def _require_handshake(request: web.Request, ws: web.WebSocketResponse, why: Text) -> None:
    """`request.malformed` unless `ws.prepare` will complete the handshake, so nothing is spent or
    subscribed for a request that cannot become a stream."""
    for name in HANDSHAKE_HEADERS:
        if not all(value.isascii() for value in request.headers.getall(name, ())):
            raise Problem("request.malformed", Text("{header}: a WebSocket handshake header holds ASCII text only",
                                                    header=name))
    if request.method != "GET" or not ws.can_prepare(request).ok:
        raise Problem("request.malformed", why)


@routes.get("/v1/events")
async def events(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    principal = await _stream_principal(request, ws)
    hub = hub_of(request)
    unit = principal.unit_id
    await ws.prepare(request)
    sub = hub.bus.subscribe(unit)
    hub.presence.stream_opened(unit)
    reader = asyncio.create_task(_read_until_closed(ws, sub.queue))
    refused: list[Problem] = []
    guard = asyncio.create_task(_guard_key(hub, principal.access_key, sub.queue, refused))
    last_seq = 0
    unsaved = 0
    try:
        hello = await hub.exchange.hello(unit)
        covered_seqs = {c.seq for c in hello.changes}
        covered_packets = {i.id for i in hello.inbox}
        await hub.exchange.mark_told(unit, [i.id for i in hello.inbox])
        await ws.send_json(render.hello(hello))
        last_seq = max(covered_seqs, default=0)
        # A hello cut at its page size (`more`) leaves older changes unsent: live events then must
        # not move the saved position past them, so the next stream starts where this hello ended.
        advance = not hello.more
        while True:
            event = await sub.queue.get()
            if event is None or ws.closed or refused:
                break
            if _already_sent(event, covered_seqs, covered_packets):
                continue
            await ws.send_json(event.message())
            if advance:
                last_seq = max(last_seq, event.seq)
            unsaved += 1
            if unsaved >= CURSOR_EVERY:
                await hub.exchange.save_cursor(unit, last_seq)
                unsaved = 0
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.bus.unsubscribe(sub)
        hub.presence.stream_closed(unit)
        for task in (reader, guard):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if last_seq:
            try:
                await hub.exchange.save_cursor(unit, last_seq)
            except Exception:
                log.exception("could not save the stream position of %s", unit)
        if not ws.closed:
            if refused:  # say why, then close with a code from the private range
                with contextlib.suppress(Exception):
                    await ws.send_json({"type": "stream.closed", "code": refused[0].code,
                                        "detail": refused[0].detail})
                await ws.close(code=CLOSE_REFUSED, message=refused[0].code.encode())
            else:
                await ws.close()
    return ws


async def _guard_key(hub: Hub, access_key: str, queue: asyncio.Queue[Event | None], refused: list[Problem]) -> None:
    """Re-check the stream's key every `security.stream_recheck_seconds`: a key revoked or a unit
    suspended after the stream opened ends it, as the next request would be refused."""
    while True:
        await asyncio.sleep(hub.config.security.stream_recheck_seconds)
        try:
            await hub.auth.usable_key(access_key)
        except Problem as problem:
            refused.append(problem)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
            return
        except Exception:  # the store is unreachable for a moment: keep the stream, check again
            log.exception("could not re-check the key of an event stream")


def _already_sent(event: Event, seqs: set[int], packets: set[str]) -> bool:
    if event.seq in seqs:
        return True
    return event.type == "packet.available" and event.packet_id in packets


async def _read_until_closed(ws: web.WebSocketResponse, queue: asyncio.Queue[Event | None]) -> None:
    """Consume client frames (clients send nothing but pings) and wake the writer on close."""
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)
