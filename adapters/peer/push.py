"""Outbound: a packet for a unit of a peer hub's zone is handed to that hub, on behalf of its source.

The delivery engine claims the deliveries of every unit of the zone (one lane per zone) and calls
:meth:`PeerPushAdapter.push` per attempt. The push is one signed `POST /v1/peer/packets` to the
peer as this hub's unit there, carrying the original source and the packet's destinations in the
peer's zone; the peer creates one packet for all of them (a second delivery of the same packet
finds it: the sender's packet id is the peer's idempotency key) and answers its id. The delivery
becomes `forwarded` with that id, and :mod:`.tracking` ends it when the peer's delivery ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from lgsp.core.api import H_CONTENT, PushFailure, PushJob, PushReceipt, Signer, Text, client_ssl, http_failure, logs

from .settings import PROTOCOL, PeerRoute, parse_route
from .wire import H_ENVELOPE, HELLO, MAX_ENVELOPE, PACKETS, Envelope, envelope_query

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.peer")


class PeerClient:
    """Signed requests to one peer hub, as this hub's unit there; the nodes in `urls` in turn."""

    def __init__(self, route: PeerRoute, signer: Signer) -> None:
        self.route = route
        self.signer = signer
        self.ssl = client_ssl(dict(route.tls))
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True), auto_decompress=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, sock_connect=self.route.connect_timeout,
                                     sock_read=self.route.timeout)

    async def request(self, method: str, path: str, *, query: str = "", body: Any = None, sha256: str | None = None,
                      headers: Mapping[str, str] | None = None, size: int | None = None
                      ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body ≤ 64 KiB). Raises PushFailure (retryable) when no node answered."""
        last = ""
        for base in self.route.urls:
            url = URL(base + path + (f"?{query}" if query else ""), encoded=True)
            signed = self.signer.headers(method, url.raw_path, url.raw_query_string,
                                         sha256 or "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            signed.update(headers or {})
            if size is not None:
                signed.update({"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            signed[logs.REQUEST_ID_HEADER] = logs.request_id.get() or logs.request_id_for(path)
            try:
                async with self.http.request(method, url, data=body, headers=signed, timeout=self._timeout(),
                                             allow_redirects=False, ssl=self.ssl) as resp:
                    return resp.status, resp.headers, await resp.content.read(64 << 10)
            except TimeoutError:
                last = f"timed out talking to {url.host}:{url.port}"
                if body is not None:
                    break  # the body was (maybe) consumed: the engine retries the whole attempt
            except (aiohttp.ClientConnectionError, OSError) as exc:
                last = f"connection to {url.host}:{url.port} failed: {exc}"
                if body is not None and not isinstance(exc, aiohttp.ClientConnectorError):
                    break
        raise PushFailure(Text("peer hub of zone {zone}: {last}", zone=self.route.zone, last=last), retryable=True)


def problem_text(raw: bytes) -> str:
    """`code detail` of a problem+json answer, else the first line of the answer."""
    text = raw[:4096].decode("utf-8", "replace")
    try:
        body = json.loads(text)
        if isinstance(body, dict):
            text = " ".join(str(body[k]) for k in ("code", "detail") if body.get(k)) or text
    except ValueError:
        pass
    return " ".join(text.split())[:300]


class PeerPushAdapter:
    protocol = PROTOCOL
    zones: tuple[str, ...] = ()  # zones come from `routes:` entries naming this adapter
    concurrency = 2
    probe_interval_seconds = 60.0

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.clients: dict[str, PeerClient] = {}
        self.stale: list[PeerClient] = []  # replaced clients, closed at shutdown

    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        if not unit.startswith("zone:"):
            return [("protocol", Text("the peer adapter is a zone's route: configure it under routes.<zone>"))]
        return parse_route(unit.removeprefix("zone:"), target)[1]

    async def client(self, zone: str) -> PeerClient:
        """The client of the zone's route as configured now; the secret is read once per route."""
        from .settings import peer_routes

        route = peer_routes(self.hub.config.routes).get(zone)
        if route is None:
            raise PushFailure(Text("zone {zone} has no usable peer route", zone=zone), retryable=False)
        found = self.clients.get(zone)
        if found is not None and found.route == route:
            return found
        try:
            secret = await self.hub.secrets.reveal(route.secret_name)
        except Exception as exc:  # a missing secret: an operator's mistake, retried once fixed
            raise PushFailure(Text("the secret {secret_name!r} of the peer route of zone {zone} cannot be read: {exc}",
                                   secret_name=route.secret_name, zone=zone, exc=exc), retryable=True) from None
        client = PeerClient(route, Signer(route.key_id, self.hub.algorithms[route.algorithm], secret))
        if found is not None:
            self.stale.append(found)  # an attempt may still be using it
        self.clients[zone] = client
        return client

    def forget(self, zone: str, status: int) -> None:
        """After a refused signature the secret is read again (it may have been replaced meanwhile)."""
        if status == 401 and zone in self.clients:
            self.stale.append(self.clients.pop(zone))

    async def close(self) -> None:
        for client in [*self.clients.values(), *self.stale]:
            await client.close()
        self.clients.clear()
        self.stale.clear()

    async def push(self, job: PushJob) -> PushReceipt:
        zone = str(job.target.get("zone", ""))
        client = await self.client(zone)
        packet = job.packet
        zones = self.hub.directory.zones
        to = tuple(u for u in packet.to if zones.get(u) == zone) or (job.unit,)
        envelope = Envelope(packet=packet.id, source=packet.source, to=to, subject=packet.subject,
                            priority=packet.priority, data_type=packet.data_type, deadline=packet.deadline,
                            hub=self.hub.config.hub.identifier)
        encoded = envelope.encode()
        if len(encoded) > MAX_ENVELOPE:
            encoded = Envelope(**{**envelope.__dict__, "to": (job.unit,)}).encode()
        status, headers, raw = await client.request(
            "POST", PACKETS, query=envelope_query(encoded), body=job.content(self.hub.config.limits.io_chunk_size),
            sha256=packet.sha256, headers={H_ENVELOPE: encoded}, size=packet.size)
        if status in (200, 201):
            if headers.get(H_CONTENT, "").strip().lower() != packet.sha256:
                raise PushFailure(Text("the peer hub of zone {zone} did not echo the content's hash", zone=zone),
                                  retryable=True)
            try:
                remote = json.loads(raw)["id"]
            except (ValueError, KeyError, TypeError):
                raise PushFailure(Text("the peer hub of zone {zone} answered without a packet id", zone=zone),
                                  retryable=True) from None
            log.info("peer %s: packet %s for %s handed over as %s", zone, packet.id, job.unit, remote)
            return PushReceipt(detail=Text("peer hub {zone}: packet {remote}", zone=zone, remote=remote),
                               remote_id=str(remote)[:128], pending=True)
        self.forget(zone, status)
        raise http_failure(status, problem_text(raw), headers.get("Retry-After"))

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        """The peer answers a signed hello: reachable, our key accepted, and we are its peer."""
        try:
            client = await self.client(str(target.get("zone", "")))
            status, _, raw = await client.request("GET", HELLO)
        except PushFailure as exc:
            log.debug("peer probe of %s: %s", unit, exc.reason)
            return False
        if status != 200:
            self.forget(str(target.get("zone", "")), status)
            log.warning("peer probe of %s: HTTP %s %s", unit, status, problem_text(raw))
        return status == 200
