"""Receiving a packet's content: one attempt at a time per packet on this node, stored under its
own key, checked (size, hash, inspection), then accepted by one conditional update.

Stalled uploads: `_uploading` keeps the attempt in progress per packet; a newer upload of the same
packet takes over at once from an attempt that has received nothing for `upload_stall_seconds`,
waits at most that long for one still receiving, and gets `conflict` if that one is still sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, update

from lgsp.core import audit
from lgsp.core import deliveries as dv
from lgsp.core import events as ev
from lgsp.core.content import Inspection
from lgsp.core.errors import Problem
from lgsp.core.exchange.base import AfterCommit, ExchangeBase, log
from lgsp.core.exchange.values import PacketInfo, upload_key
from lgsp.core.i18n import Text
from lgsp.core.store import inline_blobs
from lgsp.core.store.blobs import KeyOpener, PartialRemoved
from lgsp.core.store.tables import packets

# The acceptance, built once: a statement built per call is keyed again by SQLAlchemy at each execution.
_ACCEPT = (update(packets).where(and_(packets.c.id == bindparam("p_packet"), packets.c.state == "created"))
           .values(state="accepted", content_state="stored", blob_key=bindparam("blob_key"),
                   accepted_at=bindparam("accepted_at")))


@dataclass(frozen=True)
class Received:
    """One upload attempt, stored and checked: its blob key, what inspection found, and, for a small
    upload kept in the store (`BlobStore.inlines`), its sealed bytes for the acceptance to write."""

    key: str
    inspection: Inspection | None
    sealed: bytes | None = None


@dataclass(eq=False)
class UploadAttempt:
    """One upload of a packet being received on this node: a newer one may take over once it stalls."""

    task: asyncio.Task[Any] | None
    last_activity: float  # event-loop time of the last chunk received
    receiving: bool = True  # False once every byte is in (size, hash and inspection checks follow)
    superseded: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def supersede(self) -> None:
        """A newer attempt takes over: this one is cancelled where it waits for data (its files are
        removed as it unwinds) and can no longer be accepted."""
        self.superseded = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class UploadSteps(ExchangeBase):
    """The steps `upload` and `submit` share."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Uploads being received on this node, by packet; an attempt that has received nothing for
        # `upload_stall_seconds` gives way to a newer one (the HTTP server cuts it after as long too).
        self._uploading: dict[str, UploadAttempt] = {}

    async def _take_turn(self, packet_id: str) -> UploadAttempt:
        """Register this task's upload of a packet, after the one in progress on this node (if any).

        An attempt in progress that has received nothing for `upload_stall_seconds` is superseded at
        once. One still receiving is waited for, at most that long: if it ends (cut, refused or
        accepted) this one goes ahead; if it is still sending then, this one gets `conflict`. So a
        source whose connection stalled can upload again without waiting for the server to notice.
        """
        loop = asyncio.get_running_loop()
        stall = self.upload_stall_seconds
        give_up = loop.time() + stall
        while (current := self._uploading.get(packet_id)) is not None:
            now = loop.time()
            if not current.receiving:
                raise Problem("conflict", Text("another upload of this packet has been received and is being checked"))
            if now - current.last_activity >= stall:
                log.info("upload of packet %s received nothing for %g s; a newer upload takes over", packet_id, stall)
                current.supersede()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(current.done.wait(), 30)
                if self._uploading.get(packet_id) is current:  # pragma: no cover - it did not unwind
                    del self._uploading[packet_id]
                continue
            if now >= give_up:
                raise Problem("conflict", Text("another upload of this packet is in progress and still sending"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current.done.wait(), min(give_up, current.last_activity + stall) - now)
        attempt = UploadAttempt(task=asyncio.current_task(), last_activity=loop.time())
        self._uploading[packet_id] = attempt
        return attempt

    def _end_turn(self, packet_id: str, attempt: UploadAttempt) -> None:
        if self._uploading.get(packet_id) is attempt:
            del self._uploading[packet_id]
        attempt.done.set()

    async def _receive(self, info: PacketInfo, content: AsyncIterable[bytes], attempt: UploadAttempt,
                       data_key: KeyOpener | None = None) -> Received:
        """Store one upload attempt under its own key (a file, or for a small upload its sealed bytes
        in memory until the acceptance keeps them); returns it with what inspection found.
        `data_key`: the packet's data key as loaded with it (unsealed by the writer; without it, or
        when the packet has none, the writer reads or makes it).

        Each attempt has its own blobs, so an attempt that loses a race (another node's upload of the
        same packet was accepted first) deletes only what it wrote itself.
        """
        key = upload_key(info.id)
        loop = asyncio.get_running_loop()
        try:
            # The declared size lets a small packet's blob go to disk in one worker-thread call.
            inline = self.blobs.inlines(info.size)
            async with self.blobs.writer(key, data_key, size=info.size, inline=inline) as writer:
                async for chunk in content:
                    attempt.last_activity = loop.time()
                    if writer.size + len(chunk) > info.size:
                        raise Problem("content.size_mismatch",
                                      Text("more than the declared {size} bytes were sent", size=info.size))
                    await writer.write(chunk)
                attempt.receiving = False
                if writer.size != info.size:
                    raise Problem("content.size_mismatch",
                                  Text("received {size} bytes, declared {size2}", size=writer.size, size2=info.size))
                digest = await writer.finish()
                if digest != info.sha256:
                    raise Problem("content.hash_mismatch", Text("the content's SHA-256 differs from the declared one"))
                await writer.commit()
            if attempt.superseded:  # pragma: no cover - superseded only while receiving, so cancelled there
                raise Problem("conflict", Text("a newer upload of this packet took over"))
            # Content-aware data types (edXML) are read before acceptance; a refusal deletes the upload.
            inspection = await self.content.inspect(info, self.blobs.path(key), key, data_key=data_key,
                                                    sealed=writer.sealed)
            return Received(key, inspection, writer.sealed)
        except PartialRemoved:
            # Another attempt (on another node) was accepted meanwhile and removed this one's files.
            await self.content.delete_blobs(key)
            raise Problem("conflict", Text("the packet is no longer awaiting its content")) from None

    async def _accept(self, info: PacketInfo, received: Received) -> PacketInfo:
        key, inspection = received.key, received.inspection
        now = self.clock()
        after = AfterCommit()
        fresh: PacketInfo | None = None
        async with self.db.write() as conn:
            result = await conn.execute(_ACCEPT, {"p_packet": info.id, "blob_key": key, "accepted_at": now})
            if result.rowcount == 1:
                if received.sealed is not None:  # a small upload: its content is kept with its acceptance
                    await inline_blobs.keep(conn, key, received.sealed)
                variant_of: dict[str, dict[str, Any]] = {}
                if inspection is not None:
                    # What the content inspection found (destinations, variants, metadata).
                    after.events.extend(await self.content.apply(conn, info, inspection, now, self._delivery_row))
                    info = await self._load(conn, info.id) or info
                    variant_of = await self.content.delivery_refs(conn, info.id)
                # The deliveries that became due (every one still waiting; one an operator cancelled
                # meanwhile stays as it is and is not announced), with their modes.
                queued = await dv.move_rows(conn, info.id, None, dv.QUEUED, now, values={"queued_at": now})
                pulled = sorted(r.unit_id for r in queued if r.mode == dv.PULL)
                after.push_units = sorted(r.unit_id for r in queued if r.mode == dv.PUSH)
                live = [u for u in pulled if self.bus.connected(u)]
                await dv.move(conn, info.id, live, dv.NOTIFIED, now)
                after.pending.append(ev.NewEvent(info.id, ev.PACKET_ACCEPTED, now, unit=info.source))
                await audit.append(conn, "packet.accepted", actor=info.source, target=info.id, unit=info.source,
                                   at=now, detail={"sha256": info.sha256, "size": info.size, "to": sorted(info.to)})
                after.pending.extend(ev.NewEvent(info.id, ev.PACKET_AVAILABLE, now, unit=unit, audience=unit,
                                                 detail=self._available_detail(info) | variant_of.get(unit, {}))
                                     for unit in pulled)
                await after.flush(conn)  # one INSERT for the accepted and the available events
                fresh = dataclasses.replace(info, state="accepted", content_state="stored", blob_key=key,
                                            accepted_at=now)
        if fresh is None:
            # Lost a race with another node's upload, or the packet expired meanwhile: drop this
            # attempt's blobs only (the winner's are under another key).
            await self.content.delete_blobs(key)
            raise Problem("conflict", Text("the packet is no longer awaiting its content"))
        # Every other copy of the content that is not this upload goes now: partial uploads left by a
        # cut connection or a crash, and attempts on other nodes (which can no longer be accepted).
        after.partials_of = info.id
        after.hooks.append(("lgsp_packet_accepted", {"packet": fresh}))
        await self._after_commit(after)
        return fresh
