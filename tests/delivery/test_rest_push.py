"""REST push end to end: signed by the hub, streamed, echoed hash, idempotency, retries, refusals."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from lgsp.adapters.rest.receiver import verify_with_hub
from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.retry import backoff_bounds

from .helpers import (
    UNITS,
    add_units,
    delivery_state,
    fast_retries,
    free_port,
    has_state,
    hub_verifier,
    receiver_server,
    slow,
    status,
    wait_for,
    with_delivery,
)

SRC, DST, DST2 = UNITS[0], UNITS[1], UNITS[2]


def push_to(cfg: Config, targets: dict[str, dict[str, object]]) -> Config:
    return with_delivery(cfg, targets=targets, probe_interval_seconds=0)


async def events_of(client, until_type: str, packet_id: str, timeout: float = 10.0) -> list[dict]:
    """Read the source's event stream until an event of `until_type` about `packet_id` arrives."""
    seen: list[dict] = []
    async with client.events() as stream:
        async def read() -> None:
            async for message in stream:
                if message["type"] == "hello":
                    seen.extend(message["changes"])
                    if any(m["type"] == until_type and m.get("id") == packet_id for m in message["changes"]):
                        return
                    continue
                seen.append(message)
                if message["type"] == until_type and message.get("id") == packet_id:
                    return
        await asyncio.wait_for(read(), timeout)
    return seen


async def test_push_signed_streamed_and_verified_with_public_key(cfg: Config, tmp_path: Path) -> None:
    async with receiver_server(directory=tmp_path / "recv") as rr:
        cfg = push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}})
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            payload = os.urandom(3 * (1 << 20) + 17)  # several chunks
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(payload, [DST], subject="Công văn số 12/UBND", priority=1)
                await wait_for(lambda: rr.receiver.stored, what="the push")
                status_ = await src.status(pid)
                await wait_for(lambda: has_state(hub, pid, DST, "delivered"), what="delivered state")
                seen = await events_of(src, "packet.delivered", pid)
            got = rr.receiver.stored[f"{pid}:{DST}"]
            assert got.sha256 == hashlib.sha256(payload).hexdigest()
            assert got.size == len(payload)
            assert got.subject == "Công văn số 12/UBND"
            assert got.source == SRC
            assert got.priority == 1
            assert not rr.receiver.refused
            async with aiohttp.ClientSession() as http, http.get(rr.url.replace("/lgsp/receive", "/stats")) as resp:
                stats = await resp.json()
            assert (stats["stored"], stats["repeats"], stats["refused"], stats["bytes"]) == (1, 0, 0, len(payload))
            stored_file = next(p for p in (tmp_path / "recv").iterdir() if p.is_file())
            assert stored_file.read_bytes() == payload
            row = await delivery_state(hub, pid, DST)
            assert (row.state, row.mode, row.protocol, row.attempts) == ("delivered", "push", "rest", 1)
            delivered = [e for e in seen if e["type"] == "packet.delivered"]
            assert delivered[0]["unit"] == DST
            assert delivered[0]["attempts"] == 1
            # the content is gone once the only delivery is done
            assert not hub.blobs.with_prefix(pid)
            assert status_["deliveries"][0]["mode"] == "push"
            # the push destination cannot also pull it
            async with creds[DST].client(hub.url) as dst:
                assert await dst.inbox() == []
                with pytest.raises(Exception, match="conflict"):
                    await dst.ack(pid, got.sha256)


async def test_receiver_can_verify_through_the_hub(cfg: Config) -> None:
    async with receiver_server() as rr:
        cfg = push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}})
        async with Hub(cfg) as hub:
            creds = await add_units(hub, [SRC, DST])
            async with creds[DST].client(hub.url) as dst_client, creds[SRC].client(hub.url) as src:
                rr.receiver.verify = verify_with_hub(dst_client, cfg.hub.identifier)
                pid = await src.send(b"hello via verify", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "delivered"), what="delivery")
                assert f"{pid}:{DST}" in rr.receiver.stored
                # the same key seen from the hub's side: /v1/hub names it
                info = await src.call("GET", "/v1/hub")
                assert info["identifier"] == cfg.hub.identifier
                assert info["algorithm"] == "RSA-SHA256"
                assert "BEGIN PUBLIC KEY" in info["public_key_pem"]


