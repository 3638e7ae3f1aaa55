"""The public core API: everything adapters (`adapters/*`) and plugins (`plugins/*`) may use of core.

Adapters and plugins import core only from here (`from lgsp.core.api import ...`, and the edXML
library from `lgsp.core.api.edxml`);
tests/test_layers.py fails when one imports any other `lgsp.core` module or another adapter. What
is not listed here may change without notice; what is listed changes only with the docs
(docs/plugins.md, "The public core API").

The hub passes itself to every hook (`Hub`); its services are reached as attributes:

- `hub.exchange` (`Exchange`): the packet use cases (create, submit, upload, inbox, ready,
  download, ack, fail, cancel, view), the stream support (hello, save_cursor, mark_told) and what
  delivery trackers need (forwarded, end_delivery, push_protocol). They return typed values
  (`PacketInfo`, `Transfer`, `InboxPage` of `InboxItem`, `PacketView` with `DeliveryView`,
  `TimelineEntry` and `StoredVariant`, `Cancelled`, `Hello`, `Readable` (content to read, from
  `open_content`); for operators `Attention`, `DeliveryRecord`, `OperatorView`, `Rerouted`) that
  each adapter renders in its own shape (the REST JSON in adapters/rest/render.py);
- `hub.directory`: units, applications, keys; `hub.presence`: online/offline;
- `hub.content` (`ContentService`): content variants and formats per unit, opening stored content
  (`open_stored`, `opener`) and the folder to spool a request body in (`scratch_dir`);
  `content_response` serves stored content over HTTP (whole or one Range);
- `hub.documents` (`DocumentIndex`): the edXML document index, read-only; `documents` holds the
  functions that write it inside an acceptance transaction (an `Inspection.on_accept`);
- `hub.bus` (`EventBus`): live events; `hub.identity`: the hub's signing key;
- `SubmitClaims`: idempotent submissions across nodes (core/claims.py);
- `hub.secrets`: named adapter secrets; `hub.services`: registered REST services;
- `hub.config`: settings (a plugin reads its own `adapters.<name>` section);
- `hub.accounts` (`Accounts`): console accounts, sessions and the audit trail;
- the registration forms, workflow, letters and working-day calendar (`Registrations`,
  `FORM_KINDS`, `render_letter`, `WorkingCalendar`, ...);
- `logs`: the request id carried into pushes and the structured log context;
- `states`: every packet, content and delivery state and their transitions (`core/states.py`);
- `names`: those states, delivery modes and event types as a person reads them (`core/names.py`);
- `hub.db` (`Database`): the store session (`read()`, `write()`), for a plugin's own tables and
  the `documents` functions, never for core's tables;
- `hub.plugin_names()`: the plugins loaded.

The hub's internals (`hub.blobs`, `hub.pm`, `hub.engine`) are not part of it; tests/test_layers.py
fails when an adapter or plugin reads them.
"""

from __future__ import annotations

