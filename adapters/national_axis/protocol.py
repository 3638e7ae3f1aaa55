"""The national document axis (VXP) wire protocol as its Java SDK speaks it: data and pure functions.

No I/O here, so the client, the simulator and the hub's future ``/vxp/<operation>`` routes share
one definition of what is signed, how it is checked and how a sendEdoc body is read. The response
shapes are in :mod:`.shapes`. docs/national-axis.md describes the protocol and its weaknesses.

Signing: every parameter travels as an ``XroadVnpt-<key>`` header and again inside the
``XroadVnpt-sign-header`` JSON object; ``XroadVnpt-hash-header`` is the lowercase hex
HMAC-SHA256 of the exact sign-header bytes under the system's secret. The URL, the operation and
the body are not signed (sendEdoc's body is bound through ``hash-file`` only), and the SDK keeps
one timestamp for the life of a service object, so a server can refuse neither an old timestamp
nor a repeated hash-header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Final

__all__ = [
    "BODY",
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_OCTETS",
    "CRLF",
    "HASH_HEADER",
    "HEADER_PREFIX",
    "RETRYABLE_CODES",
    "SDK_USER_AGENT",
    "SDK_VERSION",
    "SERVICE_TYPE_EDOC",
    "SIGN_HEADER",
    "SIGN_HEADER_KEY",
    "VERSION_HEADER",
    "VIETNAM_TZ",
    "AxisCode",
    "BodyKind",
    "MessageType",
    "Operation",
    "Param",
    "ProtocolError",
    "RawSendBody",
    "SignatureError",
    "VerifiedRequest",
    "format_timestamp",
    "hash_file",
    "hash_file_matches",
    "http_method",
    "parse_timestamp",
    "parse_to",
    "read_send_body",
    "sdk_hex",
    "sign_headers",
    "verify_request",
]


class Operation(StrEnum):
    """The operations, each the last segment of ``<endpoint>/<operation>`` (no query, no version)."""

    GET_RECEIVED_EDOC_LIST = "getReceivedEdocList"
    GET_SENT_EDOC_LIST = "getSentEdocList"
    SEND_EDOC = "sendEdoc"
    GET_EDOC = "getEdoc"
    DOWNLOAD_EDOC = "downloadEdoc"
    COUNT_RECEIVE_EDOC = "countReceiveEdoc"
    COUNT_RECEIVE_STATUS = "countReceiveStatus"
    UPDATE_STATUS = "updateStatus"
    GET_AGENCIES_LIST = "getAgenciesList"
    GET_AGENCIES_LIST_QD20 = "getAgenciesListQD20"
    GET_SYNCHRONIZE_UNIT = "getSynchronizeUnit"
    REGISTER_AGENCY = "registerAgency"
    DELETE_AGENCY = "deleteAgency"


class BodyKind(StrEnum):
    """What the SDK puts in the request body of an operation."""

    EMPTY = "empty"  # an empty form: Content-Length 0
    EMPTY_JSON = "{}"  # the literal two bytes ``{}``
    JSON = "json"  # a JSON document (registerAgency)
    EDXML = "edxml"  # the edXML file plus CRLF, as application/octet-stream (sendEdoc)
    NONE = "none"  # a GET without a body (downloadEdoc)


BODY: Final[Mapping[Operation, BodyKind]] = {
    Operation.GET_RECEIVED_EDOC_LIST: BodyKind.EMPTY,
    Operation.GET_SENT_EDOC_LIST: BodyKind.EMPTY,
    Operation.SEND_EDOC: BodyKind.EDXML,
    Operation.GET_EDOC: BodyKind.EMPTY_JSON,
    Operation.DOWNLOAD_EDOC: BodyKind.NONE,
    Operation.COUNT_RECEIVE_EDOC: BodyKind.EMPTY_JSON,
    Operation.COUNT_RECEIVE_STATUS: BodyKind.EMPTY_JSON,
    Operation.UPDATE_STATUS: BodyKind.EMPTY_JSON,
    Operation.GET_AGENCIES_LIST: BodyKind.EMPTY,
    Operation.GET_AGENCIES_LIST_QD20: BodyKind.EMPTY,
    Operation.GET_SYNCHRONIZE_UNIT: BodyKind.EMPTY,
    Operation.REGISTER_AGENCY: BodyKind.JSON,
    Operation.DELETE_AGENCY: BodyKind.EMPTY_JSON,
}


#: Operations a hub serves on POST only: they send content (sendEdoc, registerAgency) or change what
#: is recorded (updateStatus, deleteAgency), and a GET is what proxies and HTTP libraries repeat on
#: their own after a cut connection. The SDK POSTs them all; reads are served on GET too.
POST_ONLY: Final[frozenset[Operation]] = frozenset({Operation.SEND_EDOC, Operation.UPDATE_STATUS,
                                                    Operation.REGISTER_AGENCY, Operation.DELETE_AGENCY})


def http_method(operation: Operation) -> str:
    """downloadEdoc is the one GET; every other operation POSTs."""
    return "GET" if BODY[operation] is BodyKind.NONE else "POST"


class Param(StrEnum):
    """Parameter names as the SDK's callers spell them (servers match them case-insensitively)."""

    SYSTEM_ID = "systemid"
    TIMESTAMP = "timestamp"
    CONTENT_TYPE = "Content-Type"
    SERVICE_TYPE = "servicetype"
    MESSAGE_TYPE = "messagetype"
    DOC_ID = "docId"
    FILE_PATH = "filePath"
    FROM = "from"
    TO = "to"
    HASH_FILE = "hash-file"
    STATUS = "status"
    LEVEL = "level"
    AGENCY_CODE = "AgencyCode"