async def test_wrong_key_is_refused_by_receiver_and_push_fails_final(cfg: Config) -> None:
    """A receiver that trusts another key answers 401: a 4xx is not retried."""
    from lgsp.adapters.rest.receiver import HubVerifier
    from lgsp.plugins.signatures import RSA_SHA256

    _, other_public = RSA_SHA256.generate_keypair(2048)
    async with receiver_server() as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}}))
        async with Hub(cfg) as hub:
            key = await hub.identity.key()
            rr.receiver.verify = HubVerifier(key.access_key, other_public)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"x" * 100, [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "failed"), what="failure")
                await asyncio.sleep(0.6)  # no retry would come after a final 4xx
                view = await src.status(pid)
            assert len(rr.script.hits) == 1
            assert rr.receiver.refused == ["signature does not verify with the hub's public key"]
            d = view["deliveries"][0]
            assert d["state"] == "failed"
            assert "HTTP 401" in d["reason"]
            assert d["attempts"] == 1
            assert view["state"] == "completed"
            assert view["content"] == "purged"


async def test_down_slow_500_then_recovers_follows_schedule_and_arrives_once(cfg: Config) -> None:
    port = free_port()
    async with receiver_server(start=False, port=port) as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url, "timeout_seconds": 0.5}}),
                           base=0.3, factor=2.0, cap=2.0, jitter=0.1)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"retry me" * 1000, [DST], subject="s")
                # down: the port is closed
                await wait_for(lambda: _attempts(hub, pid, DST, 2), what="two refused connections")
                rr.script.steps = [slow(1.5), status(500), status(503, {"Retry-After": "1"})]
                await rr.start()
                await wait_for(lambda: has_state(hub, pid, DST, "delivered"), timeout=20, what="delivery")
                view = await src.status(pid)
                # with probes off, the pushes themselves drive the destination's presence
                async def flushed() -> bool:
                    return bool((await src.call("GET", f"/v1/units/{DST}/presence"))["transitions"])
                await wait_for(flushed, what="presence written")
                presence = await src.call("GET", f"/v1/units/{DST}/presence")
            assert presence["online"] is True
            assert [t["cause"] for t in presence["transitions"]] == ["probe_ok"]  # failures kept it offline
            row = await delivery_state(hub, pid, DST)
            # refused connections (at least 2), the slow one (timed out), 500, 503, then the success
            assert len(rr.receiver.stored) == 1
            assert [s for _, _, s in rr.script.hits] == [500, 503, 200]
            assert all(r.sha256 == hashlib.sha256(b"retry me" * 1000).hexdigest() for r in rr.receiver.receptions)
            async with hub.db.read() as conn:
                from sqlalchemy import select

                from lgsp.core.store.tables import packet_events
                rows = (await conn.execute(select(packet_events).where(
                    packet_events.c.packet_id == pid, packet_events.c.type == "delivery.retrying")
                    .order_by(packet_events.c.id))).all()
            reasons = [r.detail["reason"] for r in rows]
            refused = sum(1 for r in reasons if r.startswith("connection to"))
            assert refused >= 2
            assert row.attempts == refused + 4, reasons
            assert [r.detail["attempts"] for r in rows] == list(range(1, row.attempts))
            assert all(r.startswith("connection to") for r in reasons[:refused])
            assert "timed out" in reasons[refused]
            assert "HTTP 500" in reasons[refused + 1]
            assert "HTTP 503" in reasons[refused + 2]
            # each wait lies within the backoff bounds of its attempt (Retry-After: 1 is below them here)
            planned = []
            for r in rows:
                low, high = backoff_bounds(r.detail["attempts"], cfg.delivery.retry)
                at = _parse(r.detail["next_attempt_at"])
                wait = (at - r.at).total_seconds()
                assert low - 0.01 <= wait <= high + 0.01, (r.detail, wait)
                planned.append(at.timestamp())
            # ... and the next attempt came when planned: not before, and promptly (the queue poll is
            # 60 s here, so it was the scheduler's job that woke the queue)
            failures = [r.at.timestamp() for r in rows[1:]]
            success = next(t for t, _, s in rr.script.hits if s == 200)
            starts_after = [*failures, success]
            for plan, next_end in zip(planned, starts_after, strict=True):
                assert plan - 0.01 <= next_end <= plan + 1.5, (plan, next_end)
            assert view["deliveries"][0]["state"] == "delivered"


