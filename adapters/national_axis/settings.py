"""The `adapters.national_axis` settings: where the axis is, who the hub is on it, how often to poll.

Parsing never stops at the first mistake and names each key path, so `lgsp config check` reports
everything wrong in one pass. The secret is never here: `secret` names a value stored with
`lgsp secret set NAME`, read from the sealed secret store when the adapter starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lgsp.core.api import SECRET_NAME_RE as NAME_RE
from lgsp.core.api import Text

from .protocol import MessageType

__all__ = ["SECTION", "AxisSettings", "Issues", "parse_settings"]

SECTION: Final = "adapters.national_axis"
Issues = list[tuple[str, str]]

_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_ZONE: Final = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")

# key -> (default, lowest allowed, description); 0 allowed only where the lowest is 0.
NUMBERS: Final[dict[str, tuple[float, float, str]]] = {
    "poll_interval_seconds": (60.0, 1.0, "how often received documents and statuses are fetched"),
    "track_interval_seconds": (60.0, 1.0, "how often documents handed to the axis are checked for receipt"),
    "sync_interval_seconds": (86400.0, 0.0, "how often the agency directory is synchronised (0: only by CLI)"),
    "probe_interval_seconds": (60.0, 0.0, "how often the axis is probed for presence (0: never)"),
    "timeout_seconds": (60.0, 1.0, "longest silence while sending or awaiting an answer"),
    "connect_timeout_seconds": (10.0, 1.0, "longest wait for a connection"),
}
INTEGERS: Final[dict[str, tuple[int, int, str]]] = {
    "page_size": (100, 1, "most received items handled per poll round and message type"),
    "concurrency": (2, 1, "sendEdoc calls in flight at once"),
    "track_batch": (200, 1, "most forwarded deliveries checked per tracking round"),
}
KEYS: Final = frozenset({"endpoint", "system_id", "secret", "agency_code", "zone", "message_types", "inbound",
                         *NUMBERS, *INTEGERS})


@dataclass(frozen=True)
class AxisSettings:
    endpoint: str
    system_id: str
    secret_name: str
    agency_code: str
    zone: str = "national"
    message_types: tuple[str, ...] = ("edoc", "status")
    inbound: bool = True
    poll_interval: float = 60.0
    track_interval: float = 60.0
    sync_interval: float = 86400.0
    probe_interval: float = 60.0
    timeout: float = 60.0
    connect_timeout: float = 10.0
    page_size: int = 100
    concurrency: int = 2
    track_batch: int = 200


def _text(raw: Mapping[str, Any], key: str, issues: Issues, pattern: re.Pattern[str], what: Text) -> str:
    value = raw.get(key)
    if value is None:
        issues.append((f"{SECTION}.{key}", Text("required: {what}", what=what)))
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
        issues.append((f"{SECTION}.{key}", Text("must be {what}", what=what)))
        return ""
    return value.strip()


def parse_settings(section: Any) -> tuple[AxisSettings | None, Issues]:
    """The settings and every problem found, as (key path, message); None when unusable or absent."""
    if section is None:
        return None, []
    if not isinstance(section, Mapping):
        return None, [(SECTION, Text("must be a mapping of settings"))]
    issues: Issues = []
    for key in sorted(set(section) - KEYS):
        issues.append((f"{SECTION}.{key}", Text("unknown key (known: {known})", known=", ".join(sorted(KEYS)))))
    endpoint = section.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")) or len(endpoint) > 500 \
            or any(c.isspace() for c in endpoint) or "?" in endpoint or "#" in endpoint:
        issues.append((f"{SECTION}.endpoint", Text(
            "required: the axis's http(s) URL, without query or fragment (operations are appended as /<operation>)")))
        endpoint = ""
    system_id = _text(section, "system_id", issues, _TOKEN, Text("the hub's systemId on the axis (e.g. vxp.saas.45)"))
    agency = _text(section, "agency_code", issues, _TOKEN, Text("the hub's own agency code on the axis"))
    secret = section.get("secret")
    if not isinstance(secret, str) or not NAME_RE.match(secret):
        issues.append((f"{SECTION}.secret", Text(
            "required: the NAME of a secret stored with `lgsp secret set NAME` (1-64 of a-z 0-9 . _ -), "
            "never the secret itself")))
        secret = ""
    zone = section.get("zone", "national")
    if not isinstance(zone, str) or not _ZONE.fullmatch(zone) or zone in ("local", "hub"):
        issues.append((f"{SECTION}.zone", Text("must be a zone name (a-z 0-9 . _ -) other than local and hub")))
        zone = "national"
    kinds = section.get("message_types", ["edoc", "status"])
    known = {m.value for m in MessageType}
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) and k in known for k in kinds):
        issues.append((f"{SECTION}.message_types",
                       Text("must be a non-empty list of {values}", values=", ".join(sorted(known)))))
        kinds = ["edoc", "status"]
    inbound = section.get("inbound", True)
    if not isinstance(inbound, bool):
        issues.append((f"{SECTION}.inbound", Text("must be true or false")))
        inbound = True
    numbers: dict[str, float] = {}
    for key, (default, lowest, _) in NUMBERS.items():
        value = section.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < lowest:
            issues.append((f"{SECTION}.{key}",
                           Text("must be a number of seconds, at least {lowest}", lowest=format(lowest, "g"))))
            value = default
        numbers[key] = float(value)
    integers: dict[str, int] = {}
    for key, (idefault, ilowest, _) in INTEGERS.items():
        ivalue = section.get(key, idefault)
        if not isinstance(ivalue, int) or isinstance(ivalue, bool) or not ilowest <= ivalue <= 10_000:
            issues.append((f"{SECTION}.{key}", Text("must be a whole number from {lowest} to 10000", lowest=ilowest)))
            ivalue = idefault
        integers[key] = ivalue
    if issues:
        return None, issues
    return AxisSettings(
        endpoint=str(endpoint).rstrip("/"), system_id=system_id, secret_name=str(secret), agency_code=agency,
        zone=zone, message_types=tuple(dict.fromkeys(kinds)), inbound=inbound,
        poll_interval=numbers["poll_interval_seconds"], track_interval=numbers["track_interval_seconds"],
        sync_interval=numbers["sync_interval_seconds"], probe_interval=numbers["probe_interval_seconds"],
        timeout=numbers["timeout_seconds"], connect_timeout=numbers["connect_timeout_seconds"],
        page_size=integers["page_size"], concurrency=integers["concurrency"],
        track_batch=integers["track_batch"]), []