class MessageType(StrEnum):
    EDOC = "edoc"
    STATUS = "status"


SERVICE_TYPE_EDOC: Final = "eDoc"
CONTENT_TYPE_JSON: Final = "application/json"
CONTENT_TYPE_OCTETS: Final = "application/octet-stream"

HEADER_PREFIX: Final = "XroadVnpt-"
SIGN_HEADER: Final = "XroadVnpt-sign-header"
SIGN_HEADER_KEY: Final = "XroadVnpt-sign-header-key"
HASH_HEADER: Final = "XroadVnpt-hash-header"
VERSION_HEADER: Final = "XroadVnpt-version"
SDK_VERSION: Final = "3.0.201608"
SDK_USER_AGENT: Final = "JAVASDKAgent/1.0.0 XRoad/VPCP"
CRLF: Final = b"\r\n"

# Bounds on what a request may make us hold or parse.
MAX_SIGN_HEADER_BYTES: Final = 8192
MAX_SIGNED_KEYS: Final = 64
MAX_PARAM_KEY_CHARS: Final = 64
MAX_PARAM_VALUE_CHARS: Final = 4096
MAX_HEADERS: Final = 200
MAX_RECIPIENTS: Final = 1000
MAX_MULTIPART_PARTS: Final = 16
MAX_PART_HEADER_BYTES: Final = 8192

VIETNAM_TZ: Final = timezone(timedelta(hours=7), "ICT")


class AxisCode:
    """``ErrorCode`` values. ``"0"`` is success; the axis publishes no others, so the rest are this
    project's choices (the simulator's answers), kept distinct so a client can act on them."""

    OK: Final = "0"
    LOCAL_FAILURE: Final = "100"  # what the Java SDK fabricates when saving a download fails
    INVALID_REQUEST: Final = "400"  # a parameter or the body is missing or malformed
    BAD_SIGNATURE: Final = "401"  # the signing headers are missing, malformed or do not verify
    UNKNOWN_SYSTEM: Final = "402"  # no system with this systemid
    FORBIDDEN: Final = "403"  # `from` is not the caller; not the caller's document
    NOT_FOUND: Final = "404"  # no such document or agency (for this caller)
    UNKNOWN_OPERATION: Final = "405"
    HASH_MISMATCH: Final = "409"  # the body's SHA-256 is not hash-file
    TOO_LARGE: Final = "413"
    UNKNOWN_RECIPIENT: Final = "422"  # no recipient, or one the axis does not know
    INTERNAL: Final = "500"
    UNAVAILABLE: Final = "503"


RETRYABLE_CODES: Final = frozenset({AxisCode.INTERNAL, AxisCode.UNAVAILABLE})


class ProtocolError(ValueError):
    """A request (or answer) the protocol cannot accept; ``code`` is an :class:`AxisCode` value."""

    def __init__(self, code: str, desc: str) -> None:
        super().__init__(f"{code}: {desc}")
        self.code = code
        self.desc = desc


