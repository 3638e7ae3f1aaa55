"""The tamper-evident audit log: security-relevant facts, each entry chained to the previous one.

`append` is called inside the transaction of the fact it records, so an entry is durable exactly
when the fact is, and the hot path gets no write of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core.store.tables import audit_log

_INSERT = audit_log.insert()


async def append(conn: AsyncConnection, action: str, *, actor: str | None, target: str | None = None,
                 unit: str | None = None, detail: dict[str, Any] | None = None, at: datetime | None = None,
                 address: str | None = None) -> None:
    """Record one fact in the caller's transaction (chained shortly after by the chainer)."""
    await conn.execute(_INSERT, {"at": at or datetime.now(UTC), "actor": actor[:64] if actor else None,
                                 "address": address[:64] if address else None, "action": action,
                                 "target": target[:255] if target else None, "unit_id": unit, "detail": detail})
