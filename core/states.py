"""Every state the hub stores, each defined once, with the transitions allowed between them.

The tables are the rules: `core/deliveries.py` moves deliveries only along `DELIVERY_ALLOWED_FROM`
(or `DELIVERY_OPERATOR_FROM` for operator commands, or a path named in `DELIVERY_EXTRA_FROM`), and
the exchange moves packets and content only along `PACKET_ALLOWED_FROM` and
`CONTENT_ALLOWED_FROM`. tests/test_states.py ties these constants to the OpenAPI enums, the CLI
choices and the docs, and checks every transition the code makes is in its table.
"""

from __future__ import annotations

# -- packets --------------------------------------------------------------------------------------
#: created → accepted (content stored and checked) → completed (every delivery ended);
#: created → expired (the upload never finished in time, or its content was refused);
#: created → completed (every delivery cancelled before any upload).
PACKET_CREATED = "created"
PACKET_ACCEPTED = "accepted"
PACKET_COMPLETED = "completed"
PACKET_EXPIRED = "expired"
PACKET_STATES = (PACKET_CREATED, PACKET_ACCEPTED, PACKET_COMPLETED, PACKET_EXPIRED)
PACKET_ALLOWED_FROM: dict[str, frozenset[str]] = {
    PACKET_ACCEPTED: frozenset({PACKET_CREATED}),
    PACKET_COMPLETED: frozenset({PACKET_CREATED, PACKET_ACCEPTED}),
    PACKET_EXPIRED: frozenset({PACKET_CREATED}),
}

# -- content --------------------------------------------------------------------------------------
#: none → stored (accepted) → purged (the last delivery ended: files and data key destroyed).
CONTENT_NONE = "none"
CONTENT_STORED = "stored"
CONTENT_PURGED = "purged"
CONTENT_STATES = (CONTENT_NONE, CONTENT_STORED, CONTENT_PURGED)
CONTENT_ALLOWED_FROM: dict[str, frozenset[str]] = {
    CONTENT_STORED: frozenset({CONTENT_NONE}),
    CONTENT_PURGED: frozenset({CONTENT_STORED}),
}

# -- deliveries (the state machine is core/deliveries.py) -----------------------------------------
WAITING = "waiting"
QUEUED = "queued"
NOTIFIED = "notified"
FETCHED = "fetched"
SENDING = "sending"
RETRYING = "retrying"
FORWARDED = "forwarded"
DELIVERED = "delivered"
FAILED = "failed"
EXPIRED = "expired"
CANCELLED = "cancelled"

#: Delivery modes: the destination fetches (pull) or an adapter sends (push).
PULL = "pull"
PUSH = "push"
MODES = (PULL, PUSH)

DELIVERY_STATES = (WAITING, QUEUED, NOTIFIED, FETCHED, SENDING, RETRYING, FORWARDED, DELIVERED, FAILED, EXPIRED,
                   CANCELLED)
TERMINAL = frozenset({DELIVERED, FAILED, EXPIRED, CANCELLED})
#: Content is stored and a pull destination may fetch it.
PENDING = frozenset({QUEUED, NOTIFIED, FETCHED})
#: A push is under way: an attempt in flight or the next one scheduled.
PUSHING = frozenset({SENDING, RETRYING})
#: The packet waits on its destination (what offline reports are about).
AWAITING_DESTINATION = PENDING | PUSHING
ACTIVE = frozenset(DELIVERY_STATES) - TERMINAL

#: target state → states it may be reached from (the usual life of a delivery).
DELIVERY_ALLOWED_FROM: dict[str, frozenset[str]] = {
    QUEUED: frozenset({WAITING}),
    NOTIFIED: frozenset({QUEUED}),
    FETCHED: frozenset({QUEUED, NOTIFIED}),
    SENDING: frozenset({QUEUED, RETRYING}),
    RETRYING: frozenset({SENDING}),
    FORWARDED: frozenset({SENDING}),
    DELIVERED: PENDING | {SENDING, FORWARDED},
    FAILED: PENDING | {SENDING, FORWARDED},
    EXPIRED: frozenset(ACTIVE),
    CANCELLED: frozenset(ACTIVE),
}
#: What an operator's `lgsp deliveries retry` may put back in the queue.
DELIVERY_OPERATOR_FROM = frozenset({RETRYING, FAILED, EXPIRED, CANCELLED})
#: Paths outside the usual life, each taken by one named step of the hub: target → sources.
DELIVERY_EXTRA_FROM: dict[str, dict[str, frozenset[str]]] = {
    # A unit's push target was removed from the config: its retrying deliveries become pull (engine).
    "push_target_removed": {QUEUED: frozenset({RETRYING})},
    # `lgsp deliveries retry`.
    "operator_retry": {QUEUED: DELIVERY_OPERATOR_FROM},
    # The acceptance on PostgreSQL, one statement: a pull destination with a stream open on the
    # accepting node is told at once, as waiting → queued → notified in one transaction would.
    "told_on_acceptance": {NOTIFIED: frozenset({WAITING})},
}


def delivery_sources(target: str) -> frozenset[str]:
    """Every state a delivery may reach `target` from, by any path of the tables above."""
    found = set(DELIVERY_ALLOWED_FROM.get(target, ()))
    for extra in DELIVERY_EXTRA_FROM.values():
        found |= extra.get(target, frozenset())
    return frozenset(found)


def allowed_transitions() -> dict[tuple[str, str], frozenset[tuple[str, str]]]:
    """(table, column) → every (from, to) pair the tables above allow, by any path."""
    delivery = {(s, t) for t in DELIVERY_STATES for s in delivery_sources(t)}
    packet = {(s, t) for t, sources in PACKET_ALLOWED_FROM.items() for s in sources}
    content = {(s, t) for t, sources in CONTENT_ALLOWED_FROM.items() for s in sources}
    return {("deliveries", "state"): frozenset(delivery), ("packets", "state"): frozenset(packet),
            ("packets", "content_state"): frozenset(content)}


def sqlite_transition_guard() -> list[str]:
    """SQLite TEMP triggers that abort any state change the tables above do not allow.

    A development check (`LGSP_CHECK_TRANSITIONS=1`, set by the test suite): the store itself then
    refuses a transition some code makes outside its table, so every test that drives the hub
    also proves its transitions are in the tables. TEMP triggers live on one connection and
    change nothing in the stored schema.
    """
    known = {("deliveries", "state"): DELIVERY_STATES, ("packets", "state"): PACKET_STATES,
             ("packets", "content_state"): CONTENT_STATES}
    out = []
    for (table, column), pairs in sorted(allowed_transitions().items()):
        where = f"{table}.{column}"
        # RAISE takes a literal message: one branch per forbidden pair names it.
        names = ", ".join(f"'{name}'" for name in known[(table, column)])
        branches = " ".join(
            f"WHEN OLD.{column} = '{s}' AND NEW.{column} = '{t}' "
            f"THEN RAISE(ABORT, 'state change not in core/states.py: {where} {s} -> {t}')"
            for s in known[(table, column)] for t in known[(table, column)] if s != t and (s, t) not in pairs)
        out.append(
            f"CREATE TEMP TRIGGER IF NOT EXISTS lgsp_guard_{table}_{column} BEFORE UPDATE OF {column} ON {table} "
            f"WHEN OLD.{column} <> NEW.{column} BEGIN SELECT CASE WHEN NEW.{column} NOT IN ({names}) "
            f"THEN RAISE(ABORT, 'not a state of core/states.py: {where}') {branches} ELSE NULL END; END")
    return out