class SignatureError(ProtocolError):
    """The request is not signed by a known system (BAD_SIGNATURE or UNKNOWN_SYSTEM)."""


# -- timestamp --------------------------------------------------------------------------------

_TIMESTAMP = re.compile(r"(\d{2})(\d{2})(\d{4})[Tt](\d{2})(\d{2})(\d{2})(?:[+.](\d{1,4}))?")


def format_timestamp(when: datetime) -> str:
    """The SDK's ``ddMMyyyy'T'HHmmss+SSSS``: ``+`` is a literal, ``SSSS`` milliseconds on 4 digits."""
    return f"{when:%d%m%Y}T{when:%H%M%S}+{when.microsecond // 1000:04d}"


def parse_timestamp(text: str) -> datetime:
    """Read an SDK timestamp leniently (1–4 digit or absent milliseconds, ``.`` for ``+``).

    The result is naive: the SDK writes the client's local time without a zone. Raises
    ``ValueError`` when the text is not a timestamp; a server must not refuse a request for it.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a ddMMyyyy'T'HHmmss+SSSS timestamp: {text[:40]!r}")
    day, month, year, hour, minute, second, millis = match.groups()
    ms = int(millis or 0)
    if ms > 999:
        raise ValueError(f"milliseconds out of range in {text[:40]!r}")
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), ms * 1000)


# -- signing (client side) --------------------------------------------------------------------

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_RESERVED = frozenset(
    k.lower() for k in (Param.SYSTEM_ID, Param.TIMESTAMP, Param.CONTENT_TYPE, "sign-header", "sign-header-key",
                        "hash-header", "version")
)


def _check_value(key: str, value: str) -> None:
    if len(value) > MAX_PARAM_VALUE_CHARS:
        raise ValueError(f"parameter {key!r} longer than {MAX_PARAM_VALUE_CHARS} characters")
    if any(not (" " <= ch <= "~") for ch in value):
        raise ValueError(f"parameter {key!r} must be printable ASCII (it travels as an HTTP header)")


def sign_headers(
    system_id: str,
    secret: str | bytes,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    content_type: str,
    timestamp: str,
    user_agent: str = SDK_USER_AGENT,
) -> list[tuple[str, str]]:
    """The header set of one call: every key as ``XroadVnpt-<key>``, the signed JSON, its HMAC.

    Keys are signed in the order systemid, ``params`` in their order, timestamp, Content-Type
    (a server must not depend on the order, and the SDK's is HashMap's). Values must be printable
    ASCII. ``Content-Type`` is also sent unprefixed.
    """
    items = list(params.items() if isinstance(params, Mapping) else params)
    seen: set[str] = set()
    for key, _ in items:
        if not _KEY.fullmatch(key) or len(key) > MAX_PARAM_KEY_CHARS:
            raise ValueError(f"parameter name {key!r} is not a header token")
        if key.lower() in _RESERVED:
            raise ValueError(f"parameter name {key!r} is reserved")
        if key in seen:
            raise ValueError(f"parameter {key!r} given twice")
        seen.add(key)
    entries = [(str(Param.SYSTEM_ID), system_id), *items, (str(Param.TIMESTAMP), timestamp),
               (str(Param.CONTENT_TYPE), content_type)]
    for key, value in entries:
        _check_value(key, value)
    signed = {HEADER_PREFIX + key: value for key, value in entries}
    sign_header = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
    key_bytes = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    digest = hmac.new(key_bytes, sign_header.encode("utf-8"), hashlib.sha256).hexdigest()
    headers = [(HEADER_PREFIX + key, value) for key, value in entries]
    headers += [
        ("Content-Type", content_type),
        (SIGN_HEADER_KEY, ";".join(key for key, _ in entries)),
        (SIGN_HEADER, sign_header),
        (HASH_HEADER, digest),
        ("User-Agent", user_agent),
        (VERSION_HEADER, SDK_VERSION),
    ]
    return headers


# -- verification (server side) ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a request's valid signature vouches for: the system and its signed parameters.

    ``params`` holds only parameters inside the sign-header, keyed by lowercase name without the
    ``XroadVnpt-`` prefix; unsigned ``XroadVnpt-*`` headers are ignored, so nothing unsigned can
    steer the operation.
    """

    system_id: str
    params: Mapping[str, str] = field(default_factory=dict)
    timestamp: datetime | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name.lower(), default)


