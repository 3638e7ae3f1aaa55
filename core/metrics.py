"""`GET /metrics`: the hub's Prometheus metrics, through the official client library.

Each hub has its own `CollectorRegistry` (a process may run several hubs, e.g. in tests). Two kinds
of series:

- counted here, by this node, as things happen: HTTP requests, authentication failures, packets
  created/accepted/completed, ended deliveries, push retries, delivery times, edXML validation
  times. Across nodes, sum them.
- read from the store at scrape time (one short read, shared by concurrent scrapes and reused for
  `SNAPSHOT_SECONDS`; units online lag by the presence flush, 1 s): deliveries not yet ended by
  state and protocol, push queue depth and oldest waiting delivery per unit, offline units with
  deliveries waiting, units online, blob bytes stored. Every node reports the same values: in a
  cluster take `max` of them, not `sum`. Open event streams and pool use are this node's.

Access is limited by address (`metrics.allow`) or a bearer token whose SHA-256 is in the YAML
(`metrics.token_sha256`); anything else gets `403 forbidden`. docs/operations.md has the details
and docs/ops/ a Grafana dashboard and Prometheus alert rules built on these names.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select

from lgsp.core import deliveries as dv
from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.store.tables import deliveries, packet_contents, packets, units

if TYPE_CHECKING:
    from lgsp.core.events import Event
    from lgsp.core.exchange import PacketInfo
    from lgsp.core.hub import Hub

log = logging.getLogger("lgsp.metrics")

#: A store snapshot is reused this long (scrapes from two Prometheus servers cost one read).
SNAPSHOT_SECONDS = 2.0
#: The classic text format: what `generate_latest` writes and every Prometheus 2.x reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PACKET_STAGES = {"packet.created": "created", "packet.accepted": "accepted", "packet.completed": "completed",
                  "upload.expired": "expired"}
#: Delivery times span seconds (a unit online) to days (a unit offline over a holiday).
_DELIVERY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)
_VALIDATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
PRIORITY_NAMES = ("normal", "urgent", "very_urgent", "flash")


class Metrics:
    """The metrics of one hub: counters fed by the hub, gauges read at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lgsp_http_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("lgsp_http_request_duration_seconds",
                                         "Time to answer an HTTP request, by route template", ["route"], registry=r)
        self.auth_failures = Counter("lgsp_auth_failures", "Signed requests refused, by problem code", ["code"],
                                     registry=r)
        self.packets = Counter("lgsp_packets", "Packets by lifecycle stage reached on this node "
                               "(created, accepted, completed, expired)", ["stage"], registry=r)
        self.deliveries_ended = Counter("lgsp_deliveries_ended", "Deliveries ended, by final state and protocol "
                                        "(pull for pulled deliveries)", ["state", "protocol"], registry=r)
        self.delivery_seconds = Histogram("lgsp_delivery_duration_seconds",
                                          "From a packet's acceptance to its delivery to one destination, by "
                                          "priority", ["priority"], buckets=_DELIVERY_BUCKETS, registry=r)
        self.retries = Counter("lgsp_push_retries", "Push attempts that failed and were scheduled again, by protocol",
                               ["protocol"], registry=r)
        self.edxml_validation = Histogram("lgsp_edxml_validation_duration_seconds",
                                          "Time to parse and validate one uploaded edXML packet",
                                          buckets=_VALIDATION_BUCKETS, registry=r)
        # Every stage shows from the start, at 0; events find their stage's series here.
        self._stage_series = {event: self.packets.labels(stage) for event, stage in _PACKET_STAGES.items()}
        self._ended_series: dict[tuple[str, str], Any] = {}
        self._delivery_series: dict[str, Any] = {}  # by priority, made when first observed
        # The series of each (route, method, status) seen, so a request does not pay `labels()` (label
        # checks, a lock, a dict of tuples) twice. Bounded: routes are templates, methods and statuses few.
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.snapshot = StoreSnapshot(hub)
        r.register(self.snapshot)

    # -- feeding --------------------------------------------------------------------------------
    def observe_events(self, events: Iterable[Event]) -> None:
        """Committed events, as the hub publishes them (EventBus observer)."""
        for event in events:
            series = self._stage_series.get(event.type)
            if series is not None:
                series.inc()

    def on_hook(self, name: str, kwargs: dict[str, Any]) -> None:
        """The lifecycle notifications the hub sends plugins (Hub.call_hook), seen first."""
        if name == "lgsp_packet_delivered":
            packet: PacketInfo = kwargs["packet"]
            self._ended(dv.DELIVERED, _protocol(self.hub, kwargs["unit"])).inc()
            start = packet.accepted_at or packet.created_at
            seconds = max(0.0, (datetime.now(UTC) - start).total_seconds())
            priority = PRIORITY_NAMES[max(0, min(3, packet.priority))]
            series = self._delivery_series.get(priority)
            if series is None:
                series = self._delivery_series[priority] = self.delivery_seconds.labels(priority)
            series.observe(seconds)
        elif name == "lgsp_packet_failed":
            self._ended(kwargs["state"], _protocol(self.hub, kwargs["unit"])).inc()

    def _ended(self, state: str, protocol: str) -> Any:
        """The series of deliveries ended in `state` over `protocol` (states and protocols are few)."""
        series = self._ended_series.get((state, protocol))
        if series is None:
            series = self._ended_series[(state, protocol)] = self.deliveries_ended.labels(state, protocol)
        return series

    def auth_failed(self, code: str) -> None:
        self.auth_failures.labels(code).inc()

    def retried(self, protocol: str) -> None:
        self.retries.labels(protocol).inc()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = _route_of(request)
            method = request.method if request.method in _METHODS else "other"
            key = (route, method, status)
            series = self._request_series.get(key)
            if series is None:
                series = self._request_series[key] = (self.requests.labels(route, method, str(status)),
                                                      self.request_seconds.labels(route))
            series[0].inc()
            series[1].observe(time.perf_counter() - started)

    # -- serving --------------------------------------------------------------------------------
    def allowed(self, request: web.Request) -> bool:
        cfg = self.hub.config.metrics
        token_hash = cfg.token_sha256.lower()
        if token_hash:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and token:
                digest = hashlib.sha256(token.strip().encode("utf-8", "replace")).hexdigest()
                if hmac.compare_digest(digest, token_hash):
                    return True
        try:
            address = ipaddress.ip_address((request.remote or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in ipaddress.ip_network(net, strict=False) for net in cfg.allow)

    async def exposition(self) -> bytes:
        await self.snapshot.refresh()
        return generate_latest(self.registry)


def _route_of(request: web.Request) -> str:
    """The route's template (`/v1/packets/{id}`), never the raw path: ids would explode the series."""
    info = request.match_info
    resource = info.route.resource if info is not None and getattr(info, "route", None) is not None else None
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical


def _protocol(hub: Hub, unit: str) -> str:
    return hub.engine.protocol_of(unit) or dv.PULL


class StoreSnapshot(Collector):
    """Gauges read from the store (and this node's pools and streams) when /metrics is asked."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._data: dict[str, Any] = {}
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._at = 0.0
        self.max_age = SNAPSHOT_SECONDS

    async def refresh(self) -> None:
        now = time.monotonic()
        if self._task is None or (self._task.done() and now - self._at >= self.max_age):
            self._at = now
            self._task = asyncio.create_task(self._read(), name="lgsp-metrics-snapshot")
        try:
            self._data = await asyncio.shield(self._task)
        except Exception:
            log.warning("metrics: could not read the store", exc_info=True)
            self._data = {}

    async def _read(self) -> dict[str, Any]:
        active = sorted(dv.ACTIVE)
        waiting = [dv.QUEUED, dv.SENDING, dv.RETRYING]
        async with self.hub.db.read() as conn:
            by_state = (await conn.execute(
                select(deliveries.c.state, deliveries.c.protocol, func.count())
                .where(deliveries.c.state.in_(active))
                .group_by(deliveries.c.state, deliveries.c.protocol))).all()
            queues = (await conn.execute(
                select(deliveries.c.unit_id, func.count(), func.min(deliveries.c.queued_at))
                .where(and_(deliveries.c.mode == dv.PUSH, deliveries.c.state.in_(waiting)))
                .group_by(deliveries.c.unit_id))).all()
            awaiting = sorted(dv.AWAITING_DESTINATION)
            offline = (await conn.execute(
                select(deliveries.c.unit_id, func.count(),
                       func.min(func.coalesce(units.c.offline_since, units.c.created_at)))
                .select_from(deliveries.join(units, units.c.id == deliveries.c.unit_id))
                .where(and_(deliveries.c.state.in_(awaiting), units.c.online.is_(False)))
                .group_by(deliveries.c.unit_id))).all()
            online = await conn.scalar(select(func.count()).select_from(units).where(units.c.online.is_(True)))
            stored = packets.c.content_state == "stored"
            upload_bytes = await conn.scalar(select(func.coalesce(func.sum(packets.c.size), 0)).where(stored))
            variant_bytes = await conn.scalar(
                select(func.coalesce(func.sum(packet_contents.c.size), 0))
                .select_from(packet_contents.join(packets, packets.c.id == packet_contents.c.packet_id))
                .where(stored))
        now = datetime.now(UTC)
        return {
            "deliveries": [(state, protocol or dv.PULL, n) for state, protocol, n in by_state],
            "queues": [(unit, n, max(0.0, (now - _aware(oldest)).total_seconds()) if oldest else 0.0)
                       for unit, n, oldest in queues],
            "offline": [(unit, n, max(0.0, (now - _aware(since)).total_seconds()) if since else 0.0)
                        for unit, n, since in offline],
            "online": int(online or 0),
            "blob_bytes": int(upload_bytes or 0) + int(variant_bytes or 0),
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        data = self._data
        g = GaugeMetricFamily("lgsp_deliveries", "Deliveries not yet ended, by state and protocol (from the store)",
                              labels=["state", "protocol"])
        for state, protocol, n in data.get("deliveries", ()):
            g.add_metric([state, protocol], n)
        yield g
        depth = GaugeMetricFamily("lgsp_push_queue_depth", "Push deliveries waiting (queued, sending or "
                                  "retrying) per destination unit", labels=["unit"])
        oldest = GaugeMetricFamily("lgsp_push_queue_oldest_seconds", "Age of the oldest waiting push delivery "
                                   "per destination unit", labels=["unit"])
        for unit, n, age in data.get("queues", ()):
            depth.add_metric([unit], n)
            oldest.add_metric([unit], age)
        yield depth
        yield oldest
        waiting = GaugeMetricFamily("lgsp_unit_offline_waiting_deliveries", "Deliveries waiting for a unit "
                                    "that is offline, per unit (only offline units with something waiting)",
                                    labels=["unit"])
        silent = GaugeMetricFamily("lgsp_unit_offline_seconds", "How long a unit with deliveries waiting has "
                                   "been offline", labels=["unit"])
        for unit, n, seconds in data.get("offline", ()):
            waiting.add_metric([unit], n)
            silent.add_metric([unit], seconds)
        yield waiting
        yield silent
        if "online" in data:
            yield GaugeMetricFamily("lgsp_units_online", "Units online now (stream open, recent request or "
                                    "successful probe)", value=data["online"])
            yield GaugeMetricFamily("lgsp_blob_bytes", "Bytes of content stored (uploads and their variants)",
                                    value=data["blob_bytes"])
        yield GaugeMetricFamily("lgsp_event_streams_open", "Event streams open on this node",
                                value=self.hub.bus.open_streams())
        pool = GaugeMetricFamily("lgsp_store_pool_connections", "Store connections of this node, by pool and use",
                                 labels=["pool", "use"])
        db = getattr(self.hub, "db", None)
        if db is not None:
            engines = [("main", db.writer)] if db.reader is db.writer else [("writer", db.writer),
                                                                           ("reader", db.reader)]
            for name, engine in engines:
                counts = getattr(engine, "pool_counts", None)  # the SQLite store keeps connections itself
                if callable(counts):
                    for use, value in counts().items():
                        pool.add_metric([name, use], float(value))
                    continue
                p = engine.sync_engine.pool
                for use, reader in (("in_use", "checkedout"), ("idle", "checkedin"), ("size", "size")):
                    value = getattr(p, reader, None)
                    if callable(value):
                        pool.add_metric([name, use], float(value()))
        yield pool
        yield GaugeMetricFamily("lgsp_ready", "1 while /readyz would answer 200 on this node (0 while draining)",
                                value=0.0 if self.hub.health.draining or not self.hub.started else 1.0)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- HTTP ------------------------------------------------------------------------------------------

METRICS: web.AppKey[Metrics] = web.AppKey("lgsp_metrics", Metrics)


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    if not metrics.allowed(request):
        raise Problem("forbidden",
                      Text("metrics are served only to the addresses in metrics.allow or with the metrics token"))
    body = await metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def mount(app: web.Application, metrics: Metrics) -> None:
    """Count every request and add GET /metrics (when `metrics.enabled`)."""
    app[METRICS] = metrics
    app.middlewares.insert(0, metrics.middleware)
    if metrics.hub.config.metrics.enabled:
        app.router.add_get("/metrics", metrics_view)
