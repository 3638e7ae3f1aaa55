"""Hub configuration: the schema, the YAML loader with line numbers, and env overrides.

The schema is a tree of frozen dataclasses; every field carries its default and a one-line
description (the comments in config/lgsp.yaml say the same and a test keeps them in step).
Loading never stops at the first mistake: every unknown key, wrong type or bad value is reported
with its key path and the line it sits on, so an operator fixes the file in one pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml

from lgsp.core.i18n import N_, Text, os_reason, render

ENV_PREFIX = "LGSP_"
# Env variables read by the CLI client, not by the hub; never taken for config keys.
CLIENT_ENV = {"LGSP_URL", "LGSP_ACCESS_KEY", "LGSP_SECRET_KEY", "LGSP_PRIVATE_KEY_FILE", "LGSP_ALGORITHM",
              "LGSP_PROFILE", "LGSP_PROFILES_FILE", "LGSP_CONFIG", "LGSP_LANG"}


class ByteSize(int):
    """An integer number of bytes that YAML may write as `512KiB`, `10MiB`, `2GiB` or `1000`."""


class DateSpan(NamedTuple):
    """A day or a run of days (both ends included); YAML writes `2027-02-05` or `2027-02-05..2027-02-11`."""

    first: dt.date
    last: dt.date

    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]


# A holiday longer than this is a typo (2026-02-14..2026-12-22), not a holiday.
MAX_SPAN_DAYS = 31
_DATE_RE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s*$")


def _parse_date(text: str) -> dt.date | str:
    """The date in `YYYY-MM-DD`, or why it is not one (a day that does not exist is named as such)."""
    m = _DATE_RE.match(text)
    if not m:
        return Text("must be a date written YYYY-MM-DD, got {text!r}", text=text)
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return Text("{day} is not a day of the calendar", day=text.strip())


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
               "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def setting(default: Any, doc: str, *, check: Callable[[Any], str | None] | None = None) -> Any:
    """Declare a config field: default, description, optional value check returning an error."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)  # type: ignore[misc]
    return field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc, "check": None})


def _identifier(v: Any) -> str | None:
    from lgsp.core.identifiers import InvalidIdentifier, check_identifier

    try:
        check_identifier(v)
    except InvalidIdentifier as exc:
        return exc.reason
    return None


def _not_blank(v: Any) -> str | None:
    return Text("must not be empty") if isinstance(v, str) and not v.strip() else None


