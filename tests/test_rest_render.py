"""The REST rendering of every typed value core returns matches its schema in schemas/openapi.yaml.

Each value is built with its optional members both set and unset, rendered by
adapters/rest/render.py, and validated (JSON Schema 2020-12, as OpenAPI 3.1 uses) against the
component or response schema the route documents. Members the schema does not declare fail too:
the document's schemas allow extra members, so a renamed member would otherwise pass.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from lgsp.adapters.rest import render
from lgsp.core.api import (
    Cancelled,
    DeliveryView,
    Event,
    Hello,
    InboxItem,
    InboxPage,
    InboxPosition,
    PacketInfo,
    PacketView,
    StoredVariant,
    TimelineEntry,
    Transfer,
)

SPEC = Path(__file__).resolve().parents[1] / "schemas" / "openapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
BASE = "https://lgsp.invalid/openapi.yaml"  # a name for the document, never fetched
REGISTRY: Registry[Any] = Registry().with_resource(BASE, Resource(DOC, DRAFT202012))

T0 = datetime(2026, 12, 5, 9, 1, 2, 345000, tzinfo=UTC)
T1 = datetime(2026, 12, 5, 9, 5, 0, tzinfo=UTC)
PID = "0b5f3f6e-7a39-4c1c-9a57-2a5b1e0f7c11"
SHA = "a" * 64


def _pointer(path: str) -> str:
    return BASE + "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path.split("|"))


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        schema = REGISTRY.resolver().lookup(BASE + ref if ref.startswith("#") else ref).contents
    return schema


def _declared(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The properties an object schema declares (through allOf), and whether it declares any (an
    object without `properties` is free-form, e.g. `metadata`)."""
    schema = _resolve(schema)
    props: dict[str, Any] = dict(schema.get("properties", {}))
    is_object = "properties" in schema
    for part in schema.get("allOf", []):
        more, obj = _declared(part)
        props.update(more)
        is_object = is_object or obj
    return props, is_object


