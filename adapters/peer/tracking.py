"""Following packets handed to a peer hub until the peer's delivery to the unit ends.

Each round walks the deliveries the adapter left `forwarded` and asks the peer, as the hub that
handed the packet over, for its deliveries (`GET /v1/peer/packets/{id}`, one call per packet
there). The row of the delivery's unit decides: `delivered` ends it delivered; `failed`,
`expired` or `cancelled` end it failed with the peer's reason; anything else leaves it for the
next round. A business status the recipient sends later (an edXML status 01–16) comes back the
same way as any packet: the peer hands it to this hub on the recipient's behalf.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lgsp.core.api import PushFailure, Text
from lgsp.core.api import states as dv

from .push import problem_text
from .settings import PROTOCOL
from .wire import PACKETS

if TYPE_CHECKING:
    from lgsp.core.api import Hub

    from .push import PeerPushAdapter

log = logging.getLogger("lgsp.adapters.peer")

ENDED_FAILED: Final = frozenset({dv.FAILED, dv.EXPIRED, dv.CANCELLED})
BATCH: Final = 200


@dataclass
class TrackRound:
    checked: int = 0
    delivered: int = 0
    failed: int = 0
    errors: int = 0


async def track_once(hub: Hub, adapter: PeerPushAdapter) -> TrackRound:
    out = TrackRound()
    after: tuple[str, str] | None = None
    answers: dict[tuple[str, str], dict[str, Any] | None] = {}
    down: set[str] = set()
    while True:
        page = await hub.exchange.forwarded(PROTOCOL, BATCH, after)
        if not page:
            return out
        for packet_id, unit, remote in page:
            zone = hub.directory.zones.get(unit)  # the zone the route was picked by
            if not remote or zone is None or zone in down:
                continue
            out.checked += 1
            if (zone, remote) not in answers:
                try:
                    answers[(zone, remote)] = await _ask(adapter, zone, remote)
                except PushFailure as exc:
                    out.errors += 1
                    down.add(zone)  # the peer is not answering: the next round tries again
                    log.warning("peer %s: tracking %s: %s", zone, remote, exc.reason)
                    continue
            answer = answers[(zone, remote)]
            row = next((d for d in (answer or {}).get("deliveries", []) if d.get("unit") == unit), None)
            if row is not None:
                await _end(hub, packet_id, unit, zone, remote, row, out)
        after = page[-1][:2]


async def _ask(adapter: PeerPushAdapter, zone: str, remote: str) -> dict[str, Any] | None:
    client = await adapter.client(zone)
    status, _, raw = await client.request("GET", f"{PACKETS}/{remote}")
    if status == 200:
        try:
            body = json.loads(raw)
        except ValueError:
            raise PushFailure(Text("the peer's answer is not JSON"), retryable=True) from None
        return body if isinstance(body, dict) else None
    if status >= 500 or status in (408, 429):
        raise PushFailure(Text("HTTP {status} {problem}", status=status, problem=problem_text(raw)), retryable=True)
    log.warning("peer %s: packet %s: HTTP %s %s", zone, remote, status, problem_text(raw))
    return None  # not found there (or not ours): left for the deadline or max age to end


async def _end(hub: Hub, packet_id: str, unit: str, zone: str, remote: str, row: dict[str, Any],
               out: TrackRound) -> None:
    state = row.get("state")
    if state != dv.DELIVERED and state not in ENDED_FAILED:
        return
    info = await hub.exchange.packet(packet_id)
    if info is None:
        return
    detail = {"remote_id": remote, "peer_state": state, "zone": zone}
    if state == dv.DELIVERED:
        if await hub.exchange.end_delivery(info, unit, dv.DELIVERED, None, detail=detail):
            out.delivered += 1
            log.info("peer %s: %s received packet %s (%s there)", zone, unit, packet_id, remote)
        return
    reason = f"the peer hub of zone {zone} reports {state}: {row.get('reason') or state}"[:1000]
    if await hub.exchange.end_delivery(info, unit, dv.FAILED, reason, detail=detail, values={"last_error": reason}):
        out.failed += 1
        log.warning("peer %s: delivery of %s to %s ended %s", zone, packet_id, unit, state)
