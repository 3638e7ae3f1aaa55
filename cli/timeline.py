"""`lgsp status` as a person reads it: the packet, each destination's state, and its timeline.

The hub's JSON (`lgsp status --json`) stays the machine form; this module only renders it, with
the state and event names in the CLI's language. A name this CLI does not know yet (a newer hub,
a plugin's event) is shown as the hub wrote it rather than hidden.
"""

from __future__ import annotations

from typing import Any

from lgsp.cli import output
from lgsp.cli.messages import N_, gettext

#: The English msgids (translated by the catalogues) for packet states, content states and delivery states.
STATES: dict[str, str] = {
    "created": N_("created, awaiting upload"),
    "accepted": N_("accepted"),
    "completed": N_("completed"),
    "expired": N_("expired"),
    "none": N_("none"),
    "stored": N_("stored"),
    "purged": N_("purged after delivery"),
    "waiting": N_("waiting for acceptance"),
    "queued": N_("queued"),
    "notified": N_("notified"),
    "fetched": N_("fetched"),
    "sending": N_("being pushed"),
    "retrying": N_("waiting to retry"),
    "forwarded": N_("handed to another exchange, awaiting receipt"),
    "delivered": N_("delivered"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
}

#: The English msgids for event types of a packet's timeline.
EVENTS: dict[str, str] = {
    "packet.created": N_("packet created"),
    "packet.accepted": N_("content accepted"),
    "packet.available": N_("destination told"),
    "packet.fetched": N_("fetched by the destination"),
    "packet.delivered": N_("delivery acknowledged"),
    "packet.failed": N_("delivery failed"),
    "packet.completed": N_("every delivery ended"),
    "packet.expired": N_("expired"),
    "packet.cancelled": N_("sending cancelled"),
    "packet.rerouted": N_("rerouted"),
    "delivery.retrying": N_("retry scheduled"),
    "packet.forwarded": N_("handed to another exchange (the national axis, a peer hub)"),
    "delivery.retried": N_("retried"),
    "upload.expired": N_("upload expired"),
    "upload.failed": N_("upload failed"),
    "content.rejected": N_("content rejected"),
    "content.purged": N_("content purged"),
    "document.status": N_("document status"),
    "document.sent": N_("document sent"),
    "document.revoked": N_("document revoked"),
    "document.updated": N_("document updated"),
    "document.replaced": N_("document replaced"),
    "registration.submitted": N_("registration submitted"),
    "registration.refused": N_("registration refused"),
    "registration.approved": N_("registration approved"),
    "registration.handed_over": N_("access details handed over"),
    "destination.offline": N_("destination offline"),
    "hub.notice": N_("maintenance notice"),
}

_LABELS: dict[str, str] = {
    "packet": N_("Packet"),
    "from": N_("from"),
    "priority": N_("priority"),
    "state": N_("state"),
    "content": N_("content"),
    "deadline": N_("deadline"),
    "destinations": N_("Destinations"),
    "timeline": N_("Timeline"),
    "attempts": N_("attempts"),
    "next": N_("next attempt"),
}


def state_name(state: str) -> str:
    return gettext(STATES[state]) if state in STATES else state


def event_name(kind: str) -> str:
    return gettext(EVENTS[kind]) if kind in EVENTS else kind


def _label(key: str) -> str:
    return gettext(_LABELS[key])


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
