"""Hostile WebSocket: the event stream (`GET /v1/events`) against clients that get it wrong.

Handshakes with missing, wrong or non-ASCII upgrade headers, tickets sent with them, frames no client
should send (binary, garbage text, oversized, invalid UTF-8), connections cut mid-handshake. A bad
handshake gets a 4xx `application/problem+json` with its stable code before anything is spent or
subscribed; a bad frame closes the stream with the WebSocket code for it; nothing is logged at
ERROR, and no stream, subscription or task outlives its connection. One hub (on SQLite) serves
the module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from lgsp.core.config import load_config

from ..conftest import base_env, wait_for
from ..test_auth import assert_problem
from .test_http import B, Bench, Result, assert_alive, assert_quiet, hub_bench

pytestmark = pytest.mark.asyncio(loop_scope="module")

STREAM = "/v1/events"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bench]:
    async with hub_bench(load_config(None, env=base_env(tmp_path_factory.mktemp("hostile-ws") / "var"))) as b:
        yield b


def upgrade(extra: dict[str, str | bytes | None] | None = None) -> dict[str, str | bytes]:
    """The headers of a valid handshake, with `extra` replacing (None: removing) some."""
    headers: dict[str, str | bytes] = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                       "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    for name, value in (extra or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def handshake(target: str, headers: dict[str, str | bytes], method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
              for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def signed_upgrade(bench: Bench, extra: dict[str, str | bytes | None] | None = None,
                   method: str = "GET") -> bytes:
    headers: dict[str, str | bytes] = dict(bench.dest.signer.headers(method, STREAM))
    headers.update(upgrade(extra))
    return handshake(STREAM, headers, method)


async def answer(bench: Bench, data: bytes) -> Result:
    """The answer to one request on a kept-alive connection (a refused handshake need not close it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bench.port)
    try:
        writer.write(data)
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
        lines = head.split("\r\n")
        headers = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        size = int(headers.get("Content-Length", "0"))
        payload = await asyncio.wait_for(reader.readexactly(size), 10) if size and "HEAD" not in data[:5].decode() \
            else b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    body: Any = json.loads(payload) if payload and "json" in headers.get("Content-Type", "") else payload
    return int(lines[0].split()[1]), headers, body


async def streams_settle(bench: Bench, tasks: int) -> None:
    """Every stream of the test has ended: no subscription left, no task beyond those before it."""
    def settled() -> bool:
        return bench.hub.bus.open_streams() == 0 and len(asyncio.all_tasks()) <= tasks

    await wait_for(settled, timeout=10, what="every stream of the test to end")


# -- handshakes ----------------------------------------------------------------------------------

BAD_HANDSHAKES: dict[str, dict[str, str | bytes | None]] = {
    "no-upgrade": {"Upgrade": None},
    "upgrade-h2c": {"Upgrade": "h2c"},
    "no-connection-upgrade": {"Connection": "keep-alive"},
    "version-99": {"Sec-WebSocket-Version": "99"},
    "no-key": {"Sec-WebSocket-Key": None},
    "short-key": {"Sec-WebSocket-Key": "c2hvcnQ="},
    "key-not-base64": {"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!!!"},
    # Not ASCII: aiohttp's handshake failed with an exception of its own (500, a traceback).
    "latin1-key": {"Sec-WebSocket-Key": b"\xff\xfe" * 12},
    "utf8-key": {"Sec-WebSocket-Key": "é".encode() * 12},
    "latin1-upgrade": {"Upgrade": b"websocket\xff"},
    "latin1-version": {"Sec-WebSocket-Version": b"13\xff"},
    "latin1-protocol": {"Sec-WebSocket-Protocol": b"chat\xff"},
    "latin1-extensions": {"Sec-WebSocket-Extensions": b"permessage-deflate\xff"},
}


@pytest.mark.parametrize("extra", BAD_HANDSHAKES.values(), ids=BAD_HANDSHAKES.keys())
async def test_a_bad_handshake_is_a_problem(bench: Bench, caplog: pytest.LogCaptureFixture,
                                            extra: dict[str, str | bytes | None]) -> None:
    tasks = len(asyncio.all_tasks())
    result = await answer(bench, signed_upgrade(bench, extra))
    problem = assert_problem(*result, 400, "request.malformed")
    assert "\\x" not in problem["detail"] and "\udcff" not in problem["detail"]
    assert_quiet(caplog)
    await streams_settle(bench, tasks)
    await assert_alive(bench)


