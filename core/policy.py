"""The communication policy: which source unit (or application) may reach which destination unit.

The regulation (Điều 11.2) has the authentication service check the caller's right to reach the
target. A rule names a source, a destination, optionally a data type, and allows or denies:

    source       *  |  zone:Z  |  under:UNIT  |  UNIT (or unit:UNIT)  |  app:UNIT/NAME
    destination  *  |  zone:Z  |  under:UNIT  |  UNIT (or unit:UNIT)

`under:X` is X and every unit below it in the unit tree. The most specific matching rule decides:
the source first (application > unit > under, the nearer ancestor first > zone > any), then the
destination, then a rule with a data type over one without; at equal specificity, deny wins. When
no rule matches, `policy.default` does. Rules come from the YAML (`policy.rules`, fixed) and from
the store (`lgsp policy add|remove`, each change kept with who made it and when).

Checked in the core use cases (session open, packet create, destinations named by content at
upload), so every adapter inherits it. Rules and the unit tree are cached for
`policy.cache_seconds`: a change from the CLI (another process) holds within that time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import audit
from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.identifiers import InvalidIdentifier, check_identifier
from lgsp.core.store.database import Database
from lgsp.core.store.tables import applications, packets, policy_rules, units

ACTIONS = ("allow", "deny")
SOURCE_KINDS = ("any", "zone", "under", "unit", "app")
DEST_KINDS = ("any", "zone", "under", "unit")
_RANK = {"any": 0, "zone": 1, "under": 2, "unit": 3, "app": 4}
MAX_TREE_DEPTH = 64  # a parent chain longer than this is a loop, not a tree


class PolicyError(ValueError):
    """A rule or selector that cannot be understood (the message names what is wrong)."""

    @property
    def message(self) -> str:
        """Why, as the `Text` it was raised with (`str(exc)` is the English)."""
        return self.args[0] if self.args and isinstance(self.args[0], str) else str(self)


@dataclass(frozen=True)
class Selector:
    kind: str
    value: str = ""

    def __str__(self) -> str:
        return "*" if self.kind == "any" else f"{self.kind}:{self.value}"


def parse_selector(text: str, *, side: str) -> Selector:
    """`*`, `zone:Z`, `under:UNIT`, `UNIT`/`unit:UNIT`, and (source only) `app:UNIT/NAME`."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(Text("{side}: must not be empty", side=side))
    text = text.strip()
    if text in ("*", "any"):
        return Selector("any")
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = "unit", text
    kinds = SOURCE_KINDS if side == "source" else DEST_KINDS
    if kind not in kinds or kind == "any":
        if side == "source":
            raise PolicyError(Text("{side}: {text!r} is not one of *, zone:NAME, under:UNIT, UNIT, app:UNIT/NAME",
                                   side=side, text=text))
        raise PolicyError(Text("{side}: {text!r} is not one of *, zone:NAME, under:UNIT, UNIT", side=side, text=text))
    if kind == "zone":
        if not value or len(value) > 64 or any(c.isspace() for c in value):
            raise PolicyError(Text("{side}: a zone name is 1 to 64 characters without spaces", side=side))
        return Selector("zone", value)
    if kind == "app":
        unit, slash, name = value.partition("/")
        if not slash or not name.strip() or len(name) > 128:
            raise PolicyError(Text("{side}: an application is written app:UNIT/NAME", side=side))
        _check_unit(unit, side)
        return Selector("app", f"{unit}/{name.strip()}")
    _check_unit(value, side)
    return Selector(kind, value)


def _check_unit(code: str, side: str) -> None:
    try:
        check_identifier(code, legacy=True)
    except InvalidIdentifier as exc:
        raise PolicyError(Text("{side}: {why}", side=side, why=exc.reason)) from exc