def _text(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _raw(value: bytes | str) -> bytes:
    # aiohttp hands str headers decoded as UTF-8 with surrogateescape; this restores the wire bytes.
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _bad(reason: str) -> SignatureError:
    return SignatureError(AxisCode.BAD_SIGNATURE, reason)


class _Members(list[tuple[str, object]]):
    """The members of one JSON object, in order, duplicates kept (json's dict would hide them)."""


def _signed_pairs(sign_header: bytes) -> list[tuple[str, str]]:
    """The sign-header's JSON members, refusing anything but a flat object of string values."""
    try:
        members = json.loads(sign_header.decode("utf-8"), object_pairs_hook=_Members)
    except (ValueError, RecursionError):
        raise _bad("XroadVnpt-sign-header không phải JSON") from None
    if not isinstance(members, _Members):
        raise _bad("XroadVnpt-sign-header phải là một đối tượng JSON")
    if len(members) > MAX_SIGNED_KEYS:
        raise _bad(f"XroadVnpt-sign-header có hơn {MAX_SIGNED_KEYS} khóa")
    names: set[str] = set()
    out: list[tuple[str, str]] = []
    for key, value in members:
        if not isinstance(value, str):
            raise _bad(f"giá trị của {key!r} trong XroadVnpt-sign-header phải là chuỗi")
        if key in names:
            raise _bad(f"khóa {key!r} lặp lại trong XroadVnpt-sign-header")
        names.add(key)
        out.append((key, value))
    return out


#: Parameter names as the SDK's operations spell them: of two signed spellings, this one is used.
_CANONICAL = frozenset(str(p) for p in Param)


def verify_request(
    headers: Iterable[tuple[bytes | str, bytes | str]],
    secret_for: Callable[[str], str | bytes | None],
) -> VerifiedRequest:
    """Check a received request the way a server of this protocol must, or raise SignatureError.

    ``headers`` are the received (name, value) pairs, ideally the raw bytes (aiohttp's
    ``request.raw_headers``). The HMAC is recomputed over the sign-header bytes exactly as
    received (hex case ignored, constant-time compare); every member of the sign-header JSON must
    equal the header it names; header names match case-insensitively; key order is irrelevant.
    Timestamps are neither checked for freshness nor remembered (the SDK re-sends them for days).
    """
    by_name: dict[str, list[bytes | str]] = {}
    exact: dict[str, list[bytes | str]] = {}
    for count, (name, value) in enumerate(headers, 1):
        if count > MAX_HEADERS:
            raise _bad(f"quá {MAX_HEADERS} header")
        by_name.setdefault(_text(name).lower(), []).append(value)
        exact.setdefault(_text(name), []).append(value)

    def one(name: str) -> bytes | str:
        values = by_name.get(name.lower(), [])
        if not values:
            raise _bad(f"thiếu header {name}")
        if len(values) > 1:
            raise _bad(f"header {name} xuất hiện nhiều lần")
        return values[0]

    system_id = _text(one(HEADER_PREFIX + Param.SYSTEM_ID)).strip()
    sign_header = _raw(one(SIGN_HEADER))
    hash_header = _raw(one(HASH_HEADER)).strip().lower()
    if not system_id:
        raise _bad("XroadVnpt-systemid rỗng")
    if len(sign_header) > MAX_SIGN_HEADER_BYTES:
        raise _bad(f"XroadVnpt-sign-header dài hơn {MAX_SIGN_HEADER_BYTES} byte")
    secret = secret_for(system_id)
    if secret is None:
        raise SignatureError(AxisCode.UNKNOWN_SYSTEM, f"hệ thống {system_id[:80]!r} chưa được đăng ký")
    key = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    expected = hmac.new(key, sign_header, hashlib.sha256).hexdigest().encode("ascii")
    if not hmac.compare_digest(expected, hash_header):
        raise _bad("XroadVnpt-hash-header không khớp với XroadVnpt-sign-header")

    params: dict[str, str] = {}
    pairs = _signed_pairs(sign_header)
    signed_names = {k for k, _ in pairs}
    signed_values: dict[str, set[str]] = {}
    for key_name, value in pairs:
        signed_values.setdefault(key_name.lower(), set()).add(value)
    # A header spelled like no signed member but matching one case-insensitively must carry the
    # signed value (an unsigned `xroadvnpt-DOCID: theirs` beside a signed `docId` is refused).
    for exact_name, values in exact.items():
        lowered = exact_name.lower()
        if exact_name not in signed_names and lowered in signed_values and any(
                _text(v) not in signed_values[lowered] or len(signed_values[lowered]) > 1 for v in values):
            raise _bad(f"header {exact_name} khác giá trị đã ký")
    for key_name, value in pairs:
        lowered = key_name.lower()
        if lowered in (SIGN_HEADER.lower(), SIGN_HEADER_KEY.lower(), HASH_HEADER.lower()):
            raise _bad(f"{key_name} không được nằm trong XroadVnpt-sign-header")
        # The SDK can hold `docid` (stale, from an earlier call) beside `docId` with another value,
        # both signed: each member is checked against the header of exactly its name first, and
        # only a member with no such header against the headers that match case-insensitively.
        received = exact.get(key_name) or by_name.get(lowered, [])
        if not received:
            raise _bad(f"khóa {key_name!r} được ký nhưng không có header tương ứng")
        if any(_text(v) != value for v in received):
            raise _bad(f"header {key_name} khác giá trị đã ký")
        if lowered.startswith(HEADER_PREFIX.lower()):
            name = lowered[len(HEADER_PREFIX):]
            # Of two spellings, the parameter is the one the SDK's operations name (e.g. `docId`).
            if name not in params or key_name[len(HEADER_PREFIX):] in _CANONICAL:
                params[name] = value
    if params.get(Param.SYSTEM_ID) != system_id:
        raise _bad("XroadVnpt-systemid không nằm trong XroadVnpt-sign-header")
    timestamp = None
    if Param.TIMESTAMP in params:
        try:
            timestamp = parse_timestamp(params[Param.TIMESTAMP])
        except ValueError:
            timestamp = None  # recorded when readable, never a reason to refuse
    return VerifiedRequest(system_id=system_id, params=params, timestamp=timestamp)


# -- hash-file --------------------------------------------------------------------------------

def sdk_hex(digest: bytes) -> str:
    """Hex the way the SDK writes hash-file: ``Integer.toHexString`` per byte, so no zero padding."""
    return "".join(f"{b:x}" for b in digest)


def hash_file(data: bytes) -> str:
    return sdk_hex(hashlib.sha256(data).digest())


def hash_file_matches(received: str, digest: bytes) -> bool:
    """Constant-time check of a received hash-file against a SHA-256 digest, formatted the SDK's way."""
    text = received.strip().lower()
    if len(text) > 64 or not text.isascii():
        return False
    return hmac.compare_digest(text.encode("ascii"), sdk_hex(digest).encode("ascii"))


# -- sendEdoc body ----------------------------------------------------------------------------

class RawSendBody:
    """Hashes a raw sendEdoc body while it streams, holding back the last two bytes.

    The SDK appends CRLF to the file; a client that does not copy that quirk may send a file that
    itself ends in CRLF. ``finish`` decides with hash-file: the body without its trailing CRLF
    if that matches, else the whole body. Feed chunks, write what ``feed`` returns, then write
    what ``finish`` returns. Pure and synchronous: run it in a worker thread for large bodies.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._sha = hashlib.sha256()
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.max_bytes + len(CRLF):
            raise ProtocolError(AxisCode.TOO_LARGE, f"văn bản vượt quá {self.max_bytes} byte")
        if len(chunk) >= len(CRLF):
            out, self._tail = self._tail + chunk[:-2], chunk[-2:]
        else:
            data = self._tail + chunk
            out, self._tail = data[:-2], data[-2:]
        self._sha.update(out)
        return out

    def finish(self, received_hash: str) -> bytes:
        """The held-back bytes to keep (``b""`` when they were the SDK's CRLF)."""
        if self._tail == CRLF and hash_file_matches(received_hash, self._sha.copy().digest()):
            return b""
        whole = self._sha.copy()
        whole.update(self._tail)
        if self.size > self.max_bytes:
            raise ProtocolError(AxisCode.TOO_LARGE, f"văn bản vượt quá {self.max_bytes} byte")
        if not hash_file_matches(received_hash, whole.digest()):
            raise ProtocolError(AxisCode.HASH_MISMATCH, "SHA-256 của văn bản không khớp với hash-file")
        return self._tail


_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^;\s]{1,200}))', re.IGNORECASE)
_FILE_DOC = re.compile(rb'content-disposition:[^\r\n]*;\s*name="?file_doc"?(?:[;\s]|$)', re.IGNORECASE | re.MULTILINE)


