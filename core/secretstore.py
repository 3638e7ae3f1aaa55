"""Named secrets adapters need (SFTP passwords, private keys of remote systems), sealed at rest.

Config files never hold a secret: a target says `password_secret: sftp-h23` and the operator stores
the value once with `lgsp secret set sftp-h23`. Values are encrypted with the master key, bound to
their name, and only decrypted in memory when an adapter asks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import delete, select, update

from lgsp.core import audit
from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.masterkey import MasterKey
from lgsp.core.store.database import Database, conflict_insert
from lgsp.core.store.tables import secrets

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class SecretStore:
    def __init__(self, db: Database, master_key: MasterKey) -> None:
        self.db = db
        self.master_key = master_key

    @staticmethod
    def _context(name: str) -> str:
        return f"secret:{name}"

    def _seal(self, name: str, value: str) -> bytes:
        """The value sealed for `name`, once both are checked."""
        if not NAME_RE.match(name):
            raise Problem("request.invalid", Text("secret names are 1-64 characters of a-z 0-9 . _ - (lowercase)"))
        if not value:
            raise Problem("request.invalid", Text("a secret cannot be empty"))
        return self.master_key.encrypt(value, self._context(name))

    async def set(self, name: str, value: str) -> None:
        sealed = self._seal(name, value)
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            result = await conn.execute(update(secrets).where(secrets.c.name == name)
                                        .values(sealed=sealed, updated_at=now))
            if not result.rowcount:
                await conn.execute(secrets.insert().values(name=name, sealed=sealed, created_at=now, updated_at=now))
            await audit.append(conn, "secret.set", target=name, at=now)  # the name only, never the value

    async def add(self, name: str, value: str) -> bool:
        """Store `value` under `name` only if no secret has that name yet (atomically, so two
        nodes racing to create one agree on the winner); False when one already existed."""
        sealed = self._seal(name, value)
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            result = await conn.execute(conflict_insert(conn, secrets)
                                        .values(name=name, sealed=sealed, created_at=now, updated_at=now)
                                        .on_conflict_do_nothing(index_elements=["name"]))
        return bool(result.rowcount)  # the hub's own keys (made once, never shown): not an operator's act

    async def reveal(self, name: str) -> str:
        async with self.db.read() as conn:
            sealed = await conn.scalar(select(secrets.c.sealed).where(secrets.c.name == name))
        if sealed is None:
            raise Problem("not_found", Text("no secret named {name!r} (store it with: lgsp secret set {name})",
                                            name=name))
        return self.master_key.decrypt(bytes(sealed), self._context(name))

    async def names(self) -> list[tuple[str, datetime]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(secrets.c.name, secrets.c.updated_at).order_by(secrets.c.name))).all()
        return [(r.name, r.updated_at) for r in rows]

    async def delete(self, name: str) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(delete(secrets).where(secrets.c.name == name))
            if result.rowcount:
                await audit.append(conn, "secret.deleted", target=name)
        return bool(result.rowcount)
