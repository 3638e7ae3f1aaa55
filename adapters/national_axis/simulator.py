"""A national document axis (VXP) simulator: a real aiohttp server speaking the SDK's wire protocol.

We cannot run the real axis, so this serves every operation the way the Java SDK expects (quirks
included: not-really-multipart sendEdoc, unpadded hash-file, fixed timestamps, re-sent headers,
``docId`` and ``docid``) and answers every refusal with HTTP 200 and ``status: FAIL``. Tests
switch on faults per operation (:mod:`.faults`), inject documents "from a ministry" and read
what was sent. ``lgsp axis-sim`` runs it in the foreground. docs/national-axis.md has the rules.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

from aiohttp import web

from .edxml_addresses import EdxmlAddressError, read_addresses
from .faults import Fault, FaultKind, FaultPlan
from .protocol import (
    SERVICE_TYPE_EDOC,
    AxisCode,
    Operation,
    Param,
    ProtocolError,
    SignatureError,
    VerifiedRequest,
    parse_to,
    read_send_body,
    verify_request,
)
from .shapes import (
    AgencyListResult,
    AgencyQD20ListResult,
    CountResult,
    EdocResult,
    ReceivedListResult,
    Result,
    SendEdocResult,
    SentListResult,
    SyncUnitListResult,
    dump_json,
)
from .sim_state import MESSAGE_TYPES, AgencyRecord, AxisState, Document, SimSystem, StateFile

__all__ = ["AxisSimulator", "serve_until_signalled"]

log = logging.getLogger(__name__)

DEFAULT_MAX_DOCUMENT_BYTES: Final = 64 << 20
MAX_JSON_BODY_BYTES: Final = 64 << 10
MULTIPART_SLACK: Final = 64 << 10
_STATUS_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")

RESULT_TYPES: Final[dict[Operation, type[Result]]] = {
    Operation.GET_RECEIVED_EDOC_LIST: ReceivedListResult,
    Operation.GET_SENT_EDOC_LIST: SentListResult,
    Operation.SEND_EDOC: SendEdocResult,
    Operation.GET_EDOC: EdocResult,
    Operation.COUNT_RECEIVE_EDOC: CountResult,
    Operation.COUNT_RECEIVE_STATUS: CountResult,
    Operation.GET_AGENCIES_LIST: AgencyListResult,
    Operation.GET_AGENCIES_LIST_QD20: AgencyQD20ListResult,
    Operation.GET_SYNCHRONIZE_UNIT: SyncUnitListResult,
}

Handler = Callable[["AxisSimulator", web.Request, VerifiedRequest, SimSystem, Fault | None],
                   Awaitable[web.StreamResponse]]


def answer(result: Result) -> web.Response:
    """Every answer, refusals included, is HTTP 200 with the JSON the SDK parses."""
    return web.Response(body=dump_json(result.to_json()), content_type="application/json")


def _required(signed: VerifiedRequest, name: str) -> str:
    value = (signed.get(name) or "").strip()
    if not value:
        raise ProtocolError(AxisCode.INVALID_REQUEST, f"thiếu tham số {name}")
    return value


def _message_type(signed: VerifiedRequest) -> str:
    value = _required(signed, Param.MESSAGE_TYPE).lower()
    if value not in MESSAGE_TYPES:
        raise ProtocolError(AxisCode.INVALID_REQUEST,
                            f"messagetype phải là edoc hoặc status, không phải {value[:40]!r}")
    return value


class AxisSimulator:
    """The server and its state. ``start`` on a loopback port, ``stop`` when done.

    ``systems`` may call; each reads the pending lists of its agency code. ``agencies`` fill the
    directory. ``state_file`` keeps everything across restarts. ``clock`` (epoch seconds) drives
    item times and the sendEdoc idempotency window.
    """

    def __init__(self, systems: Iterable[SimSystem], *, agencies: Iterable[AgencyRecord] = (),
                 state_file: Path | None = None, idempotency_window: float = 600.0,
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES, clock: Callable[[], float] = time.time) -> None:
        self.state = AxisState(systems, clock=clock, idempotency_window=idempotency_window)
        self.faults = FaultPlan()
        self.max_document_bytes = max_document_bytes
        self.calls: list[tuple[str, str, str]] = []  # (operation, systemid, ErrorCode) served
        self._file = StateFile(state_file) if state_file is not None else None
        self._save_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        if self._file is not None:
            try:
                data = self._file.load()
                if data is not None:
                    self.state.restore(data)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{state_file}: not a simulator state file ({type(exc).__name__}: {exc})") from None
        for record in agencies:
            if record.code not in self.state.agencies:
                self.state.put_agency(record)

    # -- lifecycle --------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_JSON_BODY_BYTES,
                              handler_args={"max_field_size": 16384, "max_headers": 256})
        app.router.add_route("*", "/{operation}", self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._stopping.clear()
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        self._stopping.set()  # ends injected delays, so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _save(self) -> None:
        if self._file is None:
            return
        async with self._save_lock:
            await asyncio.to_thread(self._file.save, self.state.snapshot())

    # -- test API ---------------------------------------------------------------------------

    def add_agency(self, code: str, name: str, **fields: object) -> AgencyRecord:
        return self.state.put_agency(AgencyRecord(code=code, name=name, **fields))  # type: ignore[arg-type]

    async def inject(self, to: str | Sequence[str], content: bytes, *, message_type: str = "edoc",
                     from_code: str | None = None, service_type: str = SERVICE_TYPE_EDOC) -> list[str]:
        """Put a document from outside the province (a ministry) on agencies' pending lists.

        Returns the receiver docIds in the order of ``to``. ``from_code`` defaults to the edXML
        From OrganId.
        """
        codes = [to] if isinstance(to, str) else list(to)
        try:
            head = await asyncio.to_thread(read_addresses, content)
        except EdxmlAddressError:
            if from_code is None:
                raise
            head = None
        doc = self.state.add_document(
            sender_system="", from_code=from_code or (head.from_ if head else ""), service_type=service_type,
            message_type=message_type, hash_file="", content=content,
            title=head.subject if head else "", notation=head.notation if head else "", recipients=codes)
        await self._save()
        return [d.receiver_doc_id for d in doc.deliveries]

    def sent(self, system_id: str | None = None) -> list[Document]:
        """Documents sent through sendEdoc, oldest first (injected ones excluded)."""
        docs = [d for d in self.state.documents.values() if d.sender_system and
                (system_id is None or d.sender_system == system_id)]
        return sorted(docs, key=lambda d: d.created)

    def pending(self, agency_code: str, message_type: str = "edoc") -> list[str]:
        return [d.receiver_doc_id for _, d in self.state.pending(agency_code, message_type)]

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["operation"]
        try:
            operation = Operation(name)
        except ValueError:
            return answer(Result.failure(AxisCode.UNKNOWN_OPERATION, f"không có thao tác {name[:60]!r}"))
        result_type = RESULT_TYPES.get(operation, Result)
        fault = self.faults.take(operation)
        if fault is not None and not fault.after:
            spoiled = await self._spoil(fault, result_type)
            if spoiled is not None:
                return spoiled
        system_id = ""
        try:
            if request.method not in ("GET", "POST"):
                raise ProtocolError(AxisCode.INVALID_REQUEST, f"phương thức {request.method} không được hỗ trợ")
            signed = verify_request(request.raw_headers, self.state.secret_for)
            system_id = signed.system_id
            response = await HANDLERS[operation](self, request, signed, self.state.systems[system_id], fault)
            code = AxisCode.OK
        except ProtocolError as exc:
            if not isinstance(exc, SignatureError):
                log.info("axis-sim %s refused for %s: %s %s", operation, system_id, exc.code, exc.desc)
            response, code = answer(result_type.failure(exc.code, exc.desc)), exc.code
        except Exception:  # a bug here still answers in the shape the SDK reads
            log.exception("axis-sim %s failed for %s", operation, system_id)
            response, code = answer(result_type.failure(AxisCode.INTERNAL, "lỗi hệ thống")), AxisCode.INTERNAL
        self.calls.append((operation.value, system_id, code))
        if fault is not None and fault.after:
            return await self._spoil(fault, result_type) or response
        return response

    async def _spoil(self, fault: Fault, result_type: type[Result]) -> web.StreamResponse | None:
        if fault.kind is FaultKind.HTTP_ERROR:
            return web.Response(status=fault.status, text="Service Unavailable\n")
        if fault.kind is FaultKind.UNPARSABLE:
            return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        if fault.kind is FaultKind.BAD_SIGNATURE:
            return answer(result_type.failure(AxisCode.BAD_SIGNATURE, "chữ ký không hợp lệ"))
        if fault.kind is FaultKind.DELAY:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.seconds)
            if self._stopping.is_set():  # cut short by stop: do nothing more while shutting down
                return web.Response(status=503, text="Service Unavailable\n")
        return None

    # -- operations -------------------------------------------------------------------------

    async def _received_list(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                             fault: Fault | None) -> web.StreamResponse:
        rows = self.state.pending(system.agency_code, _message_type(signed))
        items = tuple(self.state.received_item(doc, d) for doc, d in rows)
        if fault is not None and fault.kind is FaultKind.DUPLICATES:
            items = tuple(item for item in items for _ in range(2))
        return answer(ReceivedListResult(data=items))

    async def _sent_list(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                         fault: Fault | None) -> web.StreamResponse:
        doc = self.state.documents.get(_required(signed, Param.DOC_ID))
        if doc is None or doc.sender_system != system.system_id:
            raise ProtocolError(AxisCode.NOT_FOUND, "không có văn bản đã gửi với docId này")
        return answer(SentListResult(data=tuple(self.state.sent_items(doc))))

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 << 10):
            body += chunk
            if len(body) > limit:
                raise ProtocolError(AxisCode.TOO_LARGE, f"văn bản vượt quá {self.max_document_bytes} byte")
        return bytes(body)

    def _recipients(self, signed: VerifiedRequest, message_type: str, to_codes: Sequence[str],
                    response_for: Sequence[str]) -> list[str]:
        to_param = signed.get(Param.TO)
        if to_param is not None and to_param.strip():
            try:
                codes = parse_to(to_param)
            except ValueError as exc:
                raise ProtocolError(AxisCode.INVALID_REQUEST, f"tham số to không đọc được: {exc}") from None
        else:
            codes = list(to_codes) or (list(response_for) if message_type == "status" else [])
        if not codes:
            raise ProtocolError(AxisCode.UNKNOWN_RECIPIENT, "không xác định được nơi nhận (to hoặc To trong edXML)")
        unknown = [c for c in codes if not self.state.knows_agency(c)]
        if unknown:
            raise ProtocolError(AxisCode.UNKNOWN_RECIPIENT, "nơi nhận không có trên trục: " + ", ".join(unknown[:10]))
        return codes

    async def _send_edoc(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                         fault: Fault | None) -> web.StreamResponse:
        service_type = _required(signed, Param.SERVICE_TYPE)
        message_type = _message_type(signed)
        received_hash = _required(signed, Param.HASH_FILE)
        sender = _required(signed, Param.FROM)
        if sender not in (system.agency_code, system.system_id):
            raise ProtocolError(AxisCode.FORBIDDEN, f"from {sender[:64]!r} không phải đơn vị của hệ thống gửi")
        body = await self._read_body(request, self.max_document_bytes + MULTIPART_SLACK)
        content = await asyncio.to_thread(read_send_body, request.headers.get("Content-Type"), body, received_hash,
                                          max_bytes=self.max_document_bytes)
        try:
            head = await asyncio.to_thread(read_addresses, content)
        except EdxmlAddressError as exc:
            raise ProtocolError(AxisCode.INVALID_REQUEST, f"edXML không đọc được: {exc}") from None
        recipients = self._recipients(signed, message_type, head.to, head.response_for)
        key = (system.system_id, received_hash.strip().lower(), message_type, tuple(recipients))
        doc_id = self.state.recent_send(key)
        if doc_id is None:
            doc = self.state.add_document(
                sender_system=system.system_id, from_code=system.agency_code, service_type=service_type,
                message_type=message_type, hash_file=key[1], content=content, title=head.subject,
                notation=head.notation, recipients=recipients, key=key)
            doc_id = doc.doc_id
            await self._save()
        return answer(SendEdocResult(doc_id=doc_id))

    def _readable(self, signed: VerifiedRequest, system: SimSystem, fault: Fault | None) -> Document:
        doc = self.state.readable(system, _required(signed, Param.DOC_ID))
        if doc is None:
            raise ProtocolError(AxisCode.NOT_FOUND, "không có văn bản với docId này cho hệ thống gọi")
        if fault is not None and fault.kind is FaultKind.FETCH_FAIL:
            raise ProtocolError(fault.code, "không lấy được văn bản")
        return doc

    async def _get_edoc(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                        fault: Fault | None) -> web.StreamResponse:
        doc = self._readable(signed, system, fault)
        data = await asyncio.to_thread(lambda: base64.b64encode(doc.content).decode("ascii"))
        return answer(EdocResult(data=data))

    async def _download_edoc(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                             fault: Fault | None) -> web.StreamResponse:
        doc = self._readable(signed, system, fault)
        return web.Response(body=doc.content, content_type="application/octet-stream")

    async def _count(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                     fault: Fault | None) -> web.StreamResponse:
        kind = "status" if request.match_info["operation"] == Operation.COUNT_RECEIVE_STATUS else "edoc"
        return answer(CountResult(count=len(self.state.pending(system.agency_code, kind))))

    async def _update_status(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                             fault: Fault | None) -> web.StreamResponse:
        doc_id = _required(signed, Param.DOC_ID)
        status = _required(signed, Param.STATUS)
        if not _STATUS_WORD.fullmatch(status):
            raise ProtocolError(AxisCode.INVALID_REQUEST, f"trạng thái {status[:40]!r} không hợp lệ")
        delivery = self.state.delivery(system, doc_id)
        if delivery is None:
            raise ProtocolError(AxisCode.NOT_FOUND, "không có văn bản nhận với docId này cho hệ thống gọi")
        self.state.set_status(delivery, status.lower())
        await self._save()
        return answer(Result())

    async def _agencies(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                        fault: Fault | None) -> web.StreamResponse:
        live = sorted((r for r in self.state.agencies.values() if not r.deleted), key=lambda r: r.code)
        return answer(AgencyListResult(data=tuple(r.agency() for r in live)))

    async def _agencies_qd20(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                             fault: Fault | None) -> web.StreamResponse:
        level = (signed.get(Param.LEVEL) or "").strip()
        live = sorted((r for r in self.state.agencies.values() if not r.deleted and (not level or r.level == level)),
                      key=lambda r: r.code)
        return answer(AgencyQD20ListResult(data=tuple(r.qd20() for r in live)))

    async def _synchronize(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                           fault: Fault | None) -> web.StreamResponse:
        rows = sorted(self.state.agencies.values(), key=lambda r: (r.version, r.code))
        return answer(SyncUnitListResult(data=tuple(r.sync_unit() for r in rows)))

    async def _register_agency(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                               fault: Fault | None) -> web.StreamResponse:
        body = await self._read_body(request, MAX_JSON_BODY_BYTES)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise ProtocolError(AxisCode.INVALID_REQUEST, "thân yêu cầu không phải JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError(AxisCode.INVALID_REQUEST, "thân yêu cầu phải là một đối tượng JSON")
        fields: dict[str, str] = {}
        for key in ("id", "pcode", "code", "name", "mail", "mobile", "fax"):
            value = data.get(key)
            if value is None:
                value = ""
            if not isinstance(value, str) or len(value) > 500:
                raise ProtocolError(AxisCode.INVALID_REQUEST, f"trường {key} phải là chuỗi tối đa 500 ký tự")
            fields[key] = value.strip()
        if not _CODE.fullmatch(fields["code"]) or not fields["name"]:
            raise ProtocolError(AxisCode.INVALID_REQUEST, "cần mã (code) hợp lệ và tên (name) đơn vị")
        try:
            record = self.state.register_agency(**fields)
        except ValueError as exc:
            raise ProtocolError(AxisCode.INVALID_REQUEST, str(exc)) from None
        if record is None:
            raise ProtocolError(AxisCode.NOT_FOUND, f"không có đơn vị với id {fields['id'][:64]!r}")
        await self._save()
        return answer(Result())

    async def _delete_agency(self, request: web.Request, signed: VerifiedRequest, system: SimSystem,
                             fault: Fault | None) -> web.StreamResponse:
        if not self.state.delete_agency(_required(signed, Param.AGENCY_CODE)):
            raise ProtocolError(AxisCode.NOT_FOUND, "không có đơn vị với mã này")
        await self._save()
        return answer(Result())


HANDLERS: Final[dict[Operation, Handler]] = {
    Operation.GET_RECEIVED_EDOC_LIST: AxisSimulator._received_list,
    Operation.GET_SENT_EDOC_LIST: AxisSimulator._sent_list,
    Operation.SEND_EDOC: AxisSimulator._send_edoc,
    Operation.GET_EDOC: AxisSimulator._get_edoc,
    Operation.DOWNLOAD_EDOC: AxisSimulator._download_edoc,
    Operation.COUNT_RECEIVE_EDOC: AxisSimulator._count,
    Operation.COUNT_RECEIVE_STATUS: AxisSimulator._count,
    Operation.UPDATE_STATUS: AxisSimulator._update_status,
    Operation.GET_AGENCIES_LIST: AxisSimulator._agencies,
    Operation.GET_AGENCIES_LIST_QD20: AxisSimulator._agencies_qd20,
    Operation.GET_SYNCHRONIZE_UNIT: AxisSimulator._synchronize,
    Operation.REGISTER_AGENCY: AxisSimulator._register_agency,
    Operation.DELETE_AGENCY: AxisSimulator._delete_agency,
}


async def serve_until_signalled(simulator: AxisSimulator, host: str, port: int,
                                ready: Callable[[str], None]) -> None:
    """Run until SIGINT or SIGTERM (the CLI's foreground mode); ``ready`` gets the URL once bound."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await simulator.start(host, port)
    ready(url)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
