"""Content inspection and per-destination content variants.

Some data types carry structure the hub must understand before it accepts a packet (edXML: who
sends, to whom, which document). A *content inspector*, registered by a plugin for its data types
(hook `lgsp_content_inspectors`), reads the stored upload after its size and hash are checked and
before the packet is accepted. It may refuse it (a Problem: nothing of the upload is kept and the
packet stays `created`), name the destinations, fill in subject/priority the request left to the
content, add metadata, and write *variants*: the same packet in another form (edXML with the hub's
TraceHeader, the JSON form, decoded attachments), each a blob of its own with its own size and
SHA-256 (table `packet_contents`).

Each delivery points at the variant its unit gets (`deliveries.variant`, NULL = the upload as is).
`choose_variant` is the one rule deciding it, applied once, when the packet is accepted; download,
inbox, `packet.available`, acknowledgement and push all read the delivery's variant through
`ContentService.ref_for` / `delivery_refs`. Purging a packet deletes every variant blob.

Without inspectors (plugin `edxml` not enabled) every call here is a no-op and packets behave as
opaque content, exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.errors import Problem
from lgsp.core.events import Event, EventBus, iso, record
from lgsp.core.i18n import Text
from lgsp.core.store.blobcrypt import ChunkSealer, open_sealed
from lgsp.core.store.blobs import BlobStore, KeyOpener, key_id_of, publish
from lgsp.core.store.database import Database
from lgsp.core.store.tables import deliveries, packet_contents, packets, unit_formats, units

if TYPE_CHECKING:
    from lgsp.core.exchange import PacketInfo

log = logging.getLogger(__name__)

#: Fields of a create request an inspector may take from the content when they are omitted.
#: Placeholder subject of a packet whose subject comes from its content (replaced on acceptance).
PENDING_SUBJECT = "(đang đọc từ nội dung)"
MAX_SUBJECT = 2000


# -- values ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContentRef:
    """What one unit gets for a packet: the upload itself (`variant` None) or one variant."""

    variant: str | None
    blob_key: str
    size: int
    sha256: str
    data_type: str
    media_type: str = "application/octet-stream"
    #: What the inspector recorded about a stored part (e.g. an attachment's file `name`).
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Variant:
    """A stored form of a packet's content.

    `format` is the delivery format it serves (`edxml`, `json`); None for parts that are not
    delivered on their own (decoded attachments, fetched separately).
    """

    name: str
    format: str | None
    blob_key: str
    size: int
    sha256: str
    media_type: str
    data_type: str | None = None
    detail: dict[str, Any] | None = None


@dataclass
class Inspection:
    """What an inspector learned from the content; applied in the acceptance transaction."""

    destinations: tuple[str, ...]
    variants: list[Variant]
    #: unit -> the format it takes (filled by the inspector with `InspectionJob.formats_of`).
    formats: dict[str, str] = field(default_factory=dict)
    default_format: str | None = None
    subject: str | None = None
    priority: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Extra writes in the acceptance transaction (document index, links); returns events to publish.
    on_accept: Callable[[AsyncConnection, PacketInfo, datetime], Awaitable[list[Event]]] | None = None


@runtime_checkable
class ContentInspector(Protocol):
    """Reads and transforms the content of some data types (see module docstring)."""

    #: Data types this inspector handles, e.g. {"edxml", "edxml+json"}.
    data_types: frozenset[str]
    #: Key of `unit_formats` for these data types (e.g. "edxml").
    family: str
    #: Format a unit takes when nobody set one.
    default_format: str

    def formats(self) -> frozenset[str]:
        """Formats a unit of this family may declare (what the inspector can produce)."""
        ...

    async def inspect(self, job: InspectionJob) -> Inspection:
        """Check the content of `job.packet` at `job.path`; raise Problem to refuse it."""
        ...

    async def describe(self, conn: AsyncConnection, packet: PacketInfo, unit: str,
                       is_source: bool) -> dict[str, Any]:
        """Extra members of `GET /v1/packets/{id}` for this packet, as `unit` may see them."""
        ...


def choose_variant(fmt: str | None, default_format: str | None, variants: Sequence[Variant]) -> Variant | None:
    """THE rule deciding what a delivery gets: the variant in its unit's format, else the one in
    the family's default format, else None (the upload as is)."""
    for wanted in (fmt, default_format):
        if wanted is None:
            continue
        for v in variants:
            if v.format == wanted:
                return v
    return None


