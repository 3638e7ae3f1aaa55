"""Outbound: deliver a packet by uploading it to the destination unit's SFTP server.

Upload under a hidden temporary name, check the remote size, rename into place, then write the
manifest beside it (also temp + rename). The file name is the packet id, so a retry after any
failure overwrites the same two files and converges; an attempt that finds the exact manifest and
a file of the right size already there reports success without uploading again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lgsp.adapters.sftp.connection import Session, SftpError, open_session
from lgsp.adapters.sftp.manifest import (
    MAX_MANIFEST_SIZE,
    delivery_file_name,
    delivery_manifest,
    manifest_name,
    same_delivery,
    temporary_name,
)
from lgsp.adapters.sftp.settings import PushTarget, parse_target
from lgsp.core.api import BlobCorrupt, PushFailure, PushJob, PushReceipt, Text, logs

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.sftp")


class SftpPushAdapter:
    protocol = "sftp"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        return parse_target(unit, target)[1]

    @staticmethod
    def _target(unit: str, target: Mapping[str, Any]) -> PushTarget:
        parsed, issues = parse_target(unit, target)
        if parsed is None:
            detail = "; ".join(f"{key or '(target)'}: {message}" for key, message in issues)
            raise PushFailure(Text("the sftp settings of unit {unit} are invalid: {detail}", unit=unit, detail=detail),
                              retryable=False)
        return parsed

    async def push(self, job: PushJob) -> PushReceipt:
        target = self._target(job.unit, job.target)
        if not await job.content_held():
            raise PushFailure(Text("the hub no longer holds the content of packet {id}", id=job.packet.id),
                              retryable=False)
        rid = logs.request_id.get() or logs.request_id_for(job.packet.id)
        try:
            with logs.bound(request_id=rid, unit=job.unit, packet_id=job.packet.id):
                return await self._push(target, job, rid)
        except SftpError as exc:
            log.warning("sftp push of %s to %s failed (%s, %s): %s", job.packet.id, job.unit, exc.code,
                        "will retry" if exc.retryable else "not retryable", exc.reason)
            raise PushFailure(exc.reason, retryable=exc.retryable) from None

    async def _push(self, target: PushTarget, job: PushJob, request_id: str) -> PushReceipt:
        packet = job.packet
        name = delivery_file_name(packet)
        folder = target.directory
        final = posixpath.join(folder, name)
        manifest_path = posixpath.join(folder, manifest_name(name))
        manifest = delivery_manifest(packet, job.unit, job.idempotency_key, name, request_id)
        where = f"{target.connection.address}{final if final.startswith('/') else '/' + final}"
        async with open_session(self.hub, target.connection) as session:
            if not await session.is_dir(folder):
                raise SftpError(Text("the remote folder {folder!r} does not exist or cannot be read on {address}",
                                     folder=folder, address=target.connection.address),
                                retryable=False, code="sftp.no_folder")
            if await self._already_there(session, manifest_path, manifest, final, packet.size):
                return PushReceipt(detail=Text("already present at {where}", where=where), remote_id=name)
            temporary = posixpath.join(folder, temporary_name(name))
            await self._upload(session, job, temporary)
            attrs = await session.stat(Text("verify upload"), temporary)
            if attrs is None or attrs.size != packet.size:
                await session.remove(Text("remove short upload"), temporary)
                got = Text("nothing") if attrs is None else Text("{size} bytes", size=attrs.size)
                raise SftpError(Text("verify upload: the server holds {got} after {size} bytes were sent", got=got,
                                     size=packet.size),
                                retryable=True, code="sftp.short_upload")
            await session.replace(Text("rename into place"), temporary, final)
            await session.write_small(Text("write manifest"), manifest_path, manifest)
        log.info("sftp: packet %s pushed to %s at %s", packet.id, job.unit, where)
        return PushReceipt(detail=Text("uploaded to {where}", where=where), remote_id=name)

    @staticmethod
    async def _already_there(session: Session, manifest_path: str, manifest: bytes, final: str, size: int) -> bool:
        """Did an earlier attempt finish? Best effort: a drop folder the hub may write but not read says no."""
        try:
            existing = await session.read_small(Text("read existing manifest"), manifest_path, MAX_MANIFEST_SIZE)
            if existing is None or not same_delivery(existing, manifest):
                return False
            attrs = await session.stat(Text("check existing file"), final)
        except SftpError as exc:
            if exc.retryable:
                raise
            return False
        return attrs is not None and attrs.size == size

    @staticmethod
    async def _upload(session: Session, job: PushJob, path: str) -> None:
        """Stream the stored content to `path`, hashing it on the way (off the event loop)."""
        digest = hashlib.sha256()
        handle = await session.call(Text("open upload"), session.sftp.open(path, "wb", encoding=None))
        intact = True
        try:
            async for chunk in job.content():
                await asyncio.to_thread(digest.update, chunk)
                await session.call(Text("upload"), handle.write(chunk))
        except BlobCorrupt:  # the stored copy failed its integrity check: as a wrong hash, below
            intact = False
        finally:
            # A failure here follows the one that brought us here (or the size check), which says more.
            with contextlib.suppress(SftpError):
                await session.call(Text("close upload"), handle.close())
        if not intact or digest.hexdigest() != job.packet.sha256:
            await session.remove(Text("remove corrupt upload"), path)
            raise SftpError(Text("the hub's stored copy of packet {id} does not match its SHA-256; nothing was "
                                 "delivered", id=job.packet.id), retryable=False, code="sftp.hash_mismatch")

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        """True when the server accepts us (pinned key, credentials) and the folder is there."""
        parsed = parse_target(unit, target)[0]
        if parsed is None:
            return False
        try:
            async with open_session(self.hub, parsed.connection) as session:
                return await session.is_dir(parsed.directory)
        except SftpError as exc:
            log.debug("sftp probe of %s: %s", unit, exc.reason)
            return False
