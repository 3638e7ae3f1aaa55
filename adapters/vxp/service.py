"""The national axis protocol (VXP) served by the hub: `/vxp/<operation>` for systems built on the SDK.

A document-management system written against the national axis's Java SDK connects to the
provincial hub by changing only its endpoint, systemId and secret: the systemId is an access key
of one of its unit's applications (an HMAC key), the secret that key's secret. Each operation is
a thin translation to the exchange, as the SOAP adapter's are: sendEdoc submits an edXML packet
(the edxml plugin validates and routes it), the received lists read the unit's inbox, getEdoc and
downloadEdoc fetch, updateStatus acknowledges (`done`) or refuses (`fail`).

The wire rules (signature over the received sign-header bytes, parameters only from signed
members, the not-really-multipart sendEdoc body, the unpadded hash-file, answers always HTTP 200
in the shape the SDK parses) come from `lgsp.adapters.national_axis.protocol` and `.shapes`, the
same definitions the axis client and simulator use. docs/vxp.md describes the served protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from aiohttp import web

from lgsp.adapters.national_axis.protocol import (
    CONTENT_TYPE_JSON,
    POST_ONLY,
    SERVICE_TYPE_EDOC,
    VIETNAM_TZ,
    AxisCode,
    Operation,
    Param,
    ProtocolError,
    RawSendBody,
    SignatureError,
    VerifiedRequest,
    parse_to,
    read_send_body,
    verify_request,
)
from lgsp.adapters.national_axis.shapes import (
    Agency,
    AgencyListResult,
    AgencyQD20,
    AgencyQD20ListResult,
    CountResult,
    EdocResult,
    ReceivedItem,
    ReceivedListResult,
    Result,
    SendEdocResult,
    SentItem,
    SentListResult,
    SyncUnit,
    SyncUnitListResult,
    dump_json,
)
from lgsp.core.api import (
    PENDING_SUBJECT,
    BlobCorrupt,
    ClaimBusy,
    InboxItem,
    InboxPosition,
    NewPacket,
    Principal,
    Problem,
    Readable,
    SealedSpool,
    SubmitClaims,
    Text,
    content_response,
    hub_of,
    i18n,
    identifier_form,
)
from lgsp.core.api import documents as docs
from lgsp.core.api import states as dv

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.vxp")

NAME: Final = "vxp"
DEFAULT_PREFIX: Final = "/vxp"
_PREFIX = re.compile(r"(/[A-Za-z0-9_.\-]+)+")
_STATUS_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")
_CHUNK: Final = 1 << 20
_B64_CHUNK: Final = 3 << 18  # a multiple of 3: each Base64 piece needs no padding
_INBOX_PAGE: Final = 500
MAX_MULTIPART_BYTES: Final = 64 << 20  # a real multipart sendEdoc is read whole; the SDK never sends one

#: adapters.vxp integer settings: name -> (default, description).
SETTINGS: dict[str, tuple[int, str]] = {
    "idempotency_window_seconds": (600, "a sendEdoc repeated (same unit, hash-file, type and to) within this "
                                        "window returns the first DocId instead of a new packet"),
    "max_list_items": (1000, "most items in one received list or count"),
}

#: hub problem code -> ErrorCode (anything else: 400 for a 4xx problem, 500 or 503 for a 5xx one).
PROBLEM_CODES: Final[dict[str, str]] = {
    "not_found": AxisCode.NOT_FOUND,
    "content.gone": AxisCode.NOT_FOUND,
    "edxml.sender_mismatch": AxisCode.FORBIDDEN,
    "auth.not_permitted": AxisCode.FORBIDDEN,  # the communication policy, as REST's 403
    "forbidden": AxisCode.FORBIDDEN,
    "route.unknown_destination": AxisCode.UNKNOWN_RECIPIENT,
    "edxml.destination_mismatch": AxisCode.UNKNOWN_RECIPIENT,
    "content.too_large": AxisCode.TOO_LARGE,
    "edxml.too_large": AxisCode.TOO_LARGE,
    "content.hash_mismatch": AxisCode.HASH_MISMATCH,
    "auth.unknown_key": AxisCode.UNKNOWN_SYSTEM,
    "auth.revoked_key": AxisCode.BAD_SIGNATURE,
    "unavailable": AxisCode.UNAVAILABLE,
}

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


def prefix_of(hub: Hub) -> str:
    raw = (hub.config.adapters.get(NAME) or {}).get("prefix", DEFAULT_PREFIX)
    return str(raw).rstrip("/") or DEFAULT_PREFIX


def setting(hub: Hub, name: str) -> int:
    return int((hub.config.adapters.get(NAME) or {}).get(name, SETTINGS[name][0]))


def check_prefix(value: Any) -> str | None:
    """Why `prefix` is not a usable URL prefix, or None."""
    if not isinstance(value, str) or not _PREFIX.fullmatch(value.rstrip("/") or "-"):
        return Text("must be a path such as /vxp (letters, digits, '.', '_', '-' between slashes)")
    if value.rstrip("/") in ("/v1", "/soap") or value.startswith(("/v1/", "/soap/")):
        return Text("must not overlap the hub's own /v1 and /soap routes")
    return None


def answer(result: Result) -> web.Response:
    """Every answer, refusals included, is HTTP 200 with the JSON the SDK parses (compact ASCII)."""
    return web.Response(body=dump_json(result.to_json()), content_type=CONTENT_TYPE_JSON)


def describe(problem: Problem) -> str:
    """ErrorDesc of a hub refusal: its stable code first (a system can act on it as over REST), then the
    Vietnamese title and the detail."""
    detail = i18n.render(problem.detail, "vi")
    return f"{problem.code}: {problem.title('vi')}" + (f" — {detail}" if detail else "")


def axis_code(problem: Problem) -> str:
    if problem.code in PROBLEM_CODES:
        return PROBLEM_CODES[problem.code]
    if problem.status >= 500:
        return AxisCode.UNAVAILABLE if problem.status == 503 else AxisCode.INTERNAL
    return AxisCode.INVALID_REQUEST


def _required(signed: VerifiedRequest, name: str) -> str:
    value = (signed.get(name) or "").strip()
    if not value:
        raise ProtocolError(AxisCode.INVALID_REQUEST, f"thiếu tham số {name}")
    return value


def _message_type(signed: VerifiedRequest) -> str:
    value = _required(signed, Param.MESSAGE_TYPE).lower()
    if value not in ("edoc", "status"):
        raise ProtocolError(AxisCode.INVALID_REQUEST,
                            f"messagetype phải là edoc hoặc status, không phải {value[:40]!r}")
    return value


def vn_time(moment: datetime | str | None) -> str:
    """`yyyy-MM-dd HH:mm:ss` in Vietnam time, as the simulator writes item times ("" when unknown)."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM_TZ).strftime("%Y-%m-%d %H:%M:%S")


