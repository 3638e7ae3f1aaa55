"""Inbound: a peer hub hands over a packet on behalf of one of its units.

Only a unit configured as a peer hub here (`routes.<zone>.peer_unit`) may speak for another
source, and only for sources of that hub's zone: a unit of the zone, or an identifier the
directory does not know that matches the zone's patterns (then added to the zone). Anything else
is refused with a stable code (`peer.not_a_peer`, `peer.source_not_in_zone`). The packet is
submitted from the original source to this hub's local units (never on to another exchange), through
the same checks as any upload; edXML takes its destinations from its To as an axis document does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from lgsp.core.api import (
    H_CONTENT,
    META_PARAM,
    N_,
    PENDING_SUBJECT,
    ClaimBusy,
    NewPacket,
    Principal,
    Problem,
    SubmitClaims,
    Text,
    authenticate,
    hub_of,
    identifier_form,
    iso,
    json_response,
    parse_new_packet,
)

from .settings import PROTOCOL, PeerRoute, peer_routes
from .wire import H_ENVELOPE, HELLO, PACKETS, Envelope, envelope_problem, envelope_query

if TYPE_CHECKING:
    from lgsp.core.api import Hub

routes = web.RouteTableDef()
#: How long a handed-over packet is remembered against a repeated push (the sender's retries).
IDEMPOTENCY_WINDOW: Final = timedelta(days=7)
META_KEY: Final = "peer"

PROBLEM_CODES: Final[dict[str, tuple[int, str]]] = {
    "peer.not_a_peer": (403, N_("The caller is not configured as a peer hub")),
    "peer.source_not_in_zone": (403, N_("The source is not a unit of the peer hub's zone")),
}


def peer_of(hub: Hub, principal: Principal) -> PeerRoute:
    """The route whose `peer_unit` is the caller, or `peer.not_a_peer`."""
    for route in peer_routes(hub.config.routes).values():
        if route.peer_unit == principal.unit_id:
            return route
    raise Problem("peer.not_a_peer",
                  Text("unit {unit_id} is not the peer hub of any zone of this hub (routes.<zone>.peer_unit)",
                       unit_id=principal.unit_id))


async def _check_source(hub: Hub, route: PeerRoute, source: str) -> None:
    unit = await hub.directory.get_unit(source)
    if unit is None:
        entry = hub.config.routes.get(route.zone) or {}
        patterns = entry.get("patterns") or [] if isinstance(entry, dict) else []
        if not any(isinstance(p, str) and re.fullmatch(p, source) for p in patterns):
            raise Problem("peer.source_not_in_zone",
                          Text("source {source!r} is not in the directory and matches no pattern of zone {zone}",
                               source=source, zone=route.zone))
        try:
            await hub.directory.add_unit(source, source, zone=route.zone, legacy=identifier_form(source) is None)
        except Problem as exc:
            if exc.code != "conflict":
                raise Problem("peer.source_not_in_zone", Text("source {source!r} cannot be a unit: {detail}",
                                                              source=source, detail=exc.detail)) from None
        unit = await hub.directory.get_unit(source)
        if unit is None:  # pragma: no cover - added just above
            raise Problem("peer.source_not_in_zone", Text("source {source!r} is not in the directory", source=source))
    if unit.zone != route.zone:
        raise Problem("peer.source_not_in_zone",
                      Text("source {source} is a unit of zone {zone}, not of the caller's zone {zone2}",
                           source=source, zone=unit.zone, zone2=route.zone))
    if unit.status != "active":
        raise Problem("peer.source_not_in_zone", Text("source {source} is {status}", source=source, status=unit.status))
    hub.directory.remember_zones([(unit.id, unit.zone)])


async def _drain(request: web.Request) -> None:
    """Read the rest of a body we do not need, so the sender sees an answer, not a reset."""
    async for _ in request.content.iter_any():
        await asyncio.sleep(0)


def _new_packet(hub: Hub, envelope: Envelope, size: int, sha256: str, meta: dict[str, Any]) -> NewPacket:
    """The packet an envelope describes, through the checks of any new packet (`parse_new_packet`):
    a peer hub's word is no better than a unit's. A deadline already past is kept (it may have passed
    on the way); one beyond the hub's bound is not. For edXML, `to` is the informational list the
    sender put in its envelope (the document's To decides)."""
    edxml = envelope.data_type.startswith("edxml")
    subject = envelope.subject if envelope.subject.strip() else "(không có tiêu đề)"
    body: dict[str, Any] = {
        "to": list(envelope.to), "subject": PENDING_SUBJECT if edxml else subject,
        "priority": 0 if edxml else envelope.priority, "data_type": envelope.data_type, "protocol": PROTOCOL,
        "size": size, "sha256": sha256}
    now = hub.clock()
    if envelope.deadline is not None and envelope.deadline > now:
        body["deadline"] = envelope.deadline.isoformat()
    try:
        new = parse_new_packet(body, max_size=hub.config.limits.max_packet_size,
                               max_recipients=hub.config.limits.max_recipients, now=now)
    except Problem as exc:
        if exc.code != "request.invalid":
            raise
        raise envelope_problem(exc.detail) from None
    return dataclasses.replace(new, deadline=envelope.deadline, meta=meta)


@routes.post(PACKETS)
async def take_packet(request: web.Request) -> web.Response:
    principal = await authenticate(request, streams_body=True)
    hub = hub_of(request)
    route = peer_of(hub, principal)
    encoded = request.headers.get(H_ENVELOPE, "")
    if not encoded.isascii():  # no digest of it can be taken, and no sender writes one
        raise envelope_problem(Text("not Base64url JSON"))
    if request.query.get(META_PARAM) != envelope_query(encoded).partition("=")[2]:
        raise Problem("auth.bad_signature", Text("{META_PARAM} does not match {H_ENVELOPE}", META_PARAM=META_PARAM,
                                                 H_ENVELOPE=H_ENVELOPE))
    envelope = Envelope.decode(encoded)
    sha256 = request.headers.get(H_CONTENT, "").strip().lower()
    size = request.content_length
    if size is None or size <= 0:
        raise Problem("request.invalid", Text("Content-Length is required and must be positive"))
    if size > hub.config.limits.max_packet_size:
        raise Problem("content.too_large", Text("at most {max_packet_size} bytes",
                                                max_packet_size=hub.config.limits.max_packet_size))
    meta: dict[str, Any] = {"via": PROTOCOL, "arrived_from_zone": route.zone,
                            META_KEY: {"by": principal.unit_id, "packet": envelope.packet, "hub": envelope.hub,
                                       "to": list(envelope.to)}}
    # Everything is checked before the source may join the directory (_check_source adds it).
    new = _new_packet(hub, envelope, size, sha256, meta)
    if envelope.data_type.startswith("edxml"):  # destinations, subject and priority from the document
        new = dataclasses.replace(new, to=(), meta={**meta, "implicit": ["to", "subject", "priority"]})
    else:
        zones = await hub.directory.zones_of(list(new.to))
        foreign = [u for u in new.to if zones.get(u, "local") != "local"]
        if foreign:
            raise Problem("route.unknown_destination", Text("not units of this hub: {foreign}",
                                                            foreign=', '.join(foreign)),
                          unknown=foreign)
    await _check_source(hub, route, envelope.source)
    try:
        packet_id, created = await SubmitClaims(hub.db, hub.clock).once(
            f"peer:{principal.unit_id}", envelope.packet, IDEMPOTENCY_WINDOW,
            lambda: hub.exchange.submit(envelope.source, new, request.content.iter_any()))
    except ClaimBusy:
        raise Problem("unavailable", Text("another push of this packet is still being received")) from None
    if not created:
        await _drain(request)
    answer = json_response({"id": packet_id}, status=201 if created else 200)
    answer.headers[H_CONTENT] = sha256
    return answer


@routes.get(PACKETS + "/{id}")
async def packet_status(request: web.Request) -> web.Response:
    """The deliveries of a packet the caller handed over (what its tracker asks)."""
    principal = await authenticate(request)
    hub = hub_of(request)
    peer_of(hub, principal)
    info = await hub.exchange.packet(request.match_info["id"])
    by = (info.meta or {}).get(META_KEY, {}).get("by") if info is not None and isinstance(info.meta, dict) else None
    if info is None or by != principal.unit_id:
        raise Problem("not_found", Text("no packet handed over by this peer with that id"))
    view = await hub.exchange.view(Principal(info.source, "", "", ""), info.id)
    return json_response({"id": info.id, "state": view.state,
                          "deliveries": [{"unit": d.unit, "state": d.state, "reason": d.reason,
                                          "updated_at": iso(d.updated_at)} for d in view.deliveries]})


@routes.get(HELLO)
async def hello(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    hub = hub_of(request)
    route = peer_of(hub, principal)
    return json_response({"identifier": hub.config.hub.identifier, "zone": route.zone})
