"""Connection limits over real sockets: header deadline, idle keep-alive, connections per address,
body-idle timeout, and a stalled upload giving way to a newer one.

Timeouts are set to about a second so the tests run quickly; bounds on how long something may take
are generous (the machine is shared), bounds on how early something may happen are exact (a timer
never fires early).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from lgsp.client import LgspError
from lgsp.core.auth import Principal
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .conftest import Actor, base_env, read_raw_response, start_raw_upload, wait_for

A, B = "000.00.00.H23", "000.00.01.H23"


@asynccontextmanager
async def hub_with(tmp_path: Path, **server: str) -> AsyncIterator[Hub]:
    """A hub whose `server.*` settings are the given ones (by their env names' suffixes)."""
    env = base_env(tmp_path / "var", **{f"LGSP_SERVER_{k.upper()}": v for k, v in server.items()})
    async with Hub(load_config(None, env=env)) as hub:
        yield hub


async def actors(hub: Hub) -> tuple[Actor, Actor]:
    from lgsp.client import Credentials, LgspClient

    out = []
    for unit in (A, B):
        await hub.directory.add_unit(unit, f"Đơn vị {unit}")
        app = await hub.directory.add_application(unit, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        out.append(Actor(unit, key, LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)), hub))
    return out[0], out[1]


async def raw_connection(hub: Hub) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert hub.port is not None
    return await asyncio.open_connection("127.0.0.1", hub.port)


