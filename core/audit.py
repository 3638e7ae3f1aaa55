"""The tamper-evident audit log: security-relevant facts, each entry chained to the previous one.

Who did what, recorded so that an auditor can prove it was not changed afterwards: keys issued
and revoked, units and applications, policy changes, console accounts and operator actions,
packets created and accepted, and the end of each delivery with the content's hash.

Writing. `append` inserts the row in the transaction of the fact it records: the entry is durable
exactly when the fact is, never lost by a crash in between, and the hot path gets no commit (no
fsync) of its own. Chaining is done after, in batches: `AuditChain.chain` gives the rows not yet
chained, in insertion order, the next `seq`, the previous entry's hash and their own hash, in one
transaction per batch (a hub runs it every `audit.chain_interval_seconds`; on PostgreSQL an
advisory lock keeps two nodes from chaining at once). A crash before chaining loses nothing: the
rows wait and the next round chains them.

Proving. An entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON
(`canonical`). Anyone who can write the database could recompute the whole chain, so the head is
periodically signed with the hub's RSA key (`audit_seals`, every `audit.seal_interval_seconds`,
and by `lgsp audit sign`): a change to any entry before the last seal breaks either the chain or
that seal. `verify` recomputes everything and names the first altered, removed or inserted entry;
`export` writes a range with the seals after it and the hub's public keys, for offline checking
(docs/security.md has the script).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.i18n import Text
from lgsp.core.store import deferred
from lgsp.core.store.database import Database
from lgsp.core.store.tables import access_keys, audit_log, audit_seals, deliveries, packet_contents

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # the previous hash of the first entry
SEAL_FORMAT = "lgsp-audit-seal/1"
_LOCK_KEY = 0x6C677370_61756474  # pg_advisory_xact_lock key of the chainer ("lgspaudt")
_INSERT = audit_log.insert()
_CHAIN_ROW = (update(audit_log).where(audit_log.c.id == bindparam("row_id"))
              .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"), hash=bindparam("new_hash")))


#: Who acts, and from where, when a fact has no principal of its own: (actor, address). Unset: the
#: hub itself ("hub"). The CLI sets (the operator's name or None, "cli"), as console accounts do.
current_actor: ContextVar[tuple[str | None, str | None] | None] = ContextVar("lgsp_audit_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: str | None, address: str | None = None) -> Iterator[None]:
    """Attribute the facts recorded in this block to `actor` (an operator, a console account)."""
    token = current_actor.set((actor, address))
    try:
        yield
    finally:
        current_actor.reset(token)


async def append(conn: AsyncConnection, action: str, *, actor: str | None = None, target: str | None = None,
                 unit: str | None = None, detail: dict[str, Any] | None = None, at: datetime | None = None,
                 address: str | None = None) -> None:
    """Record one fact in the caller's transaction (chained shortly after by the chainer)."""
    if actor is None:
        acting = current_actor.get()
        actor, address = ("hub", address) if acting is None else (acting[0], address or acting[1])
    row = {"at": at or datetime.now(UTC), "actor": actor[:64] if actor else None,
           "address": address[:64] if address else None, "action": action,
           "target": target[:255] if target else None, "unit_id": unit, "detail": detail}
    # PostgreSQL: held and sent with the transaction's events INSERT (one round trip fewer).
    await deferred.insert(conn, audit_log, row, _INSERT)


_VARIANT_HASH = (select(packet_contents.c.variant, packet_contents.c.sha256)
                 .join(deliveries, and_(deliveries.c.packet_id == packet_contents.c.packet_id,
                                        deliveries.c.variant == packet_contents.c.variant))
                 .where(deliveries.c.packet_id == bindparam("packet_id"), deliveries.c.unit_id == bindparam("unit")))


#: `delivery_ended`'s caller does not know the delivery's variant (it is looked up).
UNKNOWN: Any = object()


