"""`lgsp status` as a person reads it: the packet, each destination's state, and its timeline.

The hub's JSON (`lgsp status --json`) stays the machine form; this module only renders it, with
the state and event names in the CLI's language. A name this CLI does not know yet (a newer hub,
a plugin's event) is shown as the hub wrote it rather than hidden.
"""

from __future__ import annotations

from typing import Any

from lgsp.cli import output
from lgsp.cli.messages import N_, gettext
from lgsp.core.i18n import render_stored
from lgsp.core.names import EVENTS, STATES, event_name, state_name

__all__ = ["EVENTS", "STATES", "event_name", "render_status", "state_name"]

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
                extra.append(render_stored(str(d.get("reason") or d.get("last_error"))))
            lines.append(row + (f"  ({'; '.join(extra)})" if extra else ""))
    events = view.get("events") or []
    if events:
        lines.append(f"  {_label('timeline')}:")
        for e in events:
            row = f"    {_when(e.get('at'))}  {event_name(str(e.get('type', '')))}"
            if e.get("unit"):
                row += f"  {e['unit']}"
            if e.get("reason"):
                row += f"  — {render_stored(str(e['reason']))}"
            lines.append(row)
    return "\n".join(lines)
