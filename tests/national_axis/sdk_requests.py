"""Requests exactly as the Java SDK (SDKVXP 2.0.1) puts them on the wire, sent over a raw socket.

Written from docs/national-axis.md's description of the SDK (not from its code), so tests can
check that a server — the simulator now, the hub's own ``/vxp/<operation>`` routes later —
accepts what real SDK clients send and answers in the shape they parse. What is reproduced:

* one service object = one :class:`SdkSession`: its timestamp is fixed at construction and its
  header map is never cleared, so later calls re-send (and re-sign) earlier keys;
* the map is a ``java.util.HashMap``: keys are sent and signed in its iteration order
  (:class:`JavaHashMap` reproduces it, resizes included);
* ``XroadVnpt-<key>`` headers, the Gson-compact sign-header, its HMAC, the fixed User-Agent and
  version, ``Content-Type`` also unprefixed;
* sendEdoc through HttpURLConnection: the file plus CRLF, ``application/octet-stream`` (the
  multipart type replaced), unpadded hash-file, Java's default Accept header;
* other calls through Apache HttpClient: empty form or ``{}`` bodies, ``Expect: 100-continue``
  on non-empty bodies (the body is sent after the interim ``100 Continue``).

:func:`parse_like_sdk` is an independent oracle of the SDK's strict answer parsing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SDK_TIMESTAMP = "05012024T090703+0045"
JAVA_ACCEPT = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"


# -- java.util.HashMap iteration order ---------------------------------------------------------

def java_string_hash(text: str) -> int:
    """``String.hashCode`` over UTF-16 code units, as an unsigned 32-bit value."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h


class JavaHashMap:
    """Insertion into buckets ``(h ^ h >>> 16) & (n - 1)``; iteration bucket by bucket; doubling at
    load factor 0.75 keeps each bucket's relative order (what Java's split does)."""

    def __init__(self) -> None:
        self._buckets: list[list[list[str]]] = [[] for _ in range(16)]
        self._size = 0

    def _index(self, key: str, n: int) -> int:
        h = java_string_hash(key)
        return (h ^ (h >> 16)) & (n - 1)

    def put(self, key: str, value: str) -> None:
        bucket = self._buckets[self._index(key, len(self._buckets))]
        for entry in bucket:
            if entry[0] == key:
                entry[1] = value
                return
        bucket.append([key, value])
        self._size += 1
        if self._size > len(self._buckets) * 3 // 4:
            old, n = self._buckets, len(self._buckets) * 2
            self._buckets = [[] for _ in range(n)]
            for entries in old:
                for entry in entries:
                    self._buckets[self._index(entry[0], n)].append(entry)

    def items(self) -> list[tuple[str, str]]:
        return [(k, v) for bucket in self._buckets for k, v in bucket]

    def keys(self) -> list[str]:
        return [k for k, _ in self.items()]


# -- requests ----------------------------------------------------------------------------------

@dataclass
class RawRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    expect_continue: bool = False

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    def replace(self, name: str, value: str) -> RawRequest:
        """A copy with every header of this name (exact case) set to ``value``."""
        headers = [(k, value if k == name else v) for k, v in self.headers]
        return RawRequest(self.method, self.path, headers, self.body, self.expect_continue)

    def without(self, name: str) -> RawRequest:
        headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return RawRequest(self.method, self.path, headers, self.body, self.expect_continue)

    def adding(self, name: str, value: str) -> RawRequest:
        return RawRequest(self.method, self.path, [*self.headers, (name, value)], self.body, self.expect_continue)


def sdk_hash_file(data: bytes) -> str:
    """``Integer.toHexString`` of each digest byte: no zero padding."""
    return "".join(format(b, "x") for b in hashlib.sha256(data).digest())


