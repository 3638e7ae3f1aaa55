"""Inbound: documents and statuses the axis holds for the province become packets of the hub.

One round, for each configured message type (``edoc``, ``status``): getReceivedEdocList, then for
each item (at most ``page_size``) getEdoc, and submit the edXML as a packet from its sending agency
(the edXML's From; an agency the directory does not know yet is added to the axis's zone) through
the same content inspection as a SOAP or REST upload: sender check, TraceHeader, routing by To (only
this hub's local units: the others are the axis's business) or, for a status, by ResponseFor.

Only after the packet is committed does the poller call ``updateStatus done``; a packet the hub
refuses (bad edXML, no local recipient, a sender that claims to be a local unit) gets
``updateStatus fail`` and a log line with the reason. Crash safety: the packet records the axis
docId (``meta.axis_doc_id``); an item still listed in a later round (the hub died between commit
and updateStatus) is found by it and only acknowledged, never submitted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from lgsp.core.api import PENDING_SUBJECT, NewPacket, Problem, identifier_form

from .client import AxisError
from .edxml_addresses import EdxmlAddressError, read_addresses
from .push import PROTOCOL
from .shapes import ReceivedItem

if TYPE_CHECKING:
    from .bridge import AxisBridge

log = logging.getLogger("lgsp.adapters.national_axis")

#: How far back a docId is looked for among the packets of its sender (crash recovery).
DEDUP_WINDOW: Final = timedelta(days=30)
#: A document the axis lists but refuses to hand over this many rounds running is reported failed.
MAX_FETCH_FAILURES: Final = 3
#: Problems that belong to the document: the axis is told `fail`. Any other is retried next round.
REFUSALS: Final = frozenset({"request.invalid", "request.malformed", "content.too_large", "route.unknown_destination",
                             "route.unsupported_data_type", "forbidden", "not_found"})
META_DOC_ID: Final = "axis_doc_id"


@dataclass
class PollRound:
    listed: int = 0
    submitted: int = 0
    acknowledged: int = 0  # already submitted before (a crash between commit and updateStatus)
    refused: int = 0
    errors: list[str] = field(default_factory=list)


class Refused(Exception):
    """The hub will not take this document; the axis is told `fail`."""


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def poll_once(bridge: AxisBridge) -> PollRound:
    out = PollRound()
    for kind in bridge.settings.message_types:
        items = await bridge.client.received_list(kind)
        out.listed += len(items)
        for item in items[:bridge.settings.page_size]:
            try:
                await receive(bridge, item, kind, out)
            except AxisError as exc:
                out.errors.append(f"{item.doc_id}: {exc.code} {exc.desc}")
                log.warning("national axis: %s %s left for the next round: %s %s", kind, item.doc_id, exc.code,
                            exc.desc)
                if exc.retryable:
                    return out  # the axis is not answering: stop the round
    return out


async def receive(bridge: AxisBridge, item: ReceivedItem, kind: str, out: PollRound) -> None:
    """Take one listed document: submit it (or find it submitted), then tell the axis."""
    client = bridge.client
    try:
        content = await client.get_edoc(item.doc_id)
    except AxisError as exc:
        if exc.retryable:
            raise
        failures = bridge.fetch_failures[item.doc_id] = bridge.fetch_failures.get(item.doc_id, 0) + 1
        if failures < MAX_FETCH_FAILURES:
            raise
        log.warning("national axis: %s %s could not be fetched %d times (%s %s); reporting fail", kind, item.doc_id,
                    failures, exc.code, exc.desc)
        await client.update_status(item.doc_id, "fail")
        bridge.fetch_failures.pop(item.doc_id, None)
        out.refused += 1
        return
    bridge.fetch_failures.pop(item.doc_id, None)
    try:
        packet_id, again = await submit(bridge, item, content)
    except Refused as exc:
        log.warning("national axis: %s %s from %s refused: %s", kind, item.doc_id, item.from_ or "?", exc)
        await client.update_status(item.doc_id, "fail")
        out.refused += 1
        bridge.refusals.append((item.doc_id, str(exc)))
        del bridge.refusals[:-100]
        return
    await client.update_status(item.doc_id, "done")
    if again:
        out.acknowledged += 1
        log.info("national axis: %s %s was already packet %s; acknowledged", kind, item.doc_id, packet_id)
    else:
        out.submitted += 1
        log.info("national axis: %s %s from %s submitted as packet %s", kind, item.doc_id, item.from_, packet_id)


async def submit(bridge: AxisBridge, item: ReceivedItem, content: bytes) -> tuple[str, bool]:
    """The packet id of this document, and whether it existed already. Raises Refused."""
    hub = bridge.hub
    try:
        head = await asyncio.to_thread(read_addresses, content)
    except EdxmlAddressError as exc:
        raise Refused(f"the edXML header cannot be read: {exc}") from None
    source = head.from_ or item.from_
    if not source:
        raise Refused("the edXML names no sender (From/OrganId)")
    sha256 = await asyncio.to_thread(lambda: hashlib.sha256(content).hexdigest())
    since = datetime.now(UTC) - DEDUP_WINDOW
    existing = await hub.exchange.find_submitted(source, sha256, since, META_DOC_ID, item.doc_id)
    if existing is not None:
        return existing.id, True
    await _ensure_sender(bridge, source)
    new = NewPacket(to=(), subject=PENDING_SUBJECT, priority=0, data_type="edxml", protocol=PROTOCOL,
                    size=len(content), sha256=sha256, deadline=None, policy=None,
                    meta={"implicit": ["to", "subject", "priority"], "via": PROTOCOL, META_DOC_ID: item.doc_id,
                          "arrived_from_zone": bridge.settings.zone})
    try:
        info = await hub.exchange.submit(source, new, _once(content))
    except Problem as exc:
        if exc.code in REFUSALS or exc.code.startswith("edxml."):
            raise Refused(f"{exc.code}: {exc.detail}") from None
        raise AxisError("hub." + exc.code, exc.detail, retryable=True, operation="submit") from None
    return info.id, False


async def _ensure_sender(bridge: AxisBridge, source: str) -> None:
    """The sender must be an active unit of the axis's zone; one not seen before is added to it."""
    directory = bridge.hub.directory
    unit = await directory.get_unit(source)
    if unit is None:
        try:
            await directory.add_unit(source, source, zone=bridge.settings.zone,
                                     legacy=identifier_form(source) is None)
        except Problem as exc:
            if exc.code != "conflict":  # added meanwhile by a sync: checked below
                raise Refused(f"sender {source!r} cannot be a unit: {exc.detail}") from None
        unit = await directory.get_unit(source)
        if unit is None:
            raise Refused(f"sender {source!r} is not in the directory")
        log.info("national axis: agency %s added to zone %s (first document from it)", source, unit.zone)
    if unit.zone != bridge.settings.zone:
        raise Refused(f"sender {source} is a unit of zone {unit.zone}, not of the axis's zone "
                      f"{bridge.settings.zone}")
    if unit.status != "active":
        raise Refused(f"sender {source} is {unit.status}")
    directory.remember_zones([(unit.id, unit.zone)])
