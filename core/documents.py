"""The document index: which packet carried which edXML document, its business status and links.

edXML packets refer to documents, not to packets: a status reply (StatusCode 01–16) names the
document it answers by `ResponseFor/DocumentId`, a revocation by `ResponseFor`, a replacement by
`ReplacementInfo/DocumentId`. The hub records one `documents` row per edXML packet so it can find
the original packet of such a reference, keep the latest business status per document and
recipient (`document_statuses`), and report on documents (code, subject, type, due date).

Rules (docs/soap.md, "Business status flow"):

* A status is about the pair (document's sender, document's recipient). For codes 01–06, 15, 16
  the recipient reports (From) to the sender (ResponseFor/OrganId); for 13 the sender asks the
  recipient (roles reversed). When the original packet is known its roles decide; unknown codes
  follow the 01–06 rule and are stored as they are.
* "Latest" is by arrival at the hub: the edXML Timestamp is kept but not trusted for ordering
  (senders' clocks and formats vary).
* Only the original's own sender may link a revocation, update or replacement to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.events import iso
from lgsp.core.i18n import N_
from lgsp.core.store.database import Database, conflict_insert
from lgsp.core.store.tables import deliveries, document_statuses, documents

#: Status codes of the public samples: the name the API gives each (`status`, English, never translated).
STATUS_KEYS: dict[str, str] = {
    "01": "arrived", "02": "rejected", "03": "accepted", "04": "assigned", "05": "in progress", "06": "finished",
    "13": "take-back requested", "15": "update/take-back agreed", "16": "update/take-back refused",
}
#: ... and the msgid of what a person reads (the Vietnamese entry is the samples' wording, e.g. "Tiếp nhận").
STATUS_TITLES: dict[str, str] = {
    "01": N_("Arrived"), "02": N_("Rejected"), "03": N_("Accepted"), "04": N_("Assigned"),
    "05": N_("In progress"), "06": N_("Finished"), "13": N_("Take-back requested"),
    "15": N_("Update/take-back agreed"), "16": N_("Update/take-back refused"),
}
OTHER_STATUS = N_("Other status")
#: BussinessDocType: 0 new, 1 revocation, 2 update, 3 replacement.
BUSINESS_TYPES = {0: "new", 1: "revocation", 2: "update", 3: "replacement"}
#: Codes sent by the document's sender to a recipient (roles reversed).
SENDER_CODES = frozenset({"13"})
MAX_DOCUMENT_ID = 255


@dataclass(frozen=True)
class DocumentRecord:
    kind: str
    document_id: str
    source_unit: str
    code_number: str | None = None
    code_notation: str | None = None
    subject: str | None = None
    document_type: str | None = None
    type_name: str | None = None
    priority: str | None = None
    due_date: str | None = None
    promulgation_date: str | None = None
    bussiness_doc_type: int | None = None
    status_code: str | None = None
    original_packet_id: str | None = None


@dataclass(frozen=True)
class Original:
    """The packet an edXML reference resolves to, with the two parties of the document."""

    packet_id: str
    source_unit: str
    recipient: str


def _cut(value: str | None, n: int = 255) -> str | None:
    return value[:n] if value is not None else None


async def add(conn: AsyncConnection, packet_id: str, doc: DocumentRecord, now: datetime) -> None:
    await conn.execute(documents.insert().values(
        packet_id=packet_id, kind=doc.kind, document_id=doc.document_id, source_unit=doc.source_unit,
        code_number=_cut(doc.code_number), code_notation=_cut(doc.code_notation), subject=doc.subject,
        document_type=_cut(doc.document_type, 32), type_name=_cut(doc.type_name), priority=_cut(doc.priority, 16),
        due_date=_cut(doc.due_date, 32), promulgation_date=_cut(doc.promulgation_date, 32),
        bussiness_doc_type=doc.bussiness_doc_type, status_code=_cut(doc.status_code, 8),
        original_packet_id=doc.original_packet_id, created_at=now))


async def find_for_status(conn: AsyncConnection, document_id: str, reporter: str, other: str,
                          code: str) -> Original | None:
    """The latest edoc packet of `document_id` on which `reporter` holds the role that may report
    `code`: its recipient (from `other`) for most codes, its sender (to `other`) for SENDER_CODES.

    Roles matter: a status is filed under (sender, recipient) of the original, so a sender must not
    be able to write its recipient's status, nor the other way round.
    """
    if code in SENDER_CODES:
        sender, recipient = reporter, other
    else:
        sender, recipient = other, reporter
    stmt = (select(documents.c.packet_id, documents.c.source_unit, deliveries.c.unit_id)
            .join(deliveries, deliveries.c.packet_id == documents.c.packet_id)
            .where(and_(documents.c.document_id == document_id, documents.c.kind == "edoc",
                        documents.c.source_unit == sender, deliveries.c.unit_id == recipient))
            .order_by(documents.c.created_at.desc()).limit(1))
    row = (await conn.execute(stmt)).first()
    return Original(row.packet_id, row.source_unit, row.unit_id) if row else None


async def recipients_of(conn: AsyncConnection, packet_ids: Iterable[str]) -> list[str]:
    """The destinations of these packets, in first-seen order (a revocation's original recipients)."""
    ids = list(dict.fromkeys(packet_ids))
    if not ids:
        return []
    rows = (await conn.execute(select(deliveries.c.unit_id).where(deliveries.c.packet_id.in_(ids))
                               .order_by(deliveries.c.packet_id, deliveries.c.unit_id))).all()
    return list(dict.fromkeys(r.unit_id for r in rows))


async def sender_of(conn: AsyncConnection, document_id: str, recipient: str) -> str | None:
    """Who sent `recipient` the latest edoc with this DocumentId (to route its status reply)."""
    row = (await conn.execute(
        select(documents.c.source_unit).join(deliveries, deliveries.c.packet_id == documents.c.packet_id)
        .where(and_(documents.c.document_id == document_id, documents.c.kind == "edoc",
                    deliveries.c.unit_id == recipient))
        .order_by(documents.c.created_at.desc()).limit(1))).first()
    return row.source_unit if row else None


async def find_sent(conn: AsyncConnection, document_ids: Iterable[str], source: str,
                    exclude: str) -> dict[str, str]:
    """document id -> the packet that first carried it from `source`: the latest one sent as new
    (BussinessDocType 0 or absent), else the latest of any kind (for revocation/update links)."""
    ids = [d for d in dict.fromkeys(document_ids) if d]
    if not ids:
        return {}
    rows = (await conn.execute(
        select(documents.c.document_id, documents.c.packet_id, documents.c.bussiness_doc_type)
        .where(and_(documents.c.document_id.in_(ids), documents.c.kind == "edoc",
                    documents.c.source_unit == source, documents.c.packet_id != exclude))
        .order_by(documents.c.created_at))).all()
    rank: dict[str, tuple[bool, int, str]] = {}
    for i, r in enumerate(rows):
        this = (r.bussiness_doc_type in (0, None), i, r.packet_id)
        rank[r.document_id] = max(rank.get(r.document_id, this), this)
    return {doc: packet for doc, (_, _, packet) in rank.items()}


async def set_status(conn: AsyncConnection, *, document_id: str, source_unit: str, unit_id: str,
                     packet_id: str | None, status_code: str, description: str | None, status_time: str | None,
                     reported_by: str, status_packet_id: str, now: datetime) -> None:
    """Record the latest business status of a document at one recipient (upsert)."""
    values = {"packet_id": packet_id, "status_code": status_code[:8], "description": description,
              "status_time": _cut(status_time, 32), "reported_by": reported_by,
              "status_packet_id": status_packet_id, "updated_at": now}
    # One statement, so two statuses arriving at once on two nodes cannot both try to insert.
    await conn.execute(conflict_insert(conn, document_statuses).values(
        document_id=document_id, source_unit=source_unit, unit_id=unit_id, **values).on_conflict_do_update(
        index_elements=[document_statuses.c.document_id, document_statuses.c.source_unit,
                        document_statuses.c.unit_id], set_=values))


def status_view(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": row.unit_id, "status_code": row.status_code,
                           "status": STATUS_KEYS.get(row.status_code, "unknown"), "description": row.description,
                           "timestamp": row.status_time, "reported_by": row.reported_by,
                           "status_packet": row.status_packet_id, "updated_at": iso(row.updated_at)}
    return out


async def statuses(conn: AsyncConnection, document_id: str, source_unit: str,
                   unit: str | None = None) -> list[dict[str, Any]]:
    """Latest business status per recipient of a document (only `unit`'s when given)."""
    stmt = select(document_statuses).where(and_(document_statuses.c.document_id == document_id,
                                                document_statuses.c.source_unit == source_unit))
    if unit is not None:
        stmt = stmt.where(document_statuses.c.unit_id == unit)
    rows = (await conn.execute(stmt.order_by(document_statuses.c.unit_id))).all()
    return [status_view(r) for r in rows]


async def get(conn: AsyncConnection, packet_id: str) -> Any | None:
    return (await conn.execute(select(documents).where(documents.c.packet_id == packet_id))).first()


async def get_many(conn: AsyncConnection, packet_ids: Sequence[str]) -> dict[str, Any]:
    if not packet_ids:
        return {}
    rows = (await conn.execute(select(documents).where(documents.c.packet_id.in_(list(packet_ids))))).all()
    return {r.packet_id: r for r in rows}


async def linked_to(conn: AsyncConnection, packet_id: str) -> list[Any]:
    """Packets that refer to this one (status replies, revocations, updates, replacements)."""
    return list((await conn.execute(select(documents).where(documents.c.original_packet_id == packet_id)
                                    .order_by(documents.c.created_at))).all())


async def sent_packets(conn: AsyncConnection, document_id: str, source: str, limit: int = 50) -> list[str]:
    """Packets `source` sent with this DocumentId, newest first."""
    rows = (await conn.execute(select(documents.c.packet_id).where(and_(
        documents.c.document_id == document_id, documents.c.source_unit == source))
        .order_by(documents.c.created_at.desc()).limit(limit))).all()
    return [r.packet_id for r in rows]


def document_view(row: Any) -> dict[str, Any]:
    """The document index row as API members."""
    out: dict[str, Any] = {"kind": row.kind, "document_id": row.document_id}
    for name in ("code_number", "code_notation", "subject", "document_type", "type_name", "priority", "due_date",
                 "promulgation_date", "status_code"):
        value = getattr(row, name)
        if value is not None:
            out[name] = value
    if row.bussiness_doc_type is not None:
        out["bussiness_doc_type"] = row.bussiness_doc_type
        out["business"] = BUSINESS_TYPES.get(row.bussiness_doc_type, "unknown")
    if row.original_packet_id:
        out["original_packet"] = row.original_packet_id
    return out


class DocumentIndex:
    """The document index for adapters that only read it (one store session per call)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_many(self, packet_ids: Sequence[str]) -> dict[str, Any]:
        """packet id -> its document row, for the packets that carried an edXML document."""
        async with self.db.read() as conn:
            return await get_many(conn, packet_ids)

    async def sent_packets(self, document_id: str, source: str, limit: int = 50) -> list[str]:
        """Packets `source` sent with this DocumentId, newest first."""
        async with self.db.read() as conn:
            return await sent_packets(conn, document_id, source, limit)
