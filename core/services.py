"""Registered REST services of units, and who may call them through the hub.

A unit's system can expose a REST service (e.g. a document registry lookup) that other units call
through `/v1/services/{service}/...`: the hub authenticates the caller, checks the session's
target and the grant, and forwards the call (adapters/rest/proxy.py). Operators register services
and grant access with `lgsp service ...`; a grant or a suspension takes effect on the next call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, select, update

from lgsp.core import audit
from lgsp.core.auth import Principal
from lgsp.core.directory import Directory
from lgsp.core.errors import Problem
from lgsp.core.events import iso
from lgsp.core.i18n import Text
from lgsp.core.store.database import Database
from lgsp.core.store.tables import service_grants, services

# Lowercase, so a service id can never be mistaken for a unit identifier (always uppercase).
SERVICE_ID_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
URL_RE = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")
STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class Service:
    id: str
    unit_id: str
    url: str
    description: str | None
    timeout_seconds: float
    status: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "unit": self.unit_id, "url": self.url, "description": self.description,
                "timeout_seconds": self.timeout_seconds, "status": self.status, "created_at": iso(self.created_at)}


def _service(row: Any) -> Service:
    return Service(row.id, row.unit_id, row.url, row.description, row.timeout_seconds, row.status, row.created_at)


class ServiceRegistry:
    def __init__(self, db: Database, directory: Directory) -> None:
        self.db = db
        self.directory = directory

    async def add(self, service_id: str, unit_id: str, url: str, *, description: str | None = None,
                  timeout_seconds: float = 30.0) -> Service:
        if not SERVICE_ID_RE.match(service_id):
            raise Problem("request.invalid",
                          Text("service id: 2-64 characters of a-z 0-9 . _ -, starting with a lowercase "
                               "letter"), field="id")
        if not URL_RE.match(url):
            raise Problem("request.invalid", Text("url: must be an http(s) URL without query or fragment"), field="url")
        if not 0 < timeout_seconds <= 3600:
            raise Problem("request.invalid", Text("timeout: must be between 0 and 3600 seconds"), field="timeout")
        if (await self.directory.existing_units([unit_id])).get(unit_id) is None:
            raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            if await conn.scalar(select(services.c.id).where(services.c.id == service_id)) is not None:
                raise Problem("conflict", Text("service {service_id} already exists", service_id=service_id))
            await conn.execute(services.insert().values(
                id=service_id, unit_id=unit_id, url=url.rstrip("/"), description=description,
                timeout_seconds=float(timeout_seconds), status="active", created_at=now))
            await audit.append(conn, "service.added", target=service_id, unit=unit_id, at=now,
                               detail={"url": url.rstrip("/"), "timeout_seconds": float(timeout_seconds)})
        found = await self.get(service_id)
        assert found is not None
        return found

    async def get(self, service_id: str) -> Service | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(services).where(services.c.id == service_id))).first()
        return _service(row) if row else None

    async def list(self, unit_id: str | None = None) -> list[tuple[Service, list[str]]]:
        stmt = select(services).order_by(services.c.id)
        if unit_id:
            stmt = stmt.where(services.c.unit_id == unit_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
            grants = (await conn.execute(select(service_grants).order_by(service_grants.c.unit_id))).all()
        by_service: dict[str, list[str]] = {}
        for g in grants:
            by_service.setdefault(g.service_id, []).append(g.unit_id)
        return [(_service(r), by_service.get(r.id, [])) for r in rows]

    async def set_status(self, service_id: str, status: str) -> Service:
        if status not in STATUSES:
            raise Problem("request.invalid", Text("status must be one of {STATUSES}", STATUSES=', '.join(STATUSES)))
        async with self.db.write() as conn:
            result = await conn.execute(update(services).where(services.c.id == service_id).values(status=status))
            if not result.rowcount:
                raise Problem("not_found", Text("service {service_id} does not exist", service_id=service_id))
            await audit.append(conn, "service.status_changed", target=service_id, detail={"status": status})
        found = await self.get(service_id)
        assert found is not None
        return found

    async def remove(self, service_id: str) -> None:
        async with self.db.write() as conn:
            granted = list((await conn.scalars(select(service_grants.c.unit_id)
                                              .where(service_grants.c.service_id == service_id))).all())
            await conn.execute(delete(service_grants).where(service_grants.c.service_id == service_id))
            result = await conn.execute(delete(services).where(services.c.id == service_id))
            if not result.rowcount:
                raise Problem("not_found", Text("service {service_id} does not exist", service_id=service_id))
            # the grants go with the service: say which, so the record shows who lost access
            await audit.append(conn, "service.removed", target=service_id, detail={"grants": sorted(granted)})

    async def grant(self, service_id: str, unit_id: str) -> bool:
        """Let `unit_id` call the service; False if it already could."""
        if await self.get(service_id) is None:
            raise Problem("not_found", Text("service {service_id} does not exist", service_id=service_id))
        if (await self.directory.existing_units([unit_id])).get(unit_id) is None:
            raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
        async with self.db.write() as conn:
            if await conn.scalar(select(service_grants.c.unit_id).where(and_(
                    service_grants.c.service_id == service_id, service_grants.c.unit_id == unit_id))) is not None:
                return False
            now = datetime.now(UTC)
            await conn.execute(service_grants.insert().values(service_id=service_id, unit_id=unit_id, created_at=now))
            await audit.append(conn, "service.granted", target=service_id, unit=unit_id, at=now)
        return True

    async def revoke(self, service_id: str, unit_id: str) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(delete(service_grants).where(and_(
                service_grants.c.service_id == service_id, service_grants.c.unit_id == unit_id)))
            if result.rowcount:
                await audit.append(conn, "service.revoked", target=service_id, unit=unit_id)
        return bool(result.rowcount)

    async def may_call(self, unit_id: str, service: Service) -> bool:
        if service.status != "active":
            return False
        if unit_id == service.unit_id:
            return True
        async with self.db.read() as conn:
            found = await conn.scalar(select(service_grants.c.unit_id).where(and_(
                service_grants.c.service_id == service.id, service_grants.c.unit_id == unit_id)))
        return found is not None

    # -- hooks into authentication ------------------------------------------------------------
    async def resolve_target(self, principal: Principal, target: str) -> bool | None:
        """Session target resolver: None when `target` is no service (a unit, perhaps)."""
        if not SERVICE_ID_RE.match(target):
            return None
        service = await self.get(target)
        if service is None:
            return None
        return await self.may_call(principal.unit_id, service)

    async def owner_of(self, target: str) -> str | None:
        if not SERVICE_ID_RE.match(target):
            return None
        service = await self.get(target)
        return service.unit_id if service else None
