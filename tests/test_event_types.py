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
from lgsp.core import documents as docs
from lgsp.core import events
from lgsp.core.events import EVENT_TYPES, record
from lgsp.plugins.edxml import _CHANGE_EVENT

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


def _recorded_types() -> tuple[set[str], list[str]]:
    """(constants of core/events.py the code passes to `record`, call sites that spell a type themselves).

    A type argument must be a constant of core/events.py (`ev.NAME`, a module name bound to one, or
    an entry of a table of them such as `ev.DELIVERY_END[state]`); a string literal or an f-string
    is a call site that can drift from the table.
    """
    used: set[str] = set()
    spelled: list[str] = []
    for folder in ("core", "adapters", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            bound = {t.id: n.value.attr for n in ast.walk(tree) if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Attribute) and isinstance(n.value.value, ast.Name)
                     and n.value.value.id == "ev" for t in n.targets if isinstance(t, ast.Name)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ev" \
                        and node.attr.isupper() and isinstance(getattr(events, node.attr, None), str):
                    used.add(getattr(events, node.attr))
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                index = {"record": 2, "_event": 3}.get(name)
                if index is None or len(node.args) <= index:
                    continue
                arg = node.args[index]
                if isinstance(arg, ast.Attribute | ast.Subscript):
                    continue
                if isinstance(arg, ast.Name) and (arg.id in bound or arg.id.endswith("type_")):
                    continue
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return used, spelled


def test_every_type_the_code_records_is_a_constant_of_the_table() -> None:
    used, spelled = _recorded_types()
    assert spelled == [], "call sites that spell an event type instead of naming its constant"
    names = {name for name in dir(events) if name.isupper() and isinstance(getattr(events, name), str)
             and getattr(events, name) in EVENT_TYPES}
    assert {getattr(events, n) for n in names} == set(EVENT_TYPES), "a type in the table without its constant"
    # The two tables of computed names: a delivery's end, and what a later edXML packet did to a document.
    assert set(events.DELIVERY_END) == {dv.DELIVERED, dv.FAILED, dv.EXPIRED}
    assert set(_CHANGE_EVENT) == set(docs.BUSINESS_TYPES.values())
    computed = set(events.DELIVERY_END.values()) | set(_CHANGE_EVENT.values())
    unused = set(EVENT_TYPES) - used - computed
    assert unused == set(), "types in the table that no code records"


async def test_recording_an_unknown_type_is_refused_before_touching_the_store() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'packet\.teleported'"):
        await record(None, "P1", "packet.teleported", datetime.now(UTC))  # type: ignore[arg-type]