@dataclass(frozen=True)
class Rule:
    id: int | None  # None for a rule from the YAML
    action: str
    source: Selector
    destination: Selector
    data_type: str | None
    origin: str  # "config" or "store"
    note: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    removed_at: datetime | None = None
    removed_by: str | None = None

    @property
    def label(self) -> str:
        return f"#{self.id}" if self.id is not None else "config"

    def text(self) -> str:
        dt = f" [{self.data_type}]" if self.data_type else ""
        return f"{self.action} {self.source} -> {self.destination}{dt}"

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "origin": self.origin, "action": self.action,
                               "source": str(self.source), "destination": str(self.destination),
                               "data_type": self.data_type}
        if self.note:
            out["note"] = self.note
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
            out["created_by"] = self.created_by
        if self.removed_at is not None:
            out["removed_at"] = self.removed_at.isoformat()
            out["removed_by"] = self.removed_by
        return out


def make_rule(action: str, source: str, destination: str, data_type: str | None = None, *,
              origin: str = "store", **extra: Any) -> Rule:
    if action not in ACTIONS:
        raise PolicyError(Text("action: must be allow or deny, got {action!r}", action=action))
    if data_type is not None:
        data_type = data_type.strip()
        if data_type in ("", "*"):
            data_type = None
        elif len(data_type) > 64 or any(c.isspace() for c in data_type):
            raise PolicyError(Text("data_type: 1 to 64 characters without spaces"))
    return Rule(None, action, parse_selector(source, side="source"),
                parse_selector(destination, side="destination"), data_type, origin, **extra)


