"""The JSON answers of the national axis as typed records, with the exact field names the SDK reads.

The Java SDK parses answers strictly: ``status``, ``ErrorCode`` and ``ErrorDesc`` must be strings,
sendEdoc must carry ``DocId`` even on failure, and every item field is read with Gson's
``getAsString``, so a missing field, a JSON ``null`` or an object breaks it. ``to_json`` therefore
writes every field, never ``null``; ``from_json`` refuses what the SDK could not read (a number or
boolean is accepted where a string is read, as ``getAsString`` does) and raises :class:`ShapeError`.
Lists are read only on success, and getEdoc's and the counts' payloads only when not ``FAIL``,
as the SDK does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Final, Self

from .protocol import AxisCode

__all__ = [
    "STATUS_FAIL",
    "STATUS_OK",
    "Agency",
    "AgencyListResult",
    "AgencyQD20",
    "AgencyQD20ListResult",
    "AgencyRegistration",
    "CountResult",
    "EdocResult",
    "ReceivedItem",
    "ReceivedListResult",
    "Result",
    "SendEdocResult",
    "SentItem",
    "SentListResult",
    "ShapeError",
    "SyncUnit",
    "SyncUnitListResult",
    "dump_json",
    "load_json",
]

STATUS_OK: Final = "OK"
STATUS_FAIL: Final = "FAIL"


class ShapeError(ValueError):
    """An answer the SDK could not read: not JSON, a field missing, null or of the wrong kind."""


def dump_json(data: Mapping[str, Any]) -> bytes:
    """Compact and ASCII-only: the SDK reads sendEdoc's answer as US-ASCII, and ``\\u`` escapes keep
    Vietnamese ErrorDesc readable through that."""
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def load_json(body: bytes, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise ShapeError(f"answer larger than {max_bytes} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ShapeError(f"answer is not JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise ShapeError("answer is not a JSON object")
    return data


def _string(obj: Mapping[str, Any], key: str) -> str:
    """Gson's ``getAsString``: a string, or a number/boolean written as text; nothing else."""
    if key not in obj:
        raise ShapeError(f"field {key!r} missing")
    value = obj[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise ShapeError(f"field {key!r} is {'null' if value is None else type(value).__name__}, not a string")


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ShapeError(f"field {key!r} is not an integer")


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ShapeError(f"field {key!r} is not a boolean")


def _json_name(f: Any) -> str:
    return str(f.metadata.get("json", f.name))


class _Record:
    """Items: each field's JSON name is in its metadata; its annotation (str, int, bool) says how
    it is read."""

    def to_json(self) -> dict[str, Any]:
        return {_json_name(f): getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        if not isinstance(obj, dict):
            raise ShapeError(f"{cls.__name__} item is not a JSON object")
        readers = {"str": _string, "int": _int, "bool": _bool}
        values = {f.name: readers[str(f.type)](obj, _json_name(f)) for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**values)


def _as(name: str) -> Any:
    return field(default="", metadata={"json": name})


@dataclass(frozen=True, slots=True)
class ReceivedItem(_Record):
    """One row of getReceivedEdocList (snake case as the SDK reads it)."""

    doc_id: str = _as("docId")
    service_type: str = _as("serviceType")
    message_type: str = _as("messageType")
    created_time: str = _as("created_time")
    updated_time: str = _as("updated_time")
    from_: str = _as("from")
    to: str = _as("to")
    status: str = _as("status")
    status_desc: str = _as("status_desc")


@dataclass(frozen=True, slots=True)
class SentItem(_Record):
    """One row of getSentEdocList: one recipient of a sent document."""

    service_type: str = _as("serviceType")
    message_type: str = _as("messageType")
    sender_doc_id: str = _as("senderDocId")
    receiver_doc_id: str = _as("receiverDocId")
    from_code: str = _as("fromCode")
    to_code: str = _as("toCode")
    title: str = _as("title")
    notation: str = _as("notation")
    sent_time: str = _as("sentTime")
    received_time: str = _as("receivedTime")
    send_status: str = _as("sendStatus")
    send_status_desc: str = _as("sendStatusDesc")
    receive_status: str = _as("receiveStatus")
    receive_status_desc: str = _as("receiveStatusDesc")


@dataclass(frozen=True, slots=True)
class Agency(_Record):
    """getAgenciesList item."""

    id: str = ""
    pid: str = ""
    code: str = ""
    name: str = ""
    mail: str = ""
    old_code: str = _as("oldCode")


@dataclass(frozen=True, slots=True)
class AgencyQD20(_Record):
    """getAgenciesListQD20 item (no ``pid``)."""

    id: str = ""
    code: str = ""
    name: str = ""
    mail: str = ""
    code102: str = ""


@dataclass(frozen=True, slots=True)
class SyncUnit(_Record):
    """getSynchronizeUnit item: the directory with deletions and versions, for incremental sync."""

    id: str = ""
    pid: str = ""
    code: str = ""
    name: str = ""
    mail: str = ""
    center_code: str = _as("centerCode")
    version: int = field(default=0)
    deleted: bool = field(default=False)
    modify_date: str = _as("modifyDate")
    is_agency: bool = field(default=True, metadata={"json": "isAgency"})


@dataclass(frozen=True, slots=True)
class AgencyRegistration(_Record):
    """registerAgency's JSON body: ``id`` empty registers a new agency, else updates that one."""

    id: str = ""
    pcode: str = ""
    code: str = ""
    name: str = ""
    mail: str = ""
    mobile: str = ""
    fax: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The fields every answer has. Success is status ``OK`` with ErrorCode ``"0"``."""

    status: str = STATUS_OK
    error_code: str = AxisCode.OK
    error_desc: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK and self.error_code == AxisCode.OK

    @classmethod
    def failure(cls, code: str, desc: str) -> Self:
        return cls(status=STATUS_FAIL, error_code=code, error_desc=desc)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "ErrorCode": self.error_code, "ErrorDesc": self.error_desc}

    @classmethod
    def common(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
        return {"status": _string(obj, "status"), "error_code": _string(obj, "ErrorCode"),
                "error_desc": _string(obj, "ErrorDesc")}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(**cls.common(obj))


@dataclass(frozen=True, slots=True, kw_only=True)
class SendEdocResult(Result):
    doc_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return Result.to_json(self) | {"DocId": self.doc_id}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(**cls.common(obj), doc_id=_string(obj, "DocId"))


@dataclass(frozen=True, slots=True, kw_only=True)
class EdocResult(Result):
    """getEdoc: ``data`` is the edXML in Base64."""

    data: str = ""

    def to_json(self) -> dict[str, Any]:
        return Result.to_json(self) | {"data": self.data}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        common = cls.common(obj)
        return cls(**common, data=_string(obj, "data") if common["status"] != STATUS_FAIL else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class CountResult(Result):
    count: int = 0

    def to_json(self) -> dict[str, Any]:
        return Result.to_json(self) | {"count": self.count}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        common = cls.common(obj)
        return cls(**common, count=_int(obj, "count") if common["status"] != STATUS_FAIL else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ListResult(Result):
    item: ClassVar[type[_Record]]
    data: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return Result.to_json(self) | {"data": [item.to_json() for item in self.data]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        common = cls.common(obj)
        if common["error_code"] != AxisCode.OK:
            return cls(**common)
        rows = obj.get("data")
        if not isinstance(rows, list):
            raise ShapeError("field 'data' is not a list")
        return cls(**common, data=tuple(cls.item.from_json(row) for row in rows))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedListResult(_ListResult):
    item: ClassVar[type[_Record]] = ReceivedItem
    data: tuple[ReceivedItem, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SentListResult(_ListResult):
    item: ClassVar[type[_Record]] = SentItem
    data: tuple[SentItem, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencyListResult(_ListResult):
    item: ClassVar[type[_Record]] = Agency
    data: tuple[Agency, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencyQD20ListResult(_ListResult):
    item: ClassVar[type[_Record]] = AgencyQD20
    data: tuple[AgencyQD20, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncUnitListResult(_ListResult):
    item: ClassVar[type[_Record]] = SyncUnit
    data: tuple[SyncUnit, ...] = ()
