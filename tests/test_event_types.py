"""Event types are defined once (core/events.py EVENT_TYPES) and tied to the OpenAPI document, the CLI
timeline's names and the code that records them."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lgsp.cli.timeline import EVENTS
from lgsp.core import deliveries as dv
from lgsp.core.events import EVENT_TYPES, record
from lgsp.plugins.edxml import _PAST

ROOT = Path(__file__).resolve().parents[1]
#: Messages of the stream that are not recorded events.
STREAM_MESSAGES = {"stream.closed"}


def _stream_description() -> str:
    spec = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text(encoding="utf-8"))
    return str(spec["paths"]["/v1/events"]["get"]["description"])


def test_the_openapi_document_lists_exactly_the_types_units_hear() -> None:
    named = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", _stream_description())) - STREAM_MESSAGES
    named = {n for n in named if not n.startswith("security.")}  # a setting, not an event
    streamed = {name for name, kind in EVENT_TYPES.items() if kind.audience}
    assert named - set(EVENT_TYPES) == set(), "the OpenAPI document names event types the hub does not have"
    assert named == streamed


def test_every_type_has_a_readable_name_in_the_cli_and_a_description() -> None:
    assert set(EVENTS) == set(EVENT_TYPES)
    assert all(kind.description for kind in EVENT_TYPES.values())


def _recorded_types() -> tuple[set[str], set[str]]:
    """(literal types, f-string prefixes) the code passes to `record` (and the registration helper)."""
    literal: set[str] = set()
    prefixes: set[str] = set()
    for folder in ("core", "adapters", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            constants = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                         and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                         for t in n.targets if isinstance(t, ast.Name)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                index = {"record": 2, "_event": 3}.get(name)
                if index is None or len(node.args) <= index:
                    continue
                arg = node.args[index]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    literal.add(arg.value)
                elif isinstance(arg, ast.Name) and arg.id in constants:
                    literal.add(constants[arg.id])
                elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                    prefixes.add(str(arg.values[0].value))
    return literal, prefixes


def test_every_type_the_code_records_is_in_the_table() -> None:
    literal, prefixes = _recorded_types()
    assert {"packet.created", "hub.notice", "destination.offline", "registration.approved"} <= literal
    assert literal - set(EVENT_TYPES) == set()
    assert prefixes == {"packet.", "document."}
    # The two computed names: a delivery's end, and what a later edXML packet did to a document.
    assert {f"packet.{state}" for state in (dv.DELIVERED, dv.FAILED, dv.EXPIRED)} <= set(EVENT_TYPES)
    assert {f"document.{verb}" for verb in _PAST.values()} <= set(EVENT_TYPES)
    unused = set(EVENT_TYPES) - literal - {f"packet.{s}" for s in (dv.DELIVERED, dv.FAILED, dv.EXPIRED)} \
        - {f"document.{verb}" for verb in _PAST.values()}
    assert unused == set(), "types in the table that no code records"


async def test_recording_an_unknown_type_is_refused_before_touching_the_store() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'packet\.teleported'"):
        await record(None, "P1", "packet.teleported", datetime.now(UTC))  # type: ignore[arg-type]
