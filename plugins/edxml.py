"""The edXML plugin: the hub reads edXML packets, routes them by their header and converts them.

Enabled by name (`plugins.enabled: [rest, edxml]`; the SOAP adapter needs it). It provides:

* the content inspector of data types `edxml` (the packet itself) and `edxml+json` (the JSON
  form, bare or as a ZIP bundle with the attachment files), hook `lgsp_content_inspectors`;
* the edXML library's converters (edXML ⇄ JSON form), hook `lgsp_packet_converters`;
* `GET /v1/packets/{id}/attachments/{n}`: the decoded attachments of a packet delivered as JSON;
* its settings under `adapters.edxml` (limits for untrusted packets), hook `lgsp_check_config`.

What the inspector does with an upload (docs/edxml.md, "In the hub"): parse and validate it in a
worker thread with memory flat; check `From/OrganId` is the sending unit; take the destinations
from `To` (edoc) or `ResponseFor/OrganId` (status) and check they agree with the request's `to`;
write the variant with the hub's TraceHeader; write the JSON form (and the decoded attachments)
only when a destination takes JSON; index the document, record business statuses and link
revocations, updates and replacements to the original packet on acceptance.
"""

from __future__ import annotations

import asyncio
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.api import (
    H_CONTENT,
    ContentService,
    Database,
    Event,
    Inspection,
    InspectionJob,
    Problem,
    Text,
    Variant,
    authenticate,
    check_range,
    content_response,
    hub_of,
    i18n,
    identifier_form,
    positive_int_settings,
    record,
)
from lgsp.core.api import documents as docs
from lgsp.core.api import events as ev
from lgsp.core.api.edxml import (
    AttachmentMeta,
    EdxmlError,
    EdxmlInvalid,
    EdxmlJsonConverter,
    JsonEdxmlConverter,
    NotAnEdoc,
    Packet,
    ParseLimits,
    append_trace_header,
    build_packet,
    format_timestamp,
    load_json,
    parse_packet,
)
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.api import Hub, PacketInfo

NAME = "edxml"
FAMILY = "edxml"
DATA_TYPES = frozenset({"edxml", "edxml+json"})
#: Data type and media type of each delivery format of the family.
FORMAT_TYPES = {"edxml": ("edxml", "application/xml"), "json": ("edxml+json", "application/json")}
#: Name of the JSON form inside a ZIP bundle of data type edxml+json.
BUNDLE_JSON = "edxml.json"
#: The library refuses to append a TraceHeader to a status packet with this rule.
_MH = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"

#: adapters.edxml settings: name -> (default, description). All positive integers.
SETTINGS: dict[str, tuple[int, str]] = {
    "max_attachment_bytes": (1 << 30, "largest decoded attachment"),
    "max_attachments": (1000, "most attachments in one packet"),
    "max_metadata_bytes": (4 << 20, "largest packet part other than attachment payloads (kept in memory)"),
    "max_elements": (20_000, "most XML elements kept in memory"),
    "max_depth": (32, "deepest element nesting"),
    "max_attributes": (32, "most attributes on one element"),
    "max_attribute_length": (8_192, "longest attribute value (characters)"),
    "max_text_length": (1 << 20, "longest text of one element outside attachment payloads (characters)"),
    "max_namespaces_per_element": (16, "most namespace declarations on one element"),
    "max_namespaces": (1_000, "most namespace declarations in one packet"),
}


def settings(hub: Hub) -> dict[str, int]:
    raw = hub.config.adapters.get(NAME) or {}
    return {k: raw.get(k, default) for k, (default, _) in SETTINGS.items()}


def parse_limits(hub: Hub) -> ParseLimits:
    """The library's limits from `adapters.edxml` (every setting is a ParseLimits field of that name)."""
    return ParseLimits(max_packet_bytes=int(hub.config.limits.max_packet_size), **settings(hub))


