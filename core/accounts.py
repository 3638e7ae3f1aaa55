"""People's accounts for the console: passwords (Argon2), an optional TOTP second factor, lockout,
roles, server-side sessions and the audit trail of every account and operator action.

Units authenticate with signed requests (core/auth.py); people sign in here. The two never mix:
an account reaches units only through its role and, for a unit admin, its unit (and, when an
operator allows it, that unit's children). Every change here writes an `audit_log` row in the
same transaction, saying who did it, when, what, and from which address.

Argon2 hashing costs tens of milliseconds of CPU by design, so it runs in a worker thread, off the
event loop. A sign-in with an unknown username still verifies against a dummy hash, so timing does
not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import audit
from lgsp.core.i18n import N_, gettext
from lgsp.core.masterkey import MasterKey
from lgsp.core.store.database import Database
from lgsp.core.store.tables import accounts, audit_log, console_sessions, units

Role = Literal["operator", "approver", "unit_admin", "viewer"]
ROLES: tuple[Role, ...] = ("operator", "approver", "unit_admin", "viewer")
#: The roles as a person reads them, marked for the catalogues (gettext where shown).
ROLE_NAMES: dict[str, str] = {
    "operator": N_("Hub administrator"), "approver": N_("Approver"),
    "unit_admin": N_("Unit administrator"), "viewer": N_("Viewer"),
}
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
TOTP_ISSUER = "LGSP"

# Stable reasons an account action fails (the code is kept for code and logs), each with the msgid of
# what a person reads, translated into the reader's language (docs/i18n.md).
MESSAGES: dict[str, str] = {
    "bad_credentials": N_("Wrong username or password."),
    "locked": N_("Account locked after repeated failures; try again in {minutes} minutes."),
    "disabled": N_("The account is disabled."),
    "totp_required": N_("Enter the 6-digit authenticator code."),
    "totp_invalid": N_("Wrong or already used authenticator code."),
    "username": N_("Usernames are 3-64 characters of a-z, 0-9, '.', '_', '-'."),
    "password_short": N_("Passwords have at least {min} characters."),
    "password_long": N_("Passwords have at most {max} characters."),
    "password_same": N_("The new password must differ from the old one."),
    "password_username": N_("The password must not contain the username."),
    "role": N_("Unknown role (operator, approver, unit_admin, viewer)."),
    "unit_required": N_("A unit admin needs a unit."),
    "unit_unknown": N_("Unit {unit} does not exist."),
    "exists": N_("Username {username} is taken."),
    "not_found": N_("No account {username}."),
    "display_name": N_("Display names have at most 200 characters and no control characters."),
    "last_operator": N_("The last active operator cannot be disabled or demoted."),
}
#: Values every message may name besides its own arguments.
_LIMITS = {"min": MIN_PASSWORD, "max": MAX_PASSWORD}


class AccountError(Exception):
    """An account action that cannot be done; `reason` is a key of MESSAGES."""

    def __init__(self, reason: str, **args: Any) -> None:
        self.reason = reason
        self.args_ = args
        super().__init__(self.message("en"))

    def message(self, lang: str | None = None) -> str:
        """What a person reads, in `lang` (the current language when None)."""
        return gettext(MESSAGES[self.reason], lang).format(**_LIMITS, **self.args_)


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    display_name: str
    role: str
    unit_id: str | None
    include_children: bool
    must_change_password: bool
    totp_enabled: bool
    status: str
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def role_name(self) -> str:
        """In the language being spoken (the console renders a page inside `i18n.speaking`)."""
        return gettext(ROLE_NAMES[self.role]) if self.role in ROLE_NAMES else self.role


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str | None
    address: str | None
    action: str
    target: str | None
    unit_id: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class Actor:
    """Who acts and from where, for the audit trail (`username` None: the CLI on the hub machine)."""

    username: str | None
    address: str | None = None


CLI = Actor(None, "cli")


def _account(row: Any) -> Account:
    return Account(row.id, row.username, row.display_name, row.role, row.unit_id, bool(row.include_children),
                   bool(row.must_change_password), row.totp_sealed is not None, row.status, row.failed_logins,
                   row.locked_until, row.created_at, row.last_login_at)


def check_username(username: str) -> str:
    username = (username or "").strip().lower()
    if not USERNAME.match(username):
        raise AccountError("username")
    return username


def check_password(password: str, username: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError("password_short")
    if len(password) > MAX_PASSWORD:
        raise AccountError("password_long")
    if username and username.lower() in password.lower():
        raise AccountError("password_username")


def new_password() -> str:
    """A temporary password an operator hands over (shown once; changed at the next sign-in)."""
    return secrets.token_urlsafe(12)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def record_audit(conn: AsyncConnection, actor: Actor, action: str, *, target: str | None = None,
                       unit_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """One audit row for a console account's action, written in the caller's transaction (so the
    trail never lies): `audit.append` with the account as the actor."""
    await audit.append(conn, action, actor=actor.username, address=actor.address or None, target=target,
                       unit=unit_id, detail=detail)


class Accounts:
    """The account store. Settings: `max_failures` wrong sign-ins lock an account for `lockout_seconds`."""

    def __init__(self, db: Database, master_key: MasterKey, *, max_failures: int = 5,
                 lockout_seconds: float = 900.0, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.master_key = master_key
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_seconds)
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    # -- hashing, off the event loop ------------------------------------------------------------
    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return await asyncio.to_thread(verify)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_hex(16))
        return self._dummy_hash

    def _totp_context(self, account_id: str) -> str:
        return f"totp:{account_id}"

    # -- reading --------------------------------------------------------------------------------
    async def get(self, account_id: str) -> Account | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        return _account(row) if row else None

    async def by_username(self, username: str) -> Account | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.username == username.strip().lower()))).first()
        return _account(row) if row else None

    async def find(self, username: str) -> Account:
        account = await self.by_username(username)
        if account is None:
            raise AccountError("not_found", username=username)
        return account

    async def list_accounts(self, *, unit_ids: Sequence[str] | None = None) -> list[Account]:
        stmt = select(accounts).order_by(accounts.c.username)
        if unit_ids is not None:
            stmt = stmt.where(accounts.c.unit_id.in_(list(unit_ids)))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_account(r) for r in rows]

    async def count(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(accounts)) or 0)

    async def unit_scope(self, account: Account) -> list[str] | None:
        """The units an account may see: None for every unit (operator, approver, viewer); for a unit
        admin its unit, and its descendants when the operator allowed it."""
        if account.role != "unit_admin":
            return None
        if account.unit_id is None:
            return []
        scope = [account.unit_id]
        if not account.include_children:
            return scope
        async with self.db.read() as conn:
            rows = (await conn.execute(select(units.c.id, units.c.parent_id))).all()
        children: dict[str, list[str]] = {}
        for r in rows:
            if r.parent_id is not None:
                children.setdefault(r.parent_id, []).append(r.id)
        frontier, seen = [account.unit_id], {account.unit_id}
        while frontier:
            nxt = []
            for u in frontier:
                for c in children.get(u, ()):
                    if c not in seen:
                        seen.add(c)
                        nxt.append(c)
            frontier = nxt
        return sorted(seen)

    # -- changing -------------------------------------------------------------------------------
    async def add(self, username: str, password: str, role: str, *, actor: Actor = CLI, unit_id: str | None = None,
                  include_children: bool = False, display_name: str = "",
                  must_change_password: bool = False) -> Account:
        username = check_username(username)
        if role not in ROLES:
            raise AccountError("role")
        if role == "unit_admin" and not unit_id:
            raise AccountError("unit_required")
        display_name = (display_name or "").strip()
        if len(display_name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in display_name):
            raise AccountError("display_name")
        check_password(password, username)
        password_hash = await self._hash(password)
        now = datetime.now(UTC)
        account_id = str(uuid.uuid4())
        try:
            async with self.db.write() as conn:
                if unit_id is not None and await conn.scalar(select(units.c.id).where(units.c.id == unit_id)) is None:
                    raise AccountError("unit_unknown", unit=unit_id)
                await conn.execute(accounts.insert().values(
                    id=account_id, username=username, display_name=display_name, role=role, unit_id=unit_id,
                    include_children=include_children, password_hash=password_hash,
                    must_change_password=must_change_password, failed_logins=0, status="active",
                    created_at=now, updated_at=now))
                await record_audit(conn, actor, "account.created", target=username, unit_id=unit_id,
                                   detail={"role": role, "include_children": include_children})
        except IntegrityError as exc:
            raise AccountError("exists", username=username) from exc
        account = await self.get(account_id)
        assert account is not None
        return account

    async def _ensure_not_last_operator(self, conn: AsyncConnection, account: Account) -> None:
        if account.role != "operator" or account.status != "active":
            return
        others = await conn.scalar(select(func.count()).select_from(accounts).where(
            accounts.c.role == "operator", accounts.c.status == "active", accounts.c.id != account.id))
        if not others:
            raise AccountError("last_operator")

    async def set_role(self, username: str, role: str, *, actor: Actor = CLI, unit_id: str | None = None,
                       include_children: bool = False) -> Account:
        if role not in ROLES:
            raise AccountError("role")
        if role == "unit_admin" and not unit_id:
            raise AccountError("unit_required")
        account = await self.find(username)
        async with self.db.write() as conn:
            if role != "operator":
                await self._ensure_not_last_operator(conn, account)
            if unit_id is not None and await conn.scalar(select(units.c.id).where(units.c.id == unit_id)) is None:
                raise AccountError("unit_unknown", unit=unit_id)
            await conn.execute(update(accounts).where(accounts.c.id == account.id).values(
                role=role, unit_id=unit_id if role == "unit_admin" else None,
                include_children=include_children and role == "unit_admin", updated_at=datetime.now(UTC)))
            await record_audit(conn, actor, "account.role_changed", target=account.username, unit_id=unit_id,
                               detail={"from": account.role, "to": role, "include_children": include_children})
        return await self.find(username)

    async def set_status(self, username: str, status: Literal["active", "disabled"], *,
                         actor: Actor = CLI) -> Account:
        account = await self.find(username)
        async with self.db.write() as conn:
            if status == "disabled":
                await self._ensure_not_last_operator(conn, account)
                await conn.execute(delete(console_sessions).where(console_sessions.c.account_id == account.id))
            await conn.execute(update(accounts).where(accounts.c.id == account.id).values(
                status=status, failed_logins=0, locked_until=None, updated_at=datetime.now(UTC)))
            await record_audit(conn, actor, "account.enabled" if status == "active" else "account.disabled",
                               target=account.username, unit_id=account.unit_id)
        return await self.find(username)

    async def unlock(self, username: str, *, actor: Actor = CLI) -> Account:
        account = await self.find(username)
        async with self.db.write() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == account.id).values(
                failed_logins=0, locked_until=None, updated_at=datetime.now(UTC)))
            await record_audit(conn, actor, "account.unlocked", target=account.username, unit_id=account.unit_id)
        return await self.find(username)

    async def reset_password(self, username: str, *, actor: Actor = CLI) -> str:
        """A new temporary password (returned once, never stored in clear); the person must change it at
        the next sign-in, and every open session of the account ends."""
        account = await self.find(username)
        temporary = new_password()
        password_hash = await self._hash(temporary)
        async with self.db.write() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == account.id).values(
                password_hash=password_hash, must_change_password=True, failed_logins=0, locked_until=None,
                updated_at=datetime.now(UTC)))
            await conn.execute(delete(console_sessions).where(console_sessions.c.account_id == account.id))
            await record_audit(conn, actor, "account.password_reset", target=account.username,
                               unit_id=account.unit_id)
        return temporary

    async def change_password(self, account_id: str, old: str, new: str, *, actor: Actor,
                              keep_session: str | None = None) -> None:
        """The person's own change (old password required); other sessions of the account end."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        if row is None:
            raise AccountError("not_found", username=account_id)
        if not await self._verify(row.password_hash, old):
            raise AccountError("bad_credentials")
        check_password(new, row.username)
        if old == new:
            raise AccountError("password_same")
        password_hash = await self._hash(new)
        async with self.db.write() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == account_id).values(
                password_hash=password_hash, must_change_password=False, updated_at=datetime.now(UTC)))
            stmt = delete(console_sessions).where(console_sessions.c.account_id == account_id)
            if keep_session is not None:
                stmt = stmt.where(console_sessions.c.token_hash != token_hash(keep_session))
            await conn.execute(stmt)
            await record_audit(conn, actor, "account.password_changed", target=row.username, unit_id=row.unit_id)

    # -- second factor --------------------------------------------------------------------------
    @staticmethod
    def new_totp_secret() -> str:
        return pyotp.random_base32()

    @staticmethod
    def totp_uri(secret: str, username: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)

    async def enable_totp(self, account_id: str, secret: str, code: str, *, actor: Actor) -> None:
        """Turn TOTP on once the person proved their authenticator has `secret` (one good code)."""
        step = _totp_step(secret, code)
        if step is None:
            raise AccountError("totp_invalid")
        sealed = self.master_key.encrypt(secret, self._totp_context(account_id))
        async with self.db.write() as conn:
            username = await conn.scalar(select(accounts.c.username).where(accounts.c.id == account_id))
            await conn.execute(update(accounts).where(accounts.c.id == account_id).values(
                totp_sealed=sealed, totp_last_step=step, updated_at=datetime.now(UTC)))
            await record_audit(conn, actor, "account.totp_enabled", target=username)

    async def disable_totp(self, username: str, *, actor: Actor) -> None:
        account = await self.find(username)
        async with self.db.write() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == account.id).values(
                totp_sealed=None, totp_last_step=None, updated_at=datetime.now(UTC)))
            await record_audit(conn, actor, "account.totp_disabled", target=account.username,
                               unit_id=account.unit_id)

    # -- signing in -----------------------------------------------------------------------------
    async def authenticate(self, username: str, password: str, totp: str | None, *, address: str | None) -> Account:
        """The account if the password (and the TOTP code when enabled) is right; AccountError otherwise.

        Each wrong password counts; `max_failures` in a row lock the account for `lockout_seconds`
        (a locked account refuses even the right password, so guessing gains nothing)."""
        actor = Actor(None, address)
        name = (username or "").strip().lower()
        async with self.db.read() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.username == name))).first() \
                if USERNAME.match(name) else None
        if row is None or len(password) > MAX_PASSWORD:
            await self._verify(await self._dummy(), password[:MAX_PASSWORD])
            async with self.db.write() as conn:
                await record_audit(conn, actor, "signin.failed", target=name[:64] or None,
                                   detail={"reason": "bad_credentials"})
            raise AccountError("bad_credentials")
        actor = Actor(row.username, address)
        now = datetime.now(UTC)
        if row.status != "active":
            await self._verify(await self._dummy(), password)
            async with self.db.write() as conn:
                await record_audit(conn, actor, "signin.failed", target=row.username, detail={"reason": "disabled"})
            raise AccountError("bad_credentials")
        if row.locked_until is not None and row.locked_until > now:
            async with self.db.write() as conn:
                await record_audit(conn, actor, "signin.failed", target=row.username, detail={"reason": "locked"})
            raise AccountError("locked", minutes=max(1, int((row.locked_until - now).total_seconds() // 60) + 1))
        if not await self._verify(row.password_hash, password):
            await self._failure(row, actor, "bad_credentials")
            raise AccountError("bad_credentials")
        if row.totp_sealed is not None:
            if not totp:
                raise AccountError("totp_required")
            secret = self.master_key.decrypt(bytes(row.totp_sealed), self._totp_context(row.id))
            step = _totp_step(secret, totp)
            if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
                await self._failure(row, actor, "totp_invalid")
                raise AccountError("totp_invalid")
        else:
            step = None
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if step is not None:
            values["totp_last_step"] = step
        if self.hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = await self._hash(password)
        async with self.db.write() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == row.id).values(**values))
            await record_audit(conn, actor, "signin.succeeded", target=row.username, unit_id=row.unit_id)
        account = await self.get(row.id)
        assert account is not None
        return account

    async def _failure(self, row: Any, actor: Actor, reason: str) -> None:
        async with self.db.write() as conn:
            # Counted in the database, so concurrent guesses on several nodes all count.
            await conn.execute(update(accounts).where(accounts.c.id == row.id).values(
                failed_logins=accounts.c.failed_logins + 1))
            failures = int(await conn.scalar(select(accounts.c.failed_logins).where(accounts.c.id == row.id)) or 0)
            detail: dict[str, Any] = {"reason": reason, "failures": failures}
            if failures >= self.max_failures:
                await conn.execute(update(accounts).where(accounts.c.id == row.id).values(
                    locked_until=datetime.now(UTC) + self.lockout, failed_logins=0))
                detail["locked"] = True
            await record_audit(conn, actor, "signin.failed", target=row.username, unit_id=row.unit_id, detail=detail)

    # -- sessions (server-side; the cookie holds a random token, the store its hash) -------------
    async def open_session(self, account: Account, *, address: str | None, absolute_seconds: float) -> str:
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            await conn.execute(console_sessions.insert().values(
                token_hash=token_hash(token), account_id=account.id, address=(address or "")[:64] or None,
                created_at=now, last_seen_at=now, expires_at=now + timedelta(seconds=absolute_seconds)))
        return token

    async def session(self, token: str, *, idle_seconds: float) -> tuple[Account, datetime] | None:
        """The account of a live session (touching it), or None when unknown, idle too long or past its
        absolute end; the session's creation time comes back too."""
        now = datetime.now(UTC)
        digest = token_hash(token)
        async with self.db.read() as conn:
            row = (await conn.execute(select(console_sessions).where(console_sessions.c.token_hash == digest))).first()
        if row is None:
            return None
        if row.expires_at <= now or row.last_seen_at + timedelta(seconds=idle_seconds) <= now:
            async with self.db.write() as conn:
                await conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == digest))
            return None
        account = await self.get(row.account_id)
        if account is None or account.status != "active":
            return None
        if (now - row.last_seen_at).total_seconds() > 5:  # one write per few seconds, not per page
            async with self.db.write() as conn:
                await conn.execute(update(console_sessions).where(console_sessions.c.token_hash == digest)
                                   .values(last_seen_at=now))
        return account, row.created_at

    async def close_session(self, token: str, *, actor: Actor | None = None) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == token_hash(token)))
            if actor is not None:
                await record_audit(conn, actor, "signout", target=actor.username)

    async def purge_sessions(self) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(delete(console_sessions).where(
                console_sessions.c.expires_at <= datetime.now(UTC)))
        return int(result.rowcount or 0)

    # -- the audit trail ------------------------------------------------------------------------
    async def audit(self, actor: Actor, action: str, *, target: str | None = None, unit_id: str | None = None,
                    detail: dict[str, Any] | None = None) -> None:
        async with self.db.write() as conn:
            await record_audit(conn, actor, action, target=target, unit_id=unit_id, detail=detail)

    async def audit_entries(self, *, actor: str | None = None, unit_ids: Sequence[str] | None = None,
                            since: datetime | None = None, until: datetime | None = None,
                            limit: int = 200) -> list[AuditEntry]:
        stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if actor:
            stmt = stmt.where(audit_log.c.actor == actor)
        if unit_ids is not None:
            stmt = stmt.where(audit_log.c.unit_id.in_(list(unit_ids)))
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= since)
        if until is not None:
            stmt = stmt.where(audit_log.c.at < until)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [AuditEntry(r.id, r.at, r.actor, r.address, r.action, r.target, r.unit_id, r.detail) for r in rows]


def _totp_step(secret: str, code: str) -> int | None:
    """The time step a code belongs to (now, or one step either side for clock drift), or None."""
    code = (code or "").strip().replace(" ", "")
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now = datetime.now(UTC)
    current = totp.timecode(now)
    for offset in (0, -1, 1):
        moment = now + timedelta(seconds=offset * totp.interval)
        if secrets.compare_digest(totp.at(moment), code):
            return current + offset
    return None
