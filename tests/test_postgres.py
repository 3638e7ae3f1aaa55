"""The same exchange on PostgreSQL, and two hub nodes sharing one database acting as one.

Skipped (with the reason) when no PostgreSQL server answers on localhost.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from tests.blob_support import inline_keys

from .conftest import base_env, raw_request
from .test_auth import assert_problem

pytestmark = pytest.mark.postgres


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, Hub]]:
    """Two nodes: one database, one blob folder, one master key; separate HTTP servers."""
    env = base_env(tmp_path / "shared", LGSP_DATABASE_URL=pg_url, LGSP_DATABASE_POOL_SIZE="4")
    first = Hub(load_config(None, env=env))
    second = Hub(load_config(None, env=env))
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await second.stop()
        await first.stop()


async def _actor(hub: Hub, unit: str) -> tuple[LgspClient, object]:
    await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    app = await hub.directory.add_application(unit, "vbql")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    return LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)), key


async def _source_on_both(nodes: tuple[Hub, Hub]) -> tuple[LgspClient, LgspClient, LgspClient]:
    """A source unit's client on node one, a destination's on node two, the same source's on node two."""
    one, two = nodes
    a1, akey = await _actor(one, "000.00.00.H23")
    b, _ = await _actor(two, "000.00.01.H23")
    return a1, b, LgspClient(Credentials(two.url, akey.access_key, secret=akey.secret))  # type: ignore[attr-defined]


async def test_exchange_across_two_nodes(nodes: tuple[Hub, Hub], tmp_path: Path) -> None:
    one, two = nodes
    a_on_one, _ = await _actor(one, "000.00.00.H23")
    b_on_two, bkey = await _actor(two, "000.00.01.H23")
    try:
        content = b"Noi dung qua hai nut" * 5000
        packet_id = await a_on_one.send(content, ["000.00.01.H23"], subject="Hai nút")
        assert [i["id"] for i in await b_on_two.inbox()] == [packet_id]
        sha = await b_on_two.download(packet_id, tmp_path / "got")
        assert sha == hashlib.sha256(content).hexdigest()
        assert await b_on_two.ack(packet_id, sha) == "delivered"
        status = await a_on_one.status(packet_id)
        assert status["deliveries"][0]["state"] == "delivered" and status["content"] == "purged"
        assert not any(p.is_file() for p in one.blobs.objects.rglob("*"))
        # A nonce spent on one node is spent on the other.
        headers = b_on_two.signer.headers("GET", "/v1/inbox")
        assert (await raw_request(two.url, "GET", "/v1/inbox", headers=headers))[0] == 200
        status_code, h, body = await raw_request(one.url, "GET", "/v1/inbox", headers=headers)
        assert_problem(status_code, h, body, 401, "auth.replay")
        # A key revoked through one node is refused by the other on the next request.
        await one.directory.revoke_key(bkey.access_key)  # type: ignore[attr-defined]
        status_code, h, body = await raw_request(two.url, "GET", "/v1/inbox", signer=b_on_two.signer)
        assert_problem(status_code, h, body, 401, "auth.revoked_key")
    finally:
        await a_on_one.close()
        await b_on_two.close()


async def test_a_small_upload_kept_by_one_node_is_served_by_the_other(nodes: tuple[Hub, Hub]) -> None:
    """Node one keeps a small upload in the store (no file, its sealed bytes in its memory); node two
    serves it from the store, and its completion there deletes it for both."""
    one, two = nodes
    a_on_one, _ = await _actor(one, "000.00.00.H23")
    b_on_two, _ = await _actor(two, "000.00.01.H23")
    try:
        content = os.urandom(10_240)
        packet_id = await a_on_one.send(content, ["000.00.01.H23"], subject="Nhỏ, hai nút")
        (key,) = await inline_keys(two, packet_id)
        assert one.blobs.cache.get(key) is not None and two.blobs.cache.get(key) is None
        assert not any(p.is_file() for p in one.blobs.objects.rglob("*"))
        assert await b_on_two.fetch_bytes(packet_id) == content
        assert await b_on_two.ack(packet_id, hashlib.sha256(content).hexdigest()) == "delivered"
        assert await inline_keys(one, packet_id) == []
    finally:
        await a_on_one.close()
        await b_on_two.close()