def problem_of(exc: EdxmlError) -> Problem:
    """The library's error as the hub's problem: same code; the detail names the element path and rule
    in the reader's language and quotes the library's own (English) words, also given alone as `reason`
    so a client can show them without the lead-in (docs/i18n.md)."""
    extra: dict[str, str] = {"reason": exc.detail}
    if exc.path:
        extra["path"] = exc.path
    if exc.rule:
        extra["rule"] = exc.rule
    if exc.path and exc.rule:
        detail = Text("the edXML check refused {path} (rule {rule}); its words: {reason}",
                      path=exc.path, rule=exc.rule, reason=exc.detail)
    elif exc.path:
        detail = Text("the edXML check refused {path}; its words: {reason}", path=exc.path, reason=exc.detail)
    elif exc.rule:
        detail = Text("the edXML check refused the packet (rule {rule}); its words: {reason}",
                      rule=exc.rule, reason=exc.detail)
    else:
        detail = Text("the edXML check refused the packet; its words: {reason}", reason=exc.detail)
    return Problem(exc.code, detail, **extra)


# -- the inspector ---------------------------------------------------------------------------------

@dataclass
class _Route:
    destinations: tuple[str, ...]
    original: docs.Original | None = None
    links: dict[str, str] | None = None  # document id -> original packet (revocation/update/replacement)
    added: tuple[str, ...] = ()  # original recipients a revocation/update/replacement's To left out


class _AttachmentWriter:
    """A decoded attachment, stored through the job's writer (so it is discarded with the job on
    failure): its `close()` returns the URL path the JSON form records as `ref`."""

    def __init__(self, job: InspectionJob, meta: AttachmentMeta) -> None:
        self.number = meta.index + 1
        self.blob = job.writer(f"att-{self.number}")
        self.meta = meta
        self.ref = f"/v1/packets/{job.packet.id}/attachments/{self.number}"

    def write(self, data: bytes) -> int:
        return self.blob.write(data)

    def close(self) -> str:
        self.blob.close()
        return self.ref


class _BlobAttachmentStore:
    """The library's AttachmentStore backed by the hub's blobs (attachments of a JSON variant)."""

    def __init__(self, job: InspectionJob) -> None:
        self.job = job
        self.writers: list[_AttachmentWriter] = []

    def writer(self, meta: AttachmentMeta) -> _AttachmentWriter:
        w = _AttachmentWriter(self.job, meta)
        self.writers.append(w)
        return w

    def reader(self, entry: Mapping[str, Any]) -> BinaryIO:  # pragma: no cover - only edxml -> json here
        raise EdxmlInvalid("attachments are not read back from the hub's store", rule="hub")

    def variants(self) -> list[Variant]:
        return [Variant(f"att-{w.number}", None, w.blob.key, w.blob.size, w.blob.sha256, w.meta.content_type[:128],
                        None,
                        {"content_id": w.meta.content_id, "name": w.meta.name,
                         **({"description": w.meta.description} if w.meta.description is not None else {})})
                for w in self.writers if w.blob.done]