# -- authentication ---------------------------------------------------------------------------------

async def verify(request: web.Request, hub: Hub) -> tuple[VerifiedRequest, Principal]:
    """The SDK's signature, checked with the HMAC secret of the access key named by `systemid`.

    The key is read fresh from the store (revocation and suspension hold at once). Timestamps are
    neither checked nor remembered: the SDK keeps one for the life of its service object.
    """
    system_id = request.headers.get("XroadVnpt-systemid", "").strip()
    if not system_id or len(system_id) > 64 or not system_id.isascii():
        raise SignatureError(AxisCode.BAD_SIGNATURE, "thiếu hoặc sai header XroadVnpt-systemid")
    try:
        key = await hub.auth.usable_key(system_id)
    except Problem as problem:
        raise SignatureError(axis_code(problem), describe(problem)) from None
    alg = hub.algorithms.get(key.algorithm)
    if alg is None or not getattr(alg, "shared_secret", False):
        raise SignatureError(AxisCode.BAD_SIGNATURE,
                             f"khóa {system_id} dùng {key.algorithm}: giao thức VXP cần một khóa HMAC")
    secret = key.verification_key
    signed = verify_request(request.raw_headers, lambda sid: secret if sid == key.access_key else None)
    # Seen, so its sources are not told it is offline; the SDK's timestamp says nothing of its clock.
    hub.presence.request_seen(key.unit_id, datetime.now(UTC))
    return signed, Principal(key.unit_id, key.application_id, key.access_key, key.algorithm)


# -- operations -------------------------------------------------------------------------------------

@dataclass
class Call:
    request: web.Request
    hub: Hub
    signed: VerifiedRequest
    principal: Principal

    @property
    def unit(self) -> str:
        return self.principal.unit_id


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_SEND_LOCKS = KeyedLocks()


