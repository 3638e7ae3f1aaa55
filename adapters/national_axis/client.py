"""An async client of the national document axis (VXP), for the hub's ``national_axis`` adapter.

Each call is signed afresh (new timestamp; the Java SDK's fixed timestamp and re-sent headers are
quirks a server must tolerate, not something to copy). What goes on the wire otherwise follows
the SDK, because the real axis is only known to accept that: the same header set and
User-Agent, empty or ``{}`` bodies, and sendEdoc's body as the file plus CRLF in
application/octet-stream with the unpadded hash-file.

Every failure is an :class:`AxisError` whose ``retryable`` says whether trying again later can
help: transport failures (timeouts, refused connections, HTTP 5xx, answers that cannot be parsed)
are retryable; an axis answer ``status: FAIL`` is retryable only for INTERNAL/UNAVAILABLE. The
secret is never logged nor shown in ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self, TypeVar

import aiohttp

from lgsp.core.api import Text

from .protocol import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_OCTETS,
    CRLF,
    RETRYABLE_CODES,
    SDK_USER_AGENT,
    SERVICE_TYPE_EDOC,
    VIETNAM_TZ,
    MessageType,
    Operation,
    Param,
    format_timestamp,
    http_method,
    sdk_hex,
    sign_headers,
)
from .shapes import (
    Agency,
    AgencyListResult,
    AgencyQD20,
    AgencyQD20ListResult,
    AgencyRegistration,
    CountResult,
    EdocResult,
    ReceivedItem,
    ReceivedListResult,
    Result,
    SendEdocResult,
    SentItem,
    SentListResult,
    ShapeError,
    SyncUnit,
    SyncUnitListResult,
    load_json,
)

__all__ = ["AxisClient", "AxisError", "TransportCode"]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Result)

_CHUNK: Final = 256 << 10
_THREAD_JSON_BYTES: Final = 1 << 20  # parse answers larger than this in a worker thread
_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_STATUS: Final = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")


class TransportCode:
    """Codes of failures that happen before an axis answer could be read (client side)."""

    TIMEOUT: Final = "transport.timeout"
    CONNECT: Final = "transport.connect"
    TLS: Final = "transport.tls"
    BROKEN: Final = "transport.broken"  # the connection failed mid-exchange
    HTTP_STATUS: Final = "transport.http_status"
    UNPARSABLE: Final = "transport.unparsable"
    TOO_LARGE: Final = "transport.too_large"  # beyond this client's bounds; trying again cannot help


class AxisError(Exception):
    """A failed call: the axis's ErrorCode (or a TransportCode), its description, and whether a
    later retry may succeed."""

    def __init__(self, code: str, desc: str, *, retryable: bool, operation: str = "",
                 http_status: int | None = None) -> None:
        super().__init__(f"{operation or 'axis'}: {code}: {desc}")
        self.code = code
        self.desc = desc
        self.retryable = retryable
        self.operation = operation
        self.http_status = http_status


def _token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{what} {value[:80]!r} is not letters, digits, '.', '_' or '-'")
    return value


Opener = Callable[[], BinaryIO]


def _hash_file_of(path: Path | Opener, max_bytes: int) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with (path.open("rb") if isinstance(path, Path) else path()) as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise AxisError(TransportCode.TOO_LARGE, Text("{path} is larger than {max_bytes} bytes", path=path,
                                                              max_bytes=max_bytes),
                                retryable=False, operation=Operation.SEND_EDOC)
            sha.update(chunk)
    return size, sdk_hex(sha.digest())


async def _file_then_crlf(path: Path | Opener, size: int) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(path.open, "rb") if isinstance(path, Path) else await asyncio.to_thread(path)
    try:
        left = size
        while left:
            chunk = await asyncio.to_thread(fh.read, min(_CHUNK, left))
            if not chunk:
                raise OSError(f"{path} became shorter while it was sent")
            left -= len(chunk)
            yield chunk
        yield CRLF
    finally:
        await asyncio.to_thread(fh.close)


def _decode_document(data: str, max_bytes: int, operation: str) -> bytes:
    """Base64 (whitespace tolerated: Java MIME encoders wrap lines) to bytes, bounded."""
    clean = data.encode("ascii", "replace").translate(None, b" \t\r\n")
    if len(clean) // 4 * 3 > max_bytes + 2:
        raise AxisError(TransportCode.TOO_LARGE, Text("document larger than {max_bytes} bytes", max_bytes=max_bytes),
                        retryable=False,
                        operation=operation)
    try:
        content = base64.b64decode(clean, validate=True)
    except (binascii.Error, ValueError):
        raise AxisError(TransportCode.UNPARSABLE, Text("data is not Base64"),
                        retryable=True, operation=operation) from None
    if len(content) > max_bytes:
        raise AxisError(TransportCode.TOO_LARGE, Text("document larger than {max_bytes} bytes", max_bytes=max_bytes),
                        retryable=False,
                        operation=operation)
    return content


def _write_atomically(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AxisClient:
    """One system's connection to the axis: ``async with AxisClient(url, system_id, secret) as axis``.

    ``timeout`` bounds each wait for data (so a large upload is not cut while it progresses),
    ``connect_timeout`` the connection. ``max_document_bytes`` bounds what is sent and fetched.
    """

    def __init__(self, endpoint: str, system_id: str, secret: str | bytes, *, timeout: float = 60.0,
                 connect_timeout: float = 10.0, max_document_bytes: int = 64 << 20, max_json_bytes: int = 8 << 20,
                 session: aiohttp.ClientSession | None = None, user_agent: str = SDK_USER_AGENT,
                 now: Callable[[], datetime] | None = None) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint[:80]!r}")
        if not secret:
            raise ValueError("secret is empty")
        self.endpoint = endpoint.rstrip("/")
        self.system_id = _token(system_id, "system id")
        self.__secret = secret
        self.max_document_bytes = max_document_bytes
        self.max_json_bytes = max_json_bytes
        self.user_agent = user_agent
        self._now = now or (lambda: datetime.now(VIETNAM_TZ))
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                              sock_read=timeout)
        self._session = session
        self._own_session = session is None

    def __repr__(self) -> str:
        return f"AxisClient({self.endpoint!r}, system_id={self.system_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        return self._session

    # -- the exchange -----------------------------------------------------------------------

    def _headers(self, params: Sequence[tuple[str, str]], content_type: str) -> list[tuple[str, str]]:
        return sign_headers(self.system_id, self.__secret, params, content_type=content_type,
                            timestamp=format_timestamp(self._now()), user_agent=self.user_agent)

    async def _exchange(self, operation: Operation, params: Sequence[tuple[str, str]], *,
                        body: bytes | AsyncIterator[bytes] | None, content_type: str, max_bytes: int,
                        content_length: int | None = None, sink: Path | None = None) -> tuple[int, str, bytes]:
        """Send one signed request; the answer's status, Content-Type and body (bounded).

        With ``sink``, a successful body is streamed to that file instead and ``b""`` returned.
        """
        headers = self._headers(params, content_type)
        headers.append(("Accept-Encoding", "identity"))  # answers are read as sent, never decompressed
        if content_length is not None:
            headers.append(("Content-Length", str(content_length)))
        url = f"{self.endpoint}/{operation.value}"
        try:
            async with self._http().request(http_method(operation), url, headers=headers, data=body,
                                            allow_redirects=False, timeout=self._timeout) as resp:
                log.debug("axis %s -> HTTP %s", operation.value, resp.status)
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise AxisError(TransportCode.TOO_LARGE, Text("answer of {declared} bytes exceeds {max_bytes}",
                                                                  declared=declared, max_bytes=max_bytes),
                                    retryable=False, operation=operation, http_status=resp.status)
                if sink is not None and resp.status == 200:
                    head = await self._to_file(resp, sink, max_bytes, operation)
                    return resp.status, resp.content_type, head
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    raw += chunk
                    if len(raw) > max_bytes:
                        raise AxisError(TransportCode.TOO_LARGE, Text("answer exceeds {max_bytes} bytes",
                                                                      max_bytes=max_bytes),
                                        retryable=False, operation=operation, http_status=resp.status)
                return resp.status, resp.content_type, bytes(raw)
        except AxisError:
            raise
        except TimeoutError:
            raise AxisError(TransportCode.TIMEOUT, Text("no answer within the timeout"), retryable=True,
                            operation=operation) from None
        except aiohttp.ClientSSLError as exc:
            raise AxisError(TransportCode.TLS, str(exc)[:300], retryable=False, operation=operation) from None
        except aiohttp.ClientConnectorError as exc:
            raise AxisError(TransportCode.CONNECT, str(exc)[:300], retryable=True, operation=operation) from None
        except aiohttp.InvalidURL as exc:
            raise AxisError(TransportCode.CONNECT, Text("invalid URL {exc}", exc=exc), retryable=False,
                            operation=operation) from None
        except aiohttp.ClientResponseError as exc:  # not HTTP (a broken status line or headers)
            raise AxisError(TransportCode.UNPARSABLE, str(exc)[:300], retryable=True, operation=operation) from None
        except aiohttp.ClientError as exc:
            raise AxisError(TransportCode.BROKEN, f"{type(exc).__name__}: {exc}"[:300], retryable=True,
                            operation=operation) from None

    async def _to_file(self, resp: aiohttp.ClientResponse, path: Path, max_bytes: int,
                       operation: Operation) -> bytes:
        """Stream a download to ``path`` atomically; returns its first bytes (to spot a JSON refusal)."""
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        tmp = Path(tmp_name)
        head = b""
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise AxisError(TransportCode.TOO_LARGE, Text("document exceeds {max_bytes} bytes",
                                                                      max_bytes=max_bytes),
                                        retryable=False, operation=operation)
                    if len(head) < 64 << 10:
                        head += chunk[: (64 << 10) - len(head)]
                    await asyncio.to_thread(fh.write, chunk)
                await asyncio.to_thread(os.fsync, fh.fileno())
            if size == 0:
                raise AxisError(TransportCode.UNPARSABLE, Text("empty document"), retryable=True, operation=operation)
            if head.lstrip()[:1] == b"{" or resp.content_type == CONTENT_TYPE_JSON:
                await asyncio.to_thread(tmp.unlink)
                return head if size <= len(head) else b"{"  # a refusal is small; a larger JSON is garbage
            await asyncio.to_thread(os.replace, tmp, path)
            return b""
        except BaseException:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise

    async def _parse(self, operation: Operation, status: int, raw: bytes, result_type: type[R]) -> R:
        try:
            if len(raw) > _THREAD_JSON_BYTES:
                obj = await asyncio.to_thread(load_json, raw, len(raw))
            else:
                obj = load_json(raw, len(raw))
            result = result_type.from_json(obj) if 200 <= status < 300 else Result.from_json(obj)
        except ShapeError as exc:
            if not 200 <= status < 300:
                raise AxisError(TransportCode.HTTP_STATUS, Text("HTTP {status}", status=status),
                                retryable=status >= 500 or status in
                                (408, 429), operation=operation, http_status=status) from None
            raise AxisError(TransportCode.UNPARSABLE, str(exc), retryable=True, operation=operation,
                            http_status=status) from None
        if not result.ok:
            raise AxisError(result.error_code, result.error_desc, retryable=result.error_code in RETRYABLE_CODES,
                            operation=operation, http_status=status)
        if not 200 <= status < 300:
            raise AxisError(TransportCode.HTTP_STATUS, Text("HTTP {status} with a success answer", status=status),
                            retryable=status >= 500, operation=operation, http_status=status)
        return result  # type: ignore[return-value]

    async def _call(self, operation: Operation, params: Sequence[tuple[str, str]], result_type: type[R], *,
                    body: bytes = b"", max_bytes: int | None = None) -> R:
        status, _, raw = await self._exchange(operation, params, body=body, content_type=CONTENT_TYPE_JSON,
                                              max_bytes=max_bytes or self.max_json_bytes)
        return await self._parse(operation, status, raw, result_type)

    # -- operations -------------------------------------------------------------------------

    async def send_edoc(self, edxml: bytes | str | os.PathLike[str] | Opener, from_: str,
                        to: Sequence[str] | None = None, *, message_type: str = MessageType.EDOC,
                        service_type: str = SERVICE_TYPE_EDOC) -> str:
        """Send an edXML (bytes, a file streamed from disk, or a function opening one, e.g. the hub's
        decrypting reader of a stored blob); the axis's DocId.

        ``from_`` is the sender's agency code (some integrations send the system id; the axis
        accepts one of them). Without ``to`` the axis routes on the edXML's To OrganIds.
        """
        MessageType(message_type)
        params = [(Param.SERVICE_TYPE.value, service_type), (Param.MESSAGE_TYPE.value, message_type)]
        body: bytes | AsyncIterator[bytes]
        if isinstance(edxml, bytes | bytearray | memoryview):
            data = bytes(edxml)
            if len(data) > self.max_document_bytes:
                raise AxisError(TransportCode.TOO_LARGE, Text("document larger than {max_document_bytes} bytes",
                                                              max_document_bytes=self.max_document_bytes),
                                retryable=False, operation=Operation.SEND_EDOC)
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
            size, hashed, body = len(data), sdk_hex(digest), data + CRLF
        else:
            source: Path | Opener = edxml if callable(edxml) else Path(edxml)
            size, hashed = await asyncio.to_thread(_hash_file_of, source, self.max_document_bytes)
            body = _file_then_crlf(source, size)
        params += [(Param.HASH_FILE.value, hashed), (Param.FROM.value, _token(from_, "from"))]
        if to:
            codes = [_token(code, "recipient") for code in to]
            params.append((Param.TO.value, json.dumps(codes, separators=(",", ":"))))
        status, _, raw = await self._exchange(Operation.SEND_EDOC, params, body=body, content_type=CONTENT_TYPE_OCTETS,
                                              content_length=size + len(CRLF), max_bytes=self.max_json_bytes)
        result = await self._parse(Operation.SEND_EDOC, status, raw, SendEdocResult)
        if not result.doc_id:
            raise AxisError(TransportCode.UNPARSABLE, Text("success without a DocId"), retryable=True,
                            operation=Operation.SEND_EDOC, http_status=status)
        return result.doc_id

    async def received_list(self, message_type: str = MessageType.EDOC, *,
                            service_type: str = SERVICE_TYPE_EDOC) -> list[ReceivedItem]:
        """Documents (``edoc``) or status packets (``status``) waiting for this system, each docId once."""
        MessageType(message_type)
        result = await self._call(Operation.GET_RECEIVED_EDOC_LIST, [(Param.SERVICE_TYPE.value, service_type),
                                  (Param.MESSAGE_TYPE.value, message_type)], ReceivedListResult)
        unique = {item.doc_id: item for item in reversed(result.data)}
        return [unique[doc_id] for doc_id in dict.fromkeys(item.doc_id for item in result.data)]

    async def get_edoc(self, doc_id: str) -> bytes:
        """The edXML of a received (or own sent) document, decoded from getEdoc's Base64."""
        result = await self._call(Operation.GET_EDOC, [(Param.DOC_ID.value, doc_id)],
                                  EdocResult, body=b"{}",
                                  max_bytes=self.max_document_bytes * 3 // 2 + self.max_json_bytes)
        return await asyncio.to_thread(_decode_document, result.data, self.max_document_bytes, Operation.GET_EDOC)

    async def save_edoc(self, doc_id: str, path: str | os.PathLike[str]) -> int:
        """getEdoc into a file, written whole or not at all; the number of bytes."""
        content = await self.get_edoc(doc_id)
        await asyncio.to_thread(_write_atomically, Path(path), content)
        return len(content)

    async def download_edoc(self, doc_id: str, path: str | os.PathLike[str]) -> int:
        """downloadEdoc (raw bytes, GET) into a file, atomically; a JSON refusal raises instead of
        being saved as the document (which the SDK does)."""
        target = Path(path)
        status, _, head = await self._exchange(
            Operation.DOWNLOAD_EDOC, [(Param.DOC_ID.value, doc_id)], body=None,
            content_type=CONTENT_TYPE_JSON, max_bytes=self.max_document_bytes, sink=target)
        if status == 200 and not head:
            return (await asyncio.to_thread(target.stat)).st_size
        await self._parse(Operation.DOWNLOAD_EDOC, status, head, Result)  # raises for FAIL or garbage
        raise AxisError(TransportCode.UNPARSABLE, Text("a JSON answer instead of the document"), retryable=True,
                        operation=Operation.DOWNLOAD_EDOC, http_status=status)

    async def update_status(self, doc_id: str, status: str) -> None:
        """Report a received document's status; ``done`` or ``fail`` takes it off the pending list."""
        if not _STATUS.fullmatch(status):
            raise ValueError(f"status {status[:40]!r} is not a word")
        await self._call(Operation.UPDATE_STATUS, [(Param.DOC_ID.value, doc_id), (Param.STATUS.value, status)],
                         Result, body=b"{}")

    async def sent_list(self, doc_id: str, *, message_type: str = MessageType.EDOC,
                        service_type: str = SERVICE_TYPE_EDOC) -> list[SentItem]:
        """Per-recipient send and receive status of a document this system sent."""
        result = await self._call(Operation.GET_SENT_EDOC_LIST, [
            (Param.SERVICE_TYPE.value, service_type), (Param.MESSAGE_TYPE.value, message_type),
            (Param.DOC_ID.value, doc_id)], SentListResult)
        return list(result.data)

    async def count_received(self, message_type: str = MessageType.EDOC) -> int:
        operation = (Operation.COUNT_RECEIVE_STATUS if MessageType(message_type) is MessageType.STATUS
                     else Operation.COUNT_RECEIVE_EDOC)
        return (await self._call(operation, [], CountResult, body=b"{}")).count

    async def agencies(self) -> list[Agency]:
        return list((await self._call(Operation.GET_AGENCIES_LIST, [], AgencyListResult)).data)

    async def agencies_qd20(self, level: str = "1") -> list[AgencyQD20]:
        result = await self._call(Operation.GET_AGENCIES_LIST_QD20, [(Param.LEVEL.value, level)],
                                  AgencyQD20ListResult)
        return list(result.data)

    async def synchronize_units(self) -> list[SyncUnit]:
        """The whole directory with ``deleted``, ``version`` and ``modifyDate`` for incremental sync."""
        return list((await self._call(Operation.GET_SYNCHRONIZE_UNIT, [], SyncUnitListResult)).data)

    async def register_agency(self, agency: AgencyRegistration) -> None:
        """Register (``id`` empty) or update an agency."""
        body = json.dumps(agency.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        await self._call(Operation.REGISTER_AGENCY, [], Result, body=body)

    async def delete_agency(self, code: str) -> None:
        await self._call(Operation.DELETE_AGENCY, [(Param.AGENCY_CODE.value, _token(code, "agency code"))], Result,
                         body=b"{}")

