"""What the unit-facing use cases return: typed values, not JSON.

Each adapter renders them in its own shape: the REST adapter as the documents of
schemas/openapi.yaml (adapters/rest/render.py), SOAP and the national-axis service as XML and
axis records, the console as HTML. Times are aware `datetime`s in UTC; a member that is None is
one the caller may not see or that does not apply (e.g. `to` for a destination).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lgsp.core.events import Event
from lgsp.core.exchange.values import InboxPosition, PacketInfo
from lgsp.core.store.blobs import KeyOpener


@dataclass(frozen=True)
class Readable:
    """Content a caller may read now (`Exchange.open_content`): the packet as the caller gets it (its
    variant's size and hash), the file, and the packet's data key read with the packet, still
    sealed: pass it on (`content_response(..., data_key=)`, `ContentService.open_stored`), the read
    unseals it. None without a key source (the reader then reads the key itself)."""

    info: PacketInfo
    path: Path
    data_key: KeyOpener | None = None


@dataclass(frozen=True)
class InboxItem:
    """A pending pull delivery of the caller: the packet as its destination gets it (its variant's
    size, hash and data type) and whether the source is online."""

    id: str
    source: str
    subject: str
    priority: int
    data_type: str
    size: int
    sha256: str
    created_at: datetime
    source_online: bool
    source_last_seen_at: datetime | None


@dataclass(frozen=True)
class InboxPage:
    """One page of the inbox and where the next starts (None: this is the last page)."""

    items: tuple[InboxItem, ...]
    next: InboxPosition | None


@dataclass(frozen=True)
class DeliveryView:
    """One delivery of a packet as a viewer sees it: its state and the destination's presence.

    `protocol`, `attempts`, `last_error` concern push deliveries; `next_attempt_at` is set only
    while one is retrying.
    """

    unit: str
    state: str
    updated_at: datetime
    mode: str
    online: bool
    last_seen_at: datetime | None
    reason: str | None = None
    protocol: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class TimelineEntry:
    """One event of a packet's timeline (a destination sees its own and the packet-wide ones)."""

    at: datetime
    type: str
    unit: str | None
    reason: str | None = None
    attempts: int | None = None
    #: Who was told (a unit's stream); operators' views filter by it, a unit's view never shows it.
    audience: str | None = None


@dataclass(frozen=True)
class StoredVariant:
    """A stored form of a packet's content (the upload, a converted form, a decoded attachment)."""

    variant: str
    size: int
    sha256: str
    media_type: str
    data_type: str | None = None


@dataclass(frozen=True)
class PacketView:
    """A packet as the caller may see it: every delivery for its source, its own for a destination.

    For a destination `size`, `sha256` and `data_type` are those of the variant it gets and
    `variant` names it (when the data type has variants). `described` holds what the data type's
    inspector adds (for edXML: `document`, `business_status`, `linked`; see schemas/openapi.yaml
    `EdxmlPacketView`): plugin-defined, already JSON-shaped.
    """

    id: str
    source: str
    subject: str
    priority: int
    data_type: str
    size: int
    sha256: str
    created_at: datetime
    state: str
    content_state: str
    protocol: str | None
    deadline: datetime | None
    deliveries: tuple[DeliveryView, ...]
    events: tuple[TimelineEntry, ...]
    #: Source only: every destination.
    to: tuple[str, ...] | None = None
    #: Source only, while the upload is awaited.
    upload_expires_at: datetime | None = None
    metadata: Mapping[str, Any] | None = None
    #: Destination only: the variant it gets.
    variant: str | None = None
    #: Source only, for data types with an inspector: every stored form.
    variants: tuple[StoredVariant, ...] | None = None
    described: Mapping[str, Any] = field(default_factory=dict)

    def delivery_to(self, unit: str) -> DeliveryView | None:
        """The delivery to `unit`, if the caller may see it."""
        return next((d for d in self.deliveries if d.unit == unit), None)


@dataclass(frozen=True)
class Cancelled:
    """What a source's cancel did: the deliveries it ended and the packet's state after it."""

    id: str
    cancelled: tuple[str, ...]
    state: str


@dataclass(frozen=True)
class Hello:
    """The first message of a unit's event stream: its pending inbox and the changes to packets it
    sent since the cursor it saved; `more` when changes remain (reconnect for the rest)."""

    at: datetime
    unit: str
    inbox: tuple[InboxItem, ...]
    changes: tuple[Event, ...]
    more: bool


@dataclass(frozen=True)
class OperatorDelivery:
    """A delivery as an operator sees it (no presence); `next_attempt_at` only while retrying."""

    unit: str
    state: str
    mode: str
    protocol: str | None
    attempts: int
    updated_at: datetime
    next_attempt_at: datetime | None = None
    reason: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """One line of an operator's delivery list (`lgsp deliveries list`): the delivery and its packet."""

    packet_id: str
    source: str
    subject: str
    priority: int
    content_state: str
    delivery: OperatorDelivery


@dataclass(frozen=True)
class OperatorView:
    """A packet as an operator sees it (metadata only, never content): every delivery, the whole
    timeline (the console narrows both to a unit admin's units)."""

    id: str
    source: str
    subject: str
    priority: int
    data_type: str
    size: int
    sha256: str
    state: str
    created_at: datetime
    deadline: datetime | None
    deliveries: tuple[OperatorDelivery, ...]
    events: tuple[TimelineEntry, ...]


@dataclass(frozen=True)
class Rerouted:
    """What an operator's re-route did: the delivery to `from_unit` cancelled, a new one to `to`."""

    packet_id: str
    from_unit: str
    to: str
    mode: str
    state: str
