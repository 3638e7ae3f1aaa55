"""Following documents handed to the axis until the axis says they were received or refused.

Each round walks the deliveries the adapter left ``forwarded`` (in pages) and asks
getSentEdocList for each DocId. The row of the delivery's unit decides: ``done`` ends it
``delivered``, ``fail`` ends it ``failed`` with the axis's description; anything else (initial,
processing) leaves it for the next round. A DocId the axis no longer knows is left alone and
logged: the delivery's deadline or max age ends it if the axis never answers. A business status
(01–16) the recipient sends later is an edXML status packet that comes back through the inbound
poller and is routed to the local source like any edXML status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from lgsp.core.api import states as dv

from .client import AxisError
from .push import PROTOCOL, message_type_of

if TYPE_CHECKING:
    from .bridge import AxisBridge

log = logging.getLogger("lgsp.adapters.national_axis")

RECEIVED: Final = frozenset({"done"})
REFUSED: Final = frozenset({"fail"})


@dataclass
class TrackRound:
    checked: int = 0
    delivered: int = 0
    failed: int = 0
    errors: int = 0


async def track_once(bridge: AxisBridge) -> TrackRound:
    """One round over every forwarded delivery of the axis."""
    hub = bridge.hub
    out = TrackRound()
    after: tuple[str, str] | None = None
    while True:
        page = await hub.exchange.forwarded(PROTOCOL, bridge.settings.track_batch, after)
        if not page:
            return out
        for packet_id, unit, doc_id in page:
            out.checked += 1
            try:
                await _track_one(bridge, packet_id, unit, doc_id, out)
            except AxisError as exc:
                out.errors += 1
                log.warning("national axis: tracking DocId %s of packet %s for %s: %s %s", doc_id, packet_id, unit,
                            exc.code, exc.desc)
                if exc.retryable:
                    return out  # the axis is not answering: the next round tries again
        after = page[-1][:2]


async def _track_one(bridge: AxisBridge, packet_id: str, unit: str, doc_id: str | None, out: TrackRound) -> None:
    exchange = bridge.hub.exchange
    info = await exchange.packet(packet_id)
    if info is None or not doc_id:
        return
    rows = await bridge.client.sent_list(doc_id, message_type=message_type_of(info.meta))
    row = next((r for r in rows if r.to_code == unit), None)
    if row is None:
        return
    status = row.receive_status.strip().lower()
    detail = {"remote_id": doc_id, "axis_status": status, "axis_status_desc": row.receive_status_desc,
              "received_time": row.received_time}
    if status in RECEIVED:
        if await exchange.end_delivery(info, unit, dv.DELIVERED, None, detail=detail):
            out.delivered += 1
            log.info("national axis: %s received packet %s (DocId %s)", unit, packet_id, doc_id)
    elif status in REFUSED:
        reason = f"the national axis reports {unit} could not receive it: {row.receive_status_desc or status}"
        if await exchange.end_delivery(info, unit, dv.FAILED, reason[:1000], detail=detail,
                                       values={"last_error": reason[:1000]}):
            out.failed += 1
            log.warning("national axis: %s refused packet %s (DocId %s)", unit, packet_id, doc_id)
