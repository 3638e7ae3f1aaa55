"""States are defined once (core/states.py): the OpenAPI enums name exactly them, and every path
a delivery can take is in a table."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from lgsp.core import deliveries as dv
from lgsp.core import states


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
