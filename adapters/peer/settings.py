"""A peer hub's route: `routes.<zone>` with `adapter: peer`.

```yaml
routes:
  hcm:                                  # the peer's zone, as this hub names it
    adapter: peer
    patterns: ['^000\\.\\d{2}\\.\\d{2}\\.H29$']
    url: https://lgsp.hcm.gov.vn        # the peer hub (a list, or commas: several nodes, tried in turn)
    unit: 000.00.99.H45                 # this hub as a unit on the peer
    key_id: AK...                       # the access key the peer issued to that unit
    secret: peer-hcm                    # NAME of the key's secret in the secret store (lgsp secret set)
    peer_unit: 000.00.99.H29            # the peer hub as a unit here: only it may send on behalf of the zone
    tls_ca_file: /etc/lgsp/peer-ca.pem  # optional, as for push targets: verify_tls, tls_fingerprint
```

Every mistake is named by its key path, so `lgsp config check` reports them all in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lgsp.core.api import (
    SECRET_NAME_RE,
    TLS_TARGET_KEYS,
    InvalidIdentifier,
    Text,
    check_identifier,
    tls_target_problems,
)

PROTOCOL: Final = "peer"
_URL: Final = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")
_KEY_ID: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
NUMBERS: Final[dict[str, tuple[float, float]]] = {
    "timeout_seconds": (60.0, 1.0),
    "connect_timeout_seconds": (10.0, 1.0),
    "track_interval_seconds": (30.0, 1.0),
}
KEYS: Final = frozenset({"protocol", "zone", "url", "unit", "key_id", "secret", "peer_unit", "algorithm",
                         *NUMBERS, *TLS_TARGET_KEYS})


@dataclass(frozen=True)
class PeerRoute:
    zone: str
    urls: tuple[str, ...]
    unit: str
    key_id: str
    secret_name: str
    peer_unit: str
    algorithm: str = "HMAC-SHA256"
    timeout: float = 60.0
    connect_timeout: float = 10.0
    track_interval: float = 30.0
    tls: tuple[tuple[str, Any], ...] = ()  # verify_tls, tls_ca_file, tls_fingerprint (core/tls.py)


def _urls(raw: Any) -> list[str] | None:
    items = raw if isinstance(raw, list) else str(raw).split(",") if isinstance(raw, str) else None
    if not items:
        return None
    out = [str(u).strip().rstrip("/") for u in items if str(u).strip()]
    return out if out and all(_URL.match(u) for u in out) else None


def _unit(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        check_identifier(value, legacy=True)
    except InvalidIdentifier:
        return False
    return True


def parse_route(zone: str, raw: Mapping[str, Any]) -> tuple[PeerRoute | None, list[tuple[str, str]]]:
    """The route and its problems as (key, message); None when unusable."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(raw) - KEYS - {"adapter", "patterns"}):
        known = ", ".join(sorted(KEYS - {"protocol", "zone"}))
        problems.append((key, Text("unknown key for a peer route (known: {known})", known=known)))
    urls = _urls(raw.get("url"))
    if urls is None:
        problems.append(("url", Text("required: the peer hub's http(s) URL, or a list of its nodes' URLs")))
    for key, what in (("unit", Text("this hub's identifier as a unit on the peer")),
                      ("peer_unit", Text("the peer hub's identifier as a unit here (the unit its key belongs to)"))):
        if not _unit(raw.get(key)):
            problems.append((key, Text("required: {what}", what=what)))
    key_id = raw.get("key_id")
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        problems.append(("key_id", Text("required: the access key the peer issued to this hub's unit")))
    secret = raw.get("secret")
    if not isinstance(secret, str) or not SECRET_NAME_RE.match(secret):
        problems.append(("secret", Text("required: the NAME of the key's secret stored with `lgsp secret set NAME` "
                                        "(1-64 of a-z 0-9 . _ -), never the secret itself")))
    algorithm = raw.get("algorithm", "HMAC-SHA256")
    if algorithm not in ("HMAC-SHA256", "HMAC-SHA1"):
        problems.append(("algorithm", Text("must be HMAC-SHA256 or HMAC-SHA1 (a key with a shared secret)")))
    problems.extend(tls_target_problems(raw))
    numbers: dict[str, float] = {}
    for key, (default, lowest) in NUMBERS.items():
        value = raw.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < lowest:
            problems.append((key, Text("must be a number of seconds, at least {lowest}", lowest=format(lowest, "g"))))
            value = default
        numbers[key] = float(value)
    if problems:
        return None, problems
    assert urls is not None
    return PeerRoute(zone=zone, urls=tuple(urls), unit=str(raw["unit"]), key_id=str(key_id),
                     secret_name=str(secret), peer_unit=str(raw["peer_unit"]), algorithm=str(algorithm),
                     timeout=numbers["timeout_seconds"], connect_timeout=numbers["connect_timeout_seconds"],
                     track_interval=numbers["track_interval_seconds"],
                     tls=tuple((k, raw[k]) for k in TLS_TARGET_KEYS if k in raw)), []


def peer_routes(routes: Mapping[str, Any]) -> dict[str, PeerRoute]:
    """The usable peer routes of `routes:` by zone (the unusable ones are reported by config check)."""
    out: dict[str, PeerRoute] = {}
    for zone, entry in (routes or {}).items():
        if isinstance(entry, Mapping) and entry.get("adapter") == PROTOCOL:
            route, _ = parse_route(str(zone), entry)
            if route is not None:
                out[str(zone)] = route
    return out