class EdxmlInspector:
    """Reads edXML (and its JSON form) on upload; see the module docstring."""

    data_types = DATA_TYPES
    family = FAMILY
    default_format = "edxml"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def content(self) -> ContentService:
        return self.hub.content

    def formats(self) -> frozenset[str]:
        return frozenset({"edxml"} | {dst for (src, dst) in self.content.converters if src == "edxml"})

    # -- inspect ----------------------------------------------------------------------------------
    async def inspect(self, job: InspectionJob) -> Inspection:
        info = job.packet
        limits = parse_limits(self.hub)
        reader = self._from_edxml if info.data_type == "edxml" else self._from_json
        started = time.perf_counter()
        try:
            packet, edxml_variant = await asyncio.to_thread(reader, job, limits)
        finally:
            self.hub.metrics.edxml_validation.observe(time.perf_counter() - started)
        self._check_header(packet, info)
        route = await self._route(job, packet)
        formats = await job.formats_of(FAMILY, route.destinations, self.default_format)
        variants = [edxml_variant]
        for fmt in sorted(set(formats.values()) - {"edxml"}):
            converter = self.content.converters.get(("edxml", fmt))
            if converter is not None:
                variants += await asyncio.to_thread(self._convert, job, converter, fmt, edxml_variant)
        meta = {"edxml": self._meta(packet, route)}
        return Inspection(destinations=route.destinations, variants=variants, formats=formats,
                          default_format=self.default_format, subject=self._subject(packet),
                          priority=None if packet.priority is None else max(0, min(3, packet.priority)),
                          meta=meta, on_accept=self._on_accept(packet, route))

    def _from_edxml(self, job: InspectionJob, limits: ParseLimits) -> tuple[Packet, Variant]:
        """Validate the upload; for an edoc write it again with the hub's TraceHeader (one pass)."""
        info = job.packet
        writer = job.writer("edxml")
        try:
            with job.open() as src:
                packet = append_trace_header(src, writer, organ_id=self.hub.config.hub.identifier, limits=limits)
        except NotAnEdoc:
            writer.abort()
            try:  # a status packet: delivered as uploaded
                with job.open() as src:
                    packet = parse_packet(src, limits=limits)
            except EdxmlError as exc2:
                raise problem_of(exc2) from None
            return packet, Variant("edxml", "edxml", job.upload_key, info.size, info.sha256, "application/xml",
                                   "edxml")
        except EdxmlError as exc:  # the job discards its writers when the inspection fails
            raise problem_of(exc) from None
        writer.close()
        return packet, Variant("edxml", "edxml", writer.key, writer.size, writer.sha256, "application/xml", "edxml")

    def _from_json(self, job: InspectionJob, limits: ParseLimits) -> tuple[Packet, Variant]:
        """Build the edXML from the JSON form (bare, or a ZIP bundle with the attachment files)."""
        with job.open() as fh:
            head = fh.read(4)
        bundle: zipfile.ZipFile | None = None
        zip_source: BinaryIO | None = None
        try:
            if head.startswith(b"PK\x03\x04"):
                try:
                    zip_source = job.open()
                    bundle = zipfile.ZipFile(zip_source)
                    member = bundle.open(BUNDLE_JSON)
                except KeyError:
                    raise Problem("edxml.invalid", Text("the ZIP bundle has no {BUNDLE_JSON}",
                                                        BUNDLE_JSON=BUNDLE_JSON), path=BUNDLE_JSON,
                                  rule="edxml+json bundle") from None
                except zipfile.BadZipFile as exc:
                    raise Problem("edxml.malformed", Text("not a readable ZIP file: {exc}", exc=exc)) from None
                with member:
                    document = load_json(member, limits)
            else:
                with job.open() as fh:
                    document = load_json(fh, limits)
            if isinstance(document, dict) and document.get("kind") == "edoc":
                _add_hub_trace(document, self.hub.config.hub.identifier)
            writer = job.writer("edxml")  # discarded by the job if anything below fails
            packet = build_packet(document, writer, attachments=_bundle_opener(bundle), limits=limits)
            writer.close()
        except EdxmlError as exc:
            raise problem_of(exc) from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged member, found while reading it
            raise Problem("edxml.malformed", Text("the ZIP bundle is damaged: {exc}", exc=exc), rule="ZIP") from None
        finally:
            if bundle is not None:
                bundle.close()
            if zip_source is not None:
                zip_source.close()
        return packet, Variant("edxml", "edxml", writer.key, writer.size, writer.sha256, "application/xml", "edxml")

    def _convert(self, job: InspectionJob, converter: Any, fmt: str, source: Variant) -> list[Variant]:
        """The variant in format `fmt` from the edXML variant (attachments decoded into blobs)."""
        store = _BlobAttachmentStore(job)
        writer = job.writer(fmt)
        data_type, media_type = FORMAT_TYPES.get(fmt, (f"edxml+{fmt}", "application/octet-stream"))
        try:  # the job discards its writers when the inspection fails
            with job.open(source.blob_key) as src:
                converter.convert(src, writer, store=store)
        except EdxmlError as exc:  # pragma: no cover - the edXML variant was just validated
            raise problem_of(exc) from None
        writer.close()
        return [Variant(fmt, fmt, writer.key, writer.size, writer.sha256, media_type, data_type), *store.variants()]

    # -- header rules -----------------------------------------------------------------------------
    @staticmethod
    def _check_header(packet: Packet, info: PacketInfo) -> None:
        sender = packet.from_organ_id.strip()
        if sender != info.source:
            raise Problem("edxml.sender_mismatch",
                          Text("{MH}/From/OrganId is {sender!r} but the packet is sent by unit {source}", MH=_MH,
                               sender=sender, source=info.source),
                          path=f"{_MH}/From/OrganId", rule="From/OrganId is the sending unit")
        where = f"{_MH}/ResponseFor/DocumentId" if packet.kind == "status" else f"{_MH}/DocumentId"
        if len(packet.document_id) > docs.MAX_DOCUMENT_ID:
            raise Problem("edxml.invalid", Text("{where}: longer than {MAX_DOCUMENT_ID} characters", where=where,
                                                MAX_DOCUMENT_ID=docs.MAX_DOCUMENT_ID),
                          path=where, rule=f"hub limit: DocumentId at most {docs.MAX_DOCUMENT_ID} characters")

    async def _route(self, job: InspectionJob, packet: Packet) -> _Route:
        info = job.packet
        exchange = self.hub.exchange
        db: Database = self.hub.db
        if packet.kind == "edoc":
            destinations = tuple(dict.fromkeys(t.strip() for t in packet.to_organ_ids))
            where = f"{_MH}/To"
        elif not packet.to_organ_ids:
            # A status without ResponseFor (some vendors send them) names nobody: the request does.
            if "to" in job.implicit:
                raise Problem("edxml.invalid",
                              Text("{MH}: a status packet without ResponseFor names no recipient; give the "
                                   "recipients in the request's to", MH=_MH), path=_MH,
                              rule="status without ResponseFor: routed by the request's to")
            destinations = tuple(info.to)
            where = "to"
        else:
            # Always resolved, so an explicit `to` is compared with where the status really goes
            # (a legacy ResponseFor/OrganId is routed by DocumentId).
            destinations = await self._status_destination(packet, info.source, packet.to_organ_ids[0].strip())
            where = f"{_MH}/ResponseFor/OrganId"
        if isinstance(info.meta, dict) and info.meta.get("arrived_from_zone"):
            destinations = await self._local_only(destinations, where)
        if "to" not in job.implicit and set(info.to) != set(destinations):
            raise Problem("edxml.destination_mismatch",
                          Text("{where} names {destinations} but the request's to is {to}", where=where,
                               destinations=', '.join(destinations), to=', '.join(info.to)),
                          path=where, in_packet=list(destinations), in_request=list(info.to))
        route = _Route(destinations)
        async with db.read() as conn:
            if packet.kind == "status" and packet.document_id:
                route.original = await docs.find_for_status(conn, packet.document_id, info.source, destinations[0],
                                                            packet.status_code or "")
            elif packet.bussiness_doc_type in (1, 2, 3):
                route.links = await docs.find_sent(conn, _referenced_documents(packet), info.source, info.id)
                # A revocation, update or replacement reaches every recipient of the original, also
                # those its To leaves out; the packet's metadata names the ones the hub added.
                original = await docs.recipients_of(conn, route.links.values())
                route.added = tuple(u for u in original if u not in destinations and u != info.source)
                route.destinations = destinations = destinations + route.added
        if len(destinations) > exchange.max_recipients:
            raise Problem("request.invalid", Text("{where}: at most {max_recipients} destinations", where=where,
                                                  max_recipients=exchange.max_recipients), path=where)
        named = tuple(d for d in destinations if d not in route.added)
        await exchange.check_destinations(named, where=where)
        if route.added:  # an original recipient suspended since is skipped, not an error of the sender
            found = await exchange.directory.existing_units(list(route.added))
            route.added = tuple(u for u in route.added if found.get(u) == "active")
            route.destinations = named + route.added
        return route

    async def _local_only(self, destinations: tuple[str, ...], where: str) -> tuple[str, ...]:
        """A packet that came in from another exchange (the national axis, a peer hub) goes to this
        hub's local units only: the others it names are that exchange's business, never sent back."""
        zones = await self.hub.directory.zones_of(list(destinations))
        local = tuple(d for d in destinations if zones.get(d) == "local")
        if not local:
            raise Problem("route.unknown_destination",
                          Text("{where}: names no active unit of this hub ({destinations})", where=where,
                               destinations=', '.join(destinations)), unknown=list(destinations), path=where)
        return local

    async def _status_destination(self, packet: Packet, reporter: str, other: str) -> tuple[str]:
        """ResponseFor/OrganId when it is a unit of this hub; else, for a recipient's reply, the sender
        of the document named by ResponseFor/DocumentId (legacy units write other codes for it)."""
        if (await self.hub.directory.existing_units([other])).get(other) == "active":
            return (other,)
        if packet.status_code not in docs.SENDER_CODES:
            async with self.hub.db.read() as conn:
                sender = await docs.sender_of(conn, packet.document_id, reporter)
            if sender is not None:
                return (sender,)
        return (other,)

    @staticmethod
    def _subject(packet: Packet) -> str:
        if packet.kind == "status":
            code = packet.status_code or ""
            # The subject is the packet's own data: in Vietnamese whoever reads it, as the samples write it.
            name = i18n.gettext(docs.STATUS_TITLES.get(code, docs.OTHER_STATUS), "vi")
            text = f"Trạng thái {code} – {name}"
            if packet.status_description:
                text += f": {packet.status_description}"
            return text
        return packet.subject or "(không có trích yếu)"

    @staticmethod
    def _meta(packet: Packet, route: _Route) -> dict[str, Any]:
        mh = packet.message_header
        out: dict[str, Any] = {"kind": packet.kind, "document_id": packet.document_id,
                               "from": packet.from_organ_id, "to": list(route.destinations)}
        parts = packet.document_id_parts
        if parts:
            out["document_id_parts"] = {"organ_id": parts.organ_id, "date": parts.date, "code": parts.code}
        if packet.kind == "status":
            out.update({"status_code": packet.status_code, "status_description": packet.status_description,
                        "timestamp": packet.timestamp,
                        "response_for": [vars_of(r) for r in packet.response_for]})
            if route.original:
                out["original_packet"] = route.original.packet_id
            if not packet.to_organ_ids:
                out["routed_by"] = "request"  # no ResponseFor: the request's to
            elif route.destinations[0] != packet.to_organ_ids[0].strip():
                out["routed_by"] = "ResponseFor/DocumentId"  # ResponseFor/OrganId is not a unit here
        else:
            code = packet.code
            doc_type = packet.document_type
            out.update({
                "code": str(code) if code else None,
                "code_number": code.number if code else None,
                "code_notation": code.notation if code else None,
                "subject": packet.subject,
                "document_type": {"type": doc_type.type, "type_detail": doc_type.type_detail,
                                  "type_name": doc_type.type_name} if doc_type else None,
                "priority": packet.priority,
                "due_date": packet.due_date,
                "promulgation_date": packet.promulgation_date,
                "steering_type": mh.get("steering_type"),
                "bussiness_doc_type": packet.bussiness_doc_type,
                "bussiness_doc_reason": (packet.bussiness or {}).get("bussiness_doc_reason"),
                "response_for": [vars_of(r) for r in packet.response_for],
                "replaces": packet.replacement_document_ids,
                "trace": [{"organ_id": t.organ_id, "timestamp": t.timestamp} for t in packet.trace_headers],
                "signature": packet.signature_present,
                "attachments": [{"content_id": a.content_id, "name": a.name, "content_type": a.content_type,
                                 "size": a.size, "sha256": a.sha256, "is_zip": a.is_zip} for a in packet.attachments],
            })
            if route.links is not None:
                out["links"] = route.links
            if route.added:
                out["added_recipients"] = list(route.added)  # original recipients To left out
        irregular = sorted({o for o in (packet.from_organ_id, *route.destinations) if identifier_form(o) is None})
        if irregular:
            out["irregular_organ_ids"] = irregular
        return out

    def _on_accept(self, packet: Packet, route: _Route) -> Any:
        async def write(conn: AsyncConnection, info: PacketInfo, now: datetime) -> list[Event]:
            events: list[Event] = []
            original_id = route.original.packet_id if route.original else None
            if route.links:
                original_id = next(iter(route.links.values()))
            code = packet.code
            doc_type = packet.document_type
            await docs.add(conn, info.id, docs.DocumentRecord(
                kind=packet.kind, document_id=packet.document_id, source_unit=info.source,
                code_number=code.number if code else None, code_notation=code.notation if code else None,
                subject=packet.subject, document_type=doc_type.type if doc_type else None,
                type_name=doc_type.type_name if doc_type else None,
                priority=str(packet.priority) if packet.priority is not None else None,
                due_date=packet.due_date, promulgation_date=packet.promulgation_date,
                bussiness_doc_type=packet.bussiness_doc_type, status_code=packet.status_code,
                original_packet_id=original_id), now)
            if packet.kind == "status" and packet.document_id:  # without ResponseFor: no document to tie to
                events += await self._record_status(conn, info, packet, route, now)
            for document_id, original in (route.links or {}).items():
                kind = docs.BUSINESS_TYPES.get(packet.bussiness_doc_type or 0, "new")
                events.append(await record(conn, original, _CHANGE_EVENT[kind], now, detail={
                    "by_packet": info.id, "document_id": document_id,
                    "reason": (packet.bussiness or {}).get("bussiness_doc_reason")}))
            return events

        return write

    @staticmethod
    async def _record_status(conn: AsyncConnection, info: PacketInfo, packet: Packet, route: _Route,
                             now: datetime) -> list[Event]:
        code = packet.status_code or ""
        other = route.destinations[0]
        if route.original is not None:
            source, recipient = route.original.source_unit, route.original.recipient
        elif code in docs.SENDER_CODES:
            source, recipient = info.source, other
        else:
            source, recipient = other, info.source
        await docs.set_status(conn, document_id=packet.document_id, source_unit=source, unit_id=recipient,
                              packet_id=route.original.packet_id if route.original else None, status_code=code,
                              description=packet.status_description, status_time=packet.timestamp,
                              reported_by=info.source, status_packet_id=info.id, now=now)
        if route.original is None:
            return []
        return [await record(conn, route.original.packet_id, ev.DOCUMENT_STATUS, now, unit=recipient, detail={
            "status_code": code, "description": packet.status_description, "reported_by": info.source,
            "status_packet": info.id, "timestamp": packet.timestamp})]

    # -- view -------------------------------------------------------------------------------------
    async def describe(self, conn: AsyncConnection, packet: PacketInfo, unit: str, is_source: bool) -> dict[str, Any]:
        row = await docs.get(conn, packet.id)
        if row is None:
            return {}
        out: dict[str, Any] = {"document": docs.document_view(row)}
        if row.kind == "edoc":
            found = await docs.statuses(conn, row.document_id, row.source_unit, None if is_source else unit)
            # Only the packet's own recipients: anybody can *claim* a status about a DocumentId.
            out["business_status"] = [s for s in found if s["unit"] in packet.to]
            if is_source:
                out["linked"] = [{"packet": r.packet_id, **docs.document_view(r)}
                                 for r in await docs.linked_to(conn, packet.id)]
        return out