def undeclared(instance: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Members of `instance` (recursively) that the schema does not name."""
    schema = _resolve(schema)
    found: list[str] = []
    if isinstance(instance, dict):
        props, is_object = _declared(schema)
        if is_object:
            for key, value in instance.items():
                if key not in props:
                    found.append(f"{where}.{key}")
                else:
                    found += undeclared(value, props[key], f"{where}.{key}")
    elif isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            found += undeclared(value, schema["items"], f"{where}[{i}]")
    return found


def check(instance: Any, path: str) -> None:
    """Validate a rendered document against the schema at `path` ('|'-separated) of the document."""
    schema = {"$ref": _pointer(path)}
    Draft202012Validator(schema, registry=REGISTRY, format_checker=FormatChecker()).validate(instance)
    assert undeclared(instance, _resolve(schema)) == []


PACKET = PacketInfo(id=PID, source="000.00.00.H45", to=("000.02.31.H45",), subject="Báo cáo", priority=2,
                    data_type="edxml", protocol=None, size=10, sha256=SHA, deadline=None, policy=None, meta=None,
                    state="created", content_state="none", created_at=T0, upload_expires_at=T1)
PULL = DeliveryView(unit="000.02.31.H45", state="queued", updated_at=T0, mode="pull", online=True, last_seen_at=T1)
PUSH = DeliveryView(unit="28.22.H17", state="retrying", updated_at=T0, mode="push", online=False, last_seen_at=None,
                    reason="timeout", protocol="rest", attempts=3, next_attempt_at=T1, last_error="HTTP 503")
ITEM = InboxItem(id=PID, source="000.00.00.H45", subject="Báo cáo", priority=3, data_type="binary", size=10,
                 sha256=SHA, created_at=T0, source_online=False, source_last_seen_at=None)
SOURCE_VIEW = PacketView(
    id=PID, source="000.00.00.H45", subject="Báo cáo", priority=1, data_type="edxml", size=10, sha256=SHA,
    created_at=T0, state="created", content_state="none", protocol="soap", deadline=T1,
    deliveries=(PULL, PUSH, DeliveryView(unit="x", state="delivered", updated_at=T1, mode="push", online=True,
                                         last_seen_at=T1, protocol="sftp", attempts=1)),
    events=(TimelineEntry(T0, "packet.created", "000.00.00.H45"),
            TimelineEntry(T1, "packet.failed", "28.22.H17", reason="refused", attempts=2),
            TimelineEntry(T1, "packet.completed", None)),
    to=("000.02.31.H45", "28.22.H17"), upload_expires_at=T1, metadata={"edxml": {"kind": "edoc"}},
    variants=(StoredVariant("edxml", 10, SHA, "application/xml", "edxml"),
              StoredVariant("att-1", 3, SHA, "application/pdf")),
    described={"document": {"kind": "edoc", "document_id": "A,2024/03/15,125/UBND-VP"}, "linked": []})
DESTINATION_VIEW = PacketView(
    id=PID, source="000.00.00.H45", subject="Báo cáo", priority=0, data_type="edxml+json", size=12, sha256=SHA,
    created_at=T0, state="accepted", content_state="stored", protocol=None, deadline=None, deliveries=(PULL,),
    events=(), variant="json")


def test_transfer_matches_the_schema() -> None:
    rendered = render.transfer(Transfer("GET", f"/v1/packets/{PID}/content?expires=1&token=x", T1), "http://h:8080")
    assert rendered == {"method": "GET", "url": f"http://h:8080/v1/packets/{PID}/content?expires=1&token=x",
                        "expires_at": "2026-12-05T09:05:00.000Z"}
    check(rendered, "components|schemas|Transfer")
    check({"download": rendered}, "paths|/v1/packets/{id}/ready|post|responses|200|content|application/json|schema")


def test_created_and_uploaded_match_the_schema() -> None:
    upload = Transfer("PUT", f"/v1/packets/{PID}/content?expires=1&token=x", T1)
    check(render.created(PACKET, upload, "http://h"),
          "paths|/v1/packets|post|responses|201|content|application/json|schema")
    assert render.uploaded(PACKET) == {"id": PID, "state": "created", "size": 10, "sha256": SHA}


@pytest.mark.parametrize("seen", [None, T1])
def test_inbox_item_matches_the_schema(seen: datetime | None) -> None:
    item = dataclasses.replace(ITEM, source_last_seen_at=seen)
    rendered = render.inbox_item(item)
    assert rendered["from"] == "000.00.00.H45" and rendered["from_online"] is False
    assert rendered["from_last_seen_at"] == (None if seen is None else "2026-12-05T09:05:00.000Z")
    check(rendered, "components|schemas|PacketSummary")


@pytest.mark.parametrize("after", [None, InboxPosition(3, T0, PID)])
def test_inbox_page_matches_the_schema(after: InboxPosition | None) -> None:
    rendered = render.inbox_page(InboxPage((ITEM, ITEM), after))
    assert rendered["next"] == (after.encode() if after else None)
    check(rendered, "paths|/v1/inbox|get|responses|200|content|application/json|schema")


@pytest.mark.parametrize("value", [PULL, PUSH], ids=["pull", "push"])
def test_delivery_matches_the_schema(value: DeliveryView) -> None:
    rendered = render.delivery(value)
    # Push members only for push deliveries; `next_attempt_at` only while retrying.
    assert ("protocol" in rendered) == (value.mode == "push")
    assert ("next_attempt_at" in rendered) == (value.next_attempt_at is not None)
    check(rendered, "components|schemas|PacketView|allOf|2|properties|deliveries|items")


@pytest.mark.parametrize("value", SOURCE_VIEW.events)
def test_timeline_entry_matches_the_schema(value: TimelineEntry) -> None:
    rendered = render.timeline_entry(value)
    assert ("reason" in rendered) == bool(value.reason)
    check(rendered, "components|schemas|PacketView|allOf|2|properties|events|items")


def test_stored_variant_matches_the_schema() -> None:
    for value in SOURCE_VIEW.variants or ():
        check(render.stored_variant(value), "components|schemas|EdxmlPacketView|properties|variants|items")


@pytest.mark.parametrize("view", [SOURCE_VIEW, DESTINATION_VIEW], ids=["source", "destination"])
def test_packet_view_matches_the_schema(view: PacketView) -> None:
    rendered = render.packet_view(view)
    # Source-only members appear for the source only; the destination's variant for it only.
    assert ("to" in rendered) == ("upload_expires_at" in rendered) == ("variants" in rendered) == (view.to is not None)
    assert ("variant" in rendered) == (view.variant is not None)
    check(rendered, "components|schemas|PacketView")


def test_cancelled_matches_the_schema() -> None:
    rendered = render.cancelled(Cancelled(PID, ("a", "b"), "completed"))
    assert rendered == {"id": PID, "cancelled": ["a", "b"], "state": "completed"}
    check(rendered, "paths|/v1/packets/{id}/cancel|post|responses|200|content|application/json|schema")


def test_hello_renders_its_inbox_items_as_the_inbox_does() -> None:
    change = Event(7, "packet.delivered", PID, T1, "000.02.31.H45", "000.00.00.H45", {"attempts": 2})
    rendered = render.hello(Hello(T0, "000.00.00.H45", (ITEM,), (change,), False))
    assert rendered["type"] == "hello" and rendered["inbox"] == [render.inbox_item(ITEM)]
    assert rendered["changes"] == [{"type": "packet.delivered", "at": "2026-12-05T09:05:00.000Z", "seq": 7,
                                    "id": PID, "unit": "000.02.31.H45", "attempts": 2}]
    for item in rendered["inbox"]:
        check(item, "components|schemas|PacketSummary")


@pytest.mark.parametrize(("instance", "path"), [
    ({"method": "PUT", "url": "http://h/x"}, "components|schemas|Transfer"),  # expires_at missing
    ({"method": "POST", "url": "http://h/x", "expires_at": "2026-12-05T09:05:00.000Z"}, "components|schemas|Transfer"),
    ({**render.inbox_item(ITEM), "sender": "x"}, "components|schemas|PacketSummary"),  # not a declared member
    ({**render.packet_view(DESTINATION_VIEW), "deliveries": [{**render.delivery(PULL), "state": "lost"}]},
     "components|schemas|PacketView"),
])
def test_the_check_catches_a_document_off_the_schema(instance: Any, path: str) -> None:
    with pytest.raises((ValidationError, AssertionError)):
        check(instance, path)
