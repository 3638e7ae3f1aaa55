"""Authentication of signed requests, sessions, and verification on behalf of a destination.

Transport-neutral: adapters hand over the method, path, raw query and the X-LGSP-* header values
(REST and SOAP alike) and get a Principal or a Problem. Checks run cheapest-first, and the nonce
is recorded only once the signature holds, so an unauthenticated caller cannot burn nonces.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from lgsp.core.directory import KEY_GENERATION, Directory, KeyMaterial
from lgsp.core.errors import Problem
from lgsp.core.events import iso
from lgsp.core.i18n import Text
from lgsp.core.keycache import KeyCache
from lgsp.core.policy import Policy
from lgsp.core.presence import Presence
from lgsp.core.signing import (
    DATE_SHAPE,
    H_CONTENT,
    H_DATE,
    H_KEY,
    H_NONCE,
    H_SESSION,
    H_SIGNATURE,
    NONCE_RE,
    SHA256_RE,
    SIGNED_HEADERS,
    SignedRequest,
    parse_date,
    parse_signature_header,
)
from lgsp.core.store.database import Database
from lgsp.core.store.params import MAX_ROWS, rows_select, rows_values
from lgsp.core.store.tables import nonces, sessions
from lgsp.core.text import MAX_HEADER, ascii_header_problem

SESSION_PREFIX = "ST"
#: Longest accepted value per header (others: MAX_HEADER); a session token is 45 characters.
MAX_HEADER_LENGTHS = {H_KEY: 64, H_SESSION: 128, H_DATE: 64, H_NONCE: 64, H_CONTENT: 64}


@dataclass(frozen=True)
class Principal:
    """Who made a request: the unit, its application and key, and the session if one was used."""

    unit_id: str
    application_id: str
    access_key: str
    algorithm: str
    session_target: str | None = None
    session_hash: str | None = None


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: datetime
    unit: str
    target: str | None

    def public(self) -> dict[str, Any]:
        return {"token": self.token, "expires_at": iso(self.expires_at), "unit": self.unit,
                "target": self.target}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_signed_request(method: str, path: str, raw_query: str, headers: Mapping[str, str]) -> SignedRequest:
    """Read the X-LGSP-* headers, or raise auth.missing naming what is absent or malformed.

    Every one must be printable ASCII of bounded length before anything else looks at it: the
    values reach key and session lookups, and a byte like 0xFF (which aiohttp hands over as a lone
    surrogate) is not something a store can be asked about.
    """
    for name in SIGNED_HEADERS:
        value = headers.get(name)
        if value:
            why = ascii_header_problem(value, max_length=MAX_HEADER_LENGTHS.get(name, MAX_HEADER))
            if why is not None:
                raise Problem("auth.missing", Text("header {name} {why}", name=name, why=why), header=name)

    def need(name: str) -> str:
        value = headers.get(name)
        if value is None or value == "":
            raise Problem("auth.missing", Text("header {name} is required", name=name), header=name)
        return value

    access_key = need(H_KEY)
    date = need(H_DATE)
    nonce = need(H_NONCE)
    content = need(H_CONTENT)
    signature_header = need(H_SIGNATURE)
    session = headers.get(H_SESSION) or ""
    try:
        sent_at = parse_date(date)
    except ValueError as exc:
        raise Problem("auth.missing", Text("{H_DATE} must be UTC time as {DATE_SHAPE}", H_DATE=H_DATE,
                                           DATE_SHAPE=DATE_SHAPE)) from exc
    if not NONCE_RE.fullmatch(nonce):
        raise Problem("auth.missing", Text("{H_NONCE} must be 8 to 64 characters of [A-Za-z0-9_-]", H_NONCE=H_NONCE))
    if not SHA256_RE.fullmatch(content):
        raise Problem("auth.missing", Text("{H_CONTENT} must be 64 lowercase hex digits", H_CONTENT=H_CONTENT))
    try:
        algorithm, signature = parse_signature_header(signature_header)
    except ValueError as exc:
        raise Problem("auth.missing", Text("{H_SIGNATURE}: {exc}", H_SIGNATURE=H_SIGNATURE, exc=exc)) from exc
    req = SignedRequest(method=method.upper(), path=path, raw_query=raw_query, access_key=access_key,
                        date=date, nonce=nonce, session=session, content_sha256=content,
                        algorithm=algorithm, signature=signature)
    req.__dict__["sent_at"] = sent_at  # the date is parsed once per request (SignedRequest.sent_at)
    return req


class Authenticator:
    def __init__(self, db: Database, directory: Directory, algorithms: dict[str, Any], presence: Presence, *,
                 clock_skew_seconds: int, session_ttl_seconds: int, key_cache_seconds: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        # Keys of signed requests, kept per process; the nonce write says when one may be stale.
        self.keys = KeyCache(ttl_seconds=key_cache_seconds)
        self.directory = directory
        self.algorithms = algorithms
        self.presence = presence
        self.skew = timedelta(seconds=clock_skew_seconds)
        self.session_ttl = timedelta(seconds=session_ttl_seconds)
        self.clock = clock
        # Extra ways to resolve a session target (e.g. registered services); unit ids are built in.
        # Each is `async (principal, target) -> True (may reach) | False (may not) | None (not mine)`.
        self.nonces = NonceBook(db)
        self.target_resolvers: list[Callable[[Principal, str], Any]] = []
        # `async (target) -> unit id | None`: the unit that answers for a non-unit target (a service's
        # owner), which may then verify requests made under sessions for that target.
        self.target_owners: list[Callable[[str], Any]] = []
        # The communication policy (core/policy.py), consulted when a session names a unit as target.
        self.policy: Policy | None = None

    async def authenticate(self, method: str, path: str, raw_query: str, headers: Mapping[str, str], *,
                           client_cert: str | None = None) -> Principal:
        """`client_cert`: the SHA-256 of the TLS client certificate the request came with (None: none)."""
        request = parse_signed_request(method, path, raw_query, headers)
        return await self.verify(request, client_cert=client_cert, check_cert=True)

    async def usable_key(self, access_key: str) -> KeyMaterial:
        """The key, read fresh from the store (so a revocation holds on every node at once), or the
        problem that refuses it: unknown, revoked, or its unit suspended."""
        key = await self.directory.key_material(access_key)
        _check_usable(access_key, key)
        assert key is not None
        return key

    async def verify(self, req: SignedRequest, *, client_cert: str | None = None,
                     check_cert: bool = False) -> Principal:
        """Check one signed request; on success its nonce is spent. With `check_cert`, a unit whose
        client certificates are pinned must have sent one of them, checked before anything else.

        The key comes from the per-process cache when it holds it (core/keycache.py): the nonce
        write reads the store's key generation back, and when it moved since the key was read the
        key is read again and the request checked again before it is accepted. A request the cached
        key refuses is decided again on the key read fresh, so every refusal is the store's."""
        now = self.clock()
        cached = self.keys.get(req.access_key)
        key: KeyMaterial | None = None
        principal: Principal | None = None
        generation: int | None = None
        if cached is not None:
            try:
                principal, generation = await self._accept(req, cached.key, now, client_cert, check_cert)
                key = cached.key
            except Problem:
                self.keys.drop(req.access_key)
        if principal is None:
            key = await self.directory.key_material(req.access_key)
            principal, generation = await self._accept(req, key, now, client_cert, check_cert)
            if key is not None:
                self.keys.put(key)
        assert key is not None
        if generation != key.generation:
            # What authenticates keys changed between the key's read and this nonce write (this key,
            # or another one: the counter is global). Read it again; decide on what the store says now.
            self.keys.stale += 1
            self.keys.drop(req.access_key)
            key = await self.directory.key_material(req.access_key)
            self._check_key(req, key, now, client_cert, check_cert)
            assert key is not None
            self.keys.put(key)
            principal = Principal(key.unit_id, key.application_id, key.access_key, key.algorithm,
                                  principal.session_target, principal.session_hash)
        self.presence.request_seen(key.unit_id, now, (req.sent_at - now).total_seconds())
        return principal

    async def _accept(self, req: SignedRequest, key: KeyMaterial | None, now: datetime, client_cert: str | None,
                      check_cert: bool) -> tuple[Principal, int | None]:
        """Check the request against `key`, then spend its nonce: the principal, and the key
        generation the nonce write read (None: the store keeps none)."""
        self._check_key(req, key, now, client_cert, check_cert)
        assert key is not None
        principal = Principal(key.unit_id, key.application_id, key.access_key, key.algorithm)
        if req.session:
            principal = await self._check_session(req, key, principal, now)
        spent = await self.nonces.spend_reading_generation(req.access_key, req.nonce,
                                                           req.sent_at + self.skew)
        if spent is None:
            raise Problem("auth.replay", Text("this nonce was already used with this key"))
        return principal, spent.generation

    def _check_key(self, req: SignedRequest, key: KeyMaterial | None, now: datetime, client_cert: str | None,
                   check_cert: bool) -> None:
        """Everything about the request that needs only its key, cheapest first."""
        _check_usable(req.access_key, key)
        assert key is not None
        if check_cert and key.client_certs and not any(
                secrets.compare_digest(client_cert or "", pinned) for pinned in key.client_certs):
            raise Problem("auth.bad_certificate",
                          Text("unit {unit_id} must connect over TLS with its registered client certificate",
                               unit_id=key.unit_id))
        offset = (req.sent_at - now).total_seconds()
        if abs(offset) > self.skew.total_seconds():
            raise Problem("auth.clock_skew",
                          Text("request time {date} is {seconds:.0f} s ahead of hub time; allowed {allowed:.0f} s",
                               date=req.date, seconds=abs(offset), allowed=self.skew.total_seconds()) if offset > 0
                          else Text("request time {date} is {seconds:.0f} s behind hub time; allowed {allowed:.0f} s",
                                    date=req.date, seconds=abs(offset), allowed=self.skew.total_seconds()),
                          server_time=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self._check_signature(req, key)

    async def _answers_for(self, unit: str, target: str | None) -> bool:
        if target is None:
            return False
        if target == unit:
            return True
        for owner_of in self.target_owners:
            if await owner_of(target) == unit:
                return True
        return False

    def _check_signature(self, req: SignedRequest, key: KeyMaterial) -> None:
        if req.algorithm != key.algorithm:
            raise Problem("auth.bad_signature",
                          Text("signed with {algorithm} but key {access_key} is bound to {algorithm2}",
                               algorithm=req.algorithm, access_key=key.access_key, algorithm2=key.algorithm))
        alg = self.algorithms.get(key.algorithm)
        if alg is None:  # the key's algorithm plugin is no longer installed
            raise Problem("auth.bad_signature", Text("algorithm {algorithm} is not available on this hub",
                                                     algorithm=key.algorithm))
        if not alg.verify(key.verification_key, req.message(), req.signature):
            raise Problem("auth.bad_signature", Text("signature does not match the request"))

    async def _check_session(self, req: SignedRequest, key: KeyMaterial, principal: Principal,
                             now: datetime) -> Principal:
        digest = token_hash(req.session)
        async with self.db.read() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.token_hash == digest))).first()
        if row is None or not secrets.compare_digest(row.token_hash, digest):
            raise Problem("auth.bad_session", Text("unknown session token"))
        if row.access_key != key.access_key:
            raise Problem("auth.bad_session", Text("session token belongs to another access key"))
        if row.expires_at <= now:
            raise Problem("auth.bad_session", Text("session token has expired"))
        return Principal(principal.unit_id, principal.application_id, principal.access_key, principal.algorithm,
                         session_target=row.target, session_hash=digest)

    # -- sessions -----------------------------------------------------------------------------
    async def create_session(self, principal: Principal, target: str | None) -> Session:
        if target is not None:
            await self._authorise_target(principal, target)
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + self.session_ttl
        async with self.db.write() as conn:
            await conn.execute(sessions.insert().values(
                token_hash=token_hash(token), access_key=principal.access_key, unit_id=principal.unit_id,
                target=target, created_at=now, expires_at=expires))
        return Session(token, expires, principal.unit_id, target)

    async def _authorise_target(self, principal: Principal, target: str) -> None:
        for resolver in self.target_resolvers:
            verdict = await resolver(principal, target)
            if verdict is True:
                return
            if verdict is False:
                raise Problem("forbidden", Text("unit {unit_id} may not reach {target}", unit_id=principal.unit_id,
                                                target=target))
        status = (await self.directory.existing_units([target])).get(target)
        if status != "active":
            raise Problem("forbidden", Text("{target} is not a reachable unit or service", target=target))
        if self.policy is not None:  # after the directory's answer, so a refusal tells nothing more
            await self.policy.check_session(principal.unit_id, principal.application_id or None, target)

    # -- verification for a destination -------------------------------------------------------
    async def verify_for(self, asker: Principal, method: str, path: str, raw_query: str,
                         headers: Mapping[str, str]) -> dict[str, Any]:
        """Is a request that `asker` received genuine? Spends its nonce, so a replay shows up."""
        try:
            req = parse_signed_request(method, path, raw_query, headers)
            if req.session:  # before anything else; a session's target never changes
                await self._check_asker(req.session, asker.unit_id)
            who = await self.verify(req)
        except Problem as problem:
            if problem.code == "forbidden":
                raise
            return {"valid": False, "code": problem.code, "detail": problem.detail}
        return {"valid": True, "unit": who.unit_id, "application": who.application_id,
                "target": who.session_target, "content_sha256": req.content_sha256}

    async def _check_asker(self, token: str, asker: str) -> None:
        """Refuse a non-target before anything else, so the answer says nothing about the request."""
        async with self.db.read() as conn:
            target = (await conn.execute(select(sessions.c.target).where(
                sessions.c.token_hash == token_hash(token)))).first()
        if target is not None and not await self._answers_for(asker, target.target):
            raise Problem("forbidden", Text("only the session's target may verify requests made under it"))

    # -- housekeeping -------------------------------------------------------------------------
    async def purge_expired(self) -> int:
        now = self.clock()
        async with self.db.write() as conn:
            a = await conn.execute(delete(nonces).where(nonces.c.expires_at < now))
            b = await conn.execute(delete(sessions).where(sessions.c.expires_at < now - timedelta(days=1)))
        return (a.rowcount or 0) + (b.rowcount or 0)


