"""Limits on HTTP connections that aiohttp's server does not have.

aiohttp 3.14 offers a keep-alive timeout (`keepalive_timeout`, also armed when a connection opens)
and limits on the size of the request line and headers, but no deadline for the headers to arrive,
no limit on how long a request body may send nothing, and no cap per client. Without them a few
hundred connections that trickle their headers, or an upload that stops half-way, hold sockets
(and, for an upload, its packet) for as long as the peer likes.

`ConnectionGuard` is the protocol factory of the listening socket. It wraps each aiohttp protocol
(`RequestHandler`) and adds:

* a **header deadline**: a request's line and headers must arrive within `header_timeout` of the
  connection opening, or of the first byte of the next request on a kept-alive connection;
* a **body-idle timeout**: while a request is being handled and its body is not fully received, a
  connection that delivers no byte for `body_idle_timeout` is closed. Time while the hub itself has
  stopped reading (its buffer is full because the handler is busy) does not count, so an upload that
  keeps sending is never cut, however long it takes;
* a **cap per client address**: beyond `max_per_address` open connections from one address a new
  connection gets a canned `503` problem (`unavailable`) and is closed before anything is parsed.
  The address is the TCP peer: behind a reverse proxy it is the proxy's, so the cap must then be set
  to 0 and the per-client limit enforced by the proxy.

The guard learns where each request starts and ends from `middleware`, which the hub puts first on
the application. Closing a connection cancels its request the way a client disconnecting does: the
handler's body read raises `ConnectionResetError` and an upload in progress is dropped with its files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lgsp.core.errors import Problem
from lgsp.core.i18n import Text

log = logging.getLogger("lgsp.connections")

_REFUSAL_LOG_INTERVAL = 60.0  # seconds between two warnings about one address hitting its cap


def _refusal() -> bytes:
    too_many = Text("too many open connections from this address; close idle ones and retry")
    body = json.dumps(Problem("unavailable", too_many).to_dict("vi"), ensure_ascii=False).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class ConnectionGuard:
    """Protocol factory for the hub's listening socket; see the module docstring."""

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], *, header_timeout: float,
                 body_idle_timeout: float, max_per_address: int) -> None:
        self.make_protocol = make_protocol
        self.header_timeout = header_timeout
        self.body_idle_timeout = body_idle_timeout
        self.max_per_address = max_per_address
        self.per_address: dict[str, int] = {}
        self._by_handler: dict[object, GuardedConnection] = {}
        self._warned: dict[str, float] = {}
        self.refusal = _refusal()

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Tell the connection a request's headers are in (its handler runs) and when it is done."""
        conn = self._by_handler.get(request.protocol)
        if conn is None:  # pragma: no cover - a request not made through the guard (none in the hub)
            return await handler(request)
        conn.request_started(request)
        try:
            return await handler(request)
        finally:
            conn.request_ended()

    # -- bookkeeping for GuardedConnection ------------------------------------------------------
    def admit(self, address: str) -> bool:
        count = self.per_address.get(address, 0)
        if self.max_per_address and count >= self.max_per_address:
            now = time.monotonic()
            if now - self._warned.get(address, -_REFUSAL_LOG_INTERVAL) >= _REFUSAL_LOG_INTERVAL:
                self._warned[address] = now
                log.warning("refusing connections from %s: %d already open (server.max_connections_per_address)",
                            address, count)
            return False
        self.per_address[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.per_address.get(address, 0) - 1
        if count > 0:
            self.per_address[address] = count
        else:
            self.per_address.pop(address, None)
            self._warned.pop(address, None)


class GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's protocol inside, the deadlines and the per-address count around it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self._loop = asyncio.get_running_loop()
        # One deadline at a time (headers, or body idleness), watched by at most one timer, which is
        # moved earlier when needed but never later: a timer that fires before the deadline re-arms
        # itself for the rest. A kept-alive connection thus schedules a timer every few seconds
        # rather than two per request (and cancels none).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self._on_deadline: Callable[[], None] | None = None
        self._in_request = False
        self._awaiting_headers = False
        self._payload: Any = None
        self._last_data = 0.0

    # -- asyncio protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        if not self.guard.admit(self.address):
            transport.write(self.guard.refusal)
            transport.close()
            return
        self.inner = self.guard.make_protocol()
        self.guard._by_handler[self.inner] = self
        self._await_headers()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return  # refused: whatever it sends is ignored until the close completes
        self._last_data = self._loop.time()
        if not self._in_request and not self._awaiting_headers:
            self._await_headers()  # the first byte of the next request on a kept-alive connection
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._on_deadline = None
        if self.inner is None:
            return
        self.guard._by_handler.pop(self.inner, None)
        self.guard.release(self.address)
        inner, self.inner, self._payload = self.inner, None, None
        inner.connection_lost(exc)

    # -- requests (from the middleware) -----------------------------------------------------------
    def request_started(self, request: web.Request) -> None:
        self._in_request = True
        self._awaiting_headers = False
        self._payload = request.content
        self._last_data = self._loop.time()
        self._set_timer(self.guard.body_idle_timeout, self._check_body)

    def request_ended(self) -> None:
        self._in_request = False
        self._payload = None
        self._on_deadline = None  # idle between requests: aiohttp's keep-alive timeout applies

    # -- deadlines --------------------------------------------------------------------------------
    def _await_headers(self) -> None:
        self._awaiting_headers = True
        self._set_timer(self.guard.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        if self._awaiting_headers and not self._in_request:
            log.debug("closing the connection from %s: no complete request headers within %g s",
                      self.address, self.guard.header_timeout)
            self._close()

    def _check_body(self) -> None:
        payload, transport = self._payload, self.transport
        if not self._in_request or payload is None or transport is None or payload.is_eof():
            return  # the body is in (or there is none): nothing more to wait for
        now = self._loop.time()
        if not transport.is_reading():
            self._last_data = now  # the hub stopped reading (full buffer): the client cannot send
        idle = now - self._last_data
        if idle >= self.guard.body_idle_timeout:
            log.info("closing the connection from %s: its request body sent nothing for %g s",
                     self.address, self.guard.body_idle_timeout)
            self._close()
            return
        self._set_timer(self.guard.body_idle_timeout - idle, self._check_body)

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        """Call `callback` `delay` seconds from now, instead of what was set before."""
        self._deadline = self._loop.time() + delay
        self._on_deadline = callback
        if self._timer is None or self._timer_at > self._deadline:
            self._arm(self._deadline)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        callback = self._on_deadline
        if callback is None:
            return  # the deadline was withdrawn (the request ended): nothing to watch until the next one
        if self._loop.time() < self._deadline:
            self._arm(self._deadline)  # armed for an earlier deadline since replaced by a later one
            return
        self._on_deadline = None
        callback()

    def _cancel_timer(self) -> None:
        self._on_deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