async def test_concurrent_uploads_on_two_nodes_accept_once(nodes: tuple[Hub, Hub]) -> None:
    import asyncio

    one, two = nodes
    a1, b, a2 = await _source_on_both(nodes)
    try:
        content = b"y" * 4_000_000
        sha = hashlib.sha256(content).hexdigest()
        created = await a1.create_packet(["000.00.01.H23"], subject="race", size=len(content), sha256=sha)
        url_two = created["upload"]["url"].replace(one.url, two.url)
        results = await asyncio.gather(a1.upload(created["upload"]["url"], content, sha),
                                       a2.upload(url_two, content, sha), return_exceptions=True)
        ok = [r for r in results if isinstance(r, dict)]
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(ok) == 1 and len(errors) == 1, results
        assert getattr(errors[0], "status", None) == 409
        status = await a1.status(created["id"])
        assert status["state"] == "accepted"
        assert [e["type"] for e in status["events"]].count("packet.accepted") == 1
        # The losing attempt removed only its own blob: the winner's content is intact.
        assert len(one.blobs.with_prefix(created["id"])) == 1
        assert await b.fetch_bytes(created["id"]) == content
    finally:
        await a1.close()
        await a2.close()
        await b.close()


async def test_presence_flushes_of_two_nodes_never_deadlock(pg_url: str) -> None:
    """Two nodes' presence flushers write overlapping units in opposite orders at the same moment,
    round after round: each writes its rows in one fixed order, so neither waits on the other in a cycle."""
    import asyncio
    from datetime import UTC, datetime

    from lgsp.core.presence import Presence
    from lgsp.core.store.database import Database
    from lgsp.core.store.tables import units

    first, second = Database(pg_url, pool_size=2), Database(pg_url, pool_size=2)
    try:
        await first.upgrade()
        ids = [f"000.00.{i:02d}.H23" for i in range(40)]
        now = datetime.now(UTC)
        async with first.write() as conn:
            await conn.execute(units.insert(), [dict(id=u, name=u, name_folded=u, zone="local", legacy=False,
                                                     status="active", created_at=now, online=False, stream_cursor=0)
                                                for u in ids])
        one, two = Presence(first, 300), Presence(second, 300)
        for n in range(40):
            seen = datetime.now(UTC)
            for u in ids[5:]:  # overlapping sets, observed (and so kept) in opposite orders
                one.request_seen(u, seen, float(n))
            for u in reversed(ids[:-5]):
                two.request_seen(u, seen, float(-n))
            results = await asyncio.gather(one.flush(), two.flush(), return_exceptions=True)
            assert results == [None, None], f"round {n}: {results}"
        async with first.read() as conn:
            rows = (await conn.execute(units.select().where(units.c.online.is_(True)))).all()
        assert {r.id for r in rows} == set(ids)
    finally:
        await first.close()
        await second.close()


async def test_an_attempt_on_another_node_loses_its_partial_when_an_upload_is_accepted(
        nodes: tuple[Hub, Hub]) -> None:
    """Node one receives half an upload; node two accepts a whole one: node one's partial file goes at
    once, and node one's attempt, when its client sends the rest, is answered 409 and keeps nothing."""
    import asyncio

    from .conftest import read_raw_response, start_raw_upload, wait_for

    one, two = nodes
    a1, b, a2 = await _source_on_both(nodes)
    try:
        content = b"z" * (3 << 20)
        sha = hashlib.sha256(content).hexdigest()
        created = await a1.create_packet(["000.00.01.H23"], subject="hai nút", size=len(content), sha256=sha)
        reader, writer = await start_raw_upload(created["upload"]["url"], a1.signer, len(content), sha,
                                                content[: 3 << 19])
        await wait_for(lambda: bool(one.blobs.partials(created["id"])), 10, what="node one's partial file")
        await a2.upload(created["upload"]["url"].replace(one.url, two.url), content, sha)
        assert one.blobs.partials(created["id"]) == []
        writer.write(content[3 << 19:])
        await writer.drain()
        status, headers, body = await asyncio.wait_for(read_raw_response(reader), 10)
        assert status == 409 and headers["content-type"].startswith("application/problem+json")
        assert json.loads(body)["code"] == "conflict"
        writer.close()
        assert len(one.blobs.with_prefix(created["id"])) == 1  # the winner's blob only
        assert await b.fetch_bytes(created["id"]) == content
    finally:
        await a1.close()
        await a2.close()


