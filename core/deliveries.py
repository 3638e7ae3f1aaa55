"""The delivery state machine: one delivery per (packet, destination), one place for its rules.

A delivery is either *pull* (the destination is notified and fetches) or *push* (an adapter sends
it to the destination's system); its `mode` is fixed when the packet is created, from
`delivery.targets`.

    waiting ──upload──▶ queued ─┬─(pull) told──▶ notified ──download──▶ fetched ──ack──▶ delivered
                                │
                                └─(push) claim─▶ sending ──receipt──────────────────────▶ delivered
                                                  │    ▲  └─handed on─▶ forwarded ──remote receipt─▶ delivered
                                                  │    │                      └──remote refusal──▶ failed
                                  retryable error │    │ due (APScheduler job, queue poll)
                                  or hub restart  ▼    │
                                                 retrying

    any non-terminal ──▶ failed | expired | cancelled
        failed:    the destination refused it (pull), a push failed for good or ran out of attempts
        expired:   the deadline or the priority's max age passed (or the upload never finished)
        cancelled: the source or an operator cancelled it (or re-routed it to another unit)

    operator retry:  retrying | failed | expired | cancelled ──▶ queued   (only while content is held)
    told on acceptance (PostgreSQL, one statement):  waiting ──▶ notified   (a stream open on the node)
    push target removed from the config:  retrying ──▶ queued (as pull; the engine, at start)

The states and these tables are defined in core/states.py (`DELIVERY_ALLOWED_FROM`, and the named
paths above in `DELIVERY_EXTRA_FROM`); this module applies them.

`forwarded` means an adapter handed the packet to another exchange (the national axis, a peer hub)
that has not yet said whether the destination received it; the adapter's tracker ends it later
from what that exchange reports (`remote_id` names the packet there).

`sending` means an attempt is in flight; it is committed (with `attempts` + 1) before the adapter
is called, so after a crash the engine finds it and moves it to `retrying` (the receiver may have
it already: the idempotency key `packet_id:unit` lets it drop the repeat).

Every change is a conditional UPDATE (`... WHERE state IN (allowed sources)`), so two nodes or two
requests racing on the same delivery cannot both win, and the caller learns it lost.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ClauseElement

from lgsp.core.states import (
    ACTIVE,
    AWAITING_DESTINATION,
    CANCELLED,
    DELIVERED,
    DELIVERY_ALLOWED_FROM,
    DELIVERY_OPERATOR_FROM,
    DELIVERY_STATES,
    EXPIRED,
    FAILED,
    FETCHED,
    FORWARDED,
    NOTIFIED,
    PENDING,
    PULL,
    PUSH,
    PUSHING,
    QUEUED,
    RETRYING,
    SENDING,
    TERMINAL,
    WAITING,
)
from lgsp.core.store.params import MAX_PLAIN, in_list, in_values
from lgsp.core.store.tables import deliveries, packets

# The states and their tables are defined once, in core/states.py; these are their short names here.
STATES = DELIVERY_STATES
ALLOWED_FROM = DELIVERY_ALLOWED_FROM
OPERATOR_RETRY_FROM = DELIVERY_OPERATOR_FROM


def can_move(current: str, target: str) -> bool:
    return current in ALLOWED_FROM.get(target, ())


async def move(conn: AsyncConnection, packet_id: str, units: Iterable[str] | None, target: str, at: datetime,
               *, reason: str | None = None, values: Mapping[str, Any] | None = None,
               allowed_from: Iterable[str] | None = None, claim: tuple[str, int] | None = None) -> list[str]:
    """Move the given deliveries (all of the packet's if `units` is None) to `target` where allowed.

    `values` sets other columns in the same UPDATE (attempts, next_attempt_at, ...);
    `allowed_from` replaces the usual sources (operator actions only);
    `claim` (node, attempt) moves only a delivery still under that claim: the outcome of a push attempt
    is written only while the attempt is still the delivery's, not after the claim was taken back from
    a node thought dead (frozen, cut off) and the delivery claimed again.
    Returns the units that actually moved; the others were in a state that forbids it.
    """
    return [r.unit_id for r in await move_rows(conn, packet_id, units, target, at, reason=reason, values=values,
                                               allowed_from=allowed_from, claim=claim)]


async def move_rows(conn: AsyncConnection, packet_id: str, units: Iterable[str] | None, target: str, at: datetime,
                    *, reason: str | None = None, values: Mapping[str, Any] | None = None,
                    allowed_from: Iterable[str] | None = None, claim: tuple[str, int] | None = None,
                    lock_packet: bool = False) -> list[Any]:
    """`move`, returning the moved rows' (unit_id, mode, attempts) as they are after the move: what
    the caller would otherwise read back with another statement. `lock_packet` (PostgreSQL): the
    same statement first locks the packet's row (`SELECT … FOR UPDATE`, its own round trip
    otherwise), which the transaction holds until it ends."""
    sources = sorted(allowed_from) if allowed_from is not None else _SOURCES[target]
    if not sources:
        return []  # no state it may leave from: nothing moves
    if units is not None:
        units = list(units)
        if not units:
            return []
    new: dict[str, Any] = {"state": target, "updated_at": at}
    if reason is not None:
        new["reason"] = str(reason)  # a `Text` is stored as its English text, rendered when read (docs/i18n.md)
    if values:
        new.update(values)
    plain = {k: v for k, v in new.items() if not isinstance(v, ClauseElement)}
    n_units = len(units) if units is not None else 0
    if len(plain) != len(new):  # a column expression (attempts + 1): built for this call
        stmt = _move_statement(n_units, (), claim is not None, len(sources), lock_packet).values(
            **{k: v for k, v in new.items() if k not in plain})
    else:
        stmt = _move_statement(n_units, tuple(sorted(plain)), claim is not None, len(sources), lock_packet)
    params: dict[str, Any] = {"p_packet": packet_id, **in_values("p_source", sources), **plain}
    if claim is not None:
        params["p_claimed_by"], params["p_attempts"] = claim
    if units is not None:
        params.update(in_values("p_unit", units))
    return list((await conn.execute(stmt, params)).all())


_SOURCES = {target: sorted(sources) for target, sources in ALLOWED_FROM.items()}


@functools.cache
def _move_statement(n_units: int, columns: tuple[str, ...], claimed: bool, n_sources: int,
                    lock_packet: bool = False) -> Any:
    """The UPDATE of `move`, one per shape (how many units it names, 0 for all of the packet's;
    which columns it sets; whether under a claim; how many source states; whether it locks the
    packet), built once: moves are the most frequent writes, and SQLAlchemy would rebuild each one.
    The state and unit lists are plain parameters (core/store/params.py), so SQLAlchemy serves the
    compiled UPDATE from its cache instead of rewriting the lists into its SQL at each execution.

    With `lock_packet` the packet is named by `(SELECT id FROM packets WHERE id = :p_packet FOR
    UPDATE)`: an uncorrelated subquery, run once before any delivery row is read, so the packet's
    lock is taken first, as the separate statement took it before."""
    packet: Any = bindparam("p_packet")
    if lock_packet:
        packet = (select(packets.c.id).where(packets.c.id == bindparam("p_packet")).with_for_update()
                  .scalar_subquery())
    cond = and_(deliveries.c.packet_id == packet, in_list(deliveries.c.state, "p_source", n_sources))
    if n_units:
        cond = and_(cond, in_list(deliveries.c.unit_id, "p_unit", min(n_units, MAX_PLAIN + 1)))
    if claimed:
        cond = and_(cond, deliveries.c.claimed_by == bindparam("p_claimed_by"),
                    deliveries.c.attempts == bindparam("p_attempts"))
    stmt = update(deliveries).where(cond).returning(deliveries.c.unit_id, deliveries.c.mode, deliveries.c.attempts)
    return stmt.values({name: bindparam(name) for name in columns}) if columns else stmt


def moved_rows_cte(target: str) -> Any:
    """One delivery's plain move to `target` (state and time, no claim) as a CTE returning the moved
    row, for a statement that writes what follows from it (`events.move_and_record`). Parameters:
    `move_params`."""
    return _move_statement(1, ("state", "updated_at"), False, len(_SOURCES[target])).cte("moved")


def move_params(packet_id: str, unit: str, target: str, at: datetime) -> dict[str, Any]:
    """The parameters of `moved_rows_cte` moving `unit`'s delivery to `target`."""
    return {"p_packet": packet_id, **in_values("p_source", _SOURCES[target]), **in_values("p_unit", [unit]),
            "state": target, "updated_at": at}