async def test_never_recovers_fails_and_source_hears_with_attempts(cfg: Config) -> None:
    async with receiver_server() as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}}), base=0.1, cap=0.2,
                           attempts=3)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            rr.script.steps = [status(502)] * 10
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"never", [DST], subject="s")
                seen = await events_of(src, "packet.failed", pid)
            failed = next(e for e in seen if e["type"] == "packet.failed")
            assert failed["unit"] == DST
            assert failed["attempts"] == 3
            assert "gave up after 3 attempts" in failed["reason"]
            assert "HTTP 502" in failed["reason"]
            assert len(rr.script.hits) == 3
            assert not hub.blobs.with_prefix(pid)


@pytest.mark.parametrize(("code", "retried"), [(400, False), (404, False), (409, False), (408, True), (429, True)])
async def test_which_4xx_are_retried(cfg: Config, code: int, retried: bool) -> None:
    async with receiver_server() as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}}), base=0.1, cap=0.2)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            rr.script.steps = [status(code, {"Retry-After": "1"})]
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"4xx", [DST], subject="s")
                final = "delivered" if retried else "failed"
                await wait_for(lambda: has_state(hub, pid, DST, final), what=final)
            row = await delivery_state(hub, pid, DST)
            assert row.attempts == (2 if retried else 1)
            assert [s for _, _, s in rr.script.hits] == ([code, 200] if retried else [code])
            if not retried:
                assert f"HTTP {code}" in row.reason
            if code == 429:  # Retry-After: 1 beats the 0.1-0.2 s backoff
                first, second = rr.script.hits[0][0], rr.script.hits[1][0]
                assert second - first >= 0.98


async def test_missing_echo_is_final_and_wrong_echo_is_retried(cfg: Config) -> None:
    from aiohttp import web

    async def no_echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def wrong_echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True}, headers={"X-LGSP-Content-SHA256": "0" * 64})

    async with receiver_server() as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url},
                                         DST2: {"protocol": "rest", "url": rr.url}}), base=0.1, cap=0.2)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST, DST2])
            async with creds[SRC].client(hub.url) as src:
                rr.script.steps = [wrong_echo]
                p1 = await src.send(b"one", [DST], subject="s")
                await wait_for(lambda: has_state(hub, p1, DST, "delivered"), what="delivered after a wrong echo")
                rr.script.steps = [no_echo]
                p2 = await src.send(b"two", [DST2], subject="s")
                await wait_for(lambda: has_state(hub, p2, DST2, "failed"), what="failed without echo")
            assert (await delivery_state(hub, p1, DST)).attempts == 2
            row = await delivery_state(hub, p2, DST2)
            assert row.attempts == 1
            assert "X-LGSP-Content-SHA256 echo" in row.reason