@dataclass
class SdkSession:
    """One SDK service object of one system: fixed timestamp, a header map that only grows."""

    system_id: str
    secret: str
    timestamp: str = SDK_TIMESTAMP
    base_path: str = ""
    map: JavaHashMap = field(default_factory=JavaHashMap)

    def __post_init__(self) -> None:
        self.map.put("timestamp", self.timestamp)
        self.map.put("systemid", self.system_id)

    def _signed(self, content_type: str, params: dict[str, str]) -> list[tuple[str, str]]:
        self.map.put("Content-Type", content_type)
        for key, value in params.items():
            self.map.put(key, value)
        entries = self.map.items()
        sign_header = json.dumps({f"XroadVnpt-{k}": v for k, v in entries}, separators=(",", ":"),
                                 ensure_ascii=False)
        digest = hmac.new(self.secret.encode(), sign_header.encode(), hashlib.sha256).hexdigest()
        headers = [(f"XroadVnpt-{k}", v) for k, v in entries]
        headers += [("XroadVnpt-sign-header-key", ";".join(k for k, _ in entries)),
                    ("XroadVnpt-sign-header", sign_header), ("XroadVnpt-hash-header", digest),
                    ("User-Agent", "JAVASDKAgent/1.0.0 XRoad/VPCP"), ("XroadVnpt-version", "3.0.201608"),
                    ("Content-Type", content_type)]
        return headers

    def _apache(self, operation: str, params: dict[str, str], body: bytes, method: str = "POST") -> RawRequest:
        headers = self._signed("application/json", params)
        return RawRequest(method, f"{self.base_path}/{operation}", headers, body, expect_continue=bool(body))

    # One builder per SDK call, with the parameters its callers pass.
    def received_list(self, message_type: str = "edoc") -> RawRequest:
        return self._apache("getReceivedEdocList", {"servicetype": "eDoc", "messagetype": message_type}, b"")

    def sent_list(self, doc_id: str) -> RawRequest:
        return self._apache("getSentEdocList", {"servicetype": "eDoc", "messagetype": "edoc", "docId": doc_id}, b"")

    def get_edoc(self, doc_id: str, file_path: str = "C:\\vxp\\received", *, both_cases: bool = True) -> RawRequest:
        params = {"docId": doc_id, "filePath": file_path} | ({"docid": doc_id} if both_cases else {})
        return self._apache("getEdoc", params, b"{}")

    def download_edoc(self, doc_id: str, file_path: str = "C:\\vxp\\received") -> RawRequest:
        return self._apache("downloadEdoc", {"docId": doc_id, "filePath": file_path}, b"", method="GET")

    def update_status(self, doc_id: str, status: str) -> RawRequest:
        return self._apache("updateStatus", {"status": status, "docId": doc_id}, b"{}")

    def count(self, operation: str = "countReceiveEdoc") -> RawRequest:
        return self._apache(operation, {}, b"{}")

    def agencies(self) -> RawRequest:
        return self._apache("getAgenciesList", {}, b"")

    def agencies_qd20(self, level: str = "1") -> RawRequest:
        return self._apache("getAgenciesListQD20", {"level": level}, b"")

    def synchronize_units(self) -> RawRequest:
        return self._apache("getSynchronizeUnit", {}, b"")

    def register_agency(self, agency: dict[str, str]) -> RawRequest:
        return self._apache("registerAgency", {}, json.dumps(agency, ensure_ascii=False).encode("utf-8"))

    def delete_agency(self, code: str) -> RawRequest:
        return self._apache("deleteAgency", {"AgencyCode": code}, b"{}")

    def send_edoc(self, content: bytes, from_: str, to: list[str] | None = None, *,
                  message_type: str = "edoc", expect_continue: bool = False) -> RawRequest:
        params = {"servicetype": "eDoc", "messagetype": message_type, "hash-file": sdk_hash_file(content),
                  "from": from_}
        if to is not None:
            params["to"] = json.dumps(to, separators=(",", ":"))
        headers = self._signed("application/octet-stream", params)
        # MultipartUtility's multipart/form-data type is replaced by the unprefixed Content-Type above.
        headers += [("Accept", JAVA_ACCEPT), ("Connection", "keep-alive")]
        return RawRequest("POST", f"{self.base_path}/sendEdoc", headers, content + b"\r\n", expect_continue)


