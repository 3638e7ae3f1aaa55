"""The metadata schema (SQLAlchemy Core). Alembic migrations create exactly this; a test checks.

Content never lives here: packets reference a blob by key. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

ID = 35  # longest unit identifier (QĐ 20/2020)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive text; we add the zone back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


EventId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER

units = Table(
    "units", metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("name_folded", String(255), nullable=False),
    Column("parent_id", String(ID), ForeignKey("units.id"), nullable=True),
    Column("zone", String(64), nullable=False, default="local"),
    Column("legacy", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("online", Boolean, nullable=False, default=False),
    Column("last_seen_at", UTCDateTime, nullable=True),
    Column("clock_offset_seconds", Float, nullable=True),
    Column("stream_cursor", EventId, nullable=False, default=0),
    # When the unit last went offline (None while online, or never seen: then created_at counts).
    Column("offline_since", UTCDateTime, nullable=True),
    # Contact address, as another exchange's directory gives it (the national axis's agencies).
    Column("mail", String(255), nullable=True),
    # SHA-256 fingerprints (space-separated; two while a certificate is renewed) of the client
    # certificates this unit's requests must come with over TLS; NULL: none pinned (migration 0012).
    Column("client_cert_sha256", Text, nullable=True),
)

applications = Table(
    "applications", metadata,
    Column("id", String(36), primary_key=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Set when its registration is cancelled (Mẫu 07): its keys are revoked, its history kept.
    Column("retired_at", UTCDateTime, nullable=True),
    UniqueConstraint("unit_id", "name"),
)

access_keys = Table(
    "access_keys", metadata,
    Column("id", String(64), primary_key=True),
    Column("application_id", String(36), ForeignKey("applications.id"), nullable=False, index=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("secret_sealed", LargeBinary, nullable=True),
    Column("public_key_pem", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
)

# One row (id 1): bumped by triggers (migration 0019) in the transaction of any change to the
# columns of `access_keys` and `units` that decide whether a key authenticates; how every node's
# access-key cache (core/keycache.py) learns that an entry may be stale. A migration that rebuilds
# `units` or `access_keys` on SQLite (batch mode) drops their triggers: it must create them again
# (tests/test_keycache.py checks they exist at the head revision).
key_generation = Table(
    "key_generation", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
)

nonces = Table(
    "nonces", metadata,
    Column("access_key", String(64), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("access_key", String(64), ForeignKey("access_keys.id"), nullable=False, index=True),
    Column("unit_id", String(ID), nullable=False),
    Column("target", String(128), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Single-use tickets that open an event stream without headers (browsers); only the hash is kept.
stream_tickets = Table(
    "stream_tickets", metadata,
    Column("ticket_hash", String(64), primary_key=True),
    Column("access_key", String(64), ForeignKey("access_keys.id"), nullable=False, index=True),
    Column("unit_id", String(ID), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

packets = Table(
    "packets", metadata,
    Column("id", String(36), primary_key=True),
    Column("source_unit", String(ID), ForeignKey("units.id"), nullable=False),
    Column("subject", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("data_type", String(64), nullable=False),
    Column("protocol", String(32), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("deadline", UTCDateTime, nullable=True),
    Column("policy", JSON, nullable=True),
    Column("meta", JSON, nullable=True),
    # created → accepted → completed; created → expired when the upload never finishes.
    Column("state", String(16), nullable=False),
    # none → stored → purged
    Column("content_state", String(16), nullable=False, default="none"),
    Column("blob_key", String(80), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("upload_expires_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime, nullable=True),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("purged_at", UTCDateTime, nullable=True),
    # The source's application (None for packets an adapter submits on a unit's behalf): the
    # communication policy judges destinations the content names at upload by it too.
    Column("source_application", String(36), nullable=True),
    Index(None, "source_unit", "created_at"),
    Index(None, "state", "upload_expires_at"),
    Index(None, "content_state", "state"),
)

deliveries = Table(
    "deliveries", metadata,
    Column("packet_id", String(36), ForeignKey("packets.id"), primary_key=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("state", String(16), nullable=False),
    # Copies of the packet's, so the inbox is one index scan.
    Column("priority", SmallInteger, nullable=False),
    Column("packet_created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    # pull: the destination is notified and fetches; push: an adapter of `protocol` sends it.
    Column("mode", String(8), nullable=False, default="pull"),
    Column("protocol", String(32), nullable=True),
    # When it (last) entered the queue: the start of its max age. Set on upload and operator retry.
    Column("queued_at", UTCDateTime, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_attempt_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    # Content variant this delivery gets (packet_contents.variant); NULL = the upload as is.
    Column("variant", String(32), nullable=True),
    # The packet's id in the exchange a push handed it to (the national axis's DocId, a peer hub's
    # packet id): how the adapter's tracker follows a `forwarded` delivery to its end.
    Column("remote_id", String(128), nullable=True),
    # The node (nodes.id) whose attempt holds a `sending` delivery: only a dead node's claim is taken back.
    Column("claimed_by", String(64), nullable=True),
    Index(None, "unit_id", "state", "priority", "packet_created_at"),
    Index(None, "state", "next_attempt_at"),
    Index(None, "protocol", "state"),
)

packet_events = Table(
    "packet_events", metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    # None for unit-level events (e.g. destination.offline, which names many packets in detail).
    Column("packet_id", String(36), ForeignKey("packets.id"), nullable=True, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("type", String(48), nullable=False),
    Column("unit", String(ID), nullable=True),
    # The unit told of this event on its stream (None: history only).
    Column("audience", String(ID), nullable=True),
    Column("detail", JSON, nullable=True),
    Index(None, "audience", "id"),
)

presence_log = Table(
    "presence_log", metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("online", Boolean, nullable=False),
    Column("cause", String(16), nullable=False),
    Index(None, "unit_id", "at"),
)

# Clock-offset samples of units (core/clockoffsets.py), written by the presence flush: at most one
# per unit and node per `presence.clock_offset_sample_seconds`, or at once on a jump; pruned by age.
# No foreign key: a sample must never fail the flush's batch (migration 0017).
clock_offsets = Table(
    "clock_offsets", metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("unit_id", String(ID), nullable=False),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("offset_seconds", Float, nullable=False),
    Column("min_seconds", Float, nullable=False),
    Column("max_seconds", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Index(None, "unit_id", "at"),
)

secrets = Table(
    "secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The last `destination.offline` report each source got about each destination (one per interval).
offline_reports = Table(
    "offline_reports", metadata,
    Column("unit_id", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("source_unit", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("reported_at", UTCDateTime, nullable=False),
)

# REST services of units that other units may call through the hub (/v1/services/{id}/...).
services = Table(
    "services", metadata,
    Column("id", String(64), primary_key=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("timeout_seconds", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

service_grants = Table(
    "service_grants", metadata,
    Column("service_id", String(64), ForeignKey("services.id"), primary_key=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# APScheduler's job table (its own layout), used when the job store lives in this database
# (PostgreSQL). On SQLite the job store is a separate file and this table stays empty.
scheduler_jobs = Table(
    "scheduler_jobs", metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

# -- edXML and content variants (migration 0004) --------------------------------------------------

packet_contents = Table(
    "packet_contents", metadata,
    # Forms of one packet's content besides the upload itself: the edXML with the hub's TraceHeader,
    # the JSON form, decoded attachments. Rows stay after the purge as the record of what was sent.
    Column("packet_id", String(36), ForeignKey("packets.id"), primary_key=True),
    Column("variant", String(32), primary_key=True),
    Column("blob_key", String(80), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("media_type", String(128), nullable=False),
    # The data type a destination sees for this form (edxml, edxml+json, ...); NULL for parts.
    Column("data_type", String(64), nullable=True),
    Column("detail", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

unit_formats = Table(
    "unit_formats", metadata,
    # The format a unit takes for a family of data types (family "edxml": format edxml or json).
    Column("unit_id", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("family", String(32), primary_key=True),
    Column("format", String(32), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

documents = Table(
    "documents", metadata,
    # One row per edXML packet: what it is about, for routing status replies and for reports.
    Column("packet_id", String(36), ForeignKey("packets.id"), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("document_id", String(255), nullable=False),
    Column("source_unit", String(ID), nullable=False),
    Column("code_number", String(255), nullable=True),
    Column("code_notation", String(255), nullable=True),
    Column("subject", Text, nullable=True),
    Column("document_type", String(32), nullable=True),
    Column("type_name", String(255), nullable=True),
    Column("priority", String(16), nullable=True),
    Column("due_date", String(32), nullable=True),
    Column("promulgation_date", String(32), nullable=True),
    Column("bussiness_doc_type", SmallInteger, nullable=True),
    Column("status_code", String(8), nullable=True),
    # The earlier packet this one refers to (status reply, revocation, update, replacement).
    Column("original_packet_id", String(36), ForeignKey("packets.id"), nullable=True, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "document_id", "kind"),
    Index(None, "source_unit", "created_at"),
)

document_statuses = Table(
    "document_statuses", metadata,
    # The latest business status (StatusCode) of a document at one recipient, by arrival order.
    Column("document_id", String(255), primary_key=True),
    Column("source_unit", String(ID), primary_key=True),
    Column("unit_id", String(ID), primary_key=True),
    Column("packet_id", String(36), ForeignKey("packets.id"), nullable=True, index=True),
    Column("status_code", String(8), nullable=False),
    Column("description", Text, nullable=True),
    Column("status_time", String(32), nullable=True),
    Column("reported_by", String(ID), nullable=False),
    Column("status_packet_id", String(36), ForeignKey("packets.id"), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# -- people: console accounts, their sessions, the audit trail, registration requests (migration 0007) --

accounts = Table(
    "accounts", metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False, default=""),
    # operator (everything), approver (registrations), unit_admin (one unit, maybe its children), viewer.
    Column("role", String(16), nullable=False),
    Column("unit_id", String(ID), ForeignKey("units.id"), nullable=True),
    Column("include_children", Boolean, nullable=False, default=False),
    Column("password_hash", String(255), nullable=False),
    Column("must_change_password", Boolean, nullable=False, default=False),
    # The TOTP seed sealed with the master key (bound to the account id); NULL: no second factor.
    Column("totp_sealed", LargeBinary, nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_login_at", UTCDateTime, nullable=True),
)

console_sessions = Table(
    "console_sessions", metadata,
    # Only the SHA-256 of the cookie's token is kept: a copy of the database opens no session.
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("address", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    # The account's username at the time (None: the CLI on the hub machine, or an unknown sign-in).
    Column("actor", String(64), nullable=True, index=True),
    Column("address", String(64), nullable=True),
    Column("action", String(48), nullable=False),
    Column("target", String(255), nullable=True),
    Column("unit_id", String(ID), nullable=True, index=True),
    Column("detail", JSON, nullable=True),
    # The tamper-evident chain (core/audit.py, migration 0011): filled by the chainer shortly after
    # the row is written, in `seq` order, each hash covering the row and the previous row's hash.
    Column("seq", BigInteger, nullable=True, unique=True),
    Column("prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=True),
)

registration_requests = Table(
    "registration_requests", metadata,
    Column("id", String(36), primary_key=True),
    # The agency's form: 01 (register an application), 03 (admin account), 06 (cancel an application).
    Column("kind", String(2), nullable=False),
    Column("unit_id", String(ID), ForeignKey("units.id"), nullable=False, index=True),
    # submitted → approved → (handed_over, for 03) | refused
    Column("state", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("reply", JSON, nullable=True),
    Column("handover", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Column("application_id", String(36), ForeignKey("applications.id"), nullable=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=True),
    Column("created_by", String(64), nullable=True),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("due_on", String(10), nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("handed_over_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "state", "due_on"),
)

# The data key of each packet's content (core/contentkeys.py), sealed under the master key; deleted
# when the content is purged, so files copied earlier can no longer be read.
content_keys = Table(
    "content_keys", metadata,
    Column("key_id", String(80), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The sealed bytes of small uploads kept in the store instead of a file (`blobs.inline_bytes`,
# core/store/inline_blobs.py): written in the acceptance's own transaction, so durable with it, and
# deleted with their packet's data key (ON DELETE CASCADE) when the content is purged.
inline_blobs = Table(
    "inline_blobs", metadata,
    # The key first: its primary-key index is the one the cascade from `content_keys` deletes by.
    Column("key_id", String(80), ForeignKey("content_keys.key_id", ondelete="CASCADE"), primary_key=True),
    Column("blob_key", String(80), primary_key=True),
    # The blob's bytes as its file would hold them: encrypted with the packet's data key (not the master key).
    Column("content", LargeBinary, nullable=False),
)

# Maintenance notices to every unit (`lgsp notice add`); a hub announces each once (`announced_at`).
notices = Table(
    "notices", metadata,
    Column("id", String(16), primary_key=True),
    Column("message", Unicode(1000), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("announced_at", UTCDateTime, nullable=True),
    Column("withdrawn_at", UTCDateTime, nullable=True),
)

# -- security: communication policy and the audit chain's seals (migration 0011) ----------------

policy_rules = Table(
    "policy_rules", metadata,
    # Who may reach whom (core/policy.py). A removed rule stays, with who removed it and when.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action", String(8), nullable=False),
    Column("source", String(200), nullable=False),
    Column("destination", String(200), nullable=False),
    Column("data_type", String(64), nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
    Column("removed_by", String(64), nullable=True),
)

audit_seals = Table(
    "audit_seals", metadata,
    # A chain head signed with the hub's key: proves the chain up to `seq` existed at `signed_at`.
    Column("seq", BigInteger, primary_key=True),
    Column("hash", String(64), nullable=False),
    Column("signed_at", UTCDateTime, nullable=False),
    Column("access_key", String(64), nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("signature", Text, nullable=False),
)

# -- idempotent submissions across nodes (migration 0013) -----------------------------------------

submit_claims = Table(
    "submit_claims", metadata,
    # The first node to insert (scope, key) creates the packet; copies elsewhere wait for its id
    # (core/claims.py). `key` is a SHA-256 of the caller's idempotency key.
    Column("scope", String(200), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("token", String(36), nullable=False),
    Column("packet_id", String(36), nullable=True),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# -- the cluster: nodes and the event streams each holds (migration 0014) -------------------------

nodes = Table(
    "nodes", metadata,
    # One hub process sharing the store (core/cluster.py: Nodes); dead once its heartbeat is older
    # than `cluster.node_timeout_seconds`. A node that stops cleanly removes its row.
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)

stream_holders = Table(
    "stream_holders", metadata,
    # How many event streams of a unit a node holds open: the unit is online while a live node holds one.
    Column("node_id", String(64), primary_key=True),
    Column("unit_id", String(ID), ForeignKey("units.id"), primary_key=True),
    Column("streams", Integer, nullable=False),
    Index(None, "unit_id"),
)

# Secrets the console shows once after a POST (core/onetime.py): sealed under the master key, bound
# to their row, kept for the hash of the session that made them; deleted when shown or expired.
one_time_secrets = Table(
    "one_time_secrets", metadata,
    Column("id", String(64), primary_key=True),
    Column("session_hash", String(64), nullable=False, index=True),
    Column("page", Unicode(300), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# The signed scan of a registration form (core/registration/scans.py): the blob holding it (encrypted
# like packet content) and what was checked of it. One per form (01–07) of a request.
registration_scans = Table(
    "registration_scans", metadata,
    Column("request_id", String(36), ForeignKey("registration_requests.id"), primary_key=True),
    Column("form", String(2), primary_key=True),
    Column("blob_key", String(80), nullable=False),
    Column("content_type", String(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("uploaded_by", String(64), nullable=True),
    Column("uploaded_at", UTCDateTime, nullable=False),
)

# Statistics kept incrementally (core/statistics.py): what `unit_report` reads instead of the raw
# packets and deliveries. Every row belongs to one source unit's Vietnam day (of packet creation) and
# is recomputed whole from the raw rows when an event names a packet of that day; `stats_rollup`
# holds how far the events have been folded.
stats_sent = Table(
    "stats_sent", metadata,
    Column("source_unit", String(ID), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("data_type", String(64), primary_key=True),
    Column("packets", Integer, nullable=False),          # packets with at least one delivery
    Column("bytes", BigInteger, nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("with_deadline", Integer, nullable=False),    # deliveries of packets with a deadline
    Column("delivered", Integer, nullable=False),
    Column("on_time", Integer, nullable=False),          # delivered no later than the deadline
)

stats_traffic = Table(
    "stats_traffic", metadata,
    Column("source_unit", String(ID), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("dest_unit", String(ID), primary_key=True),
    Column("data_type", String(64), primary_key=True),
    Column("deliveries", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),         # the packet's size, once per delivery
    Index(None, "dest_unit", "day"),
)

stats_failures = Table(
    "stats_failures", metadata,
    Column("source_unit", String(ID), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("reason", Unicode(128), primary_key=True),
    Column("deliveries", Integer, nullable=False),
)

# Delivery time (acceptance to delivered) in fixed log-spaced buckets (core/statistics.py: `bucket_of`).
stats_delivery_times = Table(
    "stats_delivery_times", metadata,
    Column("source_unit", String(ID), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("bucket", SmallInteger, primary_key=True),
    Column("deliveries", Integer, nullable=False),
)

stats_rollup = Table(
    "stats_rollup", metadata,
    Column("name", String(32), primary_key=True),
    # The last packet_events.id folded; NULL: never rolled up (the first round folds all history).
    Column("watermark", EventId, nullable=True),
    # Ids below the watermark not yet seen (transactions that had not committed), with when first missed.
    Column("holes", JSON, nullable=True),
    Column("updated_at", UTCDateTime, nullable=True),
)
