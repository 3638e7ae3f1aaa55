"""Outbound: a packet for a unit of the axis's zone is sent to the axis with sendEdoc.

The delivery engine claims deliveries of every unit of the zone (one lane for the zone) and calls
:meth:`AxisPushAdapter.push` once per attempt. Each delivery is one sendEdoc naming its unit in
``to`` (the edXML's To may also name local units, which the axis does not know), with the edXML
the hub wrote for it (its TraceHeader included). The axis's DocId comes back as a pending receipt:
the delivery becomes ``forwarded`` with the DocId recorded, and :mod:`.tracking` ends it when
getSentEdocList reports the document received or refused.

A retry after a lost answer sends the same bytes again; an axis that keeps sendEdoc idempotent
per (system, hash-file, recipients) for a while (the simulator does) answers with the same DocId.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from lgsp.core.api import PushFailure, PushJob, PushReceipt, Text

from .client import AxisError
from .protocol import MessageType

if TYPE_CHECKING:
    from lgsp.core.api import Hub

    from .bridge import AxisBridge

log = logging.getLogger("lgsp.adapters.national_axis")

PROTOCOL: Final = "national_axis"
#: What the axis carries: edXML (a JSON-form upload is delivered as the edXML the hub builds).
DATA_TYPES: Final = frozenset({"edxml", "edxml+json"})


def message_type_of(meta: Any) -> str:
    """``status`` for an edXML status packet, else ``edoc`` (from what the edXML inspector recorded)."""
    edxml = meta.get("edxml") if isinstance(meta, Mapping) else None
    kind = edxml.get("kind") if isinstance(edxml, Mapping) else None
    return MessageType.STATUS.value if kind == MessageType.STATUS.value else MessageType.EDOC.value


class AxisPushAdapter:
    protocol = PROTOCOL
    data_types = DATA_TYPES

    def __init__(self, hub: Hub, zone: str | None, *, concurrency: int, probe_interval_seconds: float) -> None:
        self.hub = hub
        self.zones = (zone,) if zone else ()  # no route while the adapter is not configured
        self.concurrency = concurrency
        self.probe_interval_seconds = probe_interval_seconds

    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        extra = sorted(set(target) - {"protocol"})
        message = Text("unknown key: the national axis is configured under adapters.national_axis")
        return [(key, message) for key in extra]

    def _bridge(self) -> AxisBridge:
        from .bridge import bridge_of

        bridge = bridge_of(self.hub)
        if bridge is None:
            raise PushFailure(Text("the national axis adapter is not running"), retryable=True)
        return bridge

    async def push(self, job: PushJob) -> PushReceipt:
        bridge = self._bridge()
        packet = job.packet
        if packet.data_type not in DATA_TYPES:
            raise PushFailure(Text("the national axis carries edXML only, not {data_type}", data_type=packet.data_type),
                              retryable=False)
        if not await job.content_held():
            raise PushFailure(Text("the hub no longer holds the content of packet {id}", id=packet.id), retryable=False)
        kind = message_type_of(packet.meta)
        if kind not in bridge.settings.message_types:
            raise PushFailure(Text("message type {kind} is not exchanged with the axis "
                                   "(adapters.national_axis.message_types)", kind=kind), retryable=False)
        try:
            # job.open gives the plaintext (content is encrypted at rest), read twice: hash, then send.
            doc_id = await bridge.client.send_edoc(job.open, bridge.settings.agency_code, [job.unit],
                                                   message_type=kind)
        except AxisError as exc:
            log.warning("sendEdoc of %s to %s failed (%s): %s %s", packet.id, job.unit,
                        "will retry" if exc.retryable else "not retryable", exc.code, exc.desc)
            raise PushFailure(Text("national axis {operation}: {code} {desc}", operation=exc.operation or "sendEdoc",
                                   code=exc.code, desc=exc.desc[:900]), retryable=exc.retryable) from None
        except ValueError as exc:  # a unit code the protocol cannot carry
            raise PushFailure(Text("national axis: {exc}", exc=exc), retryable=False) from None
        log.info("national axis: packet %s sent to %s as DocId %s", packet.id, job.unit, doc_id)
        return PushReceipt(detail=Text("sendEdoc {kind}: DocId {doc_id}", kind=kind, doc_id=doc_id),
                           remote_id=doc_id, pending=True)

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        """The axis answers a signed countReceiveEdoc: reachable, and our signature is accepted."""
        from .bridge import bridge_of

        bridge = bridge_of(self.hub)
        if bridge is None:
            return False
        try:
            await bridge.client.count_received()
        except AxisError as exc:
            log.debug("national axis probe: %s %s", exc.code, exc.desc)
            return False
        return True
