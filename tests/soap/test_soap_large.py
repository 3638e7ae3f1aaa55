"""A ~200 MB edXML packet through the SOAP service, inline Base64 in and MTOM out, with flat memory.

The hub runs in this process, so the RSS growth measured here bounds what the hub (and the test's
own streaming client) held at once: far below the packet's size.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import io
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lgsp.core.edxml import build_packet
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from ..edxml_hub.support import A, B, add_units, edoc_json
from .soap_support import PATH, TNS, RssProbe, answer, envelope, mtom, post

SIZE = 150_000_000  # decoded attachment: ~200 MB of edXML, ~267 MB of SOAP body
CHUNK = 3 << 18


class Pattern(io.RawIOBase):
    """`size` pseudo-random bytes made on the fly."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = random.Random(5).randbytes(1 << 20)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.left -= n
        return n


def file_sha(path: Path, start: int = 0, end: int | None = None) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        fh.seek(start)
        left = (end if end is not None else path.stat().st_size) - start
        while left > 0 and (block := fh.read(min(1 << 20, left))):
            sha.update(block)
            left -= len(block)
    return sha.hexdigest()


def soap_parts(packet: Path) -> tuple[bytes, bytes, str, int]:
    """Head and tail of a sendEdoc envelope around the packet's Base64, the body's SHA-256 and length."""
    head, tail = envelope(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>@@</ns2:edxml></ns2:sendEdoc>').split(b"@@")
    sha = hashlib.sha256(head)
    with packet.open("rb") as fh:
        while block := fh.read(CHUNK):
            sha.update(binascii.b2a_base64(block, newline=False))
    sha.update(tail)
    size = packet.stat().st_size
    return head, tail, sha.hexdigest(), len(head) + 4 * ((size + 2) // 3) + len(tail)


async def soap_body(packet: Path, head: bytes, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    fh = await asyncio.to_thread(packet.open, "rb")
    try:
        while block := await asyncio.to_thread(fh.read, CHUNK):
            yield binascii.b2a_base64(block, newline=False)
    finally:
        fh.close()
    yield tail


@pytest.mark.slow
async def test_200_mb_packet_through_soap_with_flat_memory(hub: Hub, make_actor: MakeActor, tmp_path: Path) -> None:
    await add_units(hub)
    a, b = await make_actor(A, existing=True), await make_actor(B, existing=True)
    document, _ = edoc_json(A, [B])
    packet = tmp_path / "big.edxml"
    with packet.open("wb") as fh:
        build_packet(document, fh, attachments={"cid:1": io.BufferedReader(Pattern(SIZE), 1 << 20)})
    assert packet.stat().st_size > 195_000_000
    head, tail, body_sha, length = await asyncio.to_thread(soap_parts, packet)

    started = time.monotonic()
    with RssProbe() as sending:
        status, _, raw = await post(a, hub.url, soap_body(packet, head, tail), "text/xml; charset=utf-8",
                                    sha256=body_sha, length=length)
    send_seconds = time.monotonic() - started
    assert status == 200, raw[:2000]
    packet_id = answer(raw, "sendEdocResponse").findtext(f"{{{TNS}}}packetId")
    assert answer(raw, "sendEdocResponse").findtext(f"{{{TNS}}}size") == str(packet.stat().st_size)

    # B fetches it as JAX-WS with MTOM would; the answer streams to disk.
    body, ctype = mtom(f'<ns2:getEdoc xmlns:ns2="{TNS}"><ns2:packetId>{packet_id}</ns2:packetId></ns2:getEdoc>', {})
    headers = {"Content-Type": ctype, **b.signer.headers("POST", PATH, "", hashlib.sha256(body).hexdigest())}
    received = tmp_path / "answer.bin"
    with RssProbe() as fetching:
        async with aiohttp.ClientSession() as http, http.post(hub.url + PATH, data=body, headers=headers) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("multipart/related")
            boundary = resp.headers["Content-Type"].split('boundary="')[1].split('"')[0]
            with received.open("wb") as out:
                async for block in resp.content.iter_chunked(1 << 20):
                    out.write(block)
    with received.open("rb") as fh:
        first = fh.read(1 << 16)
    root_end = first.index(f"\r\n--{boundary}\r\n".encode())
    declared = answer(first[first.index(b"<?xml"):root_end], "getEdocResponse").findtext(f"{{{TNS}}}sha256")
    start = first.index(b"\r\n\r\n", root_end + 4) + 4
    end = received.stat().st_size - len(f"\r\n--{boundary}--\r\n")
    assert file_sha(received, start, end) == declared  # exactly the variant the hub announced

    op = (f'<ns2:updateStatus xmlns:ns2="{TNS}"><ns2:packetId>{packet_id}</ns2:packetId>'
          "<ns2:status>done</ns2:status></ns2:updateStatus>")
    status, _, raw = await post(b, hub.url, envelope(op), "text/xml")
    assert status == 200 and answer(raw, "updateStatusResponse").findtext(f"{{{TNS}}}state") == "delivered", raw
    leftovers = [p for p in hub.blobs.root.rglob("*") if p.is_file() and p.suffix != ".owner"]
    assert leftovers == []
    print(f"\n200 MB via SOAP: send {send_seconds:.1f} s, RSS growth sending {sending.growth >> 20} MiB, "
          f"fetching {fetching.growth >> 20} MiB")
    assert sending.growth < 64 << 20, f"sending grew RSS by {sending.growth >> 20} MiB"
    assert fetching.growth < 64 << 20, f"fetching grew RSS by {fetching.growth >> 20} MiB"
