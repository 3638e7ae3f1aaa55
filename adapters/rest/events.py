"""`GET /v1/events`: the WebSocket a unit keeps open to hear of packets as they happen.

On connect: a `hello` with the pending inbox and the changes to the unit's sent packets since its
last stream; then live events. Subscribing happens before the hello is read from the store, so
nothing committed in between is missed; what the hello already covered is not sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from lgsp.core.events import Event
from lgsp.core.web import authenticate, hub_of

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CURSOR_EVERY = 50  # persist the stream position at least this often (events)


@routes.get("/v1/events")
async def events(request: web.Request) -> web.WebSocketResponse:
    principal = await authenticate(request)
    hub = hub_of(request)
    unit = principal.unit_id
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    sub = hub.bus.subscribe(unit)
    hub.presence.stream_opened(unit)
    reader = asyncio.create_task(_read_until_closed(ws, sub.queue))
    last_seq = 0
    unsaved = 0
    try:
        hello, covered_seqs, covered_packets = await hub.exchange.hello(unit)
        await hub.exchange.mark_told(unit, [str(i["id"]) for i in hello["inbox"]])
        await ws.send_json(hello)
        last_seq = max(covered_seqs, default=0)
        while True:
            event = await sub.queue.get()
            if event is None or ws.closed:
                break
            if _already_sent(event, covered_seqs, covered_packets):
                continue
            await ws.send_json(event.message())
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
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        if last_seq:
            try:
                await hub.exchange.save_cursor(unit, last_seq)
            except Exception:
                log.exception("could not save the stream position of %s", unit)
        if not ws.closed:
            await ws.close()
    return ws


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
