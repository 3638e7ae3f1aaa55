"""The edXML tables and queries on PostgreSQL: variants, statuses and links through a real hub.

Skipped (with the reason) when no PostgreSQL server answers on localhost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import base_env
from .support import HUB_ID, PLUGINS, A, B, C, add_units, blob_files, edoc, sha, status
from .test_edxml_exchange import send

pytestmark = pytest.mark.postgres


async def test_edxml_flow_on_postgres(pg_url: str, tmp_path: Path) -> None:
    env = base_env(tmp_path / "v", LGSP_DATABASE_URL=pg_url, LGSP_PLUGINS_ENABLED=PLUGINS,
                   LGSP_HUB_IDENTIFIER=HUB_ID)
    async with Hub(load_config(None, env=env)) as hub:
        await add_units(hub)
        clients = {}
        for unit in (A, B, C):
            app = await hub.directory.add_application(unit, "vbql")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            clients[unit] = LgspClient(Credentials(hub.url, key.access_key, secret=key.secret))
        try:
            await hub.content.set_format(C, "edxml", "json")
            original = edoc(A, [B, C])
            doc_id = parse_packet(original).document_id
            packet_id = await send(clients[A], original)
            got = await clients[B].fetch_bytes(packet_id)
            assert await clients[B].ack(packet_id, sha(got)) == "delivered"
            form = await clients[C].fetch_bytes(packet_id)
            assert json.loads(form)["kind"] == "edoc"
            assert await clients[C].ack(packet_id, sha(form)) == "delivered"
            await send(clients[B], status(B, A, doc_id, "03"))
            await send(clients[B], status(B, A, doc_id, "06"))
            rev = await send(clients[A], edoc(A, [B, C], number="126", business="1", response_for=[
                {"organ_id": A, "code": "125/UBND-VP", "document_id": doc_id, "promulgation_date": "2024/03/15"}]))
            view = await clients[A].status(packet_id)
            assert [(s["unit"], s["status_code"]) for s in view["business_status"]] == [(B, "06")]
            assert [x["packet"] for x in view["linked"]][-1] == rev
            assert view["content"] == "purged" and {v["variant"] for v in view["variants"]} >= {"edxml", "json"}
            assert not [p for p in blob_files(hub) if p.name.startswith(packet_id)]
        finally:
            for client in clients.values():
                await client.close()
