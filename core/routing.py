"""Smart routing: which route reaches a destination, and why (`lgsp route explain`).

A unit of the local directory goes where its zone says: the local zone is this hub (pull, or its
`delivery.targets` push), another zone is reached by that zone's route (the push adapter naming
the zone, or an entry of `routes:`). An identifier the directory does not know is matched against
the `patterns` of each route (e.g. the QĐ 20 code segments of another province or a ministry);
the first zone whose pattern matches takes it, otherwise the national axis's zone when it has a
route; otherwise it is refused (`422 route.unknown_destination`). A unit reached that way is added
to the directory in its zone, so its packets, statuses and presence follow like any other unit's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lgsp.core.i18n import Text
from lgsp.core.identifiers import InvalidIdentifier, check_identifier, identifier_form

if TYPE_CHECKING:
    from lgsp.core.hub import Hub

#: Keys of a `routes.<zone>` entry the router reads; the others are the adapter's settings.
ROUTE_KEYS: Final = frozenset({"adapter", "patterns"})
FALLBACK_ZONE: Final = "national"


@dataclass(frozen=True)
class Decision:
    """Where a destination goes. `route` None: refused. `reason` says why (a `Text`: `reason_vi` and
    `reason_en` render it)."""

    unit: str
    known: bool
    zone: str | None
    route: str | None  # `pull`, or the push protocol
    reason: Text
    status: str | None = None

    @property
    def reason_vi(self) -> str:
        return self.reason.render("vi")

    @property
    def reason_en(self) -> str:
        return self.reason.render("en")

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "known": self.known, "zone": self.zone, "route": self.route,
                "status": self.status, "reason": self.reason_vi, "reason_en": self.reason_en}


def route_problems(routes: Mapping[str, Any], adapters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with `routes:` as (key path, message)."""
    out: list[tuple[str, str]] = []
    for zone, entry in routes.items():
        base = f"routes.{zone}"
        if zone in ("local", "hub") or not re.fullmatch(r"[a-z][a-z0-9_.\-]{0,63}", str(zone)):
            out.append((base, Text("must be a zone name (a-z 0-9 . _ -) other than local and hub")))
            continue
        if not isinstance(entry, Mapping):
            out.append((base, Text("must be a mapping: adapter, patterns and the adapter's settings")))
            continue
        adapter = entry.get("adapter")
        if adapter is not None and adapter not in adapters:
            out.append((f"{base}.adapter", Text("no push adapter {adapter!r} ({known})", adapter=adapter,
                                                 known=", ".join(sorted(adapters)) or "-")))
        if adapter is None and not any(zone in (getattr(a, "zones", ()) or ()) for a in adapters.values()):
            out.append((f"{base}.adapter", Text("required: no enabled adapter is the route of this zone")))
        patterns = entry.get("patterns", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            out.append((f"{base}.patterns", Text("must be a list of regular expressions")))
            continue
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                out.append((f"{base}.patterns[{i}]", Text("not a regular expression: {problem}", problem=exc)))
    return out


class Router:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for zone, entry in (hub.config.routes or {}).items():
            if isinstance(entry, Mapping):
                for pattern in entry.get("patterns", []) or []:
                    try:
                        self.patterns.append((zone, re.compile(pattern)))
                    except (re.error, TypeError):
                        continue  # reported by check_config

    def zone_for_unknown(self, unit: str) -> tuple[str | None, Text]:
        """The zone an identifier unknown here belongs to, with the reason."""
        try:
            check_identifier(unit, legacy=True)
        except InvalidIdentifier as exc:
            return None, Text("not a valid identifier: {why}", why=exc.reason)
        routed = self.hub.engine.zone_routes
        for zone, pattern in self.patterns:
            if zone in routed and pattern.fullmatch(unit):
                return zone, Text("not in the directory; matches the pattern «{pattern}» of zone {zone}",
                                  pattern=pattern.pattern, zone=zone)
        if FALLBACK_ZONE in routed:
            return FALLBACK_ZONE, Text("not in the directory and matches no pattern; sent through the national axis")
        return None, Text("not in the directory, matches no pattern, and no national axis is configured")

    async def explain(self, unit: str) -> Decision:
        found = await self.hub.directory.get_unit(unit)
        engine = self.hub.engine
        if found is not None:
            if found.status != "active":
                return Decision(unit, True, found.zone, None,
                                Text("the unit is {status}: it receives nothing", status=found.status), found.status)
            if unit == self.hub.config.hub.identifier:
                return Decision(unit, True, found.zone, None, Text("the hub's own unit (it only signs)"),
                                found.status)
            self.hub.directory.remember_zones([(found.id, found.zone)])
            protocol = engine.protocol_of(unit)
            if unit in engine.config.targets:
                return Decision(unit, True, found.zone, protocol or "pull",
                                Text("listed under delivery.targets: pushed with {protocol}", protocol=protocol),
                                found.status)
            if found.zone == "local":
                return Decision(unit, True, "local", "pull", Text("a unit of this hub: told, and fetches"),
                                found.status)
            if protocol is None:
                return Decision(unit, True, found.zone, None, Text("zone {zone} has no route", zone=found.zone),
                                found.status)
            return Decision(unit, True, found.zone, protocol,
                            Text("a unit of zone {zone}: through route {protocol}", zone=found.zone, protocol=protocol),
                            found.status)
        zone, reason = self.zone_for_unknown(unit)
        if zone is None:
            return Decision(unit, False, None, None, reason)
        return Decision(unit, False, zone, engine.zone_routes[zone], reason)

    async def adopt(self, units: Sequence[str]) -> list[str]:
        """Add the unknown identifiers a zone's route takes to the directory; returns those added."""
        added = []
        for unit in units:
            zone, _reason = self.zone_for_unknown(unit)
            if zone is None:
                continue
            try:
                await self.hub.directory.add_unit(unit, unit, zone=zone, legacy=identifier_form(unit) is None)
            except Exception:  # noqa: S112 - a unit added meanwhile (conflict) or refused: checked by the caller
                continue
            self.hub.directory.remember_zones([(unit, zone)])
            added.append(unit)
        return added
