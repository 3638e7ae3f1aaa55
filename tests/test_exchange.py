"""The whole exchange through real HTTP, a real database and the real event stream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from lgsp.client import LgspClient, LgspError
from lgsp.core.hub import Hub
from tests.blob_support import larger_than_inline, stored_count

from .conftest import Actor, MakeActor
from .test_auth import assert_problem


async def next_message(stream: Any, timeout: float = 1.0, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The next event, within `timeout` seconds (the spec's 'within a second')."""
    async def first() -> dict[str, Any]:
        async for message in stream:
            if message["type"] not in skip:
                return message
        raise AssertionError("stream closed")

    return await asyncio.wait_for(first(), timeout)


def blob_files(hub: Hub) -> list[Path]:
    """Every file of the blob store that can hold content (processes' `.owner` files hold none)."""
    return [p for p in hub.blobs.root.rglob("*") if p.is_file() and p.suffix != ".owner"]


async def test_one_destination_full_exchange(make_actor: MakeActor, tmp_path: Path) -> None:
    a = await make_actor("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    b = await make_actor("000.00.01.H23", "Sở Tài chính")
    content = os.urandom(300_000)
    async with b.client.events() as b_stream, a.client.events() as a_stream:
        hello = await next_message(b_stream)
        assert hello["type"] == "hello" and hello["inbox"] == [] and hello["unit"] == b.unit
        await next_message(a_stream)  # A's hello
        packet_id = await a.client.send(content, [b.unit], subject="Công văn thử nghiệm", priority=2)
        available = await next_message(b_stream)
        assert available["type"] == "packet.available" and available["id"] == packet_id
        assert available["sha256"] == hashlib.sha256(content).hexdigest()
        assert available["from"] == a.unit and "at" in available

        inbox = await b.client.inbox()
        assert [i["id"] for i in inbox] == [packet_id]
        item = inbox[0]
        assert item["subject"] == "Công văn thử nghiệm" and item["priority"] == 2 and item["size"] == len(content)
        assert set(item) == {"id", "from", "subject", "priority", "data_type", "size", "sha256", "created_at",
                             "from_online", "from_last_seen_at"}
        assert item["from_online"] is True  # the source has just made signed requests

        dest = tmp_path / "got.bin"
        sha = await b.client.download(packet_id, dest)
        assert dest.read_bytes() == content and sha == hashlib.sha256(content).hexdigest()
        status = await a.client.status(packet_id)
        assert status["deliveries"][0]["state"] == "fetched"
        assert len(blob_files(a.hub)) == 1

        assert await b.client.ack(packet_id, sha) == "delivered"
        delivered = await next_message(a_stream)
        assert delivered["type"] == "packet.delivered" and delivered["id"] == packet_id
        assert delivered["unit"] == b.unit

    status = await a.client.status(packet_id)
    (delivery,) = status["deliveries"]
    assert (delivery["unit"], delivery["state"], delivery["mode"]) == (b.unit, "delivered", "pull")
    assert status["state"] == "completed" and status["content"] == "purged"
    types = [e["type"] for e in status["events"]]
    assert types[:5] == ["packet.created", "packet.accepted", "packet.available", "packet.fetched",
                         "packet.delivered"]
    assert "content.purged" in types
    assert blob_files(a.hub) == []  # the bytes are gone from disk
    # Metadata and hash stay.
    assert status["sha256"] == sha and status["size"] == len(content)
    assert await b.client.inbox() == []


async def test_several_destinations_purge_after_the_last(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    dests = [await make_actor(f"000.00.0{i}.H23") for i in (1, 2, 3)]
    content = b"ba don vi nhan" * 1000
    packet_id = await a.client.send(content, [d.unit for d in dests], subject="Gửi ba nơi")
    sha = hashlib.sha256(content).hexdigest()
    for d in dests[:2]:
        assert await d.client.fetch_bytes(packet_id) == content
        assert await d.client.ack(packet_id, sha) == "delivered"
        assert await stored_count(a.hub) == 1, "content must stay while a destination still needs it"
    assert await dests[2].client.fail(packet_id, "Không đúng thẩm quyền") == "failed"
    assert await stored_count(a.hub) == 0
    status = await a.client.status(packet_id)
    assert {d["unit"]: d["state"] for d in status["deliveries"]} == {
        dests[0].unit: "delivered", dests[1].unit: "delivered", dests[2].unit: "failed"}
    failed = next(d for d in status["deliveries"] if d["state"] == "failed")
    assert failed["reason"] == "Không đúng thẩm quyền"
    # A destination sees only its own delivery.
    own = await dests[0].client.status(packet_id)
    assert [d["unit"] for d in own["deliveries"]] == [dests[0].unit]
    assert "to" not in own


async def test_third_unit_gets_404_everywhere(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    c = await make_actor("000.00.02.H23")
    packet_id = await a.client.send(b"secret", [b.unit], subject="Mật")
    for call in (c.client.status(packet_id), c.client.ready(packet_id), c.client.ack(packet_id, "0" * 64),
                 c.client.fail(packet_id, "x"), c.client.cancel(packet_id)):
        with pytest.raises(LgspError) as err:
            await call
        assert (err.value.status, err.value.code) == (404, "not_found")
    # Same answer as for a packet that does not exist at all.
    with pytest.raises(LgspError) as err:
        await c.client.status("00000000-0000-4000-8000-000000000000")
    assert (err.value.status, err.value.code) == (404, "not_found")
    # The destination cannot cancel either (only the source may).
    with pytest.raises(LgspError) as err:
        await b.client.cancel(packet_id)
    assert err.value.code == "forbidden"


async def test_interrupted_upload_leaves_nothing(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(3 << 20)
    sha = hashlib.sha256(content).hexdigest()
    created = await a.client.create_packet([b.unit], subject="Bị ngắt", size=len(content), sha256=sha)
    url = URL(created["upload"]["url"], encoded=True)
    headers = a.client.signed_headers("PUT", url, sha)
    headers["Content-Length"] = str(len(content))

    # Send a third of the body over a raw socket, then drop the connection.
    _, writer = await asyncio.open_connection(url.host, url.port)
    head = f"PUT {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + content[: len(content) // 3])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.5)

    assert blob_files(a.hub) == []  # no partial blob, not even in tmp/
    assert await b.client.inbox() == []
    with pytest.raises(LgspError) as err:
        await b.client.status(created["id"])
    assert err.value.status == 404
    status = await a.client.status(created["id"])
    assert status["state"] == "created" and status["deliveries"][0]["state"] == "waiting"
    # The source can upload again, completely this time.
    await a.client.upload(created["upload"]["url"], content, sha)
    assert [i["id"] for i in await b.client.inbox()] == [created["id"]]


async def test_upload_checks_size_and_hash_and_keeps_nothing(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = b"x" * 5000
    sha = hashlib.sha256(content).hexdigest()
    created = await a.client.create_packet([b.unit], subject="s", size=len(content), sha256=sha)
    url = created["upload"]["url"]
    path = URL(url, encoded=True).path_qs

    # Declared hash differs from the one given at creation.
    other = b"y" * 5000
    status, h, body = await a.raw("PUT", path, other)
    assert_problem(status, h, body, 400, "content.hash_mismatch")
    # Right declared hash, wrong bytes (same length).
    status, h, body = await a.raw("PUT", path, other, content_sha256=sha)
    assert_problem(status, h, body, 400, "content.hash_mismatch")
    # Too few and too many bytes.
    status, h, body = await a.raw("PUT", path, content[:-1], content_sha256=sha)
    assert_problem(status, h, body, 400, "content.size_mismatch")
    status, h, body = await a.raw("PUT", path, content + b"!", content_sha256=sha)
    assert_problem(status, h, body, 400, "content.size_mismatch")
    assert blob_files(a.hub) == []
    assert await b.client.inbox() == []

    await a.client.upload(url, content, sha)
    status, h, body = await a.raw("PUT", path, content, content_sha256=sha)
    assert_problem(status, h, body, 409, "conflict")
    # Only the source may upload.
    status, h, body = await b.raw("PUT", path, content, content_sha256=sha)
    assert_problem(status, h, body, 404, "not_found")


async def test_transfer_tokens_are_enforced(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    packet_id = await a.client.send(b"abc", [b.unit], subject="s")
    download = URL((await b.client.ready(packet_id))["url"], encoded=True)
    tampered = download.raw_path + "?" + download.raw_query_string.replace("token=", "token=A")
    status, h, body = await b.raw("GET", tampered)
    assert_problem(status, h, body, 403, "forbidden")
    # Half a token is no token: both parameters or neither.
    only_expires = download.raw_path + "?" + download.raw_query_string.partition("&token=")[0]
    status, h, body = await b.raw("GET", only_expires)
    assert_problem(status, h, body, 403, "forbidden")
    # A token issued to B is no use to A (bound to the unit).
    status, h, body = await a.raw("GET", download.path_qs)
    assert_problem(status, h, body, 403, "forbidden")


async def test_a_signed_request_downloads_without_a_url_token(make_actor: MakeActor) -> None:
    """The signed request authenticates the destination; the URL token only bounds a URL's life."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    c = await make_actor("000.00.02.H23")
    packet_id = await a.client.send(b"abc", [b.unit], subject="s")
    status, h, body = await b.raw("GET", f"/v1/packets/{packet_id}/content")
    assert status == 200 and body == b"abc"
    assert h["X-LGSP-Content-SHA256"] == hashlib.sha256(b"abc").hexdigest()
    assert (await b.client.status(packet_id))["deliveries"][0]["state"] == "fetched"
    # Anyone else still learns nothing, token or not.
    status, h, body = await c.raw("GET", f"/v1/packets/{packet_id}/content")
    assert_problem(status, h, body, 404, "not_found")
    # Unsigned: 401 as before.
    status, h, body = await b.raw("GET", f"/v1/packets/{packet_id}/content", sign=False)
    assert_problem(status, h, body, 401, "auth.missing")


async def test_expired_download_url(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    packet_id = await a.client.send(b"abc", [b.unit], subject="s")
    past = datetime.now(UTC) - timedelta(seconds=5)
    query = hub.exchange.tokens.make("download", packet_id, b.unit, past)
    status, h, body = await b.raw("GET", f"/v1/packets/{packet_id}/content?{query}")
    assert_problem(status, h, body, 410, "transfer.expired")


async def test_resumed_download(make_actor: MakeActor, tmp_path: Path) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = os.urandom(2_500_000)
    packet_id = await a.client.send(content, [b.unit], subject="Tệp lớn")
    url = URL((await b.client.ready(packet_id))["url"], encoded=True)
    headers = b.client.signed_headers("GET", url)
    headers["Range"] = "bytes=1000000-"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 1000000-{len(content) - 1}/{len(content)}"
        assert resp.headers["X-LGSP-Content-SHA256"] == hashlib.sha256(content).hexdigest()
        assert await resp.read() == content[1_000_000:]
    # The client resumes a partial file it already has.
    dest = tmp_path / "partial.bin"
    dest.write_bytes(content[:1_234_567])
    sha = await b.client.download(packet_id, dest)
    assert dest.read_bytes() == content and sha == hashlib.sha256(content).hexdigest()


async def test_ack_with_wrong_hash_stays_pending_and_repeat_is_harmless(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = b"noi dung"
    packet_id = await a.client.send(content, [b.unit], subject="s")
    await b.client.fetch_bytes(packet_id)
    with pytest.raises(LgspError) as err:
        await b.client.ack(packet_id, hashlib.sha256(b"other").hexdigest())
    assert (err.value.status, err.value.code) == (400, "content.hash_mismatch")
    assert (await a.client.status(packet_id))["deliveries"][0]["state"] == "fetched"
    assert [i["id"] for i in await b.client.inbox()] == [packet_id]
    sha = hashlib.sha256(content).hexdigest()
    assert await b.client.ack(packet_id, sha) == "delivered"
    assert await b.client.ack(packet_id, sha) == "delivered"
    events = [e["type"] for e in (await a.client.status(packet_id))["events"]]
    assert events.count("packet.delivered") == 1
    with pytest.raises(LgspError) as err:
        await b.client.fail(packet_id, "too late")
    assert err.value.code == "conflict"
    with pytest.raises(LgspError) as err:
        await b.client.ready(packet_id)
    assert (err.value.status, err.value.code) == (410, "content.gone")


async def test_create_validation(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    good = {"to": ["000.00.00.H23"], "subject": "s", "priority": 0, "data_type": "binary", "size": 1,
            "sha256": "0" * 64}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({**good, "to": []}, 422, "request.invalid", "to"),
        ({**good, "priority": 4}, 422, "request.invalid", "priority"),
        ({**good, "priority": True}, 422, "request.invalid", "priority"),
        ({**good, "size": -1}, 422, "request.invalid", "size"),
        ({**good, "sha256": "XYZ"}, 422, "request.invalid", "sha256"),
        ({**good, "data_type": "Bad Type"}, 422, "request.invalid", "data_type"),
        ({**good, "subject": ""}, 422, "request.invalid", "subject"),
        ({**good, "deadline": "2020-01-01T00:00:00Z"}, 422, "request.invalid", "deadline"),
        ({**good, "deadline": "tomorrow"}, 422, "request.invalid", "deadline"),
        ({**good, "surprise": 1}, 422, "request.invalid", "surprise"),
        ({**good, "to": ["000.00.99.H23", "000.00.00.H23"]}, 422, "route.unknown_destination", "000.00.99.H23"),
        ({**good, "size": hub.config.limits.max_packet_size + 1}, 413, "content.too_large",
         str(hub.config.limits.max_packet_size + 1)),
    ]
    for body, status, code, mention in cases:
        raw = json.dumps(body).encode()
        got, h, problem = await a.raw("POST", "/v1/packets", raw)
        assert_problem(got, h, problem, status, code)
        assert mention in problem["detail"], (body, problem)
    got, h, problem = await a.raw("POST", "/v1/packets", b"{not json")
    assert_problem(got, h, problem, 400, "request.malformed")
    unknown = (await a.raw("POST", "/v1/packets", json.dumps({**good, "to": ["000.00.99.H23"]}).encode()))[2]
    assert unknown["unknown"] == ["000.00.99.H23"]


async def test_cancel_by_source_tells_pending_destinations(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    c = await make_actor("000.00.02.H23")
    packet_id = await a.client.send(b"huy", [b.unit, c.unit], subject="Sẽ hủy")
    sha = hashlib.sha256(b"huy").hexdigest()
    await c.client.fetch_bytes(packet_id)
    await c.client.ack(packet_id, sha)
    async with b.client.events() as stream:
        hello = await next_message(stream)
        assert [i["id"] for i in hello["inbox"]] == [packet_id]
        result = await a.client.cancel(packet_id)
        assert result["cancelled"] == [b.unit] and result["state"] == "completed"
        notice = await next_message(stream)
        assert notice["type"] == "packet.cancelled" and notice["id"] == packet_id
    assert await b.client.inbox() == []
    assert blob_files(a.hub) == []
    states = {d["unit"]: d["state"] for d in (await a.client.status(packet_id))["deliveries"]}
    assert states == {b.unit: "cancelled", c.unit: "delivered"}
    with pytest.raises(LgspError) as err:
        await b.client.ack(packet_id, sha)
    assert err.value.code == "conflict"


async def test_cancel_before_upload_then_upload_conflicts(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    created = await a.client.create_packet([b.unit], subject="s", size=3, sha256=hashlib.sha256(b"abc").hexdigest())
    assert (await a.client.cancel(created["id"]))["cancelled"] == [b.unit]
    with pytest.raises(LgspError) as err:
        await a.client.upload(created["upload"]["url"], b"abc", hashlib.sha256(b"abc").hexdigest())
    assert err.value.status == 409
    with pytest.raises(LgspError):
        await b.client.status(created["id"])  # never visible to the destination


async def test_inbox_orders_by_priority_then_age(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    ids = {}
    for name, priority in (("normal-1", 0), ("urgent", 1), ("normal-2", 0), ("flash", 3), ("very", 2)):
        ids[name] = await a.client.send(name.encode(), [b.unit], subject=name, priority=priority)
    order = [i["subject"] for i in await b.client.inbox()]
    assert order == ["flash", "very", "urgent", "normal-1", "normal-2"]


async def page_through(client: LgspClient, limit: int, cursor: str | None = None) -> tuple[list[str], int]:
    """Subjects of every page from `cursor` on, and how many pages it took."""
    subjects: list[str] = []
    pages = 0
    while True:
        page = await client.inbox_page(limit, cursor)
        assert set(page) == {"items", "next"} and len(page["items"]) <= limit
        pages += 1
        subjects += [i["subject"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            return subjects, pages
        assert isinstance(cursor, str) and cursor and page["items"], page


async def check_inbox_cursor(a: LgspClient, b: LgspClient, b_unit: str) -> None:
    """Paging with `next` meets every pending packet once, in order, even while packets come and go.

    Shared by the SQLite test below and the PostgreSQL one (two nodes) in test_postgres.py.
    """
    plan = [("n1", 0), ("u1", 1), ("n2", 0), ("f1", 3), ("v1", 2), ("n3", 0), ("u2", 1)]
    ids = {name: await a.send(name.encode(), [b_unit], subject=name, priority=p) for name, p in plan}
    everything = ["f1", "v1", "u1", "u2", "n1", "n2", "n3"]
    assert await page_through(b, 3) == (everything, 3)
    assert await page_through(b, 7) == (everything, 1)  # exactly full: no `next` for an empty page
    assert await page_through(b, 1000) == (everything, 1)

    first = await b.inbox_page(2)
    assert [i["subject"] for i in first["items"]] == ["f1", "v1"]
    # Meanwhile: both listed packets leave the inbox (one refused, one cancelled by its source), one
    # not yet listed is refused, and two new packets arrive: one ahead of the cursor, one behind it.
    await b.fail(ids["f1"], "sai nơi nhận")
    await a.cancel(ids["v1"])
    await b.fail(ids["n2"], "trùng")
    await a.send(b"f2", [b_unit], subject="f2", priority=3)  # sorts before the cursor: not in later pages
    await a.send(b"n4", [b_unit], subject="n4", priority=0)  # sorts after it: in a later page
    rest, _ = await page_through(b, 2, first["next"])
    assert rest == ["u1", "u2", "n1", "n3", "n4"]  # an offset of 2 would have skipped u1 and u2
    assert (await page_through(b, 100))[0] == ["f2", "u1", "u2", "n1", "n3", "n4"]


async def test_inbox_pages_with_a_keyset_cursor(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    await check_inbox_cursor(a.client, b.client, b.unit)
    assert [i["subject"] for i in await b.client.inbox_all(page_size=2)] == ["f2", "u1", "u2", "n1", "n3", "n4"]


async def test_inbox_cursor_breaks_ties_by_packet_id(make_actor: MakeActor, hub: Hub) -> None:
    """Packets of one priority created in the same microsecond are still each listed once."""
    from sqlalchemy import update

    from lgsp.core.store.tables import deliveries

    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    ids = [await a.client.send(f"p{n}".encode(), [b.unit], subject=f"p{n}") for n in range(5)]
    same = datetime(2026, 12, 5, 9, 1, 2, 345678, tzinfo=UTC)
    async with hub.db.write() as conn:
        await conn.execute(update(deliveries).where(deliveries.c.unit_id == b.unit).values(packet_created_at=same))
    listed: list[str] = []
    cursor = None
    while True:
        page = await b.client.inbox_page(2, cursor)
        listed += [i["id"] for i in page["items"]]
        if not (cursor := page["next"]):
            break
    assert listed == sorted(ids)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


UUID = "12345678-1234-1234-1234-123456789abc"


@pytest.mark.parametrize("cursor", [
    "not a cursor",                                   # not base64url
    "Mjo.OjA6",                                       # a dot
    b64("nope"),
    b64(f"2:3:0:{UUID}"),                             # another version
    b64(f"1:9:0:{UUID}"),                             # no priority 9
    b64(f"1:3:-5:{UUID}"),                            # a negative time
    b64(f"1:3:0:{UUID.upper()}"),                     # not an id the hub gives
    b64("1:3:0:12345678123412341234123456789abc----"),
    b64(f"1:3:999999999999999999:{UUID}"),            # beyond any time the hub records
    b64(f"1:3:0:{UUID}") + "A" * 100,                 # too long
    b64(f"1:3:0:{UUID}\n"),
])
async def test_a_bad_cursor_is_request_invalid(make_actor: MakeActor, cursor: str) -> None:
    b = await make_actor("000.00.01.H23")
    status, h, body = await b.raw("GET", "/v1/inbox?" + str(URL.build(query={"cursor": cursor}))[1:])
    problem = assert_problem(status, h, body, 422, "request.invalid")
    assert problem["field"] == "cursor"


async def test_a_cursor_names_only_a_position(make_actor: MakeActor) -> None:
    """Another unit's cursor lists the caller's own packets after that position, nothing of the other's."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    c = await make_actor("000.00.02.H23")
    for n in range(3):
        await a.client.send(b"x", [b.unit], subject=f"b{n}", priority=1)
    await a.client.send(b"x", [c.unit], subject="c-urgent", priority=1)
    await a.client.send(b"x", [c.unit], subject="c-normal", priority=0)
    b_cursor = (await b.client.inbox_page(1))["next"]
    assert [i["subject"] for i in (await c.client.inbox_page(10, b_cursor))["items"]] == ["c-urgent", "c-normal"]


async def test_hello_reports_changes_since_last_connection(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    async with a.client.events() as stream:
        await next_message(stream)
    first = await a.client.send(b"one", [b.unit], subject="one")
    await b.client.fetch_bytes(first)
    await b.client.ack(first, hashlib.sha256(b"one").hexdigest())
    second = await a.client.send(b"two", [b.unit], subject="two")
    await b.client.fail(second, "sai địa chỉ")
    async with a.client.events() as stream:
        hello = await next_message(stream)
    changes = [(c["type"], c["id"]) for c in hello["changes"]]
    assert changes == [("packet.delivered", first), ("packet.failed", second)]
    assert hello["changes"][1]["reason"] == "sai địa chỉ"
    # Seen once, not again.
    async with a.client.events() as stream:
        assert (await next_message(stream))["changes"] == []


async def test_upload_window_expiry(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    created = await a.client.create_packet([b.unit], subject="never", size=3, sha256="0" * 64)
    hub.exchange.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
    try:
        counts = await hub.exchange.sweep()
    finally:
        hub.exchange.clock = lambda: datetime.now(UTC)
    assert counts["uploads_expired"] == 1
    status = await a.client.status(created["id"])
    assert status["state"] == "expired" and status["deliveries"][0]["state"] == "expired"
    assert "upload.expired" in [e["type"] for e in status["events"]]


async def test_deadline_expires_pending_deliveries(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    deadline = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = await a.client.create_packet([b.unit], subject="hạn", size=3, sha256=hashlib.sha256(b"abc").hexdigest(),
                                           deadline=deadline)
    await a.client.upload(created["upload"]["url"], b"abc", hashlib.sha256(b"abc").hexdigest())
    assert await hub.exchange.sweep() == {"uploads_expired": 0, "deadlines_expired": 0, "completed_late": 0}
    hub.exchange.clock = lambda: datetime.now(UTC) + timedelta(minutes=10)
    try:
        counts = await hub.exchange.sweep()
    finally:
        hub.exchange.clock = lambda: datetime.now(UTC)
    assert counts["deadlines_expired"] == 1
    status = await a.client.status(created["id"])
    assert status["deliveries"][0]["state"] == "expired" and status["content"] == "purged"
    assert await b.client.inbox() == []
    assert blob_files(hub) == []


async def test_units_search(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    await make_actor("000.00.01.H23", "Sở Tài chính")
    await make_actor("000.00.00.G22", "Văn phòng Chính phủ")
    found = await a.client.units("Sở KẾ", limit=5)
    assert [u["id"] for u in found] == ["000.00.00.H23"]
    assert [u["id"] for u in await a.client.units("so ke hoach")] == ["000.00.00.H23"]  # accents ignored
    assert [u["id"] for u in await a.client.units("000.00.0")] == ["000.00.00.G22", "000.00.00.H23", "000.00.01.H23"]
    assert len(await a.client.units("", limit=2)) == 2
    assert await a.client.units("%") == []  # LIKE wildcards are literal


async def test_events_stream_requires_signature(hub: Hub) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(hub.url + "/v1/events")
    assert err.value.status == 401


async def test_presence_recorded_for_stream(make_actor: MakeActor, hub: Hub) -> None:
    b: Actor = await make_actor("000.00.01.H23")
    async with b.client.events() as stream:
        await next_message(stream)
        assert hub.presence.is_online(b.unit)
    await asyncio.sleep(0.1)
    await hub.presence.flush()
    from sqlalchemy import select

    from lgsp.core.store.tables import presence_log

    async with hub.db.read() as conn:
        causes = [r.cause for r in (await conn.execute(
            select(presence_log).where(presence_log.c.unit_id == b.unit).order_by(presence_log.c.id))).all()]
    assert "stream_open" in causes and "stream_close" in causes


async def test_logs_never_hold_secrets_signatures_or_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from lgsp.client import Credentials, LgspClient
    from lgsp.core.config import load_config

    from .conftest import base_env

    caplog.set_level("DEBUG")
    config = load_config(None, env=base_env(tmp_path, LGSP_LOGGING_ACCESS_LOG="true"))
    async with Hub(config) as hub:
        keys = []
        for unit in ("000.00.00.H23", "000.00.01.H23"):
            await hub.directory.add_unit(unit, unit)
            app = await hub.directory.add_application(unit, "x")
            keys.append(await hub.directory.issue_key(app.id, "HMAC-SHA256"))
        a, b = (LgspClient(Credentials(hub.url, k.access_key, secret=k.secret)) for k in keys)
        try:
            packet_id = await a.send(b"abc", ["000.00.01.H23"], subject="s")
            download = await b.ready(packet_id)
            await b.fetch_bytes(packet_id)
            await b.ack(packet_id, hashlib.sha256(b"abc").hexdigest())
        finally:
            await a.close()
            await b.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /v1/inbox" in text or "POST /v1/packets" in text  # the access log is on
    token = URL(download["url"]).query["token"]
    for secret in (keys[0].secret, keys[1].secret, token):
        assert secret and secret not in text
    assert "X-LGSP-Signature" not in text and "HMAC-SHA256 " not in text


async def test_unsatisfiable_range_is_a_problem(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    packet_id = await a.client.send(b"x" * 100, [b.unit], subject="s")
    url = URL((await b.client.ready(packet_id))["url"], encoded=True)
    for bad in ("bytes=100-", "bytes=5000-", "bytes=9-3", "items=0-", "bytes=-"):
        status, h, body = await b.raw("GET", url.path_qs, headers={"Range": bad})
        problem = assert_problem(status, h, body, 416, "content.range_not_satisfiable")
        assert problem["size"] == 100
    status, _, body = await b.raw("GET", url.path_qs, headers={"Range": "bytes=99-"})
    assert (status, body) == (206, b"x")


async def test_the_hubs_own_unit_is_not_a_destination(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    await hub.identity.key()  # the hub's own unit exists in the directory once it has signed
    assert await hub.directory.get_unit(hub.config.hub.identifier) is not None
    body = json.dumps({"to": [hub.config.hub.identifier], "subject": "s", "data_type": "binary", "size": 1,
                       "sha256": "0" * 64}).encode()
    status, h, problem = await a.raw("POST", "/v1/packets", body)
    assert_problem(status, h, problem, 422, "route.unknown_destination")
    assert problem["unknown"] == [hub.config.hub.identifier]


async def test_files_a_crash_left_behind_are_reconciled(make_actor: MakeActor, hub: Hub) -> None:
    """Content is recorded as purged and then deleted; files left by a crash in between, and upload
    attempts that lost to another one, are removed by the reconciliation the hub runs at start."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    done = await a.client.send(b"done", [b.unit], subject="s")
    await b.client.ack(done, hashlib.sha256(b"done").hexdigest())
    pending_content = larger_than_inline(hub, b"pending")  # a file (a small upload has none)
    pending = await a.client.send(pending_content, [b.unit], subject="s")
    waiting = await a.client.create_packet([b.unit], subject="s", size=1, sha256="0" * 64)
    kept = hub.blobs.with_prefix(pending)
    assert len(kept) == 1
    leftovers = [hub.blobs.path(f"{done}-0badc0de"),                 # purged packet: crash before deletion
                 hub.blobs.path(f"{pending}-1badc0de"),              # a losing attempt of an accepted packet
                 hub.blobs.path("00000000-0000-4000-8000-000000000000-2badc0de")]  # no packet at all
    in_progress = hub.blobs.path(f"{waiting['id']}-3badc0de")       # an upload not yet accepted: kept
    for path in [*leftovers, in_progress]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
    assert await hub.exchange.reconcile_blobs(min_age_seconds=0) == len(leftovers)
    assert not any(p.exists() for p in leftovers)
    assert in_progress.exists() and hub.blobs.with_prefix(pending) == kept
    assert await b.client.fetch_bytes(pending) == pending_content


async def test_a_purged_packets_files_go_at_any_age_the_others_only_once_old(make_actor: MakeActor,
                                                                              hub: Hub) -> None:
    """Reconciliation with an age guard: a purged packet's file goes even if it was written a moment
    ago (nothing will read it); a losing attempt's, or one of no known packet, waits until it is old."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    done = await a.client.send(b"done", [b.unit], subject="s")
    await b.client.ack(done, hashlib.sha256(b"done").hexdigest())
    pending = await a.client.send(b"pending", [b.unit], subject="s")
    purged = hub.blobs.path(f"{done}-0badc0de")
    young = [hub.blobs.path(f"{pending}-1badc0de"), hub.blobs.path("00000000-0000-4000-8000-000000000000-2badc0de")]
    for path in [purged, *young]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
    assert await hub.exchange.reconcile_blobs(min_age_seconds=60) == 1
    assert not purged.exists() and all(p.exists() for p in young)
    old = datetime.now(UTC).timestamp() - 120
    for path in young:
        os.utime(path, (old, old))
    assert await hub.exchange.reconcile_blobs(min_age_seconds=60) == len(young)
    assert not any(p.exists() for p in young)


async def test_the_leader_removes_what_a_dead_node_left_when_it_finds_it_dead(make_actor: MakeActor,
                                                                              hub: Hub) -> None:
    """A node killed between a completion's commit and the deletion of the content leaves the file;
    the leader's round that first finds the node dead reconciles at once (not at the periodic round)."""
    from sqlalchemy import insert

    from lgsp.core.store.tables import nodes

    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    done = await a.client.send(b"done", [b.unit], subject="s")
    await b.client.ack(done, hashlib.sha256(b"done").hexdigest())
    assert await hub.housekeeping_round()  # the leader; no node dead yet
    left = hub.blobs.path(f"{done}-0badc0de")
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"left by the dead node")
    assert await hub.housekeeping_round()
    assert left.exists()  # no node died: nothing to look for
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    async with hub.db.write() as conn:
        await conn.execute(insert(nodes).values(id="killed", host="elsewhere", pid=1, started_at=long_ago,
                                                heartbeat_at=long_ago))
    assert await hub.housekeeping_round()
    assert not left.exists()


async def test_a_unit_with_another_systems_code_exchanges_end_to_end(make_actor: MakeActor) -> None:
    """A legacy unit named like the national axis's systems (`vxp.saas.02`) is found, addressed in
    `to` and in paths, receives, fetches and acknowledges, and can send."""
    a = await make_actor("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    vxp = await make_actor("vxp.saas.02", "Hệ thống VXP dùng chung", legacy=True)
    assert [u["id"] for u in await a.client.units("vxp.saas")] == ["vxp.saas.02"]
    assert [u["id"] for u in await a.client.units("VXP")] == ["vxp.saas.02"]
    content = os.urandom(50_000)
    sha = hashlib.sha256(content).hexdigest()
    packet_id = await a.client.send(content, [vxp.unit], subject="Gửi hệ thống khác")
    assert [i["id"] for i in await vxp.client.inbox()] == [packet_id]
    assert await vxp.client.fetch_bytes(packet_id) == content
    assert await vxp.client.ack(packet_id, sha) == "delivered"
    status = await a.client.status(packet_id)
    assert (status["state"], status["deliveries"][0]["unit"]) == ("completed", "vxp.saas.02")
    presence = await a.client.call("GET", "/v1/units/vxp.saas.02/presence")
    assert presence["unit"] == "vxp.saas.02" and presence["online"] is True
    back = await vxp.client.send(b"reply", [a.unit], subject="Trả lời")
    assert (await a.client.status(back))["from"] == "vxp.saas.02"


async def test_partial_copies_go_when_the_packet_stops_awaiting_its_content(make_actor: MakeActor, hub: Hub) -> None:
    """Partial uploads of a packet in any process's temporary folder (here another live process on
    the same blob folder) are deleted when an upload of it is accepted, when it completes and when its
    upload window expires; other packets' partials stay."""
    from lgsp.core.store.blobs import BlobStore

    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    other = BlobStore(hub.blobs.root)  # another node writing into the shared blob folder
    other.open()

    def partial(packet_id: str, tag: str) -> Path:
        path = other.tmp / f"{packet_id}-0badc0de{tag}.1.part"
        path.write_bytes(b"start of the content")
        return path

    try:
        content = b"noi dung" * 1000
        sha = hashlib.sha256(content).hexdigest()
        accepted = await a.client.create_packet([b.unit], subject="s", size=len(content), sha256=sha)
        expiring = await a.client.create_packet([b.unit], subject="s", size=3, sha256="0" * 64)
        bystander = await a.client.create_packet([b.unit], subject="s", size=3, sha256="0" * 64)
        upload, variant = partial(accepted["id"], ""), partial(accepted["id"], "-edxml")
        expired_part, bystander_part = partial(expiring["id"], ""), partial(bystander["id"], "")

        await a.client.upload(accepted["upload"]["url"], content, sha)
        assert not upload.exists() and not variant.exists() and bystander_part.exists()

        late = partial(accepted["id"], "")  # e.g. an attempt that was still running on the other node
        assert await b.client.fetch_bytes(accepted["id"]) == content
        assert await b.client.ack(accepted["id"], sha) == "delivered"
        assert not late.exists() and bystander_part.exists()

        hub.exchange.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
        try:
            await hub.exchange.sweep()
        finally:
            hub.exchange.clock = lambda: datetime.now(UTC)
        assert not expired_part.exists() and not bystander_part.exists()  # both packets' windows closed
    finally:
        other.close()