def _kek_source(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        return None
    kind, _, where = v.strip().partition(":")
    if kind == "pkcs11":
        from lgsp.core.masterkey import MasterKeyError, joined, parse_pkcs11_uri, pkcs11_uri_problems

        try:
            problems = pkcs11_uri_problems(parse_pkcs11_uri(v.strip()))
        except MasterKeyError as exc:
            return exc.args[0] if len(exc.args) == 1 else str(exc)
        return joined(problems) or None
    if kind not in ("file", "env") or not where:
        return Text("must be file:/path, env:NAME, pkcs11:token=…;object=…?module-path=…&pin-source=… or empty")
    return None


def _positive(v: Any) -> str | None:
    return None if v > 0 else Text("must be greater than 0")


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else Text("must be 0 or more")


def _port(v: Any) -> str | None:
    return None if 0 <= v <= 65535 else Text("must be a TCP port between 0 and 65535")


def _db_url(v: Any) -> str | None:
    if v == "":
        return None
    if not re.match(r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://", v):
        return Text("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    return None


def _url_or_empty(v: Any) -> str | None:
    if v == "" or re.match(r"^https?://[^/\s]+(/\S*)?$", v):
        return None
    return Text("must be empty or an http(s) URL")


@dataclass(frozen=True)
class HubConfig:
    identifier: str = setting("000.00.00.H99", "Electronic identifier of this hub (used in edXML TraceHeader)",
                              check=_identifier)
    name: str = setting("Trục liên thông tỉnh", "Display name of this hub", check=_not_blank)
    data_dir: str = setting("./var", "Folder for the embedded database, blobs and the master key",
                            check=_not_blank)


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting("127.0.0.1", "Address the HTTP server listens on")
    port: int = setting(8080, "TCP port (0 picks a free port)", check=_port)
    public_url: str = setting("", "Base URL clients use to reach the hub (empty: taken from each request)",
                              check=_url_or_empty)
    shutdown_timeout_seconds: float = setting(10.0, "Grace period for open requests on shutdown",
                                              check=_non_negative)
    drain_seconds: float = setting(
        5.0, "On SIGTERM, /readyz fails and the hub keeps serving this long before it stops (0: stop at once)",
        check=_non_negative)
    header_timeout_seconds: float = setting(
        10.0, "A request's line and headers must arrive within this long (from the connection's opening, "
        "or the first byte of the next request on a kept-alive connection)", check=_positive)
    body_idle_timeout_seconds: float = setting(
        60.0, "A request body that sends nothing for this long is cut (a stalled upload then frees its packet)",
        check=_positive)
    keepalive_timeout_seconds: float = setting(75.0, "An idle kept-alive connection is closed after this long",
                                               check=_positive)
    workers: int = setting(
        0, "Worker processes serving this port together (0: one per core on PostgreSQL, 1 on SQLite; "
        "more than 1 needs PostgreSQL)", check=_non_negative)
    worker_watchdog_seconds: float = setting(
        30.0, "A worker process whose event loop says nothing for this long is killed and restarted",
        check=_positive)
    max_connections_per_address: int = setting(
        256, "Most open connections from one client address; more are refused with 503 (0: no limit; behind "
        "a reverse proxy every client has the proxy's address: set 0 and limit in the proxy)",
        check=_non_negative)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = setting("", "SQLAlchemy URL; empty means SQLite at <data_dir>/lgsp.db", check=_db_url)
    pool_size: int = setting(10, "Connections kept open (PostgreSQL) / readers (SQLite)", check=_positive)
    sqlite_synchronous: Literal["normal", "full"] = setting(
        "normal", "SQLite durability: normal survives a process crash, full also a power cut")
    echo: bool = setting(False, "Log every SQL statement (debugging only)")


@dataclass(frozen=True)
class BlobsConfig:
    path: str = setting("", "Folder of the blob store; empty means <data_dir>/blobs")
    fsync: bool = setting(True, "Flush each blob to disk before accepting it (survives a power cut)")
    encrypt: bool = setting(True, "Encrypt content at rest (AES-256-GCM, a data key per packet); "
                                  "files written unencrypted before stay readable")
    cache_bytes: ByteSize = setting(
        ByteSize(8 << 20), "Memory per hub process holding the encrypted bytes of small blobs it just wrote "
                           "(at most 64 KiB each), so their downloads read no file; the oldest go first, a "
                           "packet's go when it is purged; 0 turns it off", check=_non_negative)
    inline_bytes: ByteSize = setting(
        ByteSize(64 << 10), "Uploads of at most this many bytes are kept, encrypted, in the database instead of a "
                            "file, written with their acceptance and deleted with their purge (no file to write, "
                            "fsync and delete); at most 1 MiB and io_chunk_size; 0 turns it off (those kept stay "
                            "readable)", check=lambda v: None if 0 <= v <= 1 << 20 else "must be between 0 and 1MiB")


@dataclass(frozen=True)
class SecurityConfig:
    master_key_file: str = setting("", "File holding the master key; empty means <data_dir>/master.key")
    master_key_kek: str = setting("", "Key-encryption key sealing the master key file: file:/path, env:NAME, "
                                      "pkcs11:token=T;object=KEY?module-path=SO&pin-source=file:/path|env:NAME, "
                                      "or empty (none)", check=_kek_source)
    clock_skew_seconds: int = setting(300, "Largest accepted |hub time - X-LGSP-Date|", check=_positive)
    session_ttl_seconds: int = setting(900, "Lifetime of a session token", check=_positive)
    transfer_ttl_seconds: int = setting(3600, "Validity of an upload or download URL", check=_positive)
    stream_recheck_seconds: float = setting(
        10.0, "How often an open event stream re-checks its key and unit (revoked or suspended: closed)",
        check=_positive)
    key_cache_seconds: float = setting(
        30.0, "Longest an access key read from the store is reused by signed requests (a revocation, a "
              "suspension still hold on the next request, on every node); 0: read it on every request",
        check=_non_negative)
    stream_ticket_seconds: int = setting(
        30, "Lifetime of a single-use event stream ticket (how browsers open GET /v1/events)",
        check=lambda v: None if 1 <= v <= 300 else "must be between 1 and 300 seconds")
    rsa_key_bits: int = setting(
        3072, "Size of RSA key pairs the hub generates",
        check=lambda v: None if v in (2048, 3072, 4096) else "must be 2048, 3072 or 4096")


@dataclass(frozen=True)
class LimitsConfig:
    max_packet_size: ByteSize = setting(ByteSize(2 << 30), "Largest packet content accepted", check=_positive)
    max_json_body: ByteSize = setting(ByteSize(1 << 20), "Largest JSON request body", check=_positive)
    max_recipients: int = setting(1000, "Most destinations in one packet", check=_positive)
    io_chunk_size: ByteSize = setting(
        ByteSize(1 << 20), "Bytes per disk write/hash step while streaming content",
        check=lambda v: None if 4096 <= v <= 64 << 20 else "must be between 4KiB and 64MiB")


@dataclass(frozen=True)
class PresenceConfig:
    online_window_seconds: int = setting(
        300, "A unit with no open event stream counts as online this long after a signed request",
        check=_positive)
    sweep_interval_seconds: float = setting(10.0, "How often presence, expiry and offline reports are checked",
                                            check=_positive)
    offline_report_after_seconds: float = setting(
        14400.0, "Tell the sources of waiting packets when their destination has been offline this long",
        check=_positive)
    offline_report_repeat_seconds: float = setting(
        14400.0, "Repeat that report to the same source at most this often while the destination stays offline",
        check=_positive)
    offline_report_max_packets: int = setting(1000, "Most packet ids listed in one offline report",
                                              check=_positive)
    clock_offset_sample_seconds: float = setting(
        300.0, "A unit's clock offset is recorded at most once per this many seconds while it sends signed requests",
        check=_positive)
    clock_offset_jump_seconds: float = setting(
        5.0, "...and at once when it moves by more than this many seconds", check=_positive)
    clock_offset_retention_days: int = setting(
        400, "Clock-offset samples older than this many days are deleted", check=_positive)


@dataclass(frozen=True)
class ClusterConfig:
    heartbeat_interval_seconds: float = setting(
        5.0, "How often each node (hub process) records that it is alive in the shared store", check=_positive)
    node_timeout_seconds: float = setting(
        20.0, "A node silent this long is dead: its streams stop counting and its push claims are taken back",
        check=_positive)


@dataclass(frozen=True)
class PluginsConfig:
    enabled: list[str] = setting(
        ["rest", "edxml", "soap_edxml", "console"],
        "Plugins to load: built-in adapters (rest, edxml, soap_edxml, sftp, console) and installed entry points "
        "of group 'lgsp'")


def _fraction(v: Any) -> str | None:
    return None if 0 <= v <= 1 else Text("must be between 0 and 1")


def _jobstore_url(v: Any) -> str | None:
    if v == "" or re.match(r"^(sqlite|postgresql\+psycopg)://", v):
        return None
    return Text("must be empty, sqlite:///FILE or postgresql+psycopg://... (a synchronous driver)")


@dataclass(frozen=True)
class RetryConfig:
    base_delay_seconds: float = setting(10.0, "Wait before the first retry of a failed push", check=_positive)
    factor: float = setting(2.0, "Each further retry waits this many times longer",
                            check=lambda v: None if v >= 1 else "must be 1 or more")
    max_delay_seconds: float = setting(3600.0, "Longest wait between two attempts (the cap)", check=_positive)
    jitter: float = setting(0.2, "Random share taken off each wait (0 = none, 1 = anywhere from 0 to the full wait)",
                            check=_fraction)


def _limits(attempts: int, age_seconds: float, name: str) -> type:
    """A per-priority limits section with its own defaults (a YAML key left out keeps its default)."""
    cls = dataclasses.make_dataclass(
        f"{name}Limits",
        [("max_attempts", int, setting(attempts, "Push attempts before the delivery fails", check=_positive)),
         ("max_age_seconds", float, setting(
             age_seconds, "A delivery not done this long after it was queued expires (pull and push)",
             check=_positive))],
        frozen=True)
    cls.__module__ = __name__
    return cls


NormalLimits = _limits(25, 30 * 86400.0, "Normal")
UrgentLimits = _limits(30, 14 * 86400.0, "Urgent")
VeryUrgentLimits = _limits(40, 7 * 86400.0, "VeryUrgent")
FlashLimits = _limits(50, 3 * 86400.0, "Flash")


@dataclass(frozen=True)
class PrioritiesConfig:
    normal: NormalLimits = section(NormalLimits, "Priority 0")  # type: ignore[valid-type]
    urgent: UrgentLimits = section(UrgentLimits, "Priority 1")  # type: ignore[valid-type]
    very_urgent: VeryUrgentLimits = section(VeryUrgentLimits, "Priority 2")  # type: ignore[valid-type]
    flash: FlashLimits = section(FlashLimits, "Priority 3")  # type: ignore[valid-type]

    def for_priority(self, priority: int) -> Any:
        return (self.normal, self.urgent, self.very_urgent, self.flash)[max(0, min(3, priority))]


@dataclass(frozen=True)
class SchedulerConfig:
    jobstore_url: str = setting(
        "", "Where APScheduler keeps retry jobs; empty: <data_dir>/scheduler.db on SQLite, the main "
        "database (through psycopg) on PostgreSQL", check=_jobstore_url)


@dataclass(frozen=True)
class DeliveryConfig:
    targets: dict[str, dict[str, Any]] = setting(
        {}, "Units reached by push: identifier → {protocol: <adapter>, ...adapter settings}; others pull")
    concurrency: int = setting(2, "Attempts in flight at once per push destination (a target may set its own)",
                               check=_positive)
    attempt_timeout_seconds: float = setting(
        600.0, "An attempt still running after this long is abandoned and retried", check=_positive)
    poll_interval_seconds: float = setting(
        30.0, "How often push queues are re-read (catches work added by the CLI or another node)",
        check=_positive)
    probe_interval_seconds: float = setting(
        60.0, "How often push destinations are probed for presence (0: never; a target may set its own)",
        check=_non_negative)
    retry: RetryConfig = section(RetryConfig, "Retries of failed pushes: exponential backoff with jitter")
    priorities: PrioritiesConfig = section(PrioritiesConfig, "Limits per priority")
    scheduler: SchedulerConfig = section(SchedulerConfig, "The retry scheduler")


def _networks(v: Any) -> str | None:
    for item in v:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            return Text("{item!r} is not an address or network (e.g. 10.0.0.0/8, ::1)", item=item)
    return None


def _sha256_or_empty(v: Any) -> str | None:
    return None if v == "" or re.fullmatch(r"[0-9a-fA-F]{64}", v) else \
        Text("must be empty or the SHA-256 of the token, 64 hex digits (sha256sum of the token, without newline)")


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = setting(True, "Serve GET /metrics (Prometheus exposition format)")
    allow: list[str] = setting(["127.0.0.1/32", "::1/128"], "Addresses or networks that may read /metrics",
                               check=_networks)
    token_sha256: str = setting("", "SHA-256 (hex) of a bearer token that may read /metrics from any address "
                                "(empty: none)", check=_sha256_or_empty)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "Log level")
    format: Literal["json", "text"] = setting(
        "json", "json: one JSON object per line; text: one readable line (both UTC, with request id, unit, "
        "packet id and problem code where they apply)")
    access_log: bool = setting(True, "Log one line per HTTP request (never headers or bodies)")


def _email_or_empty(v: Any) -> str | None:
    from lgsp.core.registration.checks import is_valid_email

    return None if v == "" or is_valid_email(v) else Text("must be empty or an e-mail address")


def _phone_or_empty(v: Any) -> str | None:
    from lgsp.core.registration.checks import is_valid_phone

    return None if v == "" or is_valid_phone(v) else Text("must be empty or a telephone number (e.g. 0251 3822 123)")


def _abbreviation_or_empty(v: Any) -> str | None:
    from lgsp.core.registration.checks import is_valid_abbreviation

    return None if v == "" or is_valid_abbreviation(v) else \
        Text("must be empty or letters and digits joined by hyphens (e.g. SKHCN, TTCNTT-KT)")


def _one_line(v: Any) -> str | None:
    from lgsp.core.registration.checks import text_problem

    return Text("must be one line of printable text") if text_problem(v) else None


# Who issues a reply step: the Department of Science and Technology or its Centre.
Office = Literal["department", "centre"]


@dataclass(frozen=True)
class DepartmentConfig:
    name: str = setting("Sở Khoa học và Công nghệ",
                        "Name of the Department as printed (its parent body line is 'UBND <province>')",
                        check=_not_blank)
    abbreviation: str = setting("SKHCN", "Abbreviation after the slash of its document numbers (Số: …/SKHCN)",
                                check=_abbreviation_or_empty)
    address: str = setting("", "Postal address (printed at the foot of the first page of its letters)",
                           check=_one_line)
    phone: str = setting("", "Telephone number", check=_phone_or_empty)
    email: str = setting("", "E-mail address", check=_email_or_empty)
    signer_title: str = setting("GIÁM ĐỐC", "Title above the signature on its letters (a letter may name a deputy)",
                                check=_not_blank)


@dataclass(frozen=True)
class CentreConfig:
    name: str = setting("", "Name of the Centre that operates the hub (empty: printed as a dotted blank)",
                        check=_one_line)
    abbreviation: str = setting("", "Abbreviation after the slash of its document numbers",
                                check=_abbreviation_or_empty)
    address: str = setting("", "Postal address (printed at the foot of the first page of its letters)",
                           check=_one_line)
    phone: str = setting("", "Telephone number", check=_phone_or_empty)
    email: str = setting("", "E-mail address", check=_email_or_empty)
    signer_title: str = setting("GIÁM ĐỐC", "Title above the signature on its letters", check=_not_blank)


@dataclass(frozen=True)
class DecisionConfig:
    number: str = setting("", "Number and symbol of the decision that issued the regulation, e.g. 12/2025/QĐ-UBND",
                          check=_one_line)
    issued_on: dt.date | None = setting(None, "Date of that decision")
    issuer: str = setting("", "Who issued it, e.g. Ủy ban nhân dân tỉnh …", check=_one_line)
    title: str = setting("Quy chế quản lý, vận hành và sử dụng hệ thống Trục liên thông tỉnh",
                         "Name of the regulation it issued", check=_not_blank)


@dataclass(frozen=True)
class ApproversConfig:
    form_02: Office = setting("department", "Who approves a registration (Mẫu 02, answering Mẫu 01)")
    form_04: Office = setting("centre", "Who provides the admin account (Mẫu 04, answering Mẫu 03)")
    form_05: Office = setting("centre", "Who hands the account over (Mẫu 05, party A)")
    form_07: Office = setting("department", "Who cancels a registration (Mẫu 07, answering Mẫu 06)")


def _span(first: tuple[int, int, int], last: tuple[int, int, int] | None = None) -> DateSpan:
    return DateSpan(dt.date(*first), dt.date(*(last or first)))


# Days off of state agencies (config/lgsp.yaml says where each comes from).
DEFAULT_HOLIDAYS = [
    _span((2026, 1, 1), (2026, 1, 2)), _span((2026, 2, 14), (2026, 2, 22)), _span((2026, 4, 26), (2026, 4, 27)),
    _span((2026, 4, 30), (2026, 5, 1)), _span((2026, 8, 31), (2026, 9, 2)), _span((2026, 11, 24)),
    _span((2027, 1, 1)), _span((2027, 2, 5), (2027, 2, 11)), _span((2027, 4, 16)), _span((2027, 4, 30)),
    _span((2027, 5, 3)), _span((2027, 9, 2), (2027, 9, 3)), _span((2027, 11, 24)),
]
DEFAULT_MAKE_UP_DAYS = [dt.date(2026, 1, 10), dt.date(2026, 8, 22)]


def _reply_days(v: Any) -> str | None:
    return None if 1 <= v <= 60 else Text("must be between 1 and 60 working days")


@dataclass(frozen=True)
class RegistrationConfig:
    province: str = setting("", "The province with its level, e.g. 'tỉnh …' (the Department's parent body line)",
                            check=_one_line)
    place: str = setting("", "Place name written before the date of the operator's letters", check=_one_line)
    department: DepartmentConfig = section(DepartmentConfig, "The Department of Science and Technology")
    centre: CentreConfig = section(CentreConfig, "The Centre that operates the hub")
    decision: DecisionConfig = section(DecisionConfig, "The provincial decision that issued the regulation")
    reply_working_days: int = setting(5, "Working days to answer a complete request", check=_reply_days)
    approvers: ApproversConfig = section(ApproversConfig, "Who issues each reply step")
    holidays: list[DateSpan] = setting(DEFAULT_HOLIDAYS, "Public holidays: dates and ranges of dates off")
    make_up_working_days: list[dt.date] = setting(DEFAULT_MAKE_UP_DAYS,
                                                  "Weekend days declared working days (ngày làm bù)")

    def config_issues(self) -> list[tuple[str, str]]:
        """A make-up day must be a weekend day that is not also declared a holiday."""
        off = {d for span in self.holidays for d in span.days()}
        out: list[tuple[str, str]] = []
        for i, day in enumerate(self.make_up_working_days):
            if day.weekday() < 5:
                out.append((f"make_up_working_days[{i}]",
                            Text("{day} is a weekday; only a Saturday or Sunday can be made a working day",
                                 day=day.isoformat())))
            elif day in off:
                out.append((f"make_up_working_days[{i}]", Text("{day} is also listed in holidays",
                                                               day=day.isoformat())))
        return out


@dataclass(frozen=True)
class PolicyConfig:
    default: Literal["allow", "deny"] = setting(
        "allow", "Communication policy when no rule matches a source and destination: allow or deny")
    rules: list[dict[str, Any]] = setting(
        [{"action": "deny", "source": "*", "destination": "zone:national"}],
        "Fixed rules, each {action: allow|deny, source, destination, data_type}; the CLI adds more "
        "(lgsp policy add) — see docs/security.md")
    cache_seconds: float = setting(
        2.0, "Rules and the unit tree are re-read at most this often (a CLI change holds within it)",
        check=_non_negative)

    def config_issues(self) -> list[tuple[str, str]]:
        from lgsp.core.policy import config_rule_issues

        return config_rule_issues(self.rules)


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str = setting(
        "", "PEM certificate (chain) the hub serves HTTPS with; empty: plain HTTP (e.g. behind a reverse proxy)")
    key_file: str = setting("", "PEM private key of that certificate (keep it mode 0600); SIGHUP reloads both")
    client_ca_file: str = setting(
        "", "PEM CA certificates (or units' own certificates) that client certificates are checked against; "
        "empty: none asked (mutual TLS off)")

    def config_issues(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if bool(self.cert_file) != bool(self.key_file):
            out.append(("key_file" if self.cert_file else "cert_file", Text("cert_file and key_file go together")))
        if self.client_ca_file and not self.cert_file:
            out.append(("client_ca_file", Text("client certificates need HTTPS: set cert_file and key_file")))
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                out.append((name, Text("no such file: {value}", value=value)))
        return out


@dataclass(frozen=True)
class AuditConfig:
    chain_interval_seconds: float = setting(
        1.0, "How often new audit entries are chained (each is durable at once; chaining only links them)",
        check=_positive)
    seal_interval_seconds: float = setting(
        300.0, "How often the chain head is signed with the hub's key, when it moved (0: only by lgsp audit sign)",
        check=_non_negative)


@dataclass(frozen=True)
class Config:
    hub: HubConfig = section(HubConfig, "This hub")
    server: ServerConfig = section(ServerConfig, "HTTP server")
    database: DatabaseConfig = section(DatabaseConfig, "Metadata store")
    blobs: BlobsConfig = section(BlobsConfig, "Content store")
    security: SecurityConfig = section(SecurityConfig, "Signing, sessions and secrets")
    limits: LimitsConfig = section(LimitsConfig, "Size limits")
    presence: PresenceConfig = section(PresenceConfig, "Online/offline detection")
    cluster: ClusterConfig = section(ClusterConfig, "Nodes sharing one PostgreSQL store (docs/cluster.md)")
    plugins: PluginsConfig = section(PluginsConfig, "Plugins and adapters")
    adapters: dict[str, dict[str, Any]] = setting({}, "Settings of each adapter, under its plugin name")
    routes: dict[str, dict[str, Any]] = setting(
        {}, "Routes to other zones: zone → {adapter, patterns (identifiers of that zone), adapter settings}")
    delivery: DeliveryConfig = section(DeliveryConfig, "Delivery to destinations")
    logging: LoggingConfig = section(LoggingConfig, "Logging")
    metrics: MetricsConfig = section(MetricsConfig, "Prometheus metrics")
    registration: RegistrationConfig = section(RegistrationConfig,
                                               "Registration forms (Mẫu 01–07) and the working-day calendar")
    policy: PolicyConfig = section(PolicyConfig, "Who may reach whom (communication policy, Điều 11.2)")
    audit: AuditConfig = section(AuditConfig, "The tamper-evident audit log")
    tls: TlsConfig = section(TlsConfig, "HTTPS and client certificates (docs/security.md)")

    # Where each key came from, for errors found after loading (e.g. an unknown plugin name).
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False,
                                       metadata={"internal": True})

    # -- derived paths -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.hub.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'lgsp.db'}"

    @property
    def blob_path(self) -> Path:
        return Path(self.blobs.path) if self.blobs.path else self.data_dir / "blobs"

    @property
    def master_key_path(self) -> Path:
        return Path(self.security.master_key_file) if self.security.master_key_file \
            else self.data_dir / "master.key"

    def config_issues(self) -> list[tuple[str, str]]:
        if self.server.workers > 1 and not self.database_url.startswith("postgresql"):
            # Every process would run the cluster's singleton work and see only its own live events.
            return [("server.workers", Text("more than 1 worker process needs PostgreSQL (database.url); "
                                            "SQLite serves one process"))]
        return []

    def where(self, path: str) -> str:
        """`file:line` (or the env variable) a key came from, for messages about its value."""
        return self.origins.get(path, "default")

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections changed, e.g. `cfg.replace(server={"port": 0})` in tests."""
        changes = {}
        for name, values in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **values) if isinstance(values, dict) else values
        return dataclasses.replace(self, **changes)


# -- loading ----------------------------------------------------------------------------------

_TOP_LEVEL = N_("(top level)")


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path or render(_TOP_LEVEL)}: {render(self.message)}"


class ConfigError(Exception):
    """Every problem found in one load, each naming the key path and line."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class _Loc:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[str, str] = {}

    def at(self, path: str) -> str:
        # An item of a list set from the environment has no line of its own: it comes from its list.
        while path not in self.lines and path.endswith("]") and "[" in path:
            path = path[:path.rindex("[")]
        return self.lines.get(path, self.source)


def _node_to_python(node: yaml.Node, loader: yaml.SafeLoader, path: str, loc: _Loc,
                    issues: list[ConfigIssue]) -> Any:
    loc.lines[path] = f"{loc.source}:{node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            sub = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                issues.append(ConfigIssue(sub, f"{loc.source}:{key_node.start_mark.line + 1}",
                                          Text("keys must be strings")))
                continue
            if key in out:
                issues.append(ConfigIssue(sub, f"{loc.source}:{key_node.start_mark.line + 1}",
                                          Text("duplicate key")))
                continue
            out[key] = _node_to_python(value_node, loader, sub, loc, issues)
            loc.lines[sub] = f"{loc.source}:{key_node.start_mark.line + 1}"
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_node_to_python(n, loader, f"{path}[{i}]", loc, issues) for i, n in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text for the schema to read: PyYAML turns `2030-02-30` into a
    bare ValueError (no line, and it stops the load), and a date where text is expected into a date."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _parse_yaml(text: str, source: str, loc: _Loc, issues: list[ConfigIssue]) -> Any:
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        return _node_to_python(node, loader, "", loc, issues)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        issues.append(ConfigIssue("", where, Text("not valid YAML: {problem}", problem=getattr(exc, "problem", exc))))
        return None
    finally:
        loader.dispose()


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is ByteSize:
        return Text("a size (e.g. 10MiB)")
    if tp is dt.date:
        return Text("a date (YYYY-MM-DD)")
    if tp is DateSpan:
        return Text("a date (YYYY-MM-DD) or a range of dates (YYYY-MM-DD..YYYY-MM-DD)")
    if origin is Literal:
        return Text("one of {values}", values=", ".join(repr(a) for a in get_args(tp)))
    if origin in (list,):
        return Text("a list")
    if origin in (dict,):
        return Text("a mapping")
    if dataclasses.is_dataclass(tp):
        return Text("a mapping")
    return {int: Text("an integer"), float: Text("a number"), str: Text("a string"),
            bool: Text("true or false")}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str, loc: _Loc, issues: list[ConfigIssue]) -> Any:
    """Turn the YAML value into the declared type, or record why it cannot be."""
    origin = get_origin(tp)
    bad = object()

    def fail(msg: str | None = None) -> Any:
        issues.append(ConfigIssue(path, loc.at(path), msg or Text("must be {kind}, got {value!r}",
                                                                  kind=_type_name(tp), value=value)))
        return bad

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], path, loc, issues)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return fail()
        return _build(tp, value, path, loc, issues)
    if origin is Literal:
        return value if value in get_args(tp) else fail()
    if origin is list:
        if not isinstance(value, list):
            return fail()
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{path}[{i}]", loc, issues) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            return fail()
        _, item_tp = get_args(tp)
        return {k: _coerce(v, item_tp, f"{path}.{k}", loc, issues) for k, v in value.items()}
    if tp is ByteSize:
        if isinstance(value, bool):
            return fail()
        if isinstance(value, int):
            return ByteSize(value)
        m = _SIZE_RE.match(str(value))
        if not m:
            return fail()
        return ByteSize(int(m.group(1)) * _SIZE_UNITS[m.group(2)])
    if tp is dt.date:
        if not isinstance(value, str):
            return fail()
        parsed = _parse_date(value)
        return fail(parsed) if isinstance(parsed, str) else parsed
    if tp is DateSpan:
        return _coerce_span(value, fail)
    if tp is bool:
        return value if isinstance(value, bool) else fail()
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return fail()
    if tp is str:
        return value if isinstance(value, str) else fail()
    return fail(Text("unsupported setting type {tp!r}", tp=tp))  # a schema bug, caught by tests