async def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await asyncio.to_thread(path.unlink)


async def _receive_body(call: Call, received_hash: str, limit: int) -> tuple[SealedSpool, int, str]:
    """Stream sendEdoc's body to a temporary file (sealed: content is encrypted at rest), bound to
    hash-file; (spool, size, sha256 hex)."""
    request = call.request
    tmp = call.hub.content.scratch_dir / f"vxp-{os.urandom(8).hex()}.part"
    content_type = request.headers.get("Content-Type", "")
    try:
        if content_type.lower().lstrip().startswith("multipart/"):
            # A real multipart body (the SDK announces one but never sends it): read whole, bounded.
            body = bytearray()
            async for chunk in request.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > min(limit, MAX_MULTIPART_BYTES) + (64 << 10):
                    raise ProtocolError(AxisCode.TOO_LARGE, f"văn bản vượt quá {limit} byte")
            data = await asyncio.to_thread(read_send_body, content_type, bytes(body), received_hash, max_bytes=limit)
            whole = await asyncio.to_thread(SealedSpool, tmp)

            def seal() -> None:
                whole.write(data)
                whole.close()

            await asyncio.to_thread(seal)
            return whole, len(data), await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        reader = RawSendBody(limit)
        sha = hashlib.sha256()
        written = 0
        fh = await asyncio.to_thread(SealedSpool, tmp)
        try:
            def write(data: bytes) -> None:
                nonlocal written
                sha.update(data)
                fh.write(data)
                written += len(data)

            def feed(chunk: bytes) -> None:
                write(reader.feed(chunk))

            async for chunk in request.content.iter_chunked(_CHUNK):
                await asyncio.to_thread(feed, chunk)  # hashing and disk writes off the event loop
            await asyncio.to_thread(lambda: write(reader.finish(received_hash)))
        finally:
            await asyncio.to_thread(fh.close)
        return fh, written, sha.hexdigest()
    except BaseException:
        await _discard(tmp)
        raise


async def _chunks_of(spool: SealedSpool) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(spool.open)
    try:
        while block := await asyncio.to_thread(fh.read, _CHUNK):
            yield block
    finally:
        await asyncio.to_thread(fh.close)


async def send_edoc(call: Call) -> web.StreamResponse:
    hub = call.hub
    _required(call.signed, Param.SERVICE_TYPE)
    message_type = _message_type(call.signed)
    received_hash = _required(call.signed, Param.HASH_FILE).lower()
    sender = _required(call.signed, Param.FROM)
    if sender not in (call.unit, call.principal.access_key):
        raise ProtocolError(AxisCode.FORBIDDEN, f"from {sender[:64]!r} không phải đơn vị của hệ thống gửi")
    to: tuple[str, ...] = ()
    to_param = call.signed.get(Param.TO)
    if to_param and to_param.strip():
        try:
            to = tuple(parse_to(to_param))
        except ValueError as exc:
            raise ProtocolError(AxisCode.INVALID_REQUEST, f"tham số to không đọc được: {exc}") from None
    # Idempotent per (unit, hash-file, type, to) within the window: the SDK re-sends identical signed
    # headers, so a replayed or retried upload must not create a second packet.
    idem = "|".join((received_hash, message_type, ",".join(to)))
    window = timedelta(seconds=setting(hub, "idempotency_window_seconds"))
    spool, size, sha256 = await _receive_body(call, received_hash, int(hub.config.limits.max_packet_size))
    try:
        if size == 0:
            raise ProtocolError(AxisCode.INVALID_REQUEST, "văn bản rỗng")
        # One at a time per key in this process, so two copies racing in (a client retrying on a
        # second connection) find each other's packet without polling the store; the claim row
        # (core/claims.py) does the same across nodes.
        async with _SEND_LOCKS.hold(f"{hub.node}|{call.unit}|{idem}"):  # per node, as in production
            implicit = ["subject", "priority"] + ([] if to else ["to"])
            new = NewPacket(to=to, subject=PENDING_SUBJECT, priority=0, data_type="edxml", protocol="vxp",
                            size=size, sha256=sha256, deadline=None, policy=None,
                            meta={"implicit": implicit, "via": "vxp", "vxp_send": idem,
                                  "vxp_message_type": message_type})
            try:
                doc_id, _ = await SubmitClaims(hub.db, hub.clock).once(
                    f"vxp:{call.unit}", f"{sha256}|{idem}", window,
                    lambda: hub.exchange.submit(call.unit, new, _chunks_of(spool),
                                                application=call.principal.application_id or None))
            except ClaimBusy:
                raise ProtocolError(AxisCode.UNAVAILABLE, "bản sao khác của văn bản này đang được nhận") from None
    finally:
        await _discard(spool.path)
    return answer(SendEdocResult(doc_id=doc_id))