async def test_a_head_with_upgrade_headers_opens_no_stream(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    result = await answer(bench, signed_upgrade(bench, method="HEAD"))
    assert result[0] == 400 and result[1]["Content-Type"].startswith("application/problem+json")
    assert_quiet(caplog)
    assert bench.hub.bus.open_streams() == 0


@pytest.mark.parametrize("extra", [BAD_HANDSHAKES["latin1-key"], BAD_HANDSHAKES["no-upgrade"]],
                         ids=["latin1-key", "no-upgrade"])
async def test_a_ticket_sent_with_a_bad_handshake_is_kept(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                          extra: dict[str, str | bytes | None]) -> None:
    """The ticket is single-use: a handshake that cannot succeed must not spend it."""
    ticket = (await bench.dest.call("POST", "/v1/events/tickets", {}))["ticket"]
    data = handshake(f"{STREAM}?ticket={ticket}", upgrade(extra))
    assert_problem(*await answer(bench, data), 400, "request.malformed")
    assert_quiet(caplog)
    async with aiohttp.ClientSession() as http, http.ws_connect(bench.hub.url + f"{STREAM}?ticket={ticket}") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"


@pytest.mark.parametrize("ticket", ["", "%00", "%FF", "%ED%A0%80", "A" * 5000, "ET" + "a" * 43, "ET" + "%C3%A9" * 43],
                         ids=["empty", "nul", "not-utf8", "surrogate", "long", "unknown", "non-ascii"])
async def test_a_bad_ticket_is_refused(bench: Bench, caplog: pytest.LogCaptureFixture, ticket: str) -> None:
    data = handshake(f"{STREAM}?ticket={ticket}", upgrade())
    assert_problem(*await answer(bench, data), 401, "auth.bad_ticket")
    assert_quiet(caplog)


async def test_a_ticket_and_a_signature_together(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    ticket = (await bench.dest.call("POST", "/v1/events/tickets", {}))["ticket"]
    path = f"{STREAM}?ticket={ticket}"
    headers: dict[str, str | bytes] = dict(bench.dest.signer.headers("GET", STREAM, f"ticket={ticket}"))
    headers.update(upgrade())
    assert_problem(*await answer(bench, handshake(path, headers)), 400, "request.malformed")
    assert_quiet(caplog)


# -- connections cut -----------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["before-the-answer", "after-the-101", "after-the-hello"])
async def test_a_connection_cut_during_the_handshake_leaves_nothing(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                                    when: str) -> None:
    tasks = len(asyncio.all_tasks())
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", bench.port)
        writer.write(signed_upgrade(bench))
        await writer.drain()
        if when != "before-the-answer":
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101 ")
        if when == "after-the-hello":
            await asyncio.wait_for(reader.read(2), 10)  # a frame's first bytes: the hello is on its way
        writer.transport.abort()  # a reset, not a close
    await streams_settle(bench, tasks)
    assert_quiet(caplog)
    await assert_alive(bench)


# -- frames --------------------------------------------------------------------------------------

async def test_frames_a_client_should_not_send_are_ignored(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    """Clients send nothing but pings: text (JSON or not) and binary frames change nothing, and the
    stream still carries the next event."""
    tasks = len(asyncio.all_tasks())
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(bench.hub.url + STREAM, headers=bench.dest.signer.headers("GET", STREAM)) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        for frame in ("{not json", '{"type": "hello"}', "[" * 10_000, "\x00", ""):
            await ws.send_str(frame)
        for data in (b"\x00\xff\xfe", b"", os.urandom(4096)):
            await ws.send_bytes(data)
        await ws.ping(b"x" * 125)
        packet_id = await bench.source.send(b"after the noise", [B], subject="Sau nhiễu")
        event = await ws.receive_json(timeout=10)
        assert (event["type"], event.get("packet_id") or event.get("id")) == ("packet.available", packet_id), event
    await streams_settle(bench, tasks)
    assert_quiet(caplog)


@pytest.mark.parametrize(("frame", "close_code"), [
    ("oversized", aiohttp.WSCloseCode.MESSAGE_TOO_BIG),
    ("invalid-utf8", aiohttp.WSCloseCode.INVALID_TEXT),
    ("reserved-opcode", aiohttp.WSCloseCode.PROTOCOL_ERROR),
])
async def test_a_broken_frame_closes_the_stream_with_its_code(bench: Bench, caplog: pytest.LogCaptureFixture,
                                                              frame: str, close_code: int) -> None:
    tasks = len(asyncio.all_tasks())
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(bench.hub.url + STREAM, headers=bench.dest.signer.headers("GET", STREAM),
                            max_msg_size=0) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        writer = ws._writer  # raw frames, which aiohttp's client API will not send
        if frame == "oversized":
            await ws.send_str("x" * (64 * 1024 + 1))
        elif frame == "invalid-utf8":
            await writer.send_frame(b"\xff\xfe", aiohttp.WSMsgType.TEXT)
        else:
            await writer.send_frame(b"", 0x3)  # opcode 3 is reserved
        msg = await ws.receive(timeout=10)
        with contextlib.suppress(Exception):
            await ws.close()
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), msg
    assert ws.close_code == close_code
    await streams_settle(bench, tasks)
    assert_quiet(caplog)
    await assert_alive(bench)