async def test_a_small_attempt_on_another_node_loses_at_its_acceptance(nodes: tuple[Hub, Hub]) -> None:
    """A small upload has no partial file until its last write (its blob is made in one call): node
    one receives half of one, node two accepts a whole one, and node one's attempt, when its client
    sends the rest, is answered 409 and keeps nothing, as an attempt whose partial was removed is."""
    import asyncio

    from .conftest import read_raw_response, start_raw_upload, wait_for

    one, two = nodes
    a1, b, a2 = await _source_on_both(nodes)
    try:
        content = b"n" * 10_240
        sha = hashlib.sha256(content).hexdigest()
        created = await a1.create_packet(["000.00.01.H23"], subject="hai nút, nhỏ", size=len(content), sha256=sha)
        reader, writer = await start_raw_upload(created["upload"]["url"], a1.signer, len(content), sha,
                                                content[:5_000])
        await wait_for(lambda: created["id"] in one.exchange._uploading, 10, what="node one receiving")
        assert one.blobs.partials(created["id"]) == []  # nothing on disk while it receives
        await a2.upload(created["upload"]["url"].replace(one.url, two.url), content, sha)
        writer.write(content[5_000:])
        await writer.drain()
        status, _, body = await asyncio.wait_for(read_raw_response(reader), 10)
        assert status == 409 and json.loads(body)["code"] == "conflict"
        writer.close()
        # The winner's blob only (small: kept in the store, no file).
        assert one.blobs.with_prefix(created["id"]) == [] and len(await inline_keys(one, created["id"])) == 1
        # The losing acceptance wrote nothing: no second audit entry, no event (one statement, guarded).
        status_now = await a1.status(created["id"])
        assert [e["type"] for e in status_now["events"]].count("packet.accepted") == 1
        async with one.db.read() as conn:
            from sqlalchemy import func, select

            from lgsp.core.store.tables import audit_log
            assert await conn.scalar(select(func.count()).select_from(audit_log).where(
                audit_log.c.action == "packet.accepted", audit_log.c.target == created["id"])) == 1
        assert one.blobs.partials(created["id"]) == []
        assert await b.fetch_bytes(created["id"]) == content
    finally:
        await a1.close()
        await a2.close()


async def test_the_acceptance_and_the_completion_each_write_in_one_statement(nodes: tuple[Hub, Hub]) -> None:
    """On PostgreSQL the acceptance and the completion are one statement each: the destination with
    a stream open on the accepting node is told at once (waiting → notified) and the other queued,
    and every event, audit entry and kept row is written as the transactions wrote them."""
    from sqlalchemy import select

    from lgsp.core.store.tables import audit_log, content_keys, deliveries, inline_blobs, packet_events

    one, _ = nodes
    a, _ = await _actor(one, "000.00.00.H23")
    b, _ = await _actor(one, "000.00.01.H23")
    c, _ = await _actor(one, "000.00.02.H23")
    streaming = one.bus.subscribe("000.00.01.H23")  # b has a stream open on node one; c has none
    try:
        content = b"mot cau lenh" * 100
        sha = hashlib.sha256(content).hexdigest()
        created = await a.create_packet(["000.00.01.H23", "000.00.02.H23"], subject="một câu lệnh",
                                        size=len(content), sha256=sha)
        packet_id = created["id"]
        await a.upload(created["upload"]["url"], content, sha)

        async def rows(table: object, *where: object) -> list[object]:
            async with one.db.read() as conn:
                return list((await conn.execute(select(table).where(*where))).all())  # type: ignore[call-overload]

        got = {r.unit_id: r for r in await rows(deliveries, deliveries.c.packet_id == packet_id)}
        assert {u: r.state for u, r in got.items()} == {"000.00.01.H23": "notified", "000.00.02.H23": "queued"}
        assert all(r.queued_at is not None for r in got.values())
        events = sorted(await rows(packet_events, packet_events.c.packet_id == packet_id), key=lambda r: r.id)
        assert [(e.type, e.unit, e.audience) for e in events] == [
            ("packet.created", "000.00.00.H23", None), ("packet.accepted", "000.00.00.H23", None),
            ("packet.available", "000.00.01.H23", "000.00.01.H23"),
            ("packet.available", "000.00.02.H23", "000.00.02.H23")]
        assert events[2].detail == events[3].detail and events[2].detail["sha256"] == sha
        assert events[2].detail["from"] == "000.00.00.H23" and events[2].detail["size"] == len(content)
        told = streaming.queue.get_nowait()  # published after the commit, with the stored seq
        assert (told.type, told.seq, told.detail) == ("packet.available", events[2].id, events[2].detail)
        accepted = await rows(audit_log, audit_log.c.action == "packet.accepted", audit_log.c.target == packet_id)
        assert len(accepted) == 1 and accepted[0].detail["sha256"] == sha
        assert len(await inline_keys(one, packet_id)) == 1

        for unit in (b, c):
            assert await unit.fetch_bytes(packet_id) == content
            assert await unit.ack(packet_id, sha) == "delivered"
        events = sorted(await rows(packet_events, packet_events.c.packet_id == packet_id), key=lambda r: r.id)
        assert [(e.type, e.unit) for e in events[-3:]] == [
            ("packet.delivered", "000.00.02.H23"), ("packet.completed", None), ("content.purged", None)]
        assert [e.unit for e in events if e.type == "packet.delivered"] == ["000.00.01.H23", "000.00.02.H23"]
        assert await rows(content_keys, content_keys.c.key_id == packet_id) == []
        assert await rows(inline_blobs, inline_blobs.c.key_id == packet_id) == []  # with its key
        ended = await rows(audit_log, audit_log.c.action == "delivery.delivered", audit_log.c.target == packet_id)
        assert len(ended) == 2
        status = await a.status(packet_id)
        assert (status["state"], status["content"]) == ("completed", "purged")
    finally:
        one.bus.unsubscribe(streaming)
        for client in (a, b, c):
            await client.close()


