"""The names a person reads for packet, content and delivery states, delivery modes and event types.

The hub's JSON and the store keep the English identifiers (`queued`, `packet.failed`); `lgsp status`
and the console show these names, in the reader's language. A name not listed here (a newer hub, a
plugin's event) is shown as the hub wrote it rather than hidden.
"""

from __future__ import annotations

from lgsp.core.i18n import N_, gettext

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

#: How a destination receives: pushed to it by the hub, or pulled by it.
MODES: dict[str, str] = {
    "push": N_("pushed by the hub"),
    "pull": N_("fetched by the unit"),
}


def state_name(state: str, lang: str | None = None) -> str:
    return gettext(STATES[state], lang) if state in STATES else state


def event_name(kind: str, lang: str | None = None) -> str:
    return gettext(EVENTS[kind], lang) if kind in EVENTS else kind


def mode_name(mode: str, lang: str | None = None) -> str:
    return gettext(MODES[mode], lang) if mode in MODES else mode