async def delivery_ended(conn: AsyncConnection, packet: Any, unit: str, state: str, at: datetime,
                         reason: str | None = None, *, variant: str | object | None = UNKNOWN) -> None:
    """One delivery's end, with the hash of the content that destination was given (its variant's,
    when it takes another form of the packet). A caller that read the delivery in this transaction
    or just before passes its `variant`: None (the upload as is) then costs no look-up; a variant
    never changes once set, so what it read is what the look-up would find."""
    detail: dict[str, Any] = {"state": state, "sha256": packet.sha256, "source": packet.source}
    if variant is not None:
        row = (await conn.execute(_VARIANT_HASH, {"packet_id": packet.id, "unit": unit})).first()
        if row is not None:
            detail.update(variant=row.variant, sha256=row.sha256)
    if reason:
        detail["reason"] = reason[:500]
    await append(conn, f"delivery.{state}", actor=unit, target=packet.id, unit=unit, at=at, detail=detail)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: its fields as compact JSON with sorted keys."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_of(row: Any, seq: int | None = None) -> dict[str, Any]:
    """The hashed fields of a row, as an auditor sees them in an export."""
    return {"seq": row.seq if seq is None else seq, "id": row.id, "at": _time(row.at), "actor": row.actor,
            "address": row.address, "action": row.action, "target": row.target, "unit": row.unit_id,
            "detail": row.detail}


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(entry)).hexdigest()


def seal_message(seq: int, head_hash: str, signed_at: str) -> bytes:
    return f"{SEAL_FORMAT}\n{seq}\n{head_hash}\n{signed_at}\n".encode("ascii")


@dataclass
class Finding:
    """The first thing wrong with the chain: `kind` altered | removed | inserted | seal."""

    kind: str
    seq: int | None
    row_id: int | None
    detail: str

    def public(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "id": self.row_id, "detail": str(self.detail)}


@dataclass
class Report:
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    seals_checked: int = 0
    last_seal_seq: int | None = None
    last_seal_at: str | None = None
    pending: int = 0  # rows not chained yet
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "head_hash": self.head_hash, "seals_checked": self.seals_checked,
                "last_seal_seq": self.last_seal_seq, "last_seal_at": self.last_seal_at, "pending": self.pending,
                "findings": [f.public() for f in self.findings]}


#: `async () -> (access_key, algorithm name, sign(bytes) -> bytes)`: the hub's signing key.
SignerSource = Callable[[], Awaitable[tuple[str, str, Callable[[bytes], bytes]]]]