async def test_an_acceptance_tells_many_streaming_destinations_at_once(nodes: tuple[Hub, Hub]) -> None:
    """More streaming destinations than a plain IN list holds (`params.MAX_PLAIN`): all told."""
    from sqlalchemy import select

    from lgsp.core.store.params import MAX_PLAIN
    from lgsp.core.store.tables import deliveries

    one, _ = nodes
    a, _ = await _actor(one, "000.00.00.H24")
    units = [f"000.00.{i:02d}.H25" for i in range(MAX_PLAIN + 3)]
    for unit in units:
        await one.directory.add_unit(unit, f"Đơn vị {unit}")
    streams = [one.bus.subscribe(unit) for unit in units[1:]]  # every one but the first
    try:
        content = b"nhieu don vi"
        sha = hashlib.sha256(content).hexdigest()
        created = await a.create_packet(units, subject="nhiều đơn vị", size=len(content), sha256=sha)
        await a.upload(created["upload"]["url"], content, sha)
        async with one.db.read() as conn:
            states = dict((await conn.execute(select(deliveries.c.unit_id, deliveries.c.state).where(
                deliveries.c.packet_id == created["id"]))).all())
        assert states == {unit: "queued" if unit == units[0] else "notified" for unit in units}
        assert all(stream.queue.qsize() == 1 for stream in streams)
    finally:
        for stream in streams:
            one.bus.unsubscribe(stream)
        await a.close()


async def test_inbox_cursor_on_postgres_across_nodes(nodes: tuple[Hub, Hub]) -> None:
    """The keyset cursor compares timestamps on PostgreSQL too, and a page read on one node
    continues on the other."""
    from .test_exchange import check_inbox_cursor, page_through

    one, two = nodes
    a, _ = await _actor(one, "000.00.00.H23")
    b_one, bkey = await _actor(one, "000.00.01.H23")
    b_two = LgspClient(Credentials(two.url, bkey.access_key, secret=bkey.secret))  # type: ignore[attr-defined]
    try:
        await check_inbox_cursor(a, b_one, "000.00.01.H23")
        first = await b_one.inbox_page(2)
        rest, _ = await page_through(b_two, 2, first["next"])
        assert [i["subject"] for i in first["items"]] + rest == ["f2", "u1", "u2", "n1", "n3", "n4"]
    finally:
        await a.close()
        await b_one.close()
        await b_two.close()


async def test_a_stream_ticket_is_single_use_across_nodes(nodes: tuple[Hub, Hub]) -> None:
    import aiohttp

    one, two = nodes
    b, _ = await _actor(one, "000.00.01.H23")
    try:
        ticket = (await b.call("POST", "/v1/events/tickets", expect=(201,)))["ticket"]
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{two.url.replace('http:', 'ws:')}/v1/events?ticket={ticket}") as ws:
                hello = await ws.receive_json(timeout=5)
                assert hello["type"] == "hello" and hello["unit"] == "000.00.01.H23"
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(f"{one.url.replace('http:', 'ws:')}/v1/events?ticket={ticket}")
            assert err.value.status == 401
    finally:
        await b.close()


async def test_a_store_out_of_connections_is_a_503_not_a_500(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL refusing new connections (too many clients) is `503 unavailable` with Retry-After.

    The hub connects as an ordinary role (a superuser ignores the database's connection limit);
    after start-up the limit drops to 0 and the pool is emptied, so the next request needs a new
    connection and is refused by the server.
    """
    import asyncpg
    from yarl import URL

    from lgsp.client import LgspError

    from .conftest import PG_ADMIN_URL

    name = URL(pg_url).path.lstrip("/")
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lgsp_test_limited') "
                            "THEN CREATE ROLE lgsp_test_limited LOGIN; END IF; END$$")
        await admin.execute(f'ALTER DATABASE "{name}" OWNER TO lgsp_test_limited')
        limited = str(URL(pg_url).with_user("lgsp_test_limited"))
        hub = Hub(load_config(None, env=base_env(tmp_path, LGSP_DATABASE_URL=limited)))
        await hub.start()
        try:
            client, _ = await _actor(hub, "000.00.00.A01")
            async with client:
                assert await client.inbox() == []
                await admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')
                await hub.db.writer.dispose()
                with pytest.raises(LgspError) as refused:
                    await client.inbox()
                assert (refused.value.status, refused.value.code) == (503, "unavailable")
                await admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
                assert await client.inbox() == []  # back as soon as the server takes connections again
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
            await hub.stop()
    finally:
        await admin.close()
