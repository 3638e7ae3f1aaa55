"""What the axis simulator remembers: systems, documents with one delivery per recipient, the agency
directory and the sendEdoc idempotency window. Plain data, no I/O except the optional JSON file
a test can restart from (written atomically, so a crash leaves the previous state).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from .protocol import VIETNAM_TZ, MessageType
from .shapes import Agency, AgencyQD20, ReceivedItem, SentItem, SyncUnit

__all__ = ["AgencyRecord", "AxisState", "Delivery", "Document", "SimSystem", "StateFile", "axis_time"]

INITIAL: Final = "initial"
FINAL_STATUSES: Final = frozenset({"done", "fail"})  # updateStatus with these takes an item off the list
STATUS_DESC: Final = {
    INITIAL: "Chờ nhận",
    "processing": "Đang xử lý",
    "done": "Đã nhận",
    "fail": "Nhận lỗi",
}
SENT_STATUS: Final = "sent"
SENT_STATUS_DESC: Final = "Đã gửi lên trục"
_FORMAT_VERSION: Final = 1


def axis_time(at: float) -> str:
    """How the simulator writes times (the real axis's format is not documented): Vietnam time."""
    return datetime.fromtimestamp(at, VIETNAM_TZ).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class SimSystem:
    """A system allowed to call the axis; ``secret`` is kept out of repr so it never reaches a log."""

    system_id: str
    secret: str = field(repr=False)
    agency_code: str


@dataclass(slots=True)
class Delivery:
    """One recipient of a document: its own docId and the status it reported with updateStatus."""

    agency_code: str
    receiver_doc_id: str
    created: float
    updated: float
    status: str = INITIAL
    pending: bool = True
    received: float | None = None


@dataclass(slots=True)
class Document:
    doc_id: str  # the sender's docId (sendEdoc's DocId)
    sender_system: str  # "" for a document injected "from a ministry"
    from_code: str
    service_type: str
    message_type: str
    hash_file: str
    content: bytes = field(repr=False)
    title: str
    notation: str
    created: float
    deliveries: list[Delivery]


@dataclass(slots=True)
class AgencyRecord:
    """One directory entry, with every field any of the three agency answers shows."""

    code: str
    name: str
    id: str = ""
    pid: str = ""
    mail: str = ""
    old_code: str = ""
    center_code: str = ""
    code102: str = ""
    level: str = "1"
    version: int = 1
    deleted: bool = False
    modify_date: str = ""
    is_agency: bool = True
    mobile: str = ""
    fax: str = ""

    def agency(self) -> Agency:
        return Agency(id=self.id, pid=self.pid, code=self.code, name=self.name, mail=self.mail,
                      old_code=self.old_code)

    def qd20(self) -> AgencyQD20:
        return AgencyQD20(id=self.id, code=self.code, name=self.name, mail=self.mail, code102=self.code102)

    def sync_unit(self) -> SyncUnit:
        return SyncUnit(id=self.id, pid=self.pid, code=self.code, name=self.name, mail=self.mail,
                        center_code=self.center_code, version=self.version, deleted=self.deleted,
                        modify_date=self.modify_date, is_agency=self.is_agency)


IdempotencyKey = tuple[str, str, str, tuple[str, ...]]


class AxisState:
    """All mutable state; methods are synchronous so one handler's change is never interleaved."""

    def __init__(self, systems: Iterable[SimSystem], *, clock: Callable[[], float],
                 idempotency_window: float) -> None:
        self.systems: dict[str, SimSystem] = {}
        for system in systems:
            if system.system_id in self.systems:
                raise ValueError(f"system {system.system_id!r} registered twice")
            self.systems[system.system_id] = system
        self.clock = clock
        self.idempotency_window = idempotency_window
        self.documents: dict[str, Document] = {}
        self.receivers: dict[str, tuple[Document, Delivery]] = {}
        self.agencies: dict[str, AgencyRecord] = {}
        self.recent: dict[IdempotencyKey, tuple[str, float]] = {}

    def secret_for(self, system_id: str) -> str | None:
        system = self.systems.get(system_id)
        return system.secret if system is not None else None

    def knows_agency(self, code: str) -> bool:
        record = self.agencies.get(code)
        if record is not None and not record.deleted:
            return True
        return any(s.agency_code == code for s in self.systems.values())

    # -- documents --------------------------------------------------------------------------

    def recent_send(self, key: IdempotencyKey) -> str | None:
        now = self.clock()
        for old, (_, at) in list(self.recent.items()):
            if now - at > self.idempotency_window:
                del self.recent[old]
        hit = self.recent.get(key)
        return hit[0] if hit is not None and hit[0] in self.documents else None

    def add_document(self, *, sender_system: str, from_code: str, service_type: str, message_type: str,
                     hash_file: str, content: bytes, title: str, notation: str, recipients: Iterable[str],
                     key: IdempotencyKey | None = None) -> Document:
        now = self.clock()
        doc = Document(doc_id=str(uuid.uuid4()), sender_system=sender_system, from_code=from_code,
                       service_type=service_type, message_type=message_type, hash_file=hash_file,
                       content=content, title=title, notation=notation, created=now, deliveries=[])
        for code in recipients:
            delivery = Delivery(agency_code=code, receiver_doc_id=secrets.token_hex(12), created=now, updated=now)
            doc.deliveries.append(delivery)
            self.receivers[delivery.receiver_doc_id] = (doc, delivery)
        self.documents[doc.doc_id] = doc
        if key is not None:
            self.recent[key] = (doc.doc_id, now)
        return doc

    def pending(self, agency_code: str, message_type: str) -> list[tuple[Document, Delivery]]:
        rows = [(doc, d) for doc, d in self.receivers.values()
                if d.pending and d.agency_code == agency_code and doc.message_type == message_type]
        return sorted(rows, key=lambda row: row[1].created)

    def readable(self, system: SimSystem, doc_id: str) -> Document | None:
        """The document behind a docId if this system may read it: a recipient's or the sender's id."""
        found = self.receivers.get(doc_id)
        if found is not None and found[1].agency_code == system.agency_code:
            return found[0]
        doc = self.documents.get(doc_id)
        if doc is not None and doc.sender_system == system.system_id:
            return doc
        return None

    def delivery(self, system: SimSystem, receiver_doc_id: str) -> Delivery | None:
        found = self.receivers.get(receiver_doc_id)
        return found[1] if found is not None and found[1].agency_code == system.agency_code else None

    def set_status(self, delivery: Delivery, status: str) -> None:
        """Idempotent: the same status again changes nothing but the time."""
        now = self.clock()
        delivery.status = status
        delivery.updated = now
        if status in FINAL_STATUSES:
            delivery.pending = False
            if status == "done" and delivery.received is None:
                delivery.received = now

    def received_item(self, doc: Document, delivery: Delivery) -> ReceivedItem:
        return ReceivedItem(doc_id=delivery.receiver_doc_id, service_type=doc.service_type,
                            message_type=doc.message_type, created_time=axis_time(delivery.created),
                            updated_time=axis_time(delivery.updated), from_=doc.from_code,
                            to=delivery.agency_code, status=delivery.status,
                            status_desc=STATUS_DESC.get(delivery.status, delivery.status))

    def sent_items(self, doc: Document) -> list[SentItem]:
        return [SentItem(service_type=doc.service_type, message_type=doc.message_type, sender_doc_id=doc.doc_id,
                         receiver_doc_id=d.receiver_doc_id, from_code=doc.from_code, to_code=d.agency_code,
                         title=doc.title, notation=doc.notation, sent_time=axis_time(doc.created),
                         received_time=axis_time(d.received) if d.received is not None else "",
                         send_status=SENT_STATUS, send_status_desc=SENT_STATUS_DESC, receive_status=d.status,
                         receive_status_desc=STATUS_DESC.get(d.status, d.status))
                for d in doc.deliveries]

    # -- agencies ---------------------------------------------------------------------------

    def put_agency(self, record: AgencyRecord) -> AgencyRecord:
        """Add or replace a directory entry as given (tests and the --agencies file)."""
        if not record.id:
            record.id = str(uuid.uuid4())
        if not record.modify_date:
            record.modify_date = axis_time(self.clock())
        self.agencies[record.code] = record
        return record

    def register_agency(self, *, id: str, pcode: str, code: str, name: str, mail: str, mobile: str,
                        fax: str) -> AgencyRecord | None:
        """registerAgency registers and updates: by ``id`` when given (None if unknown), else by code.

        Raises ValueError when an update would take the code of another agency.
        """
        if id:
            record = next((r for r in self.agencies.values() if r.id == id), None)
            if record is None:
                return None
            if code != record.code and code in self.agencies:
                raise ValueError(f"mã {code} đã thuộc đơn vị khác")
            del self.agencies[record.code]
        else:
            record = self.agencies.get(code) or AgencyRecord(code=code, name=name, version=0)
        parent = self.agencies.get(pcode)
        record.code, record.name, record.mail, record.mobile, record.fax = code, name, mail, mobile, fax
        record.pid = parent.id if parent is not None else ""
        record.deleted = False
        record.version += 1
        record.modify_date = axis_time(self.clock())
        return self.put_agency(record)

    def delete_agency(self, code: str) -> bool:
        record = self.agencies.get(code)
        if record is None or record.deleted:
            return False
        record.deleted = True
        record.version += 1
        record.modify_date = axis_time(self.clock())
        return True

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy to write from another thread (documents share their immutable bytes)."""
        docs = []
        for doc in self.documents.values():
            row = {f.name: getattr(doc, f.name) for f in fields(doc) if f.name != "deliveries"}
            row["deliveries"] = [asdict(d) for d in doc.deliveries]
            docs.append(row)
        return {
            "version": _FORMAT_VERSION,
            "documents": docs,
            "agencies": [asdict(a) for a in self.agencies.values()],
            "recent": [[[*k[:3], list(k[3])], doc_id, at] for k, (doc_id, at) in self.recent.items()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"state file version {data.get('version')!r} is not {_FORMAT_VERSION}")
        for row in data["documents"]:
            deliveries = [Delivery(**d) for d in row["deliveries"]]
            content = row["content"]
            doc = Document(**{**row, "content": content, "deliveries": deliveries})
            self.documents[doc.doc_id] = doc
            for d in deliveries:
                self.receivers[d.receiver_doc_id] = (doc, d)
        for agency in data["agencies"]:
            self.agencies[agency["code"]] = AgencyRecord(**agency)
        for key, doc_id, at in data["recent"]:
            self.recent[(key[0], key[1], key[2], tuple(key[3]))] = (doc_id, at)


class StateFile:
    """The state as one JSON file, replaced atomically (content in Base64)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        data = json.loads(text)
        for row in data.get("documents", []):
            row["content"] = base64.b64decode(row["content"], validate=True)
        return data

    def save(self, snapshot: dict[str, Any]) -> None:
        docs = [row | {"content": base64.b64encode(row["content"]).decode("ascii")} for row in snapshot["documents"]]
        text = json.dumps(snapshot | {"documents": docs}, ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


MESSAGE_TYPES: Final = frozenset(m.value for m in MessageType)