from lgsp.core import documents, events, i18n, logs, names, states
from lgsp.core.accounts import ROLE_NAMES, ROLES, Account, AccountError, Accounts, Actor, new_password
from lgsp.core.auth import Principal, parse_signed_request
from lgsp.core.claims import ClaimBusy, SubmitClaims
from lgsp.core.config import positive_int_settings
from lgsp.core.content import (
    PENDING_SUBJECT,
    ContentInspector,
    ContentRef,
    ContentService,
    Inspection,
    InspectionJob,
    SyncBlobWriter,
    Variant,
)
from lgsp.core.directory import Directory, ZoneEntry, ZoneSync
from lgsp.core.documents import DocumentIndex
from lgsp.core.downloads import content_response
from lgsp.core.errors import Problem
from lgsp.core.events import Event, EventBus, iso, record
from lgsp.core.exchange import (
    MAX_DESTINATION,
    MAX_REASON,
    PRIORITIES,
    Attention,
    Cancelled,
    DeliveryRecord,
    DeliveryView,
    Exchange,
    Hello,
    InboxItem,
    InboxPage,
    InboxPosition,
    NewPacket,
    OperatorDelivery,
    OperatorView,
    PacketInfo,
    PacketView,
    Readable,
    Rerouted,
    StoredVariant,
    TimelineEntry,
    Transfer,
    UnitStatus,
    parse_new_packet,
)
from lgsp.core.hub import Hub
from lgsp.core.i18n import N_, Text
from lgsp.core.identifiers import InvalidIdentifier, check_identifier, identifier_form
from lgsp.core.notices import Notice
from lgsp.core.onetime import OneTimeSecrets
from lgsp.core.push import PushAdapter, PushFailure, PushJob, PushReceipt, http_failure
from lgsp.core.registration.forms import FORM_KINDS, FieldError, FieldSpec, FormRecord, form_kind
from lgsp.core.registration.forms import validate as validate_form
from lgsp.core.registration.letters import render_letter
from lgsp.core.registration.scans import MAX_SCAN_BYTES, Scans
from lgsp.core.registration.workdays import VIETNAM_TZ, WorkingCalendar
from lgsp.core.registration.workflow import (
    REQUEST_KINDS,
    STATE_NAMES,
    RegistrationRequest,
    Registrations,
    RequestInvalid,
)
from lgsp.core.reports import (
    FIRST_REPORT_DAY,
    LAST_REPORT_DAY,
    parse_report_day,
    period_bounds,
    presence_history,
    presence_periods,
    to_csv,
    to_xlsx,
    unit_report,
)
from lgsp.core.reports import traffic as traffic_report
from lgsp.core.secretstore import NAME_RE as SECRET_NAME_RE
from lgsp.core.signing import (
    H_CONTENT,
    META_PARAM,
    SHA256_RE,
    SIGNED_HEADERS,
    SignatureAlgorithm,
    Signer,
    metadata_digest,
    parse_date,
)
from lgsp.core.states import DELIVERY_STATES
from lgsp.core.store.blobcrypt import BlobCorrupt, SealedSpool
from lgsp.core.store.blobs import publish
from lgsp.core.store.database import Database
from lgsp.core.text import check_text, load_json, printable
from lgsp.core.tls import TARGET_KEYS as TLS_TARGET_KEYS
from lgsp.core.tls import client_ssl, normalise_fingerprint
from lgsp.core.tls import target_problems as tls_target_problems
from lgsp.core.web import (
    PRINCIPAL,
    authenticate,
    base_url,
    bounded_int,
    check_range,
    hub_of,
    json_response,
    language,
    read_json,
)

__all__ = [
    "DELIVERY_STATES", "FIRST_REPORT_DAY", "FORM_KINDS", "H_CONTENT", "LAST_REPORT_DAY", "MAX_DESTINATION",
    "MAX_REASON", "MAX_SCAN_BYTES", "META_PARAM", "N_",
    "PENDING_SUBJECT", "PRINCIPAL",
    "PRIORITIES", "REQUEST_KINDS", "ROLES", "ROLE_NAMES", "SECRET_NAME_RE", "SHA256_RE",
    "SIGNED_HEADERS", "STATE_NAMES",
    "TLS_TARGET_KEYS", "VIETNAM_TZ", "Account", "AccountError", "Accounts", "Actor", "Attention",
    "BlobCorrupt", "Cancelled", "ClaimBusy", "ContentInspector", "ContentRef", "ContentService", "Database",
    "DeliveryRecord", "DeliveryView", "Directory", "DocumentIndex", "Event", "EventBus", "Exchange", "FieldError",
    "FieldSpec",
    "FormRecord", "Hello", "Hub", "InboxItem", "InboxPage", "InboxPosition", "Inspection", "InspectionJob",
    "InvalidIdentifier", "NewPacket", "Notice", "OneTimeSecrets", "OperatorDelivery", "OperatorView", "PacketInfo",
    "PacketView", "Principal", "Problem", "PushAdapter", "PushFailure", "PushJob", "PushReceipt", "Readable",
    "RegistrationRequest", "Registrations",
    "RequestInvalid", "Rerouted", "Scans", "SealedSpool", "SignatureAlgorithm", "Signer", "StoredVariant",
    "SubmitClaims",
    "SyncBlobWriter", "Text",
    "TimelineEntry", "Transfer", "UnitStatus", "Variant", "WorkingCalendar", "ZoneEntry", "ZoneSync",
    "authenticate", "base_url", "bounded_int", "check_identifier", "check_range", "check_text", "client_ssl",
    "content_response", "documents", "events", "form_kind", "http_failure", "hub_of", "i18n", "identifier_form", "iso",
    "json_response", "language", "load_json", "logs", "metadata_digest", "names", "new_password",
    "normalise_fingerprint",
    "parse_date", "parse_new_packet", "parse_report_day", "parse_signed_request", "period_bounds",
    "positive_int_settings",
    "presence_history", "presence_periods", "printable", "publish", "read_json", "record", "render_letter", "states",
    "tls_target_problems", "to_csv", "to_xlsx", "traffic_report", "unit_report", "validate_form",
]
