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
    """Where a destination goes. `route` None: refused. `reason_vi`/`reason_en` say why."""

    unit: str
    known: bool
    zone: str | None
    route: str | None  # `pull`, or the push protocol
    reason_vi: str
    reason_en: str
    status: str | None = None

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

    def zone_for_unknown(self, unit: str) -> tuple[str | None, str, str]:
        """The zone an identifier unknown here belongs to, with the reason (vi, en)."""
        try:
            check_identifier(unit, legacy=True)
        except InvalidIdentifier as exc:
            return None, f"mã không hợp lệ: {exc}", f"not a valid identifier: {exc}"
        routed = self.hub.engine.zone_routes
        for zone, pattern in self.patterns:
            if zone in routed and pattern.fullmatch(unit):
                return zone, (f"chưa có trong danh bạ; khớp mẫu «{pattern.pattern}» của vùng {zone}"), \
                    f"not in the directory; matches the pattern «{pattern.pattern}» of zone {zone}"
        if FALLBACK_ZONE in routed:
            return FALLBACK_ZONE, ("chưa có trong danh bạ, không khớp mẫu nào; gửi qua trục quốc gia"), \
                "not in the directory and matches no pattern; sent through the national axis"
        return None, "chưa có trong danh bạ, không khớp mẫu nào và không có trục quốc gia", \
            "not in the directory, matches no pattern, and no national axis is configured"

    async def explain(self, unit: str) -> Decision:
        found = await self.hub.directory.get_unit(unit)
        engine = self.hub.engine
        if found is not None:
            if found.status != "active":
                return Decision(unit, True, found.zone, None, f"đơn vị ở trạng thái {found.status}: không nhận gói tin",
                                f"the unit is {found.status}: it receives nothing", found.status)
            if unit == self.hub.config.hub.identifier:
                return Decision(unit, True, found.zone, None, "đơn vị của chính trục (chỉ dùng để ký)",
                                "the hub's own unit (it only signs)", found.status)
            self.hub.directory.remember_zones([(found.id, found.zone)])
            protocol = engine.protocol_of(unit)
            if unit in engine.config.targets:
                return Decision(unit, True, found.zone, protocol or "pull",
                                f"có trong delivery.targets: đẩy bằng {protocol}",
                                f"listed under delivery.targets: pushed with {protocol}", found.status)
            if found.zone == "local":
                return Decision(unit, True, "local", "pull", "đơn vị của trục này: được báo và tự nhận",
                                "a unit of this hub: told, and fetches", found.status)
            if protocol is None:
                return Decision(unit, True, found.zone, None, f"vùng {found.zone} không có tuyến nào",
                                f"zone {found.zone} has no route", found.status)
            return Decision(unit, True, found.zone, protocol, f"thuộc vùng {found.zone}: qua tuyến {protocol}",
                            f"a unit of zone {found.zone}: through route {protocol}", found.status)
        zone, vi, en = self.zone_for_unknown(unit)
        if zone is None:
            return Decision(unit, False, None, None, vi, en)
        return Decision(unit, False, zone, engine.zone_routes[zone], vi, en)

    async def adopt(self, units: Sequence[str]) -> list[str]:
        """Add the unknown identifiers a zone's route takes to the directory; returns those added."""
        added = []
        for unit in units:
            zone, _, _ = self.zone_for_unknown(unit)
            if zone is None:
                continue
            try:
                await self.hub.directory.add_unit(unit, unit, zone=zone, legacy=identifier_form(unit) is None)
            except Exception:  # noqa: S112 - a unit added meanwhile (conflict) or refused: checked by the caller
                continue
            self.hub.directory.remember_zones([(unit, zone)])
            added.append(unit)
        return added
