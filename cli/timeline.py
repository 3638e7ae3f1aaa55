"""`lgsp status` as a person reads it: the packet, each destination's state, and its timeline.

The hub's JSON (`lgsp status --json`) stays the machine form; this module only renders it, with
the state and event names in the CLI's language. A name this CLI does not know yet (a newer hub,
a plugin's event) is shown as the hub wrote it rather than hidden.
"""

from __future__ import annotations

from typing import Any

from lgsp.cli import output
from lgsp.cli.messages import lang

#: (Vietnamese, English) for packet states, content states and delivery states.
STATES: dict[str, tuple[str, str]] = {
    "created": ("đã tạo, chờ tải lên", "created, awaiting upload"),
    "accepted": ("đã tiếp nhận", "accepted"),
    "completed": ("đã hoàn tất", "completed"),
    "expired": ("hết hạn", "expired"),
    "none": ("chưa có", "none"),
    "stored": ("đang lưu", "stored"),
    "purged": ("đã xóa sau khi giao", "purged after delivery"),
    "waiting": ("chờ gói tin được tiếp nhận", "waiting for acceptance"),
    "queued": ("trong hàng đợi", "queued"),
    "notified": ("đã báo bên nhận", "notified"),
    "fetched": ("bên nhận đã tải", "fetched"),
    "sending": ("đang đẩy tới bên nhận", "being pushed"),
    "retrying": ("chờ thử lại", "waiting to retry"),
    "forwarded": ("đã chuyển sang trục khác, chờ bên nhận", "handed to another exchange, awaiting receipt"),
    "delivered": ("đã giao", "delivered"),
    "failed": ("giao không thành công", "failed"),
    "cancelled": ("đã hủy", "cancelled"),
}

#: (Vietnamese, English) for event types of a packet's timeline.
EVENTS: dict[str, tuple[str, str]] = {
    "packet.created": ("tạo gói tin", "packet created"),
    "packet.accepted": ("tiếp nhận nội dung", "content accepted"),
    "packet.available": ("báo có gói tin mới", "destination told"),
    "packet.fetched": ("bên nhận tải về", "fetched"),
    "packet.delivered": ("bên nhận xác nhận", "delivery acknowledged"),
    "packet.failed": ("bên nhận từ chối / giao lỗi", "delivery failed"),
    "packet.completed": ("hoàn tất mọi nơi nhận", "every delivery ended"),
    "packet.expired": ("hết hạn", "expired"),
    "packet.cancelled": ("hủy gửi", "cancelled"),
    "packet.rerouted": ("chuyển hướng", "rerouted"),
    "delivery.retrying": ("chờ thử lại", "retry scheduled"),
    "packet.forwarded": ("đã chuyển sang trục khác (trục quốc gia, trục tỉnh khác)",
                         "handed to another exchange (the national axis, a peer hub)"),
    "delivery.retried": ("thử lại", "retried"),
    "upload.expired": ("hết hạn tải lên", "upload expired"),
    "upload.failed": ("tải lên lỗi", "upload failed"),
    "content.rejected": ("nội dung bị từ chối", "content rejected"),
    "content.purged": ("xóa nội dung", "content purged"),
    "document.status": ("trạng thái xử lý văn bản", "document status"),
    "document.sent": ("gửi văn bản", "document sent"),
    "document.revoked": ("văn bản bị thu hồi", "document revoked"),
    "document.updated": ("văn bản được cập nhật", "document updated"),
    "document.replaced": ("văn bản bị thay thế", "document replaced"),
    "registration.submitted": ("nộp đề nghị đăng ký", "registration submitted"),
    "registration.refused": ("từ chối đề nghị đăng ký", "registration refused"),
    "registration.approved": ("chấp thuận đề nghị đăng ký", "registration approved"),
    "registration.handed_over": ("bàn giao thông tin truy cập", "access details handed over"),
    "destination.offline": ("bên nhận ngoại tuyến", "destination offline"),
    "hub.notice": ("thông báo bảo trì", "maintenance notice"),
}

_LABELS: dict[str, tuple[str, str]] = {
    "packet": ("Gói tin", "Packet"), "from": ("từ", "from"), "priority": ("độ khẩn", "priority"),
    "state": ("trạng thái", "state"), "content": ("nội dung", "content"), "deadline": ("hạn xử lý", "deadline"),
    "destinations": ("Nơi nhận", "Destinations"), "timeline": ("Diễn biến", "Timeline"),
    "attempts": ("lần thử", "attempts"), "next": ("thử lại lúc", "next attempt"),
}


def _pick(pair: tuple[str, str]) -> str:
    return pair[1] if lang() == "en" else pair[0]


def state_name(state: str) -> str:
    return _pick(STATES[state]) if state in STATES else state


def event_name(kind: str) -> str:
    return _pick(EVENTS[kind]) if kind in EVENTS else kind


def _label(key: str) -> str:
    return _pick(_LABELS[key])


def _when(value: Any) -> str:
    """An ISO time from the hub, shortened to the second (the hub writes UTC with a Z)."""
    if not isinstance(value, str) or not value:
        return "-"
    return value.replace("T", " ")[:19] + (" UTC" if value.endswith("Z") else "")


def render_status(view: dict[str, Any]) -> str:
    lines = [f"{_label('packet')} {view.get('id', '?')}  «{view.get('subject', '')}»"]
    facts = [f"{_label('from')} {view.get('from', '?')}"]
    if isinstance(view.get("size"), int):
        facts.append(output.size(view["size"]))
    if view.get("priority") is not None:
        facts.append(f"{_label('priority')} {view['priority']}")
    if view.get("state"):
        facts.append(f"{_label('state')}: {state_name(view['state'])}")
    if view.get("content"):
        facts.append(f"{_label('content')}: {state_name(view['content'])}")
    if view.get("deadline"):
        facts.append(f"{_label('deadline')} {_when(view['deadline'])}")
    lines.append("  " + " · ".join(facts))
    deliveries = view.get("deliveries") or []
    if deliveries:
        lines.append(f"  {_label('destinations')}:")
        width = max(len(str(d.get("unit", ""))) for d in deliveries)
        for d in deliveries:
            row = f"    {str(d.get('unit', '')).ljust(width)}  {state_name(str(d.get('state', '')))}"
            row += f"  {_when(d.get('updated_at'))}"
            extra = []
            if d.get("attempts"):
                extra.append(f"{_label('attempts')} {d['attempts']}")
            if d.get("next_attempt_at"):
                extra.append(f"{_label('next')} {_when(d['next_attempt_at'])}")
            if d.get("reason") or d.get("last_error"):
                extra.append(str(d.get("reason") or d.get("last_error")))
            lines.append(row + (f"  ({'; '.join(extra)})" if extra else ""))
    events = view.get("events") or []
    if events:
        lines.append(f"  {_label('timeline')}:")
        for e in events:
            row = f"    {_when(e.get('at'))}  {event_name(str(e.get('type', '')))}"
            if e.get("unit"):
                row += f"  {e['unit']}"
            if e.get("reason"):
                row += f"  — {e['reason']}"
            lines.append(row)
    return "\n".join(lines)
