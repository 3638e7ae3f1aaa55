"""Master key rotation: seal everything under a new key while the hub keeps serving.

`lgsp masterkey rotate` (cli/masterkey.py) runs, against a live hub:

1. A new key is put first in the key file; the old ones stay after it, for unsealing only. Every
   node checks the file before it seals, so from now on new values are sealed under the new key
   everywhere; a node meeting a value sealed under a key it does not hold re-reads the file.
2. Every sealed value in the store is re-sealed under the new key (`reseal_all`), row by row, each
   by a conditional UPDATE (only if it still holds what was read: a value rewritten meanwhile is
   left to its writer, already under the new key). Readers get the old or the new value, both open.
3. A second pass catches values sealed under the old key by a node that had not yet seen the file.
4. The old keys are removed from the file (retired), unless told to keep them (`--keep-old`):
   transfer URLs issued in the last `security.transfer_ttl_seconds` were signed with a key derived
   from the old master key and keep working only while it is held.

Every table holding a sealed value is listed in SEALED; a new one must be added there (the test
`test_every_sealed_column_is_rotated` fails otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Table, and_, select, update

from lgsp.core.masterkey import MasterKey
from lgsp.core.store import tables
from lgsp.core.store.database import Database


@dataclass(frozen=True)
class Sealed:
    """A column of sealed values: its table, primary key, and the context each value is bound to."""

    table: Table
    key: Column  # type: ignore[type-arg]
    sealed: Column  # type: ignore[type-arg]
    context: Callable[[str], str]


def sealed_columns() -> list[Sealed]:
    found = [
        Sealed(tables.secrets, tables.secrets.c.name, tables.secrets.c.sealed, lambda name: f"secret:{name}"),
        Sealed(tables.access_keys, tables.access_keys.c.id, tables.access_keys.c.secret_sealed, lambda key: key),
        Sealed(tables.content_keys, tables.content_keys.c.key_id, tables.content_keys.c.sealed,
               lambda kid: f"content-key:{kid}"),
    ]
    found.append(Sealed(tables.one_time_secrets, tables.one_time_secrets.c.id, tables.one_time_secrets.c.sealed,
                        lambda ident_hash: f"console-once:{ident_hash}"))
    accounts = getattr(tables, "accounts", None)  # console accounts: their TOTP secrets
    if accounts is not None and "totp_sealed" in accounts.c:
        found.append(Sealed(accounts, accounts.c.id, accounts.c.totp_sealed, lambda aid: f"totp:{aid}"))
    return found


async def reseal_all(db: Database, master_key: MasterKey, *, batch: int = 200) -> dict[str, int]:
    """Re-seal every sealed value not yet under the sealing key; how many per table."""
    counts: dict[str, int] = {}
    for col in sealed_columns():
        done = 0
        after = ""
        while True:
            async with db.read() as conn:
                rows = (await conn.execute(
                    select(col.key, col.sealed).where(and_(col.key > after, col.sealed.is_not(None)))
                    .order_by(col.key).limit(batch))).all()
            if not rows:
                break
            after = rows[-1][0]
            for key, old in rows:
                if master_key.sealed_under_primary(old):
                    continue
                new = master_key.seal(master_key.unseal(bytes(old), col.context(key)), col.context(key))
                async with db.write() as conn:
                    result = await conn.execute(update(col.table).where(and_(col.key == key, col.sealed == old))
                                                .values({col.sealed.name: new}))
                done += result.rowcount or 0
        counts[col.table.name] = done
    return counts


async def count_not_primary(db: Database, master_key: MasterKey) -> int:
    """How many sealed values are still under another key than the sealing one."""
    left = 0
    for col in sealed_columns():
        async with db.read() as conn:
            for (value,) in (await conn.execute(select(col.sealed).where(col.sealed.is_not(None)))).all():
                left += not master_key.sealed_under_primary(value)
    return left