async def _received(call: Call, kind: str, limit: int) -> list[InboxItem]:
    """The caller's pending edXML deliveries of this kind (edoc or status), oldest first."""
    out: list[InboxItem] = []
    after: InboxPosition | None = None
    while len(out) < limit:
        page = await call.hub.exchange.inbox_page(call.principal, limit=_INBOX_PAGE, after=after)
        after = page.next
        async with call.hub.db.read() as conn:
            rows = await docs.get_many(conn, [i.id for i in page.items])
        for item in page.items:
            row = rows.get(item.id)
            # Only edXML the caller receives as edXML (a unit set to json fetches over REST).
            if row is not None and item.data_type == "edxml" and row.kind == kind:
                out.append(item)
                if len(out) >= limit:
                    break
        if after is None:
            break
    return out


_STATE_WORDS: Final[dict[str, tuple[str, str]]] = {
    dv.WAITING: ("initial", "Chờ gửi"),
    dv.QUEUED: ("initial", "Chờ nhận"),
    dv.NOTIFIED: ("initial", "Chờ nhận"),
    dv.FETCHED: ("processing", "Đã lấy về, chờ xác nhận"),
    dv.SENDING: ("initial", "Đang gửi"),
    dv.RETRYING: ("initial", "Đang gửi lại"),
    dv.DELIVERED: ("done", "Đã nhận"),
    dv.FAILED: ("fail", "Nơi nhận từ chối hoặc gửi thất bại"),
    dv.EXPIRED: ("fail", "Quá hạn"),
    dv.CANCELLED: ("fail", "Đã hủy"),
}


async def received_list(call: Call) -> web.StreamResponse:
    kind = _message_type(call.signed)
    items = await _received(call, kind, setting(call.hub, "max_list_items"))
    data = []
    for item in items:
        created = vn_time(item.created_at)
        data.append(ReceivedItem(doc_id=item.id, service_type=SERVICE_TYPE_EDOC, message_type=kind,
                                 created_time=created, updated_time=created, from_=item.source, to=call.unit,
                                 status="initial", status_desc="Chờ nhận"))
    return answer(ReceivedListResult(data=tuple(data)))


async def count(call: Call) -> web.StreamResponse:
    kind = "status" if call.request.match_info["operation"] == Operation.COUNT_RECEIVE_STATUS else "edoc"
    return answer(CountResult(count=len(await _received(call, kind, setting(call.hub, "max_list_items")))))


async def _open(call: Call) -> tuple[str, Readable]:
    """The caller's edXML variant of `docId` (the delivery moves to fetched, but not for a HEAD, which
    only asks what the GET would answer): (packet id, its file, size and data key)."""
    packet_id = _required(call.signed, Param.DOC_ID)
    exchange = call.hub.exchange
    transfer = await exchange.ready(call.principal, packet_id)  # visibility and a pending delivery
    info = await exchange.packet(packet_id)
    assert info is not None
    async with call.hub.db.read() as conn:
        ref = await call.hub.content.ref_for(conn, info, call.unit)
    if ref.data_type != "edxml":
        raise ProtocolError(AxisCode.INVALID_REQUEST,
                            f"đơn vị này nhận gói tin dạng {ref.data_type}, không phải edXML; hãy lấy qua REST")
    query = parse_qs(transfer.path.partition("?")[2])
    found = await exchange.open_content(call.principal, packet_id, expires=query.get("expires", [""])[0],
                                        token=query.get("token", [""])[0], peek=call.request.method == "HEAD")
    if not await call.hub.content.holds(found.path):
        raise Problem("content.gone", Text("the content of this packet is no longer held by the hub"))
    return packet_id, found