def _boundary(content_type: str | None) -> bytes | None:
    if not content_type or not content_type.lower().lstrip().startswith("multipart/"):
        return None
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).encode("latin-1")


def _file_doc_part(body: bytes, boundary: bytes) -> bytes:
    dash = b"--" + boundary
    pos = body.index(dash)
    for _ in range(MAX_MULTIPART_PARTS):
        pos += len(dash)
        if body.startswith(b"--", pos):
            break
        line_end = body.find(CRLF, pos)
        head_end = body.find(CRLF + CRLF, line_end) if line_end >= 0 else -1
        if line_end < 0 or head_end < 0 or head_end - line_end > MAX_PART_HEADER_BYTES:
            raise ProtocolError(AxisCode.INVALID_REQUEST, "phần multipart sai định dạng")
        part_headers = body[line_end:head_end + 2]
        start = head_end + 4
        end = body.find(CRLF + dash, start)
        if end < 0:
            raise ProtocolError(AxisCode.INVALID_REQUEST, "multipart thiếu dấu phân cách kết thúc")
        if _FILE_DOC.search(part_headers):
            return body[start:end]
        pos = end + len(CRLF)
    raise ProtocolError(AxisCode.INVALID_REQUEST, "multipart không có phần file_doc")


def read_send_body(content_type: str | None, body: bytes, received_hash: str, *, max_bytes: int) -> bytes:
    """The edXML of a sendEdoc body, checked against hash-file (the SDK's unpadded hex).

    The SDK announces multipart but writes the bare file plus CRLF as application/octet-stream;
    a real ``multipart/form-data`` body with a ``file_doc`` part is accepted too. Raises
    ProtocolError (HASH_MISMATCH, TOO_LARGE, INVALID_REQUEST). CPU-bound on large bodies.
    """
    boundary = _boundary(content_type)
    if boundary is not None and body[:len(boundary) + 6].lstrip(b"\r\n").startswith(b"--" + boundary):
        body = _file_doc_part(body, boundary)
    elif body.endswith(CRLF) and len(body) - len(CRLF) <= max_bytes:
        bare = memoryview(body)[:-len(CRLF)]
        if hash_file_matches(received_hash, hashlib.sha256(bare).digest()):
            return bytes(bare)
    if len(body) > max_bytes:
        raise ProtocolError(AxisCode.TOO_LARGE, f"văn bản vượt quá {max_bytes} byte")
    if not hash_file_matches(received_hash, hashlib.sha256(body).digest()):
        raise ProtocolError(AxisCode.HASH_MISMATCH, "SHA-256 của văn bản không khớp với hash-file")
    return body


