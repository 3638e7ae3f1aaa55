"""The REST adapter's rendering of core's typed values: the JSON documents of schemas/openapi.yaml.

Core's use cases return values (`PacketView`, `InboxItem`, `Transfer`, ...); this module alone
decides their JSON shape, member by member, so the wire format is read in one place and checked
against the OpenAPI components by tests/test_rest_render.py. Optional members appear only when
they apply, exactly as the document says (e.g. `protocol` and `attempts` for push deliveries).
"""

from __future__ import annotations

from typing import Any

from lgsp.core.api import (
    Cancelled,
    DeliveryView,
    Hello,
    InboxItem,
    InboxPage,
    PacketInfo,
    PacketView,
    StoredVariant,
    TimelineEntry,
    Transfer,
    iso,
)


def transfer(value: Transfer, base_url: str) -> dict[str, str]:
    """`Transfer`: where and until when content may be sent or fetched (the URL carries its token)."""
    return {"method": value.method, "url": base_url + value.path, "expires_at": iso(value.expires_at)}


def created(info: PacketInfo, upload: Transfer, base_url: str) -> dict[str, Any]:
    """The answer to `POST /v1/packets`: the new packet's id and where to upload its content."""
    return {"id": info.id, "upload": transfer(upload, base_url)}


def uploaded(info: PacketInfo) -> dict[str, Any]:
    """The answer to `PUT /v1/packets/{id}/content`."""
    return {"id": info.id, "state": info.state, "size": info.size, "sha256": info.sha256}


def inbox_item(item: InboxItem) -> dict[str, Any]:
    """`PacketSummary` as an inbox item (with the source's presence)."""
    return {"id": item.id, "from": item.source, "subject": item.subject, "priority": item.priority,
            "data_type": item.data_type, "size": item.size, "sha256": item.sha256,
            "created_at": iso(item.created_at), "from_online": item.source_online,
            "from_last_seen_at": iso(item.source_last_seen_at) if item.source_last_seen_at else None}


def inbox_page(page: InboxPage) -> dict[str, Any]:
    """The answer to `GET /v1/inbox`: the items and the cursor of the next page (null: the last)."""
    return {"items": [inbox_item(i) for i in page.items], "next": page.next.encode() if page.next else None}


def delivery(d: DeliveryView) -> dict[str, Any]:
    """One item of `PacketView.deliveries`; the push members only for a push delivery."""
    out: dict[str, Any] = {"unit": d.unit, "state": d.state, "updated_at": iso(d.updated_at), "mode": d.mode,
                           "online": d.online, "last_seen_at": iso(d.last_seen_at) if d.last_seen_at else None}
    if d.reason:
        out["reason"] = d.reason
    if d.mode == "push":
        out["protocol"] = d.protocol
        out["attempts"] = d.attempts
        if d.next_attempt_at is not None:
            out["next_attempt_at"] = iso(d.next_attempt_at)
        if d.last_error:
            out["last_error"] = d.last_error
    return out


def timeline_entry(e: TimelineEntry) -> dict[str, Any]:
    """One item of `PacketView.events`."""
    out: dict[str, Any] = {"at": iso(e.at), "type": e.type, "unit": e.unit}
    if e.reason:
        out["reason"] = e.reason
    if e.attempts:
        out["attempts"] = e.attempts
    return out


def stored_variant(v: StoredVariant) -> dict[str, Any]:
    """One item of `EdxmlPacketView.variants`."""
    out: dict[str, Any] = {"variant": v.variant, "size": v.size, "sha256": v.sha256, "media_type": v.media_type}
    if v.data_type:
        out["data_type"] = v.data_type
    return out


def packet_view(view: PacketView) -> dict[str, Any]:
    """`PacketView`: the answer to `GET /v1/packets/{id}`."""
    out: dict[str, Any] = {
        "id": view.id, "from": view.source, "subject": view.subject, "priority": view.priority,
        "data_type": view.data_type, "size": view.size, "sha256": view.sha256, "created_at": iso(view.created_at),
        "state": view.state, "content": view.content_state, "protocol": view.protocol,
        "deadline": iso(view.deadline) if view.deadline else None,
        "deliveries": [delivery(d) for d in view.deliveries],
        "events": [timeline_entry(e) for e in view.events],
    }
    if view.to is not None:
        out["to"] = list(view.to)
    if view.upload_expires_at is not None:
        out["upload_expires_at"] = iso(view.upload_expires_at)
    if view.metadata:
        out["metadata"] = dict(view.metadata)
    if view.variant:
        out["variant"] = view.variant
    if view.variants is not None:
        out["variants"] = [stored_variant(v) for v in view.variants]
    out.update(view.described)
    return out


def cancelled(value: Cancelled) -> dict[str, Any]:
    """The answer to `POST /v1/packets/{id}/cancel`."""
    return {"id": value.id, "cancelled": list(value.cancelled), "state": value.state}


def hello(value: Hello) -> dict[str, Any]:
    """The first message of `GET /v1/events`."""
    return {"type": "hello", "at": iso(value.at), "unit": value.unit, "inbox": [inbox_item(i) for i in value.inbox],
            "changes": [c.message() for c in value.changes], "more": value.more}