class AuditChain:
    def __init__(self, db: Database, signer: SignerSource, algorithms: dict[str, Any], *,
                 batch: int = 1000, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.signer = signer
        self.algorithms = algorithms
        self.batch = batch
        self.clock = clock

    # -- chaining -------------------------------------------------------------------------------
    async def chain(self) -> int:
        """Chain every row not chained yet; returns how many were chained."""
        total = 0
        while True:
            done = await self._chain_batch()
            total += done
            if done < self.batch:
                return total

    async def _chain_batch(self) -> int:
        async with self.db.read() as conn:  # most rounds find nothing: no write lock for them
            if await conn.scalar(select(audit_log.c.id).where(audit_log.c.seq.is_(None)).limit(1)) is None:
                return 0
        async with self.db.write() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            rows = (await conn.execute(select(audit_log).where(audit_log.c.seq.is_(None))
                                       .order_by(audit_log.c.id).limit(self.batch))).all()
            if not rows:
                return 0
            head = (await conn.execute(select(audit_log.c.seq, audit_log.c.hash).where(audit_log.c.seq.is_not(None))
                                       .order_by(audit_log.c.seq.desc()).limit(1))).first()
            seq, prev = (int(head.seq), str(head.hash)) if head is not None else (0, GENESIS)
            params = []
            for row in rows:
                seq += 1
                digest = entry_hash(prev, entry_of(row, seq))
                params.append({"row_id": row.id, "new_seq": seq, "new_prev": prev, "new_hash": digest})
                prev = digest
            await conn.execute(_CHAIN_ROW, params)
            return len(rows)

    # -- sealing --------------------------------------------------------------------------------
    async def seal(self, *, force: bool = False) -> dict[str, Any] | None:
        """Chain what waits, then sign the head if it moved since the last seal (or `force`)."""
        access_key, algorithm, sign = await self.signer()  # first: making the key is recorded too
        await self.chain()
        async with self.db.read() as conn:
            head = (await conn.execute(select(audit_log.c.seq, audit_log.c.hash).where(audit_log.c.seq.is_not(None))
                                       .order_by(audit_log.c.seq.desc()).limit(1))).first()
            last = await conn.scalar(select(func.max(audit_seals.c.seq)))
        if head is None or (last is not None and int(last) >= int(head.seq) and not force):
            return None
        now = self.clock()
        signed_at = _time(now)
        signature = base64.b64encode(sign(seal_message(int(head.seq), head.hash, signed_at))).decode("ascii")
        seal = {"seq": int(head.seq), "hash": head.hash, "signed_at": now, "access_key": access_key,
                "algorithm": algorithm, "signature": signature}
        async with self.db.write() as conn:
            exists = await conn.scalar(select(audit_seals.c.seq).where(audit_seals.c.seq == seal["seq"]))
            if exists is not None:  # another node sealed this head meanwhile
                return None
            await conn.execute(audit_seals.insert().values(**seal))
        return {**seal, "signed_at": signed_at}

    # -- verifying ------------------------------------------------------------------------------
    async def verify(self, since: datetime | None = None) -> Report:
        """Recompute the chain (from the first entry at or after `since`) and check every seal."""
        report = Report()
        async with self.db.read() as conn:
            report.pending = int(await conn.scalar(select(func.count()).select_from(audit_log)
                                                   .where(audit_log.c.seq.is_(None))) or 0)
            start_seq = 1
            if since is not None:
                first = await conn.scalar(select(func.min(audit_log.c.seq)).where(
                    audit_log.c.seq.is_not(None), audit_log.c.at >= since))
                start_seq = int(first) if first is not None else 0
            hashes: dict[int, str] = {}
            if start_seq:
                await self._walk(conn, start_seq, report, hashes)
            seals = (await conn.execute(select(audit_seals).order_by(audit_seals.c.seq))).all()
            keys = {r.id: r.public_key_pem for r in (await conn.execute(
                select(access_keys.c.id, access_keys.c.public_key_pem).where(
                    access_keys.c.id.in_({s.access_key for s in seals})))).all()} if seals else {}
            for seal in seals:
                if seal.seq < start_seq:
                    continue
                stored = hashes.get(int(seal.seq))
                if stored is None:
                    stored = await conn.scalar(select(audit_log.c.hash).where(audit_log.c.seq == seal.seq))
                problem = self._seal_problem(seal, stored, keys.get(seal.access_key))
                report.seals_checked += 1
                report.last_seal_seq, report.last_seal_at = int(seal.seq), _time(seal.signed_at)
                if problem and not report.findings:
                    report.findings.append(Finding("seal", int(seal.seq), None, problem))
        return report

    async def _walk(self, conn: AsyncConnection, start_seq: int, report: Report, hashes: dict[int, str]) -> None:
        expected_seq = start_seq
        prev: str | None = None  # the stored hash of the previous entry
        before_prev: str | None = None
        if start_seq > 1:
            prev = await conn.scalar(select(audit_log.c.hash).where(audit_log.c.seq == start_seq - 1))
        else:
            prev = GENESIS
        after = start_seq - 1
        while True:
            rows = (await conn.execute(select(audit_log).where(audit_log.c.seq > after)
                                       .order_by(audit_log.c.seq).limit(2000))).all()
            if not rows:
                return
            for row in rows:
                seq = int(row.seq)
                after = seq
                report.checked += 1
                report.first_seq = report.first_seq or seq
                report.last_seq, report.head_hash = seq, row.hash
                hashes[seq] = row.hash
                if report.findings:
                    continue
                recomputed = entry_hash(row.prev_hash or "", entry_of(row))
                if seq != expected_seq:
                    missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
                    report.findings.append(Finding("removed", expected_seq, None,
                                                   Text("entries {missing} are missing before seq {seq} (id {id})",
                                                        missing=missing, seq=seq, id=row.id)))
                elif prev is not None and row.prev_hash != prev:
                    if before_prev is not None and row.prev_hash == before_prev:
                        report.findings.append(Finding("inserted", seq - 1, None,
                                                       Text("the entry at seq {before} was not in the chain: seq "
                                                            "{seq} (id {id}) follows the entry before it",
                                                            before=seq - 1, seq=seq, id=row.id)))
                    else:
                        report.findings.append(Finding("altered", seq - 1, None,
                                                       Text("seq {seq} (id {id}) does not follow the entry "
                                                            "before it: that entry or this link was changed",
                                                            seq=seq, id=row.id)))
                elif recomputed != row.hash:
                    report.findings.append(Finding("altered", seq, row.id,
                                                   Text("the content of seq {seq} (id {id}, {action}) "
                                                        "does not match its hash", seq=seq, id=row.id,
                                                        action=row.action)))
                expected_seq = seq + 1
                before_prev, prev = prev, row.hash

    def _seal_problem(self, seal: Any, stored: str | None, public_key: str | None) -> str | None:
        if stored is None:
            return Text("the sealed entry seq {seq} is missing", seq=seal.seq)
        if stored != seal.hash:
            return Text("the entry at seq {seq} differs from the one sealed at {at}", seq=seal.seq,
                        at=_time(seal.signed_at))
        alg = self.algorithms.get(seal.algorithm)
        if alg is None or not public_key:
            return Text("the seal at seq {seq} names a key or algorithm this hub does not have", seq=seal.seq)
        try:
            signature = base64.b64decode(seal.signature, validate=True)
        except ValueError:
            signature = b""
        if not alg.verify(public_key, seal_message(int(seal.seq), seal.hash, _time(seal.signed_at)), signature):
            return Text("the signature of the seal at seq {seq} does not verify", seq=seal.seq)
        return None

    # -- exporting ------------------------------------------------------------------------------
    async def export(self, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
        """Entries in [since, until) with what an auditor needs to check them offline: the hash
        before the first, the seal at or after the last (made now if none is), and the hub's keys."""
        await self.seal()
        stmt = select(audit_log).where(audit_log.c.seq.is_not(None)).order_by(audit_log.c.seq)
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= since)
        if until is not None:
            stmt = stmt.where(audit_log.c.at < until)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
            first_seq = int(rows[0].seq) if rows else 0
            last_seq = int(rows[-1].seq) if rows else 0
            # A time range over entries chained in seq order: keep the contiguous run from the first.
            entries: list[dict[str, Any]] = []
            for row in rows:
                if int(row.seq) != first_seq + len(entries):
                    break
                entries.append({**entry_of(row), "prev_hash": row.prev_hash, "hash": row.hash})
            last_seq = first_seq + len(entries) - 1 if entries else 0
            seals = (await conn.execute(select(audit_seals).where(audit_seals.c.seq >= last_seq)
                                        .order_by(audit_seals.c.seq))).all() if entries else []
            # The entries between the range's end and each seal, as hashes only, so the seal can be reached.
            bridge = (await conn.execute(select(audit_log.c.seq, audit_log.c.prev_hash, audit_log.c.hash)
                                         .where(audit_log.c.seq > last_seq, audit_log.c.seq <= seals[0].seq)
                                         .order_by(audit_log.c.seq))).all() if seals else []
            keys = (await conn.execute(select(access_keys.c.id, access_keys.c.algorithm, access_keys.c.public_key_pem)
                                       .where(access_keys.c.id.in_({s.access_key for s in seals})))).all() \
                if seals else []
        return {
            "format": "lgsp-audit-export/1",
            "exported_at": _time(self.clock()),
            "genesis": GENESIS,
            "entries": entries,
            "bridge": [{"seq": int(b.seq), "prev_hash": b.prev_hash, "hash": b.hash} for b in bridge],
            "seals": [{"seq": int(s.seq), "hash": s.hash, "signed_at": _time(s.signed_at),
                       "access_key": s.access_key, "algorithm": s.algorithm, "signature": s.signature}
                      for s in seals[:1]],
            "keys": {k.id: {"algorithm": k.algorithm, "public_key_pem": k.public_key_pem} for k in keys},
        }


def verify_export(doc: dict[str, Any]) -> list[str]:
    """Check an export offline (what the docs' script does); returns the problems found."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    problems: list[str] = []
    entries = doc.get("entries", [])
    prev = entries[0]["prev_hash"] if entries else None
    for i, e in enumerate(entries):
        fields = {k: e[k] for k in ("seq", "id", "at", "actor", "address", "action", "target", "unit", "detail")}
        if e["prev_hash"] != prev:
            problems.append(f"seq {e['seq']}: does not follow the entry before it")
        if entry_hash(e["prev_hash"], fields) != e["hash"]:
            problems.append(f"seq {e['seq']}: content does not match its hash")
        if i and e["seq"] != entries[i - 1]["seq"] + 1:
            problems.append(f"seq {e['seq']}: entries missing before it")
        prev = e["hash"]
    for b in doc.get("bridge", []):
        if b["prev_hash"] != prev:
            problems.append(f"seq {b['seq']}: the bridge to the seal is broken")
        prev = b["hash"]
    seals = doc.get("seals", [])
    if not seals:
        problems.append("no seal covers this range yet (run lgsp audit sign, then export again)")
    for s in seals:
        if s["hash"] != prev:
            problems.append(f"the seal at seq {s['seq']} does not cover the exported chain")
        key = serialization.load_pem_public_key(doc["keys"][s["access_key"]]["public_key_pem"].encode())
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            key.verify(base64.b64decode(s["signature"]), seal_message(s["seq"], s["hash"], s["signed_at"]),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            problems.append(f"the signature of the seal at seq {s['seq']} does not verify")
    return problems
