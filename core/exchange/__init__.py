"""The packet exchange: create, upload, notify, fetch, acknowledge, fail, cancel, expire, purge.

One place for the exchange's rules, whatever the adapter that carries the calls, split by concern:

- `values`: what goes in (`NewPacket`, `InboxPosition`) and the packet itself (`PacketInfo`,
  `Transfer`), and the validation of a new packet;
- `views`: what the use cases return (`PacketView`, `InboxPage`, `DeliveryView`, `TimelineEntry`,
  and for operators `DeliveryRecord`, `OperatorView`, ...), typed values each adapter renders in
  its own shape;
- `base`: shared state, reading, ending a delivery, and the one after-commit step (`AfterCommit`);
- `uploads`: receiving content (one attempt at a time per packet, stalled uploads give way);
- `units`: the use cases a unit calls; `streams`: what the event stream needs;
- `operators`: operator commands; `housekeeping`: expiry and file reconciliation;
- `tokens`: the HMAC tokens of transfer URLs.

Packet states: created → accepted → completed (every delivery ended); created → expired (the
upload never finished in time). Content states: none → stored → purged (the files go right after
the commit that records it; `reconcile_blobs` removes any a crash left behind).
"""

from __future__ import annotations

from lgsp.core.exchange.base import AfterCommit, HookCaller
from lgsp.core.exchange.housekeeping import Housekeeping
from lgsp.core.exchange.operators import OperatorCommands
from lgsp.core.exchange.streams import HELLO_CHANGES, HELLO_INBOX, StreamSupport
from lgsp.core.exchange.tokens import TransferTokens
from lgsp.core.exchange.units import UnitCases
from lgsp.core.exchange.uploads import UploadAttempt
from lgsp.core.exchange.values import (
    LATEST_DEADLINE,
    MAX_DESTINATION,
    MAX_REASON,
    MAX_SUBJECT,
    PRIORITIES,
    Attention,
    InboxPosition,
    NewPacket,
    PacketInfo,
    Transfer,
    UnitStatus,
    parse_deadline,
    parse_new_packet,
    upload_key,
)
from lgsp.core.exchange.views import (
    Cancelled,
    DeliveryRecord,
    DeliveryView,
    Hello,
    InboxItem,
    InboxPage,
    OperatorDelivery,
    OperatorView,
    PacketView,
    Readable,
    Rerouted,
    StoredVariant,
    TimelineEntry,
)


class Exchange(UnitCases, StreamSupport, OperatorCommands, Housekeeping):
    """The hub's exchange: every use case by concern, over one shared state (see `base`)."""


__all__ = [
    "HELLO_CHANGES", "HELLO_INBOX", "LATEST_DEADLINE", "MAX_DESTINATION", "MAX_REASON", "MAX_SUBJECT", "PRIORITIES",
    "AfterCommit", "Attention", "Cancelled", "DeliveryRecord", "DeliveryView", "Exchange", "Hello", "HookCaller",
    "InboxItem", "InboxPage", "InboxPosition", "NewPacket", "OperatorDelivery", "OperatorView", "PacketInfo",
    "PacketView", "Readable", "Rerouted", "StoredVariant", "TimelineEntry", "Transfer", "TransferTokens", "UnitStatus",
    "UploadAttempt", "parse_deadline", "parse_new_packet", "upload_key",
]
