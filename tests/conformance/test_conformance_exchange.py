"""Spec §6: the whole exchange, with each algorithm, one and several destinations, resume."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from conformance_support import (
    DEST1,
    DEST2,
    FINAL_STATES,
    OUTSIDER,
    PACKET_FIELDS,
    SOURCE,
    Hub,
    assert_problem,
    parse_time,
    ready,
    send,
)
from spec_client import DELIVERY_STATES, SpecClient, sha256_hex


def receive(destination: SpecClient, packet_id: str, content: bytes, **expected: object) -> str:
    """Inbox → ready → download → ack as a destination; return the download URL.

    ``expected`` are inbox item members to check (e.g. ``subject``, ``priority``, ``data_type``).
    """
    items = {item["id"]: item for item in destination.inbox().json["items"]}
    assert packet_id in items, f"{packet_id} not in the inbox of {destination.credentials.unit}"
    item = items[packet_id]
    assert all(name in item for name in PACKET_FIELDS), item
    assert (item["from"], item["size"], item["sha256"]) == (SOURCE, len(content), sha256_hex(content))
    assert {name: item[name] for name in expected} == expected, item
    url = ready(destination, packet_id)
    got = destination.download(url)
    assert got.status == 200, got
    assert got.body == content
    assert got.headers["x-lgsp-content-sha256"] == sha256_hex(content) == sha256_hex(got.body)
    acked = destination.ack(packet_id, sha256_hex(got.body))
    assert acked.status == 200, acked
    assert acked.json == {"state": "delivered"}
    return url


def deliveries(client: SpecClient, packet_id: str) -> dict[str, str]:
    """``GET /v1/packets/{id}`` checked for the spec's members; unit → delivery state."""
    answer = client.packet(packet_id)
    assert answer.status == 200, answer
    body = answer.json
    assert all(name in body for name in PACKET_FIELDS), body
    assert body["id"] == packet_id
    for delivery in body["deliveries"]:
        assert {"unit", "state", "updated_at"} <= delivery.keys(), delivery
        assert delivery["state"] in DELIVERY_STATES, delivery
    for event in body["events"]:
        assert {"at", "type", "unit"} <= event.keys(), event
    return {delivery["unit"]: delivery["state"] for delivery in body["deliveries"]}


def assert_content_gone(destination: SpecClient, packet_id: str, url: str) -> None:
    """After the last acknowledgement neither a new download nor a new ``ready`` gets content."""
    again = destination.download(url)
    assert again.status >= 400, again
    assert again.content_type == "application/problem+json", again
    assert destination.ready(packet_id).status >= 400


@pytest.mark.parametrize(
    ("source_label", "destination_label", "unit"),
    [
        ("src", "dst1", DEST1),  # both sides HMAC-SHA256
        ("src-sha1", "dst2", DEST2),  # both sides HMAC-SHA1
        ("src-rsa", "outsider", OUTSIDER),  # both sides RSA-SHA256
    ],
    ids=["HMAC-SHA256", "HMAC-SHA1", "RSA-SHA256"],
)
def test_exchange_one_destination(lgsp_hub: Hub, source_label: str, destination_label: str, unit: str) -> None:
    """Create → upload → inbox → ready → download → ack → delivered → content gone, per algorithm."""
    source, destination = lgsp_hub.client(source_label), lgsp_hub.client(destination_label)
    assert source.credentials.algorithm == destination.credentials.algorithm
    content = secrets.token_bytes(3000)
    subject = f"Một đích — {source_label}"
    packet_id = send(source, [unit], content, subject=subject, priority=1, data_type="binary")
    stored = lgsp_hub.stored_files_containing(content)
    url = receive(destination, packet_id, content, subject=subject, priority=1, data_type="binary")
    assert deliveries(source, packet_id) == {unit: "delivered"}
    assert deliveries(destination, packet_id) == {unit: "delivered"}
    assert packet_id not in [item["id"] for item in destination.inbox().json["items"]]
    assert_content_gone(destination, packet_id, url)
    if stored:  # the content was found in the data directory: it must be deleted at once
        assert not lgsp_hub.stored_files_containing(content)