def _coerce_span(value: Any, fail: Callable[..., Any]) -> Any:
    if not isinstance(value, str):
        return fail()
    ends: list[dt.date] = []
    for part in value.split("..", 1):
        parsed = _parse_date(part)
        if isinstance(parsed, str):
            return fail(parsed)
        ends.append(parsed)
    span = DateSpan(ends[0], ends[-1])
    if span.last < span.first:
        return fail(Text("the range ends before it starts: {value!r}", value=value))
    if (span.last - span.first).days >= MAX_SPAN_DAYS:
        return fail(Text("a range of more than {MAX_SPAN_DAYS} days is surely a typo: {value!r}",
                         MAX_SPAN_DAYS=MAX_SPAN_DAYS, value=value))
    return span


def _public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


_Section = TypeVar("_Section")


def _build(cls: type[_Section], data: dict[str, Any], prefix: str, loc: _Loc, issues: list[ConfigIssue]) -> _Section:
    """Build one section; a section with a `config_issues()` method then checks its keys against each
    other (only when each key was fine on its own), reporting (relative key path, message) pairs."""
    start = len(issues)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in _public_fields(cls)}
    for key in data:
        if key not in known:
            path = f"{prefix}.{key}" if prefix else key
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = Text(" (did you mean {close!r}?)", close=close[0]) if close else ""
            issues.append(ConfigIssue(path, loc.at(path), Text("unknown key{hint}", hint=hint)))
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        path = f"{prefix}.{name}" if prefix else name
        before = len(issues)
        value = _coerce(data[name], hints[name], path, loc, issues)
        if len(issues) > before:
            continue
        check = f.metadata.get("check")
        if check is not None:
            msg = check(value)
            if msg:
                issues.append(ConfigIssue(path, loc.at(path), Text("{msg} (got {data!r})", msg=msg, data=data[name])))
                continue
        kwargs[name] = value
    built = cls(**kwargs)
    cross_check = getattr(built, "config_issues", None)
    if cross_check is not None and len(issues) == start:
        for rel, message in cross_check():
            path = f"{prefix}.{rel}" if prefix else rel
            issues.append(ConfigIssue(path, loc.at(path), message))
    return built