# -- raw HTTP/1.1 --------------------------------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen first

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class RawConnection:
    """One keep-alive HTTP/1.1 connection, like a pooled Apache client connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawConnection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def _head(self) -> tuple[int, list[tuple[str, str]]]:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:] if line)]
        return status, headers

    async def send(self, request: RawRequest) -> RawResponse:
        assert self._reader is not None and self._writer is not None
        headers = [*request.headers, ("Host", f"{self.host}:{self.port}")]
        if request.method != "GET" or request.body:
            headers.append(("Content-Length", str(len(request.body))))
        if request.expect_continue:
            headers.append(("Expect", "100-continue"))
        head = f"{request.method} {self.prefix}{request.path} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        self._writer.write(head.encode("utf-8"))
        interim: list[int] = []
        if request.expect_continue:
            await self._writer.drain()
            status, answer_headers = await asyncio.wait_for(self._head(), 10)
            interim.append(status)
            if status != 100:  # the server answered without wanting the body
                return RawResponse(status, answer_headers, await self._body(answer_headers), interim)
        self._writer.write(request.body)
        await self._writer.drain()
        status, answer_headers = await asyncio.wait_for(self._head(), 30)
        while 100 <= status < 200:
            interim.append(status)
            status, answer_headers = await asyncio.wait_for(self._head(), 30)
        return RawResponse(status, answer_headers, await self._body(answer_headers), interim)

    async def _body(self, headers: Iterable[tuple[str, str]]) -> bytes:
        assert self._reader is not None
        fields = {k.lower(): v for k, v in headers}
        if "chunked" in fields.get("transfer-encoding", "").lower():
            out = bytearray()
            while size := int((await self._reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                out += await self._reader.readexactly(size)
                await self._reader.readexactly(2)
            await self._reader.readuntil(b"\r\n")
            return bytes(out)
        return await self._reader.readexactly(int(fields.get("content-length", "0")))


async def send_raw(url: str, *requests: RawRequest) -> list[RawResponse]:
    """Send requests one after the other on one keep-alive connection."""
    async with RawConnection(url) as conn:
        return [await conn.send(r) for r in requests]


# -- the SDK's strict parsing, as an oracle ---------------------------------------------------------

class SdkParseError(AssertionError):
    """The Java SDK would throw (NPE, UnsupportedOperationException) or lose data on this answer."""


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise SdkParseError(f"{where}: {key!r} missing (NullPointerException)")
    value = obj[key]
    if not isinstance(value, str):
        raise SdkParseError(f"{where}: {key!r} is {value!r}, not a string")
    return value


ITEM_FIELDS = {
    "getReceivedEdocList": ("docId", "serviceType", "messageType", "created_time", "updated_time", "from", "to",
                            "status", "status_desc"),
    "getSentEdocList": ("serviceType", "messageType", "senderDocId", "receiverDocId", "fromCode", "toCode", "title",
                        "notation", "sentTime", "receivedTime", "sendStatus", "sendStatusDesc", "receiveStatus",
                        "receiveStatusDesc"),
    "getAgenciesList": ("id", "pid", "code", "name", "mail", "oldCode"),
    "getAgenciesListQD20": ("id", "code", "name", "mail", "code102"),
    "getSynchronizeUnit": ("id", "pid", "code", "name", "mail", "centerCode", "modifyDate"),
}


def parse_like_sdk(operation: str, response: RawResponse) -> dict[str, Any]:
    """Check an answer the way the SDK reads it; returns the JSON object or raises SdkParseError."""
    if operation == "sendEdoc" and any(b > 0x7F for b in response.body):
        raise SdkParseError("sendEdoc answer is read as US-ASCII: non-ASCII bytes would be garbled")
    try:
        obj = json.loads(response.body.decode("utf-8"))
    except ValueError as exc:
        raise SdkParseError(f"{operation}: not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SdkParseError(f"{operation}: not a JSON object")
    status = _string(obj, "status", operation)
    code = _string(obj, "ErrorCode", operation)
    _string(obj, "ErrorDesc", operation)
    if status not in ("OK", "FAIL"):
        raise SdkParseError(f"{operation}: status {status!r}")
    if operation == "sendEdoc":
        _string(obj, "DocId", operation)
    if operation == "getEdoc" and status != "FAIL":
        _string(obj, "data", operation)
    if operation.startswith("countReceive") and status != "FAIL" and not isinstance(obj.get("count"), int):
        raise SdkParseError(f"{operation}: count is not an int")
    if operation in ITEM_FIELDS and code == "0":
        rows = obj.get("data")
        if not isinstance(rows, list):
            raise SdkParseError(f"{operation}: data is not a list")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise SdkParseError(f"{operation}: data[{i}] is not an object")
            for key in ITEM_FIELDS[operation]:
                _string(row, key, f"{operation} data[{i}]")
            if operation == "getSynchronizeUnit":
                if not isinstance(row.get("version"), int) or isinstance(row.get("version"), bool):
                    raise SdkParseError(f"{operation} data[{i}]: version is not an int")
                for key in ("deleted", "isAgency"):
                    if not isinstance(row.get(key), bool):
                        raise SdkParseError(f"{operation} data[{i}]: {key} is not a boolean")
    return obj