async def test_one_broken_destination_does_not_hold_up_another(cfg: Config) -> None:
    async with receiver_server() as good, receiver_server() as bad:
        bad.script.hold = asyncio.Event()  # the bad one never answers
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": bad.url, "timeout_seconds": 30},
                                         DST2: {"protocol": "rest", "url": good.url}}))
        async with Hub(cfg) as hub:
            creds = await add_units(hub, [SRC, DST, DST2])
            async with creds[SRC].client(hub.url) as src:
                ids = [await src.send(f"p{i}".encode(), [DST, DST2], subject=f"p{i}") for i in range(6)]
                started = time.monotonic()
                await wait_for(lambda: len(good.receiver.stored) == 6, timeout=10, what="the good destination")
                assert time.monotonic() - started < 10
                for pid in ids:
                    row = await delivery_state(hub, pid, DST)
                    assert row.state in ("queued", "sending")
            bad.script.hold.set()



async def _attempts(hub: Hub, pid: str, unit: str, n: int) -> bool:
    row = await delivery_state(hub, pid, unit)
    return row is not None and row.attempts >= n and row.state == "retrying"


def _parse(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("retry_after", ["999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_absurd_retry_after_is_capped_not_a_stuck_delivery(cfg: Config, retry_after: str) -> None:
    """A receiver asking for a wait past any clock must not freeze the delivery in `sending`."""
    from datetime import UTC, datetime, timedelta

    from lgsp.core.retry import MAX_RETRY_AFTER_SECONDS

    async with receiver_server() as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}}), base=0.1, cap=0.2)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            rr.script.steps = [status(503, {"Retry-After": retry_after})]
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"later", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "retrying"), what="retrying")
            row = await delivery_state(hub, pid, DST)
            wait = row.next_attempt_at.replace(tzinfo=UTC) - datetime.now(UTC)
            assert timedelta(days=29) < wait <= timedelta(seconds=MAX_RETRY_AFTER_SECONDS)