async def get_edoc(call: Call) -> web.StreamResponse:
    """`data` is the Base64 of the edXML, streamed: the JSON is written around the file's chunks."""
    _, found = await _open(call)
    path, size = found.path, found.info.size
    head = dump_json(EdocResult(data="").to_json())
    marker = b'"data":""'
    cut = head.index(marker) + len(marker) - 1
    before, after = head[:cut], head[cut:]
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_JSON})
    resp.content_length = len(before) + 4 * ((size + 2) // 3) + len(after)
    # Decrypted as it is read (encrypted at rest), with the data key loaded with the packet.
    fh = await call.hub.content.open_stored(path, size=size, data_key=found.data_key)
    try:
        await resp.prepare(call.request)
        if call.request.method == "HEAD":  # the headers only: aiohttp would send what is written
            return resp
        await resp.write(before)
        while block := await asyncio.to_thread(fh.read, _B64_CHUNK):
            await resp.write(await asyncio.to_thread(base64.b64encode, block))
        await resp.write(after)
        await resp.write_eof()
    except (OSError, BlobCorrupt) as exc:  # the answer has begun: it cannot become a FAIL any more, cut it
        log.warning("vxp getEdoc of %s cut short: %s", path.name, exc)
        raise ConnectionResetError(str(exc)) from exc
    finally:
        await asyncio.to_thread(fh.close)
    return resp


async def download_edoc(call: Call) -> web.StreamResponse:
    packet_id, found = await _open(call)
    return await content_response(call.request, found.path, found.info.size, {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{packet_id}.edxml"'}, data_key=found.data_key)


async def update_status(call: Call) -> web.StreamResponse:
    """`done` acknowledges the fetched edXML, `fail` refuses the delivery; other words (processing,
    inbox, ...) are accepted and change nothing. Repeating an update is harmless."""
    packet_id = _required(call.signed, Param.DOC_ID)
    status = _required(call.signed, Param.STATUS)
    if not _STATUS_WORD.fullmatch(status):
        raise ProtocolError(AxisCode.INVALID_REQUEST, f"trạng thái {status[:40]!r} không hợp lệ")
    exchange = call.hub.exchange
    view = await exchange.view(call.principal, packet_id)
    own = view.delivery_to(call.unit)
    if own is None:
        raise ProtocolError(AxisCode.NOT_FOUND, "không có văn bản nhận với docId này cho hệ thống gọi")
    state = own.state
    word = status.lower()
    if word == "done":
        if state == dv.DELIVERED:
            return answer(Result())
        if state != dv.FETCHED:
            raise ProtocolError(AxisCode.INVALID_REQUEST, "hãy lấy văn bản (getEdoc) trước khi báo done")
        async with call.hub.db.read() as conn:
            info = await exchange.packet(packet_id)
            assert info is not None
            ref = await call.hub.content.ref_for(conn, info, call.unit)
        await exchange.ack(call.principal, packet_id, ref.sha256)  # the variant this unit received
    elif word == "fail":
        if state in dv.TERMINAL:
            return answer(Result())
        await exchange.fail(call.principal, packet_id, "hệ thống VXP báo fail (updateStatus)")
    return answer(Result())


async def sent_list(call: Call) -> web.StreamResponse:
    packet_id = _required(call.signed, Param.DOC_ID)
    view = await call.hub.exchange.view(call.principal, packet_id)
    edxml_meta = (view.metadata or {}).get("edxml")
    if view.to is None or edxml_meta is None:  # not the caller's own edXML packet
        raise ProtocolError(AxisCode.NOT_FOUND, "không có văn bản đã gửi với docId này")
    statuses = {s["unit"]: s for s in view.described.get("business_status", [])}
    rows = []
    for d in view.deliveries:
        word, desc = _STATE_WORDS.get(d.state, ("initial", d.state))
        st = statuses.get(d.unit)
        if st:  # the latest business status the recipient reported (03 tiếp nhận, ...)
            desc = f"{desc}; trạng thái nghiệp vụ {st['status_code']}: {st.get('description') or ''}".rstrip(": ")
        rows.append(SentItem(
            service_type=SERVICE_TYPE_EDOC, message_type=str(edxml_meta.get("kind", "edoc")),
            sender_doc_id=packet_id, receiver_doc_id=packet_id, from_code=view.source, to_code=d.unit,
            title=str(edxml_meta.get("subject") or view.subject or ""),
            notation=str(edxml_meta.get("code") or ""), sent_time=vn_time(view.created_at),
            received_time=vn_time(d.updated_at) if d.state == dv.DELIVERED else "",
            send_status="sent", send_status_desc="Đã gửi", receive_status=word, receive_status_desc=desc))
    return answer(SentListResult(data=tuple(rows)))


async def _units(call: Call) -> list[Any]:
    return await call.hub.directory.search_units("", limit=setting(call.hub, "max_list_items") * 5)


async def agencies(call: Call) -> web.StreamResponse:
    units = [u for u in await _units(call) if u.status == "active"]
    return answer(AgencyListResult(data=tuple(
        Agency(id=u.id, pid=u.parent_id or "", code=u.id, name=u.name) for u in units)))


async def agencies_qd20(call: Call) -> web.StreamResponse:
    units = [u for u in await _units(call) if u.status == "active"]
    return answer(AgencyQD20ListResult(data=tuple(
        AgencyQD20(id=u.id, code=u.id, name=u.name, code102=u.id if identifier_form(u.id) == "qcvn102" else "")
        for u in units)))


async def synchronize(call: Call) -> web.StreamResponse:
    return answer(SyncUnitListResult(data=tuple(
        SyncUnit(id=u.id, pid=u.parent_id or "", code=u.id, name=u.name, version=1, deleted=u.status != "active",
                 modify_date=vn_time(getattr(u, "created_at", None)), is_agency=True)
        for u in await _units(call))))


async def not_offered(call: Call) -> web.StreamResponse:
    raise ProtocolError(AxisCode.FORBIDDEN, "trục tỉnh không nhận đăng ký hay xóa đơn vị qua giao thức VXP; "
                                            "danh bạ do quản trị viên quản lý (lgsp unit add)")


HANDLERS: Final[dict[Operation, Callable[[Call], Awaitable[web.StreamResponse]]]] = {
    Operation.SEND_EDOC: send_edoc,
    Operation.GET_RECEIVED_EDOC_LIST: received_list,
    Operation.COUNT_RECEIVE_EDOC: count,
    Operation.COUNT_RECEIVE_STATUS: count,
    Operation.GET_EDOC: get_edoc,
    Operation.DOWNLOAD_EDOC: download_edoc,
    Operation.UPDATE_STATUS: update_status,
    Operation.GET_SENT_EDOC_LIST: sent_list,
    Operation.GET_AGENCIES_LIST: agencies,
    Operation.GET_AGENCIES_LIST_QD20: agencies_qd20,
    Operation.GET_SYNCHRONIZE_UNIT: synchronize,
    Operation.REGISTER_AGENCY: not_offered,
    Operation.DELETE_AGENCY: not_offered,
}


async def handle(request: web.Request) -> web.StreamResponse:
    """Every operation: verify, dispatch; every refusal is HTTP 200 with status FAIL and an ErrorCode."""
    name = request.match_info["operation"]
    try:
        operation = Operation(name)
    except ValueError:
        return answer(Result.failure(AxisCode.UNKNOWN_OPERATION, f"không có thao tác {name[:60]!r}"))
    result_type = RESULT_TYPES.get(operation, Result)
    if operation in POST_ONLY and request.method != "POST":
        return answer(result_type.failure(AxisCode.INVALID_REQUEST,
                                          f"thao tác {operation.value} chỉ nhận phương thức POST"))
    hub = hub_of(request)
    system_id = ""
    try:
        signed, principal = await verify(request, hub)
        system_id = signed.system_id
        return await HANDLERS[operation](Call(request, hub, signed, principal))
    except ProtocolError as exc:
        if not isinstance(exc, SignatureError):
            log.info("vxp %s refused for %s: %s %s", operation, system_id, exc.code, exc.desc)
        return answer(result_type.failure(exc.code, exc.desc))
    except Problem as problem:
        return answer(result_type.failure(axis_code(problem), describe(problem)))
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # a bug still answers in the shape the SDK reads, never a bare 500
        log.exception("vxp %s failed for %s", operation, system_id)
        return answer(result_type.failure(AxisCode.INTERNAL, "lỗi hệ thống; đã ghi nhật ký"))


def routes(hub: Hub) -> list[web.AbstractRouteDef]:
    prefix = prefix_of(hub)
    return [web.post(prefix + "/{operation}", handle), web.get(prefix + "/{operation}", handle)]
