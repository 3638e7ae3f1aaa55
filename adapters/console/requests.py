"""The registration workflow pages (Mẫu 01–07)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()


async def overdue_for(request: web.Request) -> list[object]:
    return []