# -- recipients -------------------------------------------------------------------------------

_SPLIT = re.compile(r"[\s,;]+")


def _codes_from(value: object) -> list[str]:
    if isinstance(value, str):
        return [c for c in _SPLIT.split(value) if c]
    if isinstance(value, dict):
        for key in ("code", "organId", "OrganId", "organ_id", "id"):
            if isinstance(value.get(key), str):
                return _codes_from(value[key])
        raise ValueError("recipient object without a code")
    if isinstance(value, list):
        return [code for item in value for code in _codes_from(item)]
    raise ValueError(f"recipient of type {type(value).__name__}")


def parse_to(text: str) -> list[str]:
    """Read sendEdoc's ``to``, whose shape the SDK never shows, leniently.

    Accepted: a JSON array of codes or of objects with ``code``/``organId``, a JSON string, or
    codes separated by commas, semicolons or spaces. Order kept, duplicates dropped. Raises
    ValueError for anything else or more than MAX_RECIPIENTS codes.
    """
    stripped = text.strip()
    if stripped[:1] in ('[', '{', '"'):
        try:
            codes = _codes_from(json.loads(stripped))
        except RecursionError:
            raise ValueError("recipient list nested too deeply") from None
    else:
        codes = _codes_from(stripped)
    unique = list(dict.fromkeys(codes))
    if len(unique) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients")
    return unique