def test_exchange_several_destinations(lgsp_hub: Hub, src: SpecClient, dst1: SpecClient, dst2: SpecClient) -> None:
    """Content stays until the last destination acknowledges, then is gone for everybody."""
    # Opaque bytes: a data type the hub does not read (it validates and converts "edxml").
    content = b"<opaque>" + secrets.token_bytes(5000) + b"</opaque>"
    packet_id = send(src, [DEST1, DEST2], content, data_type="binary", subject="Nhiều đích")
    stored = lgsp_hub.stored_files_containing(content)
    url1 = receive(dst1, packet_id, content, subject="Nhiều đích", data_type="binary", priority=0)
    assert deliveries(src, packet_id)[DEST1] == "delivered"
    assert deliveries(src, packet_id)[DEST2] not in FINAL_STATES
    assert lgsp_hub.stored_files_containing(content) == stored
    url2 = receive(dst2, packet_id, content)  # the first ack did not delete the content
    assert deliveries(src, packet_id) == {DEST1: "delivered", DEST2: "delivered"}
    assert_content_gone(dst1, packet_id, url1)
    assert_content_gone(dst2, packet_id, url2)
    if stored:
        assert not lgsp_hub.stored_files_containing(content)


def test_resume_download_with_range(src: SpecClient, dst1: SpecClient) -> None:
    """An interrupted download resumes with ``Range: bytes=N-``; the pieces hash to the packet."""
    content = secrets.token_bytes(48 * 1024)
    packet_id = send(src, [DEST1], content)
    url = ready(dst1, packet_id)
    first = dst1.download(url, read_limit=20_000)  # the connection drops after 20 000 bytes
    assert first.status == 200, first
    assert first.body == content[: len(first.body)]
    offset = len(first.body)
    rest = dst1.download(url, start=offset)
    assert rest.status == 206, rest
    assert rest.headers["content-range"] == f"bytes {offset}-{len(content) - 1}/{len(content)}"
    assert rest.headers["x-lgsp-content-sha256"] == sha256_hex(content)
    assert sha256_hex(first.body + rest.body) == sha256_hex(content)
    assert dst1.ack(packet_id, sha256_hex(first.body + rest.body)).json == {"state": "delivered"}


def test_inbox_order_priority_then_oldest(src: SpecClient, outsider: SpecClient) -> None:
    """Highest priority first, then oldest first."""
    sent = []
    for priority in (0, 2, 1, 2, 3, 0):
        sent.append((priority, send(src, [OUTSIDER], secrets.token_bytes(16), priority=priority)))
    ours = {packet_id for _, packet_id in sent}
    listed = [item for item in outsider.inbox().json["items"] if item["id"] in ours]
    expected = [packet_id for _, packet_id in sorted(sent, key=lambda pair: -pair[0])]  # stable: oldest first
    assert [item["id"] for item in listed] == expected
    for _, packet_id in sent:  # leave the outsider's inbox empty for the other tests
        assert outsider.fail(packet_id, "inbox order test").status < 300


def test_wrong_hash_ack_keeps_delivery_pending_and_repeat_ack_is_harmless(src: SpecClient, dst1: SpecClient) -> None:
    """A wrong hash → 400 content.hash_mismatch, still pending; a repeated ack changes nothing."""
    content = secrets.token_bytes(512)
    packet_id = send(src, [DEST1], content)
    url = ready(dst1, packet_id)
    assert dst1.download(url).body == content
    assert_problem(dst1.ack(packet_id, sha256_hex(b"something else")), 400, "content.hash_mismatch")
    assert deliveries(src, packet_id)[DEST1] not in FINAL_STATES
    assert dst1.download(url).status == 200  # still offered
    assert dst1.ack(packet_id, sha256_hex(content)).json == {"state": "delivered"}
    repeated = dst1.ack(packet_id, sha256_hex(content))
    assert repeated.status == 200, repeated
    assert repeated.json == {"state": "delivered"}
    assert deliveries(src, packet_id) == {DEST1: "delivered"}