async def test_a_dead_nodes_claim_is_taken_back(cfg: Config) -> None:
    """A `sending` row nobody finishes (a node that died mid-attempt) is retried without a restart;
    a live node's claim, however old, is left alone."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import and_, update

    from lgsp.core.store.tables import deliveries

    async with receiver_server() as rr:
        cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest", "url": rr.url}}), base=0.1, cap=0.2)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            rr.script.steps = [slow(8)]  # the first attempt hangs
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"stuck", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "sending"), what="sending")
                assert (await delivery_state(hub, pid, DST)).claimed_by == hub.node
                assert await hub.engine.release_stale() == 0  # this live node's attempt is left alone
                long_ago = datetime.now(UTC) - timedelta(seconds=cfg.delivery.attempt_timeout_seconds + 120)
                where = and_(deliveries.c.packet_id == pid, deliveries.c.unit_id == DST)
                async with hub.db.write() as conn:
                    await conn.execute(update(deliveries).where(where).values(last_attempt_at=long_ago))
                assert await hub.engine.release_stale() == 0  # old, but its node is alive
                # As another node's claim looks after that node died: a node with no live heartbeat.
                async with hub.db.write() as conn:
                    await conn.execute(update(deliveries).where(where).values(claimed_by="gone-node"))
                rr.script.steps = []  # answers normally from now on
                assert await hub.engine.release_stale() == 1
                await wait_for(lambda: has_state(hub, pid, DST, "delivered"), what="delivered after release")
            row = await delivery_state(hub, pid, DST)
            assert row.attempts == 2


async def test_metadata_changed_on_the_way_is_refused_by_the_receiver(cfg: Config) -> None:
    """A relay between hub and receiver that rewrites X-LGSP-From keeps the signature valid (the
    header is not a line of it) but breaks the signed lgsp_meta digest: the receiver refuses."""
    from aiohttp import web

    from .helpers import _run_app

    async with receiver_server() as rr:
        async def tamper(request: web.Request) -> web.Response:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            headers["X-LGSP-From"] = "000.00.99.H23"
            async with aiohttp.ClientSession() as http, http.post(
                    URL(rr.url).with_query(request.query_string), data=await request.read(), headers=headers) as up:
                return web.Response(status=up.status, body=await up.read(),
                                    headers={k: v for k, v in up.headers.items() if k.startswith("X-LGSP")})

        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/lgsp/receive", tamper)
        relay_port = free_port()
        relay = await _run_app(app, relay_port)
        try:
            cfg = fast_retries(push_to(cfg, {DST: {"protocol": "rest",
                                                   "url": f"http://127.0.0.1:{relay_port}/lgsp/receive"}}))
            async with Hub(cfg) as hub:
                rr.receiver.verify = await hub_verifier(hub)
                creds = await add_units(hub, [SRC, DST])
                async with creds[SRC].client(hub.url) as src:
                    pid = await src.send(b"meta", [DST], subject="s")
                    await wait_for(lambda: has_state(hub, pid, DST, "failed"), what="refused by the receiver")
                row = await delivery_state(hub, pid, DST)
                assert "HTTP 401" in row.reason and "lgsp_meta" in row.reason
                assert rr.receiver.refused == ["the metadata headers do not match the signed lgsp_meta"]
                assert rr.receiver.stored == {}
        finally:
            await relay.cleanup()


async def test_reference_receiver_keeps_nothing_of_a_cut_or_malformed_post(tmp_path: Path) -> None:
    """A body cut off mid-way leaves no temporary file; bad numeric headers are a 400, not a 500."""
    async with receiver_server(directory=tmp_path / "got") as rr:
        pid = "7d2f6c1e-0000-4000-8000-000000000001"
        head = (f"POST /lgsp/receive HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                f"X-LGSP-Idempotency-Key: {pid}:{DST}\r\nX-LGSP-Packet-Id: {pid}\r\n"
                f"X-LGSP-Content-SHA256: {'0' * 64}\r\n\r\n").encode()
        _, writer = await asyncio.open_connection("127.0.0.1", rr.port)
        writer.write(head + b"x" * 5000)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
        await wait_for(lambda: not list((tmp_path / "got" / ".tmp").iterdir()), what="temporary file removed")
        assert [p.name for p in (tmp_path / "got").iterdir()] == [".tmp"]
        async with aiohttp.ClientSession() as http, http.post(rr.url, data=b"abc", headers={
                "X-LGSP-Idempotency-Key": f"{pid}:{DST}", "X-LGSP-Packet-Id": pid, "X-LGSP-Attempt": "²",
                "X-LGSP-Content-SHA256": hashlib.sha256(b"abc").hexdigest()}) as resp:
            assert resp.status == 400 and "whole numbers" in (await resp.json())["detail"]
        async with aiohttp.ClientSession() as http, http.post(rr.url, data=b"abc", headers={
                "X-LGSP-Idempotency-Key": f"{pid}:{DST}", "X-LGSP-Packet-Id": pid, "X-LGSP-Attempt": "1",
                "X-LGSP-Content-SHA256": hashlib.sha256(b"abc").hexdigest()}) as resp:
            assert resp.status == 200 and resp.headers["X-LGSP-Content-SHA256"] == hashlib.sha256(b"abc").hexdigest()
        assert rr.receiver.stored[f"{pid}:{DST}"].attempt == 1
        assert not list((tmp_path / "got" / ".tmp").iterdir())
        # A declared hash that is not ASCII text is a 400, not a crash of the comparison.
        other = "7d2f6c1e-0000-4000-8000-000000000002"
        reader, writer = await asyncio.open_connection("127.0.0.1", rr.port)
        writer.write(f"POST /lgsp/receive HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n"
                     f"X-LGSP-Idempotency-Key: {other}:{DST}\r\nX-LGSP-Packet-Id: {other}\r\n".encode()
                     + b"X-LGSP-Content-SHA256: \xc3\xa9" + b"0" * 62 + b"\r\nConnection: close\r\n\r\nabc")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400") and b"64 lowercase hex digits" in answer