#: The event a later edXML packet records on the document it links to, by its business kind.
_CHANGE_EVENT = {"new": ev.DOCUMENT_SENT, "revocation": ev.DOCUMENT_REVOKED, "update": ev.DOCUMENT_UPDATED,
                 "replacement": ev.DOCUMENT_REPLACED}


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _referenced_documents(packet: Packet) -> list[str]:
    """DocumentIds a revocation (ResponseFor), update (Bussiness/DocumentId) or replacement refers to."""
    refs = [r.document_id for r in packet.response_for] + packet.replacement_document_ids
    if packet.bussiness_doc_type == 2:
        own = (packet.bussiness or {}).get("document_id")
        refs += [own] if own else []
        refs.append(packet.document_id)
    return [r.strip() for r in refs if r and r.strip()]


def _add_hub_trace(document: dict[str, Any], organ_id: str) -> None:
    """The hub's hop, added to a JSON form before it is built (left alone if the shape is wrong:
    building then reports the exact JSON path)."""
    thl = document.get("trace_header_list")
    if isinstance(thl, dict) and isinstance(thl.get("trace_header"), list):
        thl["trace_header"].append({"organ_id": organ_id, "timestamp": format_timestamp()})


def _bundle_opener(bundle: zipfile.ZipFile | None) -> Any:
    """Attachment bytes of a ZIP bundle: the member named by the entry's `ref`."""
    def opener(entry: Mapping[str, Any]) -> BinaryIO:
        name = entry.get("ref")
        where = f"$.attachments[content_id={entry.get('content_id')!r}].ref"
        if bundle is None:
            raise EdxmlInvalid("attachments need a ZIP bundle holding their files (data type edxml+json)",
                               path=where, rule="edxml+json bundle")
        if not isinstance(name, str) or not name:
            raise EdxmlInvalid("must name the ZIP member holding this attachment", path=where,
                               rule="edxml+json bundle")
        try:
            return bundle.open(name)  # type: ignore[return-value]
        except KeyError:
            raise EdxmlInvalid(f"the ZIP bundle has no member {name!r}", path=where, rule="edxml+json bundle") \
                from None

    return opener