def _check_usable(access_key: str, key: KeyMaterial | None) -> None:
    """Refuse a key that is unknown, revoked, or whose unit is suspended."""
    if key is None:
        raise Problem("auth.unknown_key", Text("access key {access_key} is not registered", access_key=access_key))
    if key.revoked:
        raise Problem("auth.revoked_key", Text("access key {access_key} has been revoked", access_key=access_key))
    if not key.unit_active:
        raise Problem("auth.revoked_key", Text("unit {unit_id} is suspended", unit_id=key.unit_id))


@dataclass(frozen=True)
class Spent:
    """A nonce recorded for the first time, and the store's key generation its write read."""

    generation: int | None


_SPEND_COLUMNS = ("access_key", "nonce", "expires_at")


def _spend_insert(dialect: str) -> Any:
    """The nonces' INSERT … ON CONFLICT DO NOTHING of `dialect`."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(nonces)


def _spent(insert: Any) -> Any:
    """`insert` … RETURNING the pairs it recorded and the key generation read by the same statement
    (core/keycache.py)."""
    return (insert.on_conflict_do_nothing()
            .returning(nonces.c.access_key, nonces.c.nonce, KEY_GENERATION.label("key_generation")))


@functools.lru_cache(maxsize=2 * MAX_ROWS)
def _spend_statement(dialect: str, n: int) -> Any:
    """The nonce batch of `n` rows, as INSERT … SELECT (`params.rows_select`): one statement object
    per dialect and batch size, so the store runs it at the driver once it has seen it run
    (core/store/prepared.py, core/store/pg_direct.py)."""
    return _spent(_spend_insert(dialect).from_select(list(_SPEND_COLUMNS),
                                                     rows_select(nonces, _SPEND_COLUMNS, n, "n")))


@functools.cache
def _spend_many_statement(dialect: str) -> Any:
    """A batch larger than `MAX_ROWS`: a list of parameter sets, which SQLAlchemy sends as one
    multi-row INSERT (insertmanyvalues) from a statement it compiled once."""
    return _spent(_spend_insert(dialect))


class NonceBook:
    """Spends nonces durably, many requests to one write transaction (group commit).

    Every signed request must record its nonce before it is served, so a replay is caught on any node
    and after a restart. One transaction per request made nonces the largest share of the hub's
    writes; here a request joins the batch being gathered while the previous one commits, and each
    waits for its own answer, so nothing is served on an unrecorded nonce.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[str, str, datetime, asyncio.Future[Spent | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def spend(self, access_key: str, nonce: str, expires_at: datetime) -> bool:
        """True if this key had not used this nonce; False if it had (a replay)."""
        return await self.spend_reading_generation(access_key, nonce, expires_at) is not None

    async def spend_reading_generation(self, access_key: str, nonce: str, expires_at: datetime) -> Spent | None:
        """Spent (with the key generation the write read) if this key had not used this nonce;
        None if it had (a replay)."""
        future: asyncio.Future[Spent | None] = asyncio.get_running_loop().create_future()
        self._pending.append((access_key, nonce, expires_at, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    fresh, generation = await self._record(batch)
                except Exception as exc:
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for access_key, nonce, _, future in batch:
                    if not future.done():
                        # The first request with a pair wins; a second one in the same batch is a replay.
                        future.set_result(Spent(generation) if (access_key, nonce) in fresh else None)
                        fresh.discard((access_key, nonce))
        finally:
            self._flusher = None

    async def _record(self, batch: list[tuple[str, str, datetime, Any]]) -> tuple[set[tuple[str, str]], int | None]:
        """The pairs recorded now (the others were already there), and the key generation that the
        same statement read: what the keys' cache compares its entries with (core/keycache.py)."""
        rows = {(k, n): e for k, n, e, _ in reversed(batch)}  # one row per pair
        values = [{"access_key": k, "nonce": n, "expires_at": e} for (k, n), e in rows.items()]
        # One statement, so a transaction of its own (no BEGIN and COMMIT round trips on PostgreSQL).
        if len(values) <= MAX_ROWS:
            result = await self.db.write_statement(_spend_statement(self.db.dialect, len(values)),
                                                   rows_values(values, _SPEND_COLUMNS, "n"))
        else:
            result = await self.db.write_statement(_spend_many_statement(self.db.dialect), values)
        generation = result[0].key_generation if result else None
        return {(r.access_key, r.nonce) for r in result}, generation
