"""Units, applications and access keys: who may talk to the hub and with which key.

Used by the CLI (administration) and by authentication (key lookup). `key_material` reads the
store every time, with the store's key generation; authentication keeps what it read per process
(core/keycache.py), and the generation tells it on the next request, on every node, that a key
was revoked or its unit suspended. The decryption of a secret is cached, keyed by its ciphertext.
"""

from __future__ import annotations

import base64
import functools
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import audit
from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.identifiers import InvalidIdentifier, check_identifier, fold, identifier_form
from lgsp.core.masterkey import MasterKey
from lgsp.core.store.database import Database
from lgsp.core.store.params import MAX_PLAIN, in_list, in_values
from lgsp.core.store.tables import access_keys, applications, key_generation, units

UNIT_STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class Unit:
    id: str
    name: str
    parent_id: str | None
    zone: str
    legacy: bool
    status: str
    created_at: datetime
    online: bool
    last_seen_at: datetime | None
    clock_offset_seconds: float | None
    mail: str | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "parent": self.parent_id, "zone": self.zone,
                "status": self.status}


@dataclass(frozen=True)
class ZoneEntry:
    """One unit of another exchange's directory (the national axis's agencies, a peer hub's units)."""

    id: str
    name: str
    parent_id: str | None = None
    mail: str | None = None
    deleted: bool = False


@dataclass
class ZoneSync:
    """What `Directory.sync_zone` changed; `skipped` says why entries were left out."""

    added: int = 0
    updated: int = 0
    suspended: int = 0
    reactivated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Application:
    id: str
    unit_id: str
    name: str
    created_at: datetime
    retired_at: datetime | None = None  # its registration was cancelled (Mẫu 07)


@dataclass(frozen=True)
class AccessKey:
    id: str
    application_id: str
    unit_id: str
    algorithm: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """What an operator sees once: the access key and its secret or private key."""

    access_key: str
    algorithm: str
    unit_id: str
    application_id: str
    secret: str | None = None
    private_key_pem: str | None = None
    public_key_pem: str | None = None

    def __repr__(self) -> str:
        return f"IssuedKey({self.access_key!r}, {self.algorithm})"


@dataclass(frozen=True)
class KeyMaterial:
    """An access key as authentication needs it (verification key in clear, in memory only)."""

    access_key: str
    unit_id: str
    application_id: str
    algorithm: str
    revoked: bool
    unit_active: bool
    verification_key: str
    #: Client certificate fingerprints the unit's requests must come with (empty: none pinned).
    client_certs: tuple[str, ...] = ()
    #: The store's key generation (table `key_generation`) in the statement that read this key;
    #: None: not read (then the key is never cached).
    generation: int | None = None

    def __repr__(self) -> str:
        return f"KeyMaterial({self.access_key!r}, {self.algorithm})"


def _unit(row: Any) -> Unit:
    return Unit(id=row.id, name=row.name, parent_id=row.parent_id, zone=row.zone, legacy=row.legacy,
                status=row.status, created_at=row.created_at, online=row.online,
                last_seen_at=row.last_seen_at, clock_offset_seconds=row.clock_offset_seconds, mail=row.mail)


def new_access_key() -> str:
    return "AK" + base64.b32encode(secrets.token_bytes(15)).decode("ascii")


#: The store's key generation, as a scalar subquery (read with a key, and by each nonce write).
KEY_GENERATION = select(key_generation.c.generation).where(key_generation.c.id == 1).scalar_subquery()
# Read on every signed request whose key is not in the key cache: built once (SQLAlchemy then skips
# construction and cache keying).
_KEY_MATERIAL = (select(access_keys, units.c.status.label("unit_status"), units.c.client_cert_sha256,
                        KEY_GENERATION.label("key_generation"))
                 .join(units, units.c.id == access_keys.c.unit_id)
                 .where(access_keys.c.id == bindparam("access_key")))