# -- REST: attachments of JSON-form deliveries -------------------------------------------------------

async def get_attachment(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    number = request.match_info["n"]
    if not (number.isascii() and number.isdigit()) or not 1 <= int(number) <= 100_000:
        raise Problem("not_found", Text("attachments are numbered from 1"))
    hub = hub_of(request)
    ref, path = await hub.content.part(request.match_info["id"], f"att-{int(number)}", principal.unit_id)
    if not await hub.content.holds(path):
        raise Problem("content.gone", Text("the content of this packet is no longer held by the hub"))
    check_range(request, ref.size)
    name = (ref.detail or {}).get("name") or f"attachment-{number}"  # for Content-Disposition
    return await content_response(request, path, ref.size, {
        H_CONTENT: ref.sha256, "Content-Type": ref.media_type or "application/octet-stream",
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}"})


# -- hooks -----------------------------------------------------------------------------------------

@hookimpl
def lgsp_content_inspectors(hub: Hub) -> Iterable[EdxmlInspector]:
    return [EdxmlInspector(hub)]


@hookimpl
def lgsp_packet_converters(hub: Hub) -> Iterable[Any]:
    limits = parse_limits(hub)
    return [EdxmlJsonConverter(limits), JsonEdxmlConverter(limits)]


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    return [web.get("/v1/packets/{id}/attachments/{n}", get_attachment)]


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    return positive_int_settings(f"adapters.{NAME}", hub.config.adapters.get(NAME), SETTINGS)