def test_fail_with_reason(src: SpecClient, dst1: SpecClient, dst2: SpecClient) -> None:
    """A destination refuses the packet; its delivery is ``failed``, the other one unaffected."""
    content = secrets.token_bytes(256)
    packet_id = send(src, [DEST1, DEST2], content)
    refused = dst2.fail(packet_id, "Sai đơn vị nhận")
    assert 200 <= refused.status < 300, refused
    states = deliveries(src, packet_id)
    assert states[DEST2] == "failed"
    assert states[DEST1] not in FINAL_STATES
    assert packet_id not in [item["id"] for item in dst2.inbox().json["items"]]
    url = receive(dst1, packet_id, content)  # the last one to finish: the content goes now
    assert_content_gone(dst1, packet_id, url)


def test_cancel_by_source(src: SpecClient, dst1: SpecClient, dst2: SpecClient) -> None:
    """Cancel stops undelivered deliveries only; the destination cannot cancel."""
    content = secrets.token_bytes(256)
    packet_id = send(src, [DEST1, DEST2], content)
    receive(dst1, packet_id, content)
    refused = dst2.cancel(packet_id)
    assert 400 <= refused.status < 500, refused
    assert deliveries(src, packet_id)[DEST2] not in FINAL_STATES
    cancelled = src.cancel(packet_id)
    assert 200 <= cancelled.status < 300, cancelled
    assert deliveries(src, packet_id) == {DEST1: "delivered", DEST2: "cancelled"}
    assert packet_id not in [item["id"] for item in dst2.inbox().json["items"]]
    assert dst2.ready(packet_id).status >= 400


def test_packet_times_are_utc(src: SpecClient, dst1: SpecClient) -> None:
    """``created_at`` / ``updated_at`` / event times are UTC ``…Z`` times close to now."""
    content = secrets.token_bytes(64)
    packet_id = send(src, [DEST1], content)
    body = src.packet(packet_id).json
    now = datetime.now(UTC)
    times = [body["created_at"], *(d["updated_at"] for d in body["deliveries"]), *(e["at"] for e in body["events"])]
    for value in times:
        assert abs(parse_time(value) - now) < timedelta(minutes=2), value
    assert dst1.fail(packet_id, "cleanup").status < 300


def test_units_search(src: SpecClient) -> None:
    """``GET /v1/units`` by identifier prefix and by name, with ``limit``."""
    by_prefix = src.units("000.00.0", limit=2)
    assert by_prefix.status == 200, by_prefix
    ids = [item["id"] for item in by_prefix.json["items"]]
    assert 1 <= len(ids) <= 2
    assert all(unit.startswith("000.00.0") for unit in ids)
    by_name = src.units("Conformance Destination")
    assert sorted(item["id"] for item in by_name.json["items"]) == [DEST1, DEST2]


ROUTES = [
    "/v1/time",
    "/v1/openapi.yaml",
    "/v1/packets",
    "/v1/packets/{}",
    "/v1/packets/{}/ready",
    "/v1/packets/{}/ack",
    "/v1/packets/{}/fail",
    "/v1/packets/{}/cancel",
    "/v1/inbox",
    "/v1/units",
    "/v1/sessions",
    "/v1/verify",
]


def test_openapi_lists_every_route(src: SpecClient) -> None:
    """``GET /v1/openapi.yaml`` is an OpenAPI 3.1 document naming every route of §5–6."""
    answer = src.request("GET", "/v1/openapi.yaml", signed=False)
    assert answer.status == 200, answer
    text = re.sub(r"\{[^}/]+\}", "{}", answer.body.decode("utf-8"))
    assert re.search(r"openapi:\s*['\"]?3\.1", text)
    missing = [route for route in ROUTES if not re.search(re.escape(route) + r"['\"]?\s*:", text)]
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