def config_rule_issues(raw: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(relative key path, message) for each YAML rule that is not a valid rule."""
    out: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        path = f"rules[{i}]"
        if not isinstance(item, dict):
            out.append((path, Text("must be a mapping with action, source, destination (and data_type)")))
            continue
        unknown = set(item) - {"action", "source", "destination", "data_type"}
        if unknown:
            out.append((f"{path}.{sorted(unknown)[0]}",
                        Text("unknown key (known: action, source, destination, data_type)")))
            continue
        missing = [k for k in ("action", "source", "destination") if not isinstance(item.get(k), str)]
        if missing:
            out.append((f"{path}.{missing[0]}", Text("required, a string")))
            continue
        try:
            make_rule(item["action"], item["source"], item["destination"], item.get("data_type"), origin="config")
        except PolicyError as exc:
            field = str(exc).split(":", 1)[0]
            out.append((f"{path}.{field}", exc.message))
    return out


@dataclass(frozen=True)
class Party:
    """What the policy knows of a unit: its zone and its ancestors, nearest first."""

    unit: str
    zone: str | None
    ancestors: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: Rule | None  # None: the default decided
    matching: tuple[Rule, ...]  # every matching rule, the deciding one first
    default: str
    data_type: str | None = None

    def reason(self) -> str:
        return self.rule.text() if self.rule is not None else Text("the default ({default})", default=self.default)


@dataclass
class _Snapshot:
    rules: list[Rule]
    app_ids: dict[str, str]  # "UNIT/NAME" -> application id
    tree: dict[str, tuple[str | None, str]]  # unit -> (parent, zone); empty when no rule needs it
    loaded_at: float


class Policy:
    def __init__(self, db: Database, *, default: str = "allow", config_rules: Iterable[dict[str, Any]] = (),
                 cache_seconds: float = 2.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.default = default
        self.config_rules = [make_rule(r["action"], r["source"], r["destination"], r.get("data_type"),
                                       origin="config") for r in config_rules]
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._snapshot: _Snapshot | None = None
        self._lock = asyncio.Lock()

    # -- editing (every change is recorded with who made it) -----------------------------------
    async def add(self, action: str, source: str, destination: str, data_type: str | None = None, *,
                  by: str, note: str | None = None) -> Rule:
        try:
            rule = make_rule(action, source, destination, data_type)
        except PolicyError as exc:
            raise Problem("request.invalid", exc.message) from exc
        by = _actor(by)
        now = self.clock()
        async with self.db.write() as conn:
            if rule.source.kind == "app":
                await self._require_application(conn, rule.source.value)
            rule_id = await conn.scalar(policy_rules.insert().values(
                action=rule.action, source=str(rule.source), destination=str(rule.destination),
                data_type=rule.data_type, note=note, created_at=now, created_by=by).returning(policy_rules.c.id))
            await audit.append(conn, "policy.rule_added", actor=by, target=f"rule:{rule_id}", at=now,
                               detail={"rule": rule.text(), "note": note})
        self._snapshot = None
        return Rule(int(rule_id or 0), rule.action, rule.source, rule.destination, rule.data_type, "store",
                    note, now, by)

    async def remove(self, rule_id: int, *, by: str) -> Rule:
        by = _actor(by)
        now = self.clock()
        async with self.db.write() as conn:
            row = (await conn.execute(select(policy_rules).where(policy_rules.c.id == rule_id))).first()
            if row is None or row.removed_at is not None:
                raise Problem("not_found", Text("no policy rule #{rule_id}", rule_id=rule_id))
            await conn.execute(update(policy_rules).where(policy_rules.c.id == rule_id).values(
                removed_at=now, removed_by=by))
            rule = _rule(row)
            await audit.append(conn, "policy.rule_removed", actor=by, target=f"rule:{rule_id}", at=now,
                               detail={"rule": rule.text()})
        self._snapshot = None
        return Rule(rule.id, rule.action, rule.source, rule.destination, rule.data_type, "store", rule.note,
                    rule.created_at, rule.created_by, now, by)

    async def rules(self, *, include_removed: bool = False) -> list[Rule]:
        stmt = select(policy_rules).order_by(policy_rules.c.id)
        if not include_removed:
            stmt = stmt.where(policy_rules.c.removed_at.is_(None))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [*self.config_rules, *(_rule(r) for r in rows)]

    @staticmethod
    async def _require_application(conn: AsyncConnection, ref: str) -> None:
        unit, _, name = ref.partition("/")
        found = await conn.scalar(select(applications.c.id).where(
            (applications.c.unit_id == unit) & (applications.c.name == name)))
        if found is None:
            raise Problem("not_found", Text("unit {unit} has no application named {name!r}", unit=unit, name=name))

    # -- deciding ------------------------------------------------------------------------------
    async def _current(self) -> _Snapshot:
        snap = self._snapshot
        if snap is not None and time.monotonic() - snap.loaded_at < self.cache_seconds:
            return snap
        async with self._lock:
            snap = self._snapshot
            if snap is None or time.monotonic() - snap.loaded_at >= self.cache_seconds:
                snap = self._snapshot = await self._load()
        return snap

    async def _load(self) -> _Snapshot:
        started = time.monotonic()
        async with self.db.read() as conn:
            rows = (await conn.execute(select(policy_rules).where(policy_rules.c.removed_at.is_(None))
                                       .order_by(policy_rules.c.id))).all()
            rules = [*self.config_rules, *(_rule(r) for r in rows)]
            app_ids: dict[str, str] = {}
            wanted = {r.source.value for r in rules if r.source.kind == "app"}
            if wanted:
                for a in (await conn.execute(select(applications.c.id, applications.c.unit_id,
                                                    applications.c.name))).all():
                    ref = f"{a.unit_id}/{a.name}"
                    if ref in wanted:
                        app_ids[ref] = a.id
            tree: dict[str, tuple[str | None, str]] = {}
            if any(s.kind in ("zone", "under") for r in rules for s in (r.source, r.destination)):
                for u in (await conn.execute(select(units.c.id, units.c.parent_id, units.c.zone))).all():
                    tree[u.id] = (u.parent_id, u.zone)
        return _Snapshot(rules, app_ids, tree, started)

    @staticmethod
    def _party(snap: _Snapshot, unit: str) -> Party:
        entry = snap.tree.get(unit)
        if entry is None:
            return Party(unit, None, ())
        chain: list[str] = []
        parent = entry[0]
        while parent is not None and parent not in chain and len(chain) < MAX_TREE_DEPTH:
            chain.append(parent)
            parent = snap.tree.get(parent, (None, ""))[0]
        return Party(unit, entry[1], tuple(chain))

    @staticmethod
    def _match(sel: Selector, party: Party, application: str | None, snap: _Snapshot) -> tuple[int, int] | None:
        """(rank, closeness) when `sel` covers the party, else None."""
        kind = sel.kind
        if kind == "any":
            return (0, 0)
        if kind == "zone":
            return (1, 0) if party.zone == sel.value else None
        if kind == "under":
            if party.unit == sel.value:
                return (2, 0)
            if sel.value in party.ancestors:
                return (2, -1 - party.ancestors.index(sel.value))
            return None
        if kind == "unit":
            return (3, 0) if party.unit == sel.value else None
        # app
        app_id = snap.app_ids.get(sel.value)
        return (4, 0) if app_id is not None and application == app_id else None

    def _decide(self, snap: _Snapshot, source: Party, application: str | None, dest: Party,
                data_type: str | None, *, any_type: bool = False) -> Decision:
        scored: list[tuple[tuple[int, ...], Rule]] = []
        for rule in snap.rules:
            if rule.data_type is not None and (any_type or rule.data_type != data_type):
                continue
            s = self._match(rule.source, source, application, snap)
            if s is None:
                continue
            d = self._match(rule.destination, dest, None, snap)
            if d is None:
                continue
            scored.append(((*s, *d, 1 if rule.data_type else 0, 1 if rule.action == "deny" else 0), rule))
        scored.sort(key=lambda item: item[0], reverse=True)
        matching = tuple(r for _, r in scored)
        if matching:
            return Decision(matching[0].action == "allow", matching[0], matching, self.default, data_type)
        return Decision(self.default == "allow", None, (), self.default, data_type)

    async def decide(self, source: str, application: str | None, destination: str,
                     data_type: str | None) -> Decision:
        """The decision for one packet of `data_type` (None: for a session, see `decide_any`)."""
        snap = await self._current()
        return self._decide(snap, self._party(snap, source), application, self._party(snap, destination),
                            data_type)

    async def decide_any(self, source: str, application: str | None, destination: str) -> list[Decision]:
        """Decisions for every data type that matters: the first for any data type no rule names,
        then one per data type a matching rule names. A session is allowed if any of them allows."""
        snap = await self._current()
        src, dst = self._party(snap, source), self._party(snap, destination)
        out = [self._decide(snap, src, application, dst, None, any_type=True)]
        named = sorted({r.data_type for r in snap.rules if r.data_type is not None})
        for data_type in named:
            out.append(self._decide(snap, src, application, dst, data_type))
        return out

    # -- enforcement (core use cases call these) -----------------------------------------------
    async def check_packet(self, source: str, application: str | None, destinations: Sequence[str],
                           data_type: str) -> None:
        """Refuse with auth.not_permitted if the source may not send this data type to any of them."""
        if not destinations:
            return
        snap = await self._current()
        if not snap.rules and self.default == "allow":
            return
        refused = [d for d in destinations if not (await self.decide(source, application, d, data_type)).allowed]
        if refused:
            raise Problem("auth.not_permitted",
                          Text("unit {source} may not send {data_type} to {refused} (communication policy)",
                               source=source, data_type=data_type, refused=', '.join(refused)), refused=refused)

    async def check_named(self, packet: Any, destinations: list[str]) -> None:
        """Destinations the content of an uploaded packet names (edXML To): judged like those of the
        request, with the application that created the packet."""
        snap = await self._current()
        if not snap.rules and self.default == "allow":
            return
        async with self.db.read() as conn:
            application = await conn.scalar(select(packets.c.source_application).where(packets.c.id == packet.id))
        await self.check_packet(packet.source, application, destinations, packet.data_type)

    async def check_session(self, source: str, application: str | None, target: str) -> None:
        snap = await self._current()
        if not snap.rules and self.default == "allow":
            return
        if not any(d.allowed for d in await self.decide_any(source, application, target)):
            raise Problem("auth.not_permitted", Text("unit {source} may not reach {target} (communication policy)",
                                                     source=source, target=target))


def _rule(row: Any) -> Rule:
    return Rule(row.id, row.action, parse_selector(row.source, side="source"),
                parse_selector(row.destination, side="destination"), row.data_type, "store", row.note,
                row.created_at, row.created_by, row.removed_at, row.removed_by)


def _actor(by: str) -> str:
    by = (by or "").strip()
    if not by or len(by) > 64 or any(not c.isprintable() for c in by):
        raise Problem("request.invalid", Text("who makes the change must be named (1 to 64 printable characters)"))
    return by
