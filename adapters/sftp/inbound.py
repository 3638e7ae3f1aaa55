"""Inbound: poll a unit's outbox folder and submit each complete file as a packet from that unit.

A file `F` is taken only when `F.manifest.json` is beside it. Each file goes through:

1. claim: the manifest is renamed to `.F.claim-<C>.json` (an atomic rename, so two pollers can
   never both take it; the unit's manifest bytes are kept as they are);
2. submit: the content is streamed into `hub.exchange.submit`, carrying the claim id `C` in the
   packet's metadata (`sftp_claim`), which the hub commits together with the packet;
3. move: the data file goes to done/ (then its manifest, completed with the packet id) or, with an
   `F.error.json` saying why, to failed/; the claim file is removed last.

A claim file found at the start of a round means an earlier round stopped part-way (crash, lost
connection, restart). Before submitting again the poller asks the store whether a packet with that
claim was accepted; if so it only finishes the move. So a file is never submitted twice, whatever
instant the hub or the connection died at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import asyncssh

from lgsp.adapters.sftp.connection import Session, SftpError, SftpTooLarge, classify, open_session
from lgsp.adapters.sftp.manifest import (
    ERROR_SUFFIX,
    MANIFEST_SUFFIX,
    MAX_MANIFEST_SIZE,
    alternative_name,
    claim_name,
    claim_of,
    claim_time,
    done_manifest,
    error_document,
    is_data_name,
    manifest_name,
    new_claim,
    parse_claim_name,
    parse_submission,
    submission_packet,
)
from lgsp.adapters.sftp.settings import InboundSource
from lgsp.core.api import PacketInfo, Problem, Text

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.sftp")

# Problems that belong to the file: it goes to failed/. Any other error leaves the claim for a retry.
FILE_PROBLEMS = frozenset({"request.invalid", "request.malformed", "content.hash_mismatch",
                           "content.size_mismatch", "content.too_large", "route.unknown_destination", "not_found",
                           "auth.not_permitted"})


class Poller:
    """One unit's outbox, polled by its own task so a slow server never delays another unit."""

    def __init__(self, hub: Hub, source: InboundSource) -> None:
        self.hub = hub
        self.source = source
        self.unit = source.connection.unit
        self.rounds = 0
        self.submitted = 0
        self.failed = 0
        self.last_error: str | None = None  # the last problem of the latest round, None when it went well
        self._errors: list[str] = []
        self._undecodable: set[bytes] = set()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lgsp-sftp-inbound-{self.unit}")

    @property
    def alive(self) -> bool:
        """Started and still polling (a poller whose task ended has stopped working)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            self._errors = []
            try:
                # One node at a time per outbox: two nodes listing it together would race for its files.
                async with self.hub.db.single_node(f"sftp-inbound:{self.unit}") as mine:
                    if mine:
                        await self.poll_once()
            except SftpError as exc:
                self._errors.append(exc.reason)
                log.warning("sftp inbound %s: %s", self.unit, exc.reason)
            except Exception as exc:
                self._errors.append(f"{type(exc).__name__}: {exc}")
                log.exception("sftp inbound %s: poll round failed", self.unit)
            self.last_error = self._errors[-1] if self._errors else None
            self.rounds += 1
            await asyncio.sleep(self.source.poll_interval)

    # -- one round ------------------------------------------------------------------------------
    async def poll_once(self) -> None:
        unit = await self.hub.directory.get_unit(self.unit)
        if unit is None or unit.status != "active":
            raise SftpError(Text("unit {unit} is not registered or not active; its outbox is left alone",
                                 unit=self.unit),
                            retryable=True, code="sftp.unit_inactive")
        source = self.source
        async with open_session(self.hub, source.connection) as session:
            # Listed as bytes: one name that is not UTF-8 would otherwise fail the whole listing, every round.
            listing = await session.call(Text("list {outbox}", outbox=source.outbox),
                                         session.sftp.readdir(source.outbox.encode()))
            files = {}
            for entry in listing:
                if entry.attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                    continue
                raw = entry.filename if isinstance(entry.filename, bytes) else str(entry.filename).encode()
                try:
                    files[raw.decode("utf-8")] = entry.attrs
                except UnicodeDecodeError:
                    self._skip_undecodable(raw)
            claims = sorted(c for c in (parse_claim_name(name) for name in files) if c is not None)
            described = [name[:-len(MANIFEST_SUFFIX)] for name in files if name.endswith(MANIFEST_SUFFIX)]
            # Oldest manifest first; a manifest whose data file is not (yet) there waits.
            fresh = sorted((files[manifest_name(f)].mtime or 0, f) for f in described
                           if is_data_name(f) and f in files)
            if not claims and not fresh:
                return
            await session.ensure_dir(Text("create {done}", done=source.done), source.done)
            await session.ensure_dir(Text("create {failed}", failed=source.failed), source.failed)
            for file, claim in claims:
                await self._isolated(session, file, claim, recovering=True)
            for _, file in fresh[:max(0, source.max_files_per_poll - len(claims))]:
                claim = new_claim(datetime.now(UTC))
                if await self._claim(session, file, claim):
                    await self._isolated(session, file, claim, recovering=False)

    def _skip_undecodable(self, raw: bytes) -> None:
        """A file name that is not UTF-8 cannot be named in a manifest or moved by name: it is left
        where it is, and said once (not every round)."""
        if raw not in self._undecodable:
            self._undecodable.add(raw)
            log.warning("sftp inbound %s: ignoring a file whose name is not UTF-8: %r", self.unit, raw)

    async def _isolated(self, session: Session, file: str, claim: str, *, recovering: bool) -> None:
        """Process one file; its trouble (a read timing out, a folder it cannot move to) waits for the
        next round without holding up the other files, unless the connection itself is gone."""
        try:
            await self._process(session, file, claim, recovering=recovering)
        except SftpError as exc:
            if session.ssh.is_closed():
                raise
            self._errors.append(exc.reason)
            log.warning("sftp inbound %s: %s left for the next round: %s", self.unit, file, exc.reason)

    async def _claim(self, session: Session, file: str, claim: str) -> bool:
        outbox = self.source.outbox
        try:
            async with asyncio.timeout(session.conn.timeout):
                await session.sftp.rename(posixpath.join(outbox, manifest_name(file)),
                                          posixpath.join(outbox, claim_name(file, claim)))
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return False  # taken or withdrawn since the listing
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise classify(exc, session.conn, Text("claim {file}", file=file)) from exc
        return True

    async def _process(self, session: Session, file: str, claim: str, *, recovering: bool) -> None:
        outbox = self.source.outbox
        claim_path = posixpath.join(outbox, claim_name(file, claim))
        data_path = posixpath.join(outbox, file)
        problem: Problem | None = None
        fields = None
        try:
            raw = await session.read_small(Text("read manifest of {file}", file=file), claim_path, MAX_MANIFEST_SIZE)
        except SftpTooLarge:
            raw, problem = b"", Problem("request.invalid",
                                        Text("the manifest is larger than {MAX_MANIFEST_SIZE} bytes",
                                             MAX_MANIFEST_SIZE=MAX_MANIFEST_SIZE))
        if raw is None:
            return  # the claim file was removed by someone else meanwhile
        if problem is None:
            try:
                fields = parse_submission(raw, file)
            except Problem as exc:
                problem = exc
        if recovering:
            if fields is not None:
                packet = await self._claimed_packet(fields["sha256"], claim)
                if packet is not None:
                    log.info("sftp inbound %s: %s was already submitted as packet %s; finishing its move",
                             self.unit, file, packet.id)
                    await self._done(session, file, claim, fields, packet)
                    return
            slot = await self._slot(session, self.source.failed, file, claim, ERROR_SUFFIX, nested=False)
            marker = await self._read_marker(session, posixpath.join(self.source.failed, slot + ERROR_SUFFIX))
            if marker is not None and claim_of(marker, nested=False) == claim:
                await self._finish_failed(session, file, claim, slot)
                return
        data = await session.stat(Text("stat {file}", file=file), data_path)
        if data is None and problem is None:
            problem = Problem("not_found", Text("the data file {file} disappeared before the hub could take it",
                                                file=file))
        if problem is not None or fields is None or data is None:
            assert problem is not None
            await self._failed(session, file, claim, problem)
            return
        limits = self.hub.config.limits
        try:
            new = submission_packet(fields, int(data.size or 0), max_size=limits.max_packet_size,
                                    max_recipients=limits.max_recipients, now=datetime.now(UTC),
                                    meta={"sftp_file": file, "sftp_claim": claim})
        except Problem as exc:
            await self._failed(session, file, claim, exc)
            return
        content = self._content(session, data_path)
        try:
            packet = await self.hub.exchange.submit(self.unit, new, content)
        except Problem as exc:
            if exc.code in FILE_PROBLEMS:
                await self._failed(session, file, claim, exc)
                return
            raise SftpError(Text("the hub could not take {file} now ({exc}); will try again", file=file, exc=exc),
                            retryable=True, code="sftp.hub_busy") from None
        finally:
            await content.aclose()
        self.submitted += 1
        log.info("sftp inbound %s: %s submitted as packet %s", self.unit, file, packet.id)
        await self._done(session, file, claim, fields, packet)

    async def _content(self, session: Session, path: str) -> AsyncGenerator[bytes, None]:
        chunk_size = int(self.hub.config.limits.io_chunk_size)
        handle = await session.call(Text("open {path}", path=path), session.sftp.open(path, "rb", encoding=None))
        try:
            while True:
                block = await session.call(Text("read {path}", path=path), handle.read(chunk_size))
                if not block:
                    return
                yield cast(bytes, block)  # opened with encoding=None: asyncssh returns bytes
        finally:
            with contextlib.suppress(SftpError):
                await session.call(Text("close {path}", path=path), handle.close())

    async def _claimed_packet(self, sha256: object, claim: str) -> PacketInfo | None:
        """The accepted packet an earlier round made from this claim, if any."""
        if not isinstance(sha256, str):
            return None
        return await self.hub.exchange.find_submitted(self.unit, sha256, claim_time(claim) - timedelta(minutes=10),
                                                      "sftp_claim", claim)

    # -- moving files ---------------------------------------------------------------------------
    @staticmethod
    async def _read_marker(session: Session, path: str) -> bytes | None:
        try:
            return await session.read_small(Text("read {path}", path=path), path, MAX_MANIFEST_SIZE)
        except SftpTooLarge:
            return b""  # too large to be one of ours: the name is taken

    async def _slot(self, session: Session, folder: str, file: str, claim: str, suffix: str, *,
                    nested: bool) -> str:
        """The name `file` takes in `folder`: its own unless an older transfer of that name is there.

        A name is taken when its marker (`.manifest.json` in done/, `.error.json` in failed/) exists
        and records another claim; the choice is the same when a round is repeated after a crash.
        """
        for candidate in (file, alternative_name(file, claim)):
            marker = await self._read_marker(session, posixpath.join(folder, candidate + suffix))
            if marker is None or claim_of(marker, nested=nested) == claim:
                return candidate
        return alternative_name(file, claim)

    async def _done(self, session: Session, file: str, claim: str, fields: dict[str, object],
                    packet: PacketInfo) -> None:
        source = self.source
        slot = await self._slot(session, source.done, file, claim, MANIFEST_SUFFIX, nested=True)
        data_path = posixpath.join(source.outbox, file)
        if await session.stat(Text("stat {file}", file=file), data_path) is not None:
            await session.replace(Text("move {file} to {done}", file=file, done=source.done),
                                  data_path, posixpath.join(source.done, slot))
        record = done_manifest(dict(fields), packet=packet, claim=claim, hub_id=self.hub.config.hub.identifier)
        await session.write_small(Text("write manifest of {file} in {done}", file=file, done=source.done),
                                  posixpath.join(source.done, manifest_name(slot)), record)
        await session.remove(Text("remove claim of {file}", file=file),
                             posixpath.join(source.outbox, claim_name(file, claim)))

    async def _failed(self, session: Session, file: str, claim: str, problem: Problem) -> None:
        source = self.source
        slot = await self._slot(session, source.failed, file, claim, ERROR_SUFFIX, nested=False)
        report = error_document(problem, file=file, unit=self.unit, claim=claim,
                                hub_id=self.hub.config.hub.identifier, at=datetime.now(UTC))
        await session.write_small(Text("write error report of {file}", file=file),
                                  posixpath.join(source.failed, slot + ERROR_SUFFIX),
                                  report)
        self.failed += 1
        log.warning("sftp inbound %s: %s moved to %s: %s: %s", self.unit, file, source.failed, problem.code,
                    problem.detail)
        await self._finish_failed(session, file, claim, slot)

    async def _finish_failed(self, session: Session, file: str, claim: str, slot: str) -> None:
        source = self.source
        data_path = posixpath.join(source.outbox, file)
        if await session.stat(Text("stat {file}", file=file), data_path) is not None:
            await session.replace(Text("move {file} to {failed}", file=file, failed=source.failed),
                                  data_path, posixpath.join(source.failed, slot))
        await session.replace(Text("move manifest of {file} to {failed}", file=file, failed=source.failed),
                              posixpath.join(source.outbox, claim_name(file, claim)),
                              posixpath.join(source.failed, manifest_name(slot)))