# -- blobs written from worker threads -----------------------------------------------------------

class SyncBlobWriter:
    """One variant blob written from a worker thread: temp file, SHA-256 and size on the way,
    renamed into place on `close()` (so a half-written variant is never visible). Encrypted with
    the packet's data key when the blob store encrypts (the key is fetched before, on the loop)."""

    def __init__(self, blobs: BlobStore, key: str, data_key: bytes | None = None) -> None:
        self.key = key
        self.final = blobs.path(key)
        self.temp = blobs.tmp / f"{key}.{secrets.token_hex(6)}.part"
        self._fsync = blobs.fsync
        if blobs.encrypt and data_key is None:
            raise ValueError("the blob store encrypts: a variant writer needs the packet's data key")
        self._fh = open(self.temp, "xb")  # noqa: SIM115 - closed in close()/abort()
        self._sealer = ChunkSealer(self._fh, data_key, key_id_of(key), key) \
            if blobs.encrypt and data_key is not None else None
        self._sha = hashlib.sha256()
        self.size = 0
        self.done = False

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.size += len(data)
        if self._sealer is not None:
            self._sealer.write(data)
            return len(data)
        return self._fh.write(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> Any:
        if self.done:
            return None
        if self._sealer is not None:
            self._sealer.finish()
        publish(self._fh, self.temp, self.final, fsync=self._fsync)
        self.done = True
        return None

    def abort(self) -> None:
        self.done = True
        if not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


class InspectionJob:
    """What an inspector gets: the packet, the stored upload, blob writers and the hub's services.

    Blobs written through `writer()` are named `<upload key>-<name>` (so they go with their upload
    attempt) and deleted again by the service if the inspection fails; `formats_of` says which
    format each destination takes.
    """

    def __init__(self, service: ContentService, packet: PacketInfo, path: Path, upload_key: str,
                 data_key: bytes | None = None, *, sealed: bytes | None = None) -> None:
        self.service = service
        self.packet = packet
        self.path = path
        self.upload_key = upload_key
        #: The packet's data key (None when content is not encrypted): writers and readers need it.
        self.data_key = data_key
        #: The upload's sealed bytes when it is kept in the store (no file at `path` yet).
        self.sealed = sealed
        self.implicit = frozenset((packet.meta or {}).get("implicit", ()))
        self._writers: list[SyncBlobWriter] = []

    def key(self, name: str) -> str:
        return f"{self.upload_key}-{name}"

    def writer(self, name: str) -> SyncBlobWriter:
        """A writer for variant `name` (call from a worker thread)."""
        return self.track(SyncBlobWriter(self.service.blobs, self.key(name), self.data_key))

    def open(self, blob_key: str | None = None) -> BinaryIO:
        """The plaintext of the upload (or of another blob of this packet), decrypted as it is read;
        seekable. Call from a worker thread."""
        if blob_key is None and self.sealed is not None:
            return open_sealed(self.sealed, self.data_key, expect_name=self.upload_key)
        path = self.path if blob_key is None else self.service.blobs.path(blob_key)
        return self.service.blobs.open_sync(path, self.data_key)

    def track(self, writer: SyncBlobWriter) -> SyncBlobWriter:
        """Have a writer made elsewhere (e.g. an attachment sink) discarded with the job."""
        self._writers.append(writer)
        return writer

    def discard(self) -> None:
        """Delete everything written for this job (worker thread)."""
        for w in self._writers:
            w.abort()
            with contextlib.suppress(FileNotFoundError):
                w.final.unlink()

    async def formats_of(self, family: str, units_: Iterable[str], default: str) -> dict[str, str]:
        return await self.service.formats_of(family, units_, default)


# -- the service ----------------------------------------------------------------------------------

class ContentService:
    """Inspectors, converters, unit formats and variants: everything `Exchange` asks about content."""

    def __init__(self, db: Database, blobs: BlobStore, bus: EventBus, *,
                 inspectors: Iterable[ContentInspector] = (), converters: Iterable[Any] = (),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.blobs = blobs
        self.bus = bus
        self.clock = clock
        # `async (packet, units)`: raises a Problem when the packet's source may not reach destinations
        # its content names (the communication policy, core/policy.py); set by the hub.
        self.check_reach: Callable[[PacketInfo, list[str]], Awaitable[None]] | None = None
        self.inspectors: dict[str, ContentInspector] = {}
        self.families: dict[str, ContentInspector] = {}
        for inspector in inspectors:
            for data_type in inspector.data_types:
                if data_type in self.inspectors:
                    raise ValueError(f"two content inspectors for data type {data_type!r}")
                self.inspectors[data_type] = inspector
            self.families.setdefault(inspector.family, inspector)
        self.converters: dict[tuple[str, str], Any] = {}
        for conv in converters:
            pair = (conv.source_format, conv.target_format)
            if pair in self.converters:
                raise ValueError(f"two converters from {pair[0]} to {pair[1]}")
            self.converters[pair] = conv

    # -- create ---------------------------------------------------------------------------------
    def prepare_create(self, body: Any) -> tuple[Any, list[str]]:
        """Let a content-aware data type omit to/subject/priority; returns (body, omitted fields).

        The omitted fields get placeholders that pass the request checks; the inspector fills
        them in from the content on acceptance (`meta.implicit` lists them).
        """
        if not isinstance(body, dict) or not isinstance(body.get("data_type"), str) \
                or body["data_type"] not in self.inspectors:
            return body, []
        filled = dict(body)
        implicit: list[str] = []
        if filled.get("to") in (None, []):
            filled["to"] = []
            implicit.append("to")
        if filled.get("subject") in (None, ""):
            filled["subject"] = PENDING_SUBJECT
            implicit.append("subject")
        if "priority" not in filled:
            implicit.append("priority")
        return filled, implicit

    # -- inspect and accept ---------------------------------------------------------------------
    async def inspect(self, info: PacketInfo, path: Path, upload_key: str, *,
                      data_key: KeyOpener | None = None, sealed: bytes | None = None) -> Inspection | None:
        """Run the data type's inspector on the stored upload; on refusal delete it and say why.
        `data_key`: the packet's data key as the upload loaded it (else it is read here); `sealed`:
        the upload's bytes when it is kept in the store, not yet written (no file at `path`)."""
        inspector = self.inspectors.get(info.data_type)
        if inspector is None:
            return None
        key = await data_key() if data_key is not None else None
        if key is None:
            key = await self.blobs.data_key(upload_key)
        job = InspectionJob(self, info, path, upload_key, key, sealed=sealed)
        try:
            inspection = await inspector.inspect(job)
            named = [u for u in inspection.destinations if u not in info.to]
            if named and self.check_reach is not None:
                await self.check_reach(info, named)
            return inspection
        except BaseException as exc:
            await asyncio.to_thread(job.discard)
            await self.delete_blobs(upload_key)  # nothing of a refused upload is kept
            if isinstance(exc, Problem):
                await self._record_rejection(info, exc)
            raise

    async def _record_rejection(self, info: PacketInfo, problem: Problem) -> None:
        now = self.clock()
        try:
            async with self.db.write() as conn:
                event = await record(conn, info.id, ev.CONTENT_REJECTED, now, unit=info.source, audience=info.source,
                                     detail={"code": problem.code, "reason": problem.detail[:2000]})
            self.bus.publish([event])
        except Exception:  # the refusal itself must reach the caller
            log.exception("could not record the refusal of packet %s", info.id)

    async def apply(self, conn: AsyncConnection, info: PacketInfo, inspection: Inspection | None, now: datetime,
                    delivery_row: Callable[..., dict[str, Any]]) -> list[Event]:
        """Write what the inspection found, inside the acceptance transaction; returns its events.

        `delivery_row` makes the rows of destinations the content adds (the Exchange's own, so a
        delivery's mode is decided in one place)."""
        if inspection is None:
            return []
        implicit = set((info.meta or {}).get("implicit", ()))
        values: dict[str, Any] = {"meta": {**(info.meta or {}), **inspection.meta}}
        if inspection.subject and "subject" in implicit:
            values["subject"] = inspection.subject[:MAX_SUBJECT]
        priority = info.priority
        if inspection.priority is not None and "priority" in implicit:
            values["priority"] = priority = inspection.priority
            await conn.execute(update(deliveries).where(deliveries.c.packet_id == info.id).values(priority=priority))
        await conn.execute(update(packets).where(packets.c.id == info.id).values(**values))
        present = set(info.to)
        missing = [u for u in inspection.destinations if u not in present]
        if missing:
            await conn.execute(deliveries.insert(), [delivery_row(info.id, u, priority, info.created_at)
                                                     for u in missing])
        if inspection.variants:
            await conn.execute(packet_contents.insert(), [
                {"packet_id": info.id, "variant": v.name, "blob_key": v.blob_key, "size": v.size, "sha256": v.sha256,
                 "media_type": v.media_type, "data_type": v.data_type, "detail": v.detail, "created_at": now}
                for v in inspection.variants])
        by_variant: dict[str, list[str]] = {}  # one UPDATE per variant, not per destination
        for unit in (*present, *missing):
            chosen = choose_variant(inspection.formats.get(unit), inspection.default_format, inspection.variants)
            if chosen is not None:
                by_variant.setdefault(chosen.name, []).append(unit)
        for name, units_ in by_variant.items():
            await conn.execute(update(deliveries).where(and_(
                deliveries.c.packet_id == info.id, deliveries.c.unit_id.in_(units_))).values(variant=name))
        if inspection.on_accept is not None:
            return await inspection.on_accept(conn, info, now)
        return []

    # -- what each unit gets --------------------------------------------------------------------
    async def ref_for(self, conn: AsyncConnection, info: PacketInfo, unit: str,
                      variant: str | object | None = ...) -> ContentRef:
        """The content `unit` gets for packet `info` (the upload itself unless its delivery has a variant).

        A caller that already read the delivery passes its `variant`; None then costs no query.
        """
        if variant is None:
            return ContentRef(None, info.blob_key or info.id, info.size, info.sha256, info.data_type)
        row = (await conn.execute(
            select(packet_contents).join(deliveries, and_(
                deliveries.c.packet_id == packet_contents.c.packet_id,
                deliveries.c.variant == packet_contents.c.variant))
            .where(and_(deliveries.c.packet_id == info.id, deliveries.c.unit_id == unit)))).first()
        if row is None:
            return ContentRef(None, info.blob_key or info.id, info.size, info.sha256, info.data_type)
        return ContentRef(row.variant, row.blob_key, row.size, row.sha256, row.data_type or info.data_type,
                          row.media_type)

    async def for_delivery(self, info: PacketInfo, unit: str) -> tuple[PacketInfo, Path]:
        """What goes to `unit`: the packet as that unit sees it (size, sha256 and data type of its
        variant) and the file to send. The delivery engine builds each PushJob from this."""
        async with self.db.read() as conn:
            ref = await self.ref_for(conn, info, unit)
        seen = dataclasses.replace(info, size=ref.size, sha256=ref.sha256, data_type=ref.data_type)
        return seen, self.blobs.path(ref.blob_key)

    @property
    def scratch_dir(self) -> Path:
        """Where an adapter spools a request body before submitting it: the blob store's temporary
        folder (same file system as the blobs, emptied at start)."""
        return self.blobs.tmp

    async def open_stored(self, path: Path, *, size: int | None = None,
                          data_key: KeyOpener | None = None) -> BinaryIO:
        """Open a stored blob (from `Exchange.open_download`) for reading its plaintext; with `size`,
        one whose plaintext size differs is refused (`BlobCorrupt`) before any byte is read.
        `data_key`: the packet's data key as `Exchange.open_content` loaded it (else it is read here)."""
        if data_key is None:
            return await self.blobs.open_path(path, size=size)
        return await asyncio.to_thread(self.blobs.open_sync, path, await data_key(), size=size)

    async def holds(self, path: Path) -> bool:
        """Whether the stored blob `path` (from `Exchange.open_content` or `for_delivery`) is there to
        read: its file, or a small upload kept in the store. Adapters ask this, not the file system."""
        return await self.blobs.holds(path)

    async def opener(self, path: Path, *, data_key: KeyOpener | None = None
                     ) -> Callable[[], BinaryIO]:
        """A function opening the blob `path` for reading its plaintext from a worker thread (the
        data key is fetched now, on the loop; `data_key` as in `open_stored`). Push jobs read their
        content through one."""
        key = await data_key() if data_key is not None else await self.blobs.data_key(path.name)
        return lambda: self.blobs.open_sync(path, key)

    async def delivery_refs(self, conn: AsyncConnection, packet_id: str) -> dict[str, dict[str, Any]]:
        """unit -> {size, sha256, data_type} for the deliveries of a packet that get a variant."""
        rows = (await conn.execute(
            select(deliveries.c.unit_id, packet_contents.c.size, packet_contents.c.sha256,
                   packet_contents.c.data_type)
            .join(packet_contents, and_(packet_contents.c.packet_id == deliveries.c.packet_id,
                                        packet_contents.c.variant == deliveries.c.variant))
            .where(deliveries.c.packet_id == packet_id))).all()
        return {r.unit_id: {"size": r.size, "sha256": r.sha256, **({"data_type": r.data_type} if r.data_type else {})}
                for r in rows}

    async def variants_for(self, conn: AsyncConnection, unit: str, packet_ids: list[str]
                           ) -> dict[str, tuple[int, str, str | None]]:
        """The size, hash and data type (None: the packet's) of the variant `unit` gets, by packet,
        for those of `packet_ids` that have variants: inbox items show what the unit will fetch."""
        if not packet_ids:
            return {}
        rows = (await conn.execute(
            select(deliveries.c.packet_id, packet_contents.c.size, packet_contents.c.sha256,
                   packet_contents.c.data_type)
            .join(packet_contents, and_(packet_contents.c.packet_id == deliveries.c.packet_id,
                                        packet_contents.c.variant == deliveries.c.variant))
            .where(and_(deliveries.c.unit_id == unit, deliveries.c.packet_id.in_(packet_ids))))).all()
        return {r.packet_id: (r.size, r.sha256, r.data_type or None) for r in rows}

    async def view_parts(self, conn: AsyncConnection, info: PacketInfo, unit: str, is_source: bool
                         ) -> tuple[ContentRef | None, list[Any] | None, dict[str, Any]]:
        """What a packet view adds about content: the variant a destination gets (None without
        variants), the source's stored forms (rows; None without an inspector), the inspector's view."""
        ref: ContentRef | None = None
        if not is_source:  # what this destination gets (also if the inspecting plugin was disabled since)
            ref = await self.ref_for(conn, info, unit)
            if not ref.variant:
                ref = None
        if info.data_type not in self.inspectors:
            return ref, None, {}
        stored = None
        if is_source:
            found = (await conn.execute(select(packet_contents).where(packet_contents.c.packet_id == info.id))).all()
            stored = sorted(found, key=lambda r: (r.data_type is None, len(r.variant), r.variant))  # forms, then parts
        return ref, stored, await self.inspectors[info.data_type].describe(conn, info, unit, is_source)

    async def part(self, packet_id: str, variant: str, unit: str) -> tuple[ContentRef, Path]:
        """A stored part (e.g. a decoded attachment) for a unit that may read it now.

        Readable by a destination whose delivery is pending and by the source while the content
        is stored; anybody else gets not_found, as for the packet itself.
        """
        async with self.db.read() as conn:
            pkt = (await conn.execute(select(packets.c.source_unit, packets.c.content_state, packets.c.data_type)
                                      .where(packets.c.id == packet_id))).first()
            state = await dv.state_of(conn, packet_id, unit) if pkt is not None else None
            row = (await conn.execute(select(packet_contents).where(and_(
                packet_contents.c.packet_id == packet_id, packet_contents.c.variant == variant)))).first()
        if pkt is None or (pkt.source_unit != unit and (state is None or state == dv.WAITING)):
            raise Problem("not_found", Text("no such packet"))
        if state in dv.TERMINAL or pkt.content_state != "stored":
            raise Problem("content.gone", Text("the content of this packet is no longer held by the hub"))
        if row is None:
            raise Problem("not_found", Text("this packet has no part {variant!r}", variant=variant))
        ref = ContentRef(row.variant, row.blob_key, row.size, row.sha256, row.data_type or pkt.data_type,
                         row.media_type, row.detail)
        return ref, self.blobs.path(row.blob_key)

    # -- purge ----------------------------------------------------------------------------------
    async def delete_blobs(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix`: a packet id (all its uploads and
        variants) or an upload key (one attempt and its variants)."""
        return await self.blobs.delete_prefix(prefix)

    # -- formats --------------------------------------------------------------------------------
    def known_formats(self, family: str) -> frozenset[str]:
        inspector = self.families.get(family)
        return inspector.formats() if inspector is not None else frozenset()

    async def formats_of(self, family: str, unit_ids: Iterable[str], default: str) -> dict[str, str]:
        ids = list(dict.fromkeys(unit_ids))
        if not ids:
            return {}
        async with self.db.read() as conn:
            rows = (await conn.execute(select(unit_formats.c.unit_id, unit_formats.c.format).where(and_(
                unit_formats.c.family == family, unit_formats.c.unit_id.in_(ids))))).all()
        found = {r.unit_id: r.format for r in rows}
        return {u: found.get(u, default) for u in ids}

    async def set_format(self, unit_id: str, family: str, fmt: str | None) -> None:
        """Set (or with None, reset to the default) the format `unit_id` takes for `family`."""
        known = self.known_formats(family)
        if not known:
            raise Problem("request.invalid", Text("no plugin handles the {family!r} data types (is it enabled?)",
                                                  family=family),
                          field="family")
        if fmt is not None and fmt not in known:
            raise Problem("request.invalid", Text("format must be one of {known}", known=', '.join(sorted(known))),
                          field="format")
        now = self.clock()
        async with self.db.write() as conn:
            if await conn.scalar(select(units.c.id).where(units.c.id == unit_id)) is None:
                raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
            await conn.execute(unit_formats.delete().where(and_(
                unit_formats.c.unit_id == unit_id, unit_formats.c.family == family)))
            if fmt is not None:
                await conn.execute(unit_formats.insert().values(unit_id=unit_id, family=family, format=fmt,
                                                                updated_at=now))

    async def list_formats(self, family: str | None = None) -> list[dict[str, str]]:
        stmt = select(unit_formats).order_by(unit_formats.c.unit_id, unit_formats.c.family)
        if family:
            stmt = stmt.where(unit_formats.c.family == family)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [{"unit": r.unit_id, "family": r.family, "format": r.format, "updated_at": iso(r.updated_at)}
                for r in rows]


def collect(hub: Any) -> tuple[list[ContentInspector], list[Any]]:
    """Inspectors and converters from every plugin (hooks `lgsp_content_inspectors`, `lgsp_packet_converters`)."""
    inspectors = [i for batch in hub.pm.hook.lgsp_content_inspectors(hub=hub) for i in (batch or ())]
    converters = [c for batch in hub.pm.hook.lgsp_packet_converters(hub=hub) for c in (batch or ())]
    return inspectors, converters