_ATTEMPTS = select(deliveries.c.attempts).where(and_(deliveries.c.packet_id == bindparam("packet_id"),
                                                     deliveries.c.unit_id == bindparam("unit_id")))


async def attempts_of(conn: AsyncConnection, packet_id: str, unit: str) -> int:
    """How many push attempts the delivery has had (0 for pull deliveries)."""
    return int(await conn.scalar(_ATTEMPTS, {"packet_id": packet_id, "unit_id": unit}) or 0)


async def states_of(conn: AsyncConnection, packet_id: str) -> dict[str, str]:
    rows = (await conn.execute(select(deliveries.c.unit_id, deliveries.c.state)
                               .where(deliveries.c.packet_id == packet_id))).all()
    return {r.unit_id: r.state for r in rows}


async def state_of(conn: AsyncConnection, packet_id: str, unit: str) -> str | None:
    return await conn.scalar(select(deliveries.c.state).where(
        and_(deliveries.c.packet_id == packet_id, deliveries.c.unit_id == unit)))


async def row_of(conn: AsyncConnection, packet_id: str, unit: str) -> Any:
    """The whole delivery row (state, mode, attempts, ...), or None."""
    return (await conn.execute(select(deliveries).where(
        and_(deliveries.c.packet_id == packet_id, deliveries.c.unit_id == unit)))).first()


__all__ = [
    "ACTIVE", "ALLOWED_FROM", "AWAITING_DESTINATION", "CANCELLED", "DELIVERED", "DELIVERY_ALLOWED_FROM",
    "DELIVERY_OPERATOR_FROM", "DELIVERY_STATES", "EXPIRED", "FAILED", "FETCHED", "FORWARDED", "NOTIFIED",
    "OPERATOR_RETRY_FROM", "PENDING", "PULL", "PUSH", "PUSHING", "QUEUED", "RETRYING", "SENDING", "STATES",
    "TERMINAL", "WAITING", "attempts_of", "can_move", "move", "move_rows", "row_of", "state_of", "states_of",
]
