"""States are defined once (core/states.py): the OpenAPI enums name exactly them, and every path
a delivery can take is in a table."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from lgsp.core import deliveries as dv
from lgsp.core import states
from lgsp.core.store.database import Database
from lgsp.core.store.tables import deliveries, packets, units


def _openapi() -> dict[str, Any]:
    return yaml.safe_load((resources.files("lgsp.schemas") / "openapi.yaml").read_text(encoding="utf-8"))


def test_openapi_delivery_states_are_the_table_s() -> None:
    assert _openapi()["components"]["schemas"]["DeliveryState"]["enum"] == list(states.DELIVERY_STATES)


def test_openapi_packet_and_content_states_are_the_table_s() -> None:
    view = _openapi()["components"]["schemas"]["PacketView"]
    found = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("state", "content"):
                if isinstance(node.get(key), dict) and "enum" in node[key]:
                    found.setdefault(key, node[key]["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(view)
    assert found["state"] == list(states.PACKET_STATES)
    assert found["content"] == list(states.CONTENT_STATES)


def test_every_table_names_only_known_states() -> None:
    known = set(states.DELIVERY_STATES)
    for target, sources in states.DELIVERY_ALLOWED_FROM.items():
        assert target in known and sources <= known
    for paths in states.DELIVERY_EXTRA_FROM.values():
        for target, sources in paths.items():
            assert target in known and sources <= known
    assert set(states.PACKET_ALLOWED_FROM) <= set(states.PACKET_STATES)
    assert set(states.CONTENT_ALLOWED_FROM) <= set(states.CONTENT_STATES)


def test_the_engine_s_retrying_to_queued_is_in_a_table() -> None:
    assert dv.RETRYING in states.delivery_sources(dv.QUEUED)
    assert dv.RETRYING not in states.DELIVERY_ALLOWED_FROM[dv.QUEUED]  # not the usual life: a named path
    assert dv.STATES is states.DELIVERY_STATES  # one definition, re-used


async def test_the_store_refuses_a_state_change_outside_the_tables(tmp_path: Path) -> None:
    """The suite's transition guard is live: a change the tables forbid is refused, an allowed one is not."""
    assert os.environ.get("LGSP_CHECK_TRANSITIONS") == "1"
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}")
    try:
        await db.upgrade()
        now = datetime.now(UTC)
        async with db.write() as conn:
            await conn.execute(units.insert().values(id="000.00.00.A01", name="A", name_folded="a", created_at=now))
            await conn.execute(packets.insert().values(
                id="p1", source_unit="000.00.00.A01", subject="s", priority=0, data_type="json", size=1,
                sha256="0" * 64, state="accepted", content_state="stored", created_at=now, upload_expires_at=now))
            await conn.execute(deliveries.insert().values(
                packet_id="p1", unit_id="000.00.00.A01", state=dv.DELIVERED, mode=dv.PULL, priority=0,
                packet_created_at=now, updated_at=now))
        with pytest.raises(DBAPIError, match=r"deliveries\.state delivered -> queued"):
            async with db.write() as conn:
                await conn.execute(update(deliveries).values(state=dv.QUEUED))
        with pytest.raises(DBAPIError, match=r"packets\.content_state stored -> none"):
            async with db.write() as conn:
                await conn.execute(update(packets).values(content_state="none"))
        with pytest.raises(DBAPIError, match=r"not a state of core/states\.py: packets\.state"):
            async with db.write() as conn:
                await conn.execute(update(packets).values(state="teleported"))
        async with db.write() as conn:  # allowed: accepted → completed, stored → purged
            await conn.execute(update(packets).values(state="completed", content_state="purged"))
    finally:
        await db.close()