def positive_int_settings(section: str, raw: Any, known: Iterable[str]) -> list[tuple[str, str]]:
    """Problems with a plugin's `adapters.<name>` section made only of positive integers, as
    (key path, message) pairs for the `lgsp_check_config` hook."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [(section, Text("must be a mapping of settings"))]
    known = sorted(known)
    out: list[tuple[str, str]] = []
    for key, value in raw.items():
        path = f"{section}.{key}"
        if key not in known:
            out.append((path, Text("unknown key (known: {known})", known=', '.join(known))))
        elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            out.append((path, Text("must be a positive integer")))
    return out


def leaf_paths(cls: type = Config, prefix: str = "") -> dict[str, dataclasses.Field[Any]]:
    """Every settable key path of the schema, e.g. `security.clock_skew_seconds`."""
    out: dict[str, dataclasses.Field[Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in _public_fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(leaf_paths(hints[f.name], path))
        else:
            out[path] = f
    return out


def env_name(path: str) -> str:
    return ENV_PREFIX + path.replace(".", "_").upper()


def _apply_env(data: dict[str, Any], env: Mapping[str, str], loc: _Loc, issues: list[ConfigIssue]) -> None:
    paths = leaf_paths()
    by_env = {env_name(p): p for p in paths}
    sections = {ENV_PREFIX + f.name.upper() + "_" for f in _public_fields(Config)}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in CLIENT_ENV:
            continue
        path = by_env.get(name)
        if path is None:
            if any(name.startswith(s) for s in sections):
                issues.append(ConfigIssue(name, "environment", Text("no such setting")))
            continue
        if paths[path].type in ("str", str):
            value: Any = raw  # a text setting takes the text as given: "2024", "true", "~" stay strings
        else:
            try:
                value = yaml.load(raw, Loader=_ConfigLoader) if raw.strip() else ""  # noqa: S506 (a SafeLoader)
            except yaml.YAMLError:
                value = raw
            if isinstance(value, (dict, list)) is False and value is not None and not isinstance(
                    value, (bool, int, float)):
                value = raw  # strings stay exactly as given (no YAML surprises in secrets)
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[parts[-1]] = value
        loc.lines[path] = f"environment variable {name}"


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply LGSP_* overrides, validate everything, or raise ConfigError."""
    issues: list[ConfigIssue] = []
    source = str(path) if path is not None else "(no file)"
    loc = _Loc(source)
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([ConfigIssue("", source, Text("cannot read: {value}",
                                                            value=os_reason(exc)))]) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError([ConfigIssue("", source, Text("not UTF-8 text"))]) from exc
        data = _parse_yaml(text, source, loc, issues)
        if data is None and issues:
            raise ConfigError(issues)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError([ConfigIssue("", f"{source}:1", Text("the file must be a mapping of sections"))])
    _apply_env(data, os.environ if env is None else env, loc, issues)
    cfg = _build(Config, data, "", loc, issues)
    if issues:
        raise ConfigError(issues)
    return dataclasses.replace(cfg, origins=dict(loc.lines))