async def get_time(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One keep-alive GET /v1/time on a raw connection; its status."""
    writer.write(b"GET /v1/time HTTP/1.1\r\nHost: hub\r\n\r\n")
    await writer.drain()
    status, _, _ = await asyncio.wait_for(read_raw_response(reader), 10)
    return status


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `timeout` seconds."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_slow_headers_are_cut_after_the_header_timeout(tmp_path: Path) -> None:
    """Fifty connections trickling header lines (the probe's slowloris) are all closed once the header
    timeout passes, not before; the hub serves other clients meanwhile."""
    async with hub_with(tmp_path, header_timeout_seconds="1", keepalive_timeout_seconds="30") as hub:
        opened = time.monotonic()
        conns = [await raw_connection(hub) for _ in range(50)]

        async def trickle(writer: asyncio.StreamWriter) -> None:
            writer.write(b"GET /v1/time HTTP/1.1\r\nHost: hub\r\n")
            for i in range(100):
                await asyncio.sleep(0.2)
                writer.write(f"X-Slow-{i}: 1\r\n".encode())

        tricklers = [asyncio.create_task(trickle(w)) for _, w in conns]
        try:
            fresh = await raw_connection(hub)
            assert await get_time(*fresh) == 200  # a normal client is served while they trickle
            fresh[1].close()
            results = await asyncio.gather(*(closed_by_server(r, 8) for r, _ in conns))
            took = time.monotonic() - opened
            assert all(results), f"{results.count(False)} of 50 slow connections still open after {took:.1f} s"
            assert took >= 1.0
        finally:
            for t in tricklers:
                t.cancel()
            await asyncio.gather(*tricklers, return_exceptions=True)
            for _, w in conns:
                w.close()


async def test_a_connection_that_never_sends_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    async with hub_with(tmp_path, header_timeout_seconds="1", keepalive_timeout_seconds="30") as hub:
        reader, writer = await raw_connection(hub)
        started = time.monotonic()
        assert await closed_by_server(reader, 8)
        assert time.monotonic() - started >= 0.9
        writer.close()


async def test_an_idle_keepalive_connection_is_closed(tmp_path: Path) -> None:
    async with hub_with(tmp_path, keepalive_timeout_seconds="1", header_timeout_seconds="30") as hub:
        reader, writer = await raw_connection(hub)
        assert await get_time(reader, writer) == 200
        assert await get_time(reader, writer) == 200  # kept alive between requests
        idle_since = time.monotonic()
        assert await closed_by_server(reader, 8)
        assert time.monotonic() - idle_since >= 0.9
        writer.close()


async def test_the_header_deadline_holds_on_a_kept_alive_connection_after_requests(tmp_path: Path) -> None:
    """After requests (each watched by the longer body-idle deadline), the next request's headers on the
    same connection are still cut at the header timeout, not at the body-idle one: the guard's single
    timer is moved earlier when a shorter deadline replaces a longer one."""
    async with hub_with(tmp_path, header_timeout_seconds="1", body_idle_timeout_seconds="30",
                        keepalive_timeout_seconds="30") as hub:
        reader, writer = await raw_connection(hub)
        for _ in range(3):
            assert await get_time(reader, writer) == 200
        writer.write(b"GET /v1/time HTTP/1.1\r\nHost: hub\r\n")  # and the rest never comes
        started = time.monotonic()
        assert await closed_by_server(reader, 8)
        assert time.monotonic() - started >= 0.9
        writer.close()


async def test_connections_beyond_the_cap_per_address_are_refused_while_others_work(tmp_path: Path) -> None:
    async with hub_with(tmp_path, max_connections_per_address="5", header_timeout_seconds="30",
                        keepalive_timeout_seconds="30") as hub:
        conns = [await raw_connection(hub) for _ in range(5)]
        for reader, writer in conns:
            assert await get_time(reader, writer) == 200
        reader, writer = await raw_connection(hub)
        status, headers, body = await asyncio.wait_for(read_raw_response(reader), 10)
        assert status == 503 and headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "unavailable" and headers["retry-after"] == "5"
        assert await closed_by_server(reader, 5)
        writer.close()
        for r, w in conns:  # the five admitted connections still work
            assert await get_time(r, w) == 200

        conns[0][1].close()  # one closes: a new one is admitted again

        async def admitted() -> bool:
            r, w = await raw_connection(hub)
            try:
                return await get_time(r, w) == 200
            except (asyncio.IncompleteReadError, ConnectionError):
                return False
            finally:
                w.close()

        await wait_for(admitted, 10, what="a connection admitted after one closed")
        for _, w in conns[1:]:
            w.close()


async def test_a_large_upload_that_keeps_sending_is_never_cut(tmp_path: Path) -> None:
    """Eight MiB sent in small pieces with pauses shorter than the body-idle timeout, for several times
    that timeout: accepted whole."""
    async with hub_with(tmp_path, body_idle_timeout_seconds="1", header_timeout_seconds="1",
                        keepalive_timeout_seconds="1") as hub:
        a, b = await actors(hub)
        try:
            content = os.urandom(8 << 20)
            sha = hashlib.sha256(content).hexdigest()
            created = await a.client.create_packet([B], subject="lớn", size=len(content), sha256=sha)

            async def slowly() -> AsyncIterator[bytes]:
                for i in range(0, len(content), 256 << 10):
                    yield content[i:i + (256 << 10)]
                    await asyncio.sleep(0.7 if i == 0 else 0.12)

            url = URL(created["upload"]["url"], encoded=True)
            headers = a.client.signed_headers("PUT", url, sha) | {"Content-Length": str(len(content))}
            started = time.monotonic()
            async with aiohttp.ClientSession() as http, http.put(url, data=slowly(), headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            assert time.monotonic() - started > 3  # several body-idle timeouts long
            assert await b.client.fetch_bytes(created["id"]) == content
        finally:
            await a.client.close()
            await b.client.close()


async def test_a_stalled_upload_is_cut_and_a_newer_upload_takes_over(tmp_path: Path) -> None:
    """Half an upload, then silence: a second, whole upload succeeds within about the body-idle
    timeout (not 409 for as long as the stalled connection lives), the packet is accepted once with
    the right content, the stalled connection is closed and its partial file is gone."""
    async with hub_with(tmp_path, body_idle_timeout_seconds="1") as hub:
        a, b = await actors(hub)
        try:
            content = os.urandom(3 << 20)
            sha = hashlib.sha256(content).hexdigest()
            created = await a.client.create_packet([B], subject="bị treo", size=len(content), sha256=sha)
            stalled_reader, stalled = await start_raw_upload(created["upload"]["url"], a.signer, len(content),
                                                             sha, content[: len(content) // 2])
            await wait_for(lambda: bool(hub.blobs.partials(created["id"])), 10, what="the stalled upload's file")
            started = time.monotonic()
            answer = await a.client.upload(created["upload"]["url"], content, sha)
            took = time.monotonic() - started
            assert answer["state"] == "accepted" and took < 1 + 5, f"the second upload took {took:.1f} s"
            assert await closed_by_server(stalled_reader, 5)
            assert hub.blobs.partials(created["id"]) == []
            assert await b.client.fetch_bytes(created["id"]) == content
            view = await a.client.status(created["id"])
            assert [e["type"] for e in view["events"]].count("packet.accepted") == 1
            stalled.close()
        finally:
            await a.client.close()
            await b.client.close()


async def test_an_upload_still_sending_keeps_its_packet(tmp_path: Path) -> None:
    """A second upload while the first is still sending waits for it at most the body-idle timeout,
    then gets 409; the first is accepted."""
    # 2 s against a chunk every 0.2 s: a loaded machine that stalls this process's loop for a second
    # (CI, two workers and a browser on two cores) must not make the sender look idle.
    async with hub_with(tmp_path, body_idle_timeout_seconds="2") as hub:
        a, b = await actors(hub)
        try:
            content = os.urandom(1 << 20)
            sha = hashlib.sha256(content).hexdigest()
            created = await a.client.create_packet([B], subject="đang gửi", size=len(content), sha256=sha)
            reader, writer = await start_raw_upload(created["upload"]["url"], a.signer, len(content), sha,
                                                    content[: 64 << 10])

            async def keep_sending() -> None:
                for i in range(64 << 10, len(content), 64 << 10):
                    await asyncio.sleep(0.2)
                    writer.write(content[i:i + (64 << 10)])
                    await writer.drain()

            sending = asyncio.create_task(keep_sending())
            await asyncio.sleep(0.3)
            with pytest.raises(LgspError) as err:
                await a.client.upload(created["upload"]["url"], content, sha)
            assert err.value.status == 409 and err.value.code == "conflict"
            await sending
            status, _, body = await asyncio.wait_for(read_raw_response(reader), 10)
            assert status == 200 and json.loads(body)["state"] == "accepted"
            writer.close()
            assert await b.client.fetch_bytes(created["id"]) == content
        finally:
            await a.client.close()
            await b.client.close()


async def test_a_stalled_attempt_gives_way_without_the_http_server(tmp_path: Path) -> None:
    """The takeover in the exchange itself (an adapter whose content source stalls): the newer upload
    supersedes the stalled attempt, whose task is cancelled and whose partial file is removed."""
    async with hub_with(tmp_path, body_idle_timeout_seconds="1") as hub:
        a, b = await actors(hub)
        try:
            content = os.urandom(3 << 20)
            sha = hashlib.sha256(content).hexdigest()
            created = await a.client.create_packet([B], subject="treo", size=len(content), sha256=sha)
            query = dict(part.split("=", 1) for part in created["upload"]["url"].split("?", 1)[1].split("&"))
            principal = Principal(unit_id=A, application_id="", access_key="", algorithm="")
            never = asyncio.Event()

            async def stalls() -> AsyncIterator[bytes]:
                yield content[: 2 << 20]
                await never.wait()

            async def whole() -> AsyncIterator[bytes]:
                yield content

            def upload(source: AsyncIterator[bytes]) -> Any:
                return hub.exchange.upload(principal, created["id"], sha, source, expires=query["expires"],
                                           token=query["token"])

            first = asyncio.create_task(upload(stalls()))
            await wait_for(lambda: bool(hub.blobs.partials(created["id"])), 10, what="the first attempt's file")
            accepted = await asyncio.wait_for(upload(whole()), 10)
            assert accepted.state == "accepted"
            with pytest.raises(asyncio.CancelledError):
                await first
            assert hub.blobs.partials(created["id"]) == []
            assert await b.client.fetch_bytes(created["id"]) == content
        finally:
            await a.client.close()
            await b.client.close()


async def test_event_streams_outlive_the_idle_timeouts(tmp_path: Path) -> None:
    """A WebSocket is a request in progress with no body to wait for: none of the timeouts cut it."""
    async with hub_with(tmp_path, body_idle_timeout_seconds="1", header_timeout_seconds="1",
                        keepalive_timeout_seconds="1") as hub:
        a, b = await actors(hub)
        try:
            async with b.client.events() as stream:
                messages = aiter(stream)
                assert (await asyncio.wait_for(anext(messages), 5))["type"] == "hello"
                await asyncio.sleep(2.5)
                packet_id = await a.client.send(b"van con mo", [B], subject="s")
                event = await asyncio.wait_for(anext(messages), 5)
                assert event["type"] == "packet.available" and event["id"] == packet_id
        finally:
            await a.client.close()
            await b.client.close()