@functools.cache
def _unit_statuses(n: int) -> Any:
    """Units by id, `n` of them (the destinations of each new packet): one statement per list length,
    served from SQLAlchemy's compiled cache (core/store/params.py)."""
    return select(units.c.id, units.c.status, units.c.zone).where(in_list(units.c.id, "ids", n))


_LOCK_KEY_GENERATION = select(key_generation.c.generation).where(key_generation.c.id == 1).with_for_update()


async def lock_key_generation(conn: AsyncConnection) -> None:
    """Take the key generation's row now, in a transaction that will write `units` or `access_keys`
    both in ways its triggers ignore (names) and in ways they count (a status).

    On PostgreSQL the triggers take that row before a statement locks any key or unit row
    (migration 0019), so two transactions that change what authenticates keys cannot wait on each
    other in a cycle; a transaction that locked a unit's row by renaming it first would break that
    order. SQLite has one writer at a time: nothing to do."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK_KEY_GENERATION)


#: Units reached through the national document axis; their identifiers may be the axis's own.
NATIONAL_ZONE = "national"


class Directory:
    def __init__(self, db: Database, master_key: MasterKey, algorithms: dict[str, Any], *,
                 rsa_key_bits: int = 3072) -> None:
        self.db = db
        self.master_key = master_key
        self.algorithms = algorithms
        self.rsa_key_bits = rsa_key_bits
        self._plain_cache: dict[tuple[str, bytes], str] = {}
        # Zone of units outside the local zone, as last read (every destination check refreshes the
        # units it names): how the delivery engine picks a zone's route without a query per delivery.
        self.zones: dict[str, str] = {}

    # -- units --------------------------------------------------------------------------------
    async def add_unit(self, unit_id: str, name: str, *, parent_id: str | None = None, zone: str = "local",
                       legacy: bool = False) -> Unit:
        try:  # the national axis names its agencies in its own form too (`vxp.saas.03`)
            check_identifier(unit_id, legacy=legacy or zone == NATIONAL_ZONE)
        except InvalidIdentifier as exc:
            raise Problem("request.invalid", exc.reason, field="id") from exc
        name = (name or "").strip()
        if not name or len(name) > 255:
            raise Problem("request.invalid", Text("name must be 1 to 255 characters"), field="name")
        if not zone or len(zone) > 64:
            raise Problem("request.invalid", Text("zone must be 1 to 64 characters"), field="zone")
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            if parent_id is not None:
                found = await conn.scalar(select(units.c.id).where(units.c.id == parent_id))
                if found is None:
                    raise Problem("request.invalid", Text("parent unit {parent_id} does not exist",
                                                          parent_id=parent_id), field="parent")
            # Legacy codes may be lowercase: `vxp.saas.02` and `VXP.SAAS.02` would be one system's code
            # written twice, so identifiers are unique regardless of case.
            same = await conn.scalar(select(units.c.id).where(func.upper(units.c.id) == unit_id.upper()))
            if same is not None:
                if same != unit_id:
                    raise Problem("conflict", Text("unit {unit} already exists (identifiers are compared regardless "
                                                   "of case: {given})", unit=same, given=unit_id))
                raise Problem("conflict", Text("unit {unit} already exists", unit=same))
            await conn.execute(units.insert().values(
                id=unit_id, name=name, name_folded=fold(name), parent_id=parent_id, zone=zone, legacy=legacy,
                status="active", created_at=now, online=False, stream_cursor=0))
            await audit.append(conn, "unit.added", target=unit_id, unit=unit_id, at=now,
                               detail={"name": name, "parent": parent_id, "zone": zone, "legacy": legacy})
        unit = await self.get_unit(unit_id)
        assert unit is not None
        return unit

    async def sync_zone(self, zone: str, entries: Iterable[ZoneEntry]) -> ZoneSync:
        """Make the directory's units of `zone` follow another exchange's list, in one transaction.

        New entries are added (legacy codes allowed: other systems' codes), names, mails and parents
        follow the list, an entry marked deleted is suspended (never removed: packets refer to it) and
        one listed again is active again. Units the list does not name are left alone (a short or
        empty answer must not wipe the directory), and a unit of another zone (a local unit with the
        same code) is never taken over.
        """
        if not zone or zone in ("local", "hub"):
            raise ValueError(f"zone {zone!r} is not another exchange's zone")
        out = ZoneSync()
        wanted: dict[str, ZoneEntry] = {}
        for entry in entries:
            try:
                check_identifier(entry.id, legacy=True)
            except InvalidIdentifier as exc:
                out.skipped.append((entry.id[:64], exc.reason))
                continue
            name = (entry.name or "").strip()[:255] or entry.id
            wanted[entry.id] = ZoneEntry(entry.id, name, entry.parent_id or None,
                                         (entry.mail or "").strip()[:255] or None, entry.deleted)
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            await lock_key_generation(conn)  # it renames units and suspends others, in one transaction
            rows = {r.id.upper(): r for r in (await conn.execute(
                select(units.c.id, units.c.name, units.c.parent_id, units.c.zone, units.c.status, units.c.mail))).all()}
            for code, entry in wanted.items():
                row = rows.get(code.upper())
                if row is not None and row.zone != zone:
                    out.skipped.append((code, Text("a unit of zone {zone} has this code", zone=row.zone)))
                    continue
                if row is None:
                    if entry.deleted:
                        continue
                    await conn.execute(units.insert().values(
                        id=code, name=entry.name, name_folded=fold(entry.name), parent_id=None, zone=zone,
                        legacy=identifier_form(code) is None, status="active", created_at=now, online=False,
                        stream_cursor=0, mail=entry.mail))
                    await audit.append(conn, "unit.added", target=code, unit=code, at=now,
                                       detail={"name": entry.name, "zone": zone, "via": "zone sync"})
                    out.added += 1
                    continue
                values: dict[str, Any] = {}
                if row.name != entry.name:
                    values.update(name=entry.name, name_folded=fold(entry.name))
                if row.mail != entry.mail:
                    values["mail"] = entry.mail
                if entry.deleted and row.status == "active":
                    values["status"] = "suspended"
                    out.suspended += 1
                elif not entry.deleted and row.status != "active":
                    values["status"] = "active"
                    out.reactivated += 1
                if values:
                    await conn.execute(update(units).where(units.c.id == row.id).values(**values))
                    if "status" in values:  # who may send and receive changed: as `lgsp unit suspend` records it
                        await audit.append(conn, "unit.status_changed", target=row.id, unit=row.id, at=now,
                                           detail={"status": values["status"], "via": "zone sync"})
                    out.updated += 1
                else:
                    out.unchanged += 1
            # Parents once every unit exists (an entry may come before its parent).
            known = {r.id.upper(): r.id for r in rows.values()} | {c.upper(): c for c in wanted}
            for code, entry in wanted.items():
                row = rows.get(code.upper())
                if row is not None and row.zone != zone:
                    continue
                parent = known.get((entry.parent_id or "").upper()) if entry.parent_id else None
                if parent == code:
                    parent = None
                if (row.parent_id if row is not None else None) != parent:
                    unit_id = row.id if row is not None else code
                    await conn.execute(update(units).where(units.c.id == unit_id).values(parent_id=parent))
                    # the unit tree decides `under:` policy rules: a move is a security fact
                    await audit.append(conn, "unit.parent_changed", target=unit_id, unit=unit_id, at=now,
                                       detail={"parent": parent, "via": "zone sync"})
        self.remember_zones((code, zone) for code in wanted if not any(s[0] == code for s in out.skipped))
        return out

    async def set_unit_status(self, unit_id: str, status: str) -> Unit:
        if status not in UNIT_STATUSES:
            raise Problem("request.invalid", Text("status must be one of {UNIT_STATUSES}",
                                                  UNIT_STATUSES=', '.join(UNIT_STATUSES)))
        async with self.db.write() as conn:
            result = await conn.execute(update(units).where(units.c.id == unit_id).values(status=status))
            if result.rowcount == 0:
                raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
            await audit.append(conn, "unit.status_changed", target=unit_id, unit=unit_id, detail={"status": status})
        unit = await self.get_unit(unit_id)
        assert unit is not None
        return unit

    async def get_unit(self, unit_id: str) -> Unit | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(units).where(units.c.id == unit_id))).first()
        return _unit(row) if row else None

    async def search_units(self, q: str = "", limit: int = 50) -> list[Unit]:
        """Units whose identifier starts with `q`, or whose name (with its parent's) holds every word of
        `q`, accents and case ignored ("so tai chinh dong nai" finds "Sở Tài chính tỉnh Đồng Nai").

        Ranked: the identifier itself, an identifier prefix, a name that starts with the words, a
        name that holds them all, then the words found only with the parent's name; then by id.
        """
        q = q.strip()
        if not q:
            stmt = select(units).order_by(units.c.id).limit(limit)
            async with self.db.read() as conn:
                rows = (await conn.execute(stmt)).all()
            return [_unit(r) for r in rows]
        folded = " ".join(fold(q).split())
        words = folded.split(" ")[:8]

        def like(text: str) -> str:
            return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

        parent = units.alias("parent")
        # Official codes are uppercase, legacy ones may be lowercase (`vxp.saas.02`): the prefix as typed,
        # in uppercase and in lowercase (PostgreSQL's LIKE is case-sensitive; SQLite's is not for ASCII).
        prefixes = {like(p) for p in (q, q.upper(), q.lower())}
        by_code = or_(*(units.c.id.like(p + "%", escape="\\") for p in sorted(prefixes)))
        with_parent = units.c.name_folded + " " + func.coalesce(parent.c.name_folded, "")
        by_words = and_(*(with_parent.like("%" + like(w) + "%", escape="\\") for w in words))
        stmt = (select(units, parent.c.name_folded.label("parent_folded"))
                .outerjoin(parent, parent.c.id == units.c.parent_id)
                .where(or_(by_code, by_words)).order_by(units.c.id).limit(max(limit * 10, 200)))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()

        def rank(row: Any) -> tuple[int, str]:
            name = " ".join(row.name_folded.split())
            if row.id.upper() == q.upper():
                return 0, row.id
            if row.id.upper().startswith(q.upper()):
                return 1, row.id
            if name.startswith(folded):
                return 2, row.id
            if all(w in name for w in words):
                return 3 if folded in name else 4, row.id
            return 5, row.id

        return [_unit(r) for r in sorted(rows, key=rank)[:limit]]

    async def existing_units(self, ids: list[str]) -> dict[str, str]:
        """id → status for those of `ids` that exist."""
        if not ids:
            return {}
        async with self.db.read() as conn:
            rows = (await conn.execute(_unit_statuses(min(len(ids), MAX_PLAIN + 1)), in_values("ids", ids))).all()
        self.remember_zones((r.id, r.zone) for r in rows)
        return {r.id: r.status for r in rows}

    async def zones_of(self, ids: list[str]) -> dict[str, str]:
        """id → zone for those of `ids` that exist and are active."""
        if not ids:
            return {}
        async with self.db.read() as conn:
            rows = (await conn.execute(_unit_statuses(min(len(ids), MAX_PLAIN + 1)), in_values("ids", ids))).all()
        self.remember_zones((r.id, r.zone) for r in rows)
        return {r.id: r.zone for r in rows if r.status == "active"}

    def remember_zones(self, pairs: Iterable[tuple[str, str]]) -> None:
        for unit_id, zone in pairs:
            if zone == "local":
                self.zones.pop(unit_id, None)
            else:
                self.zones[unit_id] = zone

    async def load_zones(self, zones: Iterable[str]) -> int:
        """Read the zone of every unit of `zones` (at start-up and after a directory sync)."""
        wanted = sorted(set(zones))
        if not wanted:
            return 0
        async with self.db.read() as conn:
            rows = (await conn.execute(select(units.c.id, units.c.zone).where(units.c.zone.in_(wanted)))).all()
        self.remember_zones((r.id, r.zone) for r in rows)
        return len(rows)

    async def count_units(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(units)) or 0)

    # -- applications -------------------------------------------------------------------------
    async def add_application(self, unit_id: str, name: str) -> Application:
        name = (name or "").strip()
        if not name or len(name) > 128:
            raise Problem("request.invalid", Text("application name must be 1 to 128 characters"), field="name")
        app = Application(id=str(uuid.uuid4()), unit_id=unit_id, name=name, created_at=datetime.now(UTC))
        try:
            async with self.db.write() as conn:
                if await conn.scalar(select(units.c.id).where(units.c.id == unit_id)) is None:
                    raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
                await conn.execute(applications.insert().values(
                    id=app.id, unit_id=unit_id, name=name, created_at=app.created_at))
                await audit.append(conn, "application.added", target=app.id, unit=unit_id, at=app.created_at,
                                   detail={"name": name})
        except IntegrityError as exc:
            raise Problem("conflict", Text("unit {unit_id} already has an application named {name!r}",
                                           unit_id=unit_id, name=name)) from exc
        return app

    async def list_applications(self, unit_id: str | None = None) -> list[Application]:
        stmt = select(applications).order_by(applications.c.unit_id, applications.c.name)
        if unit_id:
            stmt = stmt.where(applications.c.unit_id == unit_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Application(r.id, r.unit_id, r.name, r.created_at, r.retired_at) for r in rows]

    async def find_application(self, ref: str, unit_id: str | None = None) -> Application:
        """By id, or by name within a unit (the CLI accepts either)."""
        stmt = select(applications).where(applications.c.id == ref)
        if unit_id:
            stmt = select(applications).where(or_(
                applications.c.id == ref, (applications.c.unit_id == unit_id) & (applications.c.name == ref)))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        if len(rows) != 1:
            if unit_id:
                raise Problem("not_found", Text("application {ref!r} not found in unit {unit}", ref=ref, unit=unit_id))
            raise Problem("not_found", Text("application {ref!r} not found", ref=ref))
        r = rows[0]
        return Application(r.id, r.unit_id, r.name, r.created_at, r.retired_at)

    # -- keys ---------------------------------------------------------------------------------
    async def issue_key(self, application_id: str, algorithm: str, *, public_key_pem: str | None = None) -> IssuedKey:
        """Issue an access key. HMAC: a new secret; RSA: the given public key, or a new key pair."""
        alg = self.algorithms.get(algorithm)
        if alg is None:
            raise Problem("request.invalid", Text("unknown algorithm {algorithm!r} (one of {algorithms})",
                                                  algorithm=algorithm, algorithms=", ".join(sorted(self.algorithms))),
                          field="algorithm")
        async with self.db.read() as conn:
            app = (await conn.execute(select(applications).where(applications.c.id == application_id))).first()
        if app is None:
            raise Problem("not_found", Text("application {application_id} does not exist",
                                            application_id=application_id))
        if app.retired_at is not None:  # its registration was cancelled (Mẫu 07)
            raise Problem("conflict", Text("application {name} is retired; no new keys", name=app.name))
        access_key = new_access_key()
        secret = private_pem = public_pem = None
        sealed = None
        if alg.shared_secret:
            if public_key_pem:
                raise Problem("request.invalid", Text("{algorithm} uses a shared secret, not a public key",
                                                      algorithm=algorithm))
            secret = alg.new_secret()
            sealed = self.master_key.encrypt(secret, access_key)
        elif public_key_pem:
            try:
                public_pem = alg.check_public_key(public_key_pem)
            except ValueError as exc:
                raise Problem("request.invalid", str(exc), field="public_key") from exc
        else:
            private_pem, public_pem = alg.generate_keypair(self.rsa_key_bits)
        async with self.db.write() as conn:
            await conn.execute(access_keys.insert().values(
                id=access_key, application_id=app.id, unit_id=app.unit_id, algorithm=algorithm,
                secret_sealed=sealed, public_key_pem=public_pem, created_at=datetime.now(UTC)))
            await audit.append(conn, "key.issued", target=access_key, unit=app.unit_id,
                               detail={"application": app.id, "algorithm": algorithm})
        return IssuedKey(access_key=access_key, algorithm=algorithm, unit_id=app.unit_id, application_id=app.id,
                         secret=secret, private_key_pem=private_pem, public_key_pem=public_pem)

    async def list_keys(self, *, application_id: str | None = None, unit_id: str | None = None) -> list[AccessKey]:
        stmt = select(access_keys).order_by(access_keys.c.created_at)
        if application_id:
            stmt = stmt.where(access_keys.c.application_id == application_id)
        if unit_id:
            stmt = stmt.where(access_keys.c.unit_id == unit_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [AccessKey(r.id, r.application_id, r.unit_id, r.algorithm, r.created_at, r.revoked_at,
                          r.last_used_at) for r in rows]

    async def revoke_key(self, access_key: str) -> AccessKey:
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            row = (await conn.execute(select(access_keys).where(access_keys.c.id == access_key))).first()
            if row is None:
                raise Problem("not_found", Text("access key {access_key} does not exist", access_key=access_key))
            revoked_at = row.revoked_at
            if revoked_at is None:
                revoked_at = now
                await conn.execute(update(access_keys).where(access_keys.c.id == access_key)
                                   .values(revoked_at=revoked_at))
                await audit.append(conn, "key.revoked", target=access_key, unit=row.unit_id, at=now,
                                   detail={"application": row.application_id})
        return AccessKey(row.id, row.application_id, row.unit_id, row.algorithm, row.created_at, revoked_at,
                         row.last_used_at)

    async def key_material(self, access_key: str) -> KeyMaterial | None:
        """The key as authentication needs it, read fresh from the store, with the key generation."""
        async with self.db.read() as conn:
            row = (await conn.execute(_KEY_MATERIAL, {"access_key": access_key})).first()
        if row is None:
            return None
        if row.secret_sealed is not None:
            cache_key = (row.id, bytes(row.secret_sealed))
            verification = self._plain_cache.get(cache_key)
            if verification is None:
                verification = self.master_key.decrypt(bytes(row.secret_sealed), row.id)
                if len(self._plain_cache) > 10_000:
                    self._plain_cache.clear()
                self._plain_cache[cache_key] = verification
        else:
            verification = row.public_key_pem or ""
        return KeyMaterial(access_key=row.id, unit_id=row.unit_id, application_id=row.application_id,
                           algorithm=row.algorithm, revoked=row.revoked_at is not None,
                           unit_active=row.unit_status == "active", verification_key=verification,
                           client_certs=tuple((row.client_cert_sha256 or "").split()),
                           generation=row.key_generation)

    # -- client certificates (mutual TLS) -------------------------------------------------------
    async def pin_certificates(self, unit_id: str, fingerprints: list[str]) -> list[str]:
        """Set the client certificates `unit_id`'s requests must come with (empty list: none)."""
        if len(fingerprints) > 4:
            raise Problem("request.invalid", Text("at most 4 certificates per unit (two while one is renewed)"))
        value = " ".join(dict.fromkeys(fingerprints)) or None
        async with self.db.write() as conn:
            result = await conn.execute(update(units).where(units.c.id == unit_id).values(client_cert_sha256=value))
            if result.rowcount == 0:
                raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
            await audit.append(conn, "unit.certificates_pinned", target=unit_id, unit=unit_id,
                               detail={"sha256": list(dict.fromkeys(fingerprints))})
        return list(dict.fromkeys(fingerprints))

    async def pinned_certificates(self, unit_id: str) -> list[str]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(units.c.id, units.c.client_cert_sha256)
                                      .where(units.c.id == unit_id))).first()
        if row is None:
            raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
        return (row.client_cert_sha256 or "").split()
