"""A reference receiver for REST push: what a unit's system does when the hub POSTs it a packet.

Integrators can read it as the specification in code, run it as a stand-in for their system, and
the tests and the benchmark use it as the far end of a push. It:

1. checks the hub's LGSP1 signature, either locally with the hub's public key (`GET /v1/hub`,
   `lgsp hub key`) or by asking the hub (`POST /v1/verify`, signed with the unit's own key), and
   that the metadata headers match the signed `lgsp_meta` digest of the query;
2. streams the body to a temporary file, hashing it, and refuses it (400) if the hash differs from
   `X-LGSP-Content-SHA256`;
3. keeps the first copy per `X-LGSP-Idempotency-Key` and drops repeats (a hub that crashed before
   recording the delivery sends it again);
4. answers 200 echoing `X-LGSP-Content-SHA256` — the hub counts the packet delivered only then.

Run: `python -m lgsp.adapters.rest.receiver --port 9100 --dir ./received --public-key hub.pem --access-key AK...`
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from lgsp.adapters.rest.push import (
    H_ATTEMPT,
    H_FROM,
    H_IDEMPOTENCY,
    H_PACKET,
    H_PRIORITY,
    H_RECEIPT,
    H_SUBJECT,
    META_HEADERS,
)
from lgsp.core.api import (
    H_CONTENT,
    META_PARAM,
    SHA256_RE,
    SIGNED_HEADERS,
    Problem,
    metadata_digest,
    parse_date,
    parse_signed_request,
    publish,
)
from lgsp.plugins.signatures import RSA_SHA256


@dataclass(frozen=True)
class Reception:
    """One POST the receiver took (first copy or repeat)."""

    key: str
    packet_id: str
    sha256: str
    size: int
    at: float
    attempt: int
    duplicate: bool
    subject: str
    source: str
    priority: int


@dataclass
class HubVerifier:
    """Local verification with the hub's public key (no call to the hub)."""

    access_key: str
    public_key_pem: str
    skew_seconds: float = 300.0
    _seen: dict[str, float] = field(default_factory=dict)

    async def __call__(self, request: web.Request) -> str | None:
        """None when genuine, else the reason it is not."""
        path, _, query = request.raw_path.partition("?")
        try:  # the hub's own reading of the headers: same rules for every signed request
            req = parse_signed_request(request.method, path, query, request.headers)
        except Problem as problem:
            return problem.detail
        if not secrets.compare_digest(req.access_key, self.access_key):
            return f"signed with key {req.access_key}, not the hub's"
        if req.algorithm != RSA_SHA256.name:
            return f"unexpected algorithm {req.algorithm}"
        if abs((datetime.now(UTC) - parse_date(req.date)).total_seconds()) > self.skew_seconds:
            return "request date outside the allowed clock skew"
        if not RSA_SHA256.verify(self.public_key_pem, req.message(), req.signature):
            return "signature does not verify with the hub's public key"
        now = time.monotonic()
        if len(self._seen) > 100_000:
            self._seen = {n: t for n, t in self._seen.items() if now - t < 2 * self.skew_seconds}
        if req.nonce in self._seen:
            return "nonce replayed"
        self._seen[req.nonce] = now
        return None


def verify_with_hub(client: Any, hub_unit: str) -> Callable[[web.Request], Awaitable[str | None]]:
    """Verification by asking the hub (`POST /v1/verify`) with the unit's own LgspClient."""

    async def check(request: web.Request) -> str | None:
        path, _, query = request.raw_path.partition("?")
        headers = {name: request.headers[name] for name in SIGNED_HEADERS if name in request.headers}
        answer = await client.verify(request.method, path, query, headers)
        if not answer.get("valid"):
            return f"the hub says: {answer.get('code')} {answer.get('detail', '')}".strip()
        if answer.get("unit") != hub_unit:
            return f"signed by unit {answer.get('unit')}, not the hub {hub_unit}"
        return None

    return check


class Receiver:
    def __init__(self, directory: Path | None, verify: Callable[[web.Request], Awaitable[str | None]] | None, *,
                 path: str = "/lgsp/receive", fsync: bool = True) -> None:
        self.directory = directory
        self.verify = verify
        self.path = path
        self.fsync = fsync
        self.receptions: list[Reception] = []
        self.stored: dict[str, Reception] = {}
        self.refused: list[str] = []
        self._locks: dict[str, asyncio.Lock] = {}
        if directory is not None:
            (directory / ".tmp").mkdir(parents=True, exist_ok=True)

    def app(self, middlewares: tuple[Any, ...] = ()) -> web.Application:
        app = web.Application(middlewares=list(middlewares), client_max_size=1 << 40)
        app.router.add_post(self.path, self.receive)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.stats)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        """Counts for benchmarks and smoke tests: packets kept, repeats dropped, refusals, time span."""
        firsts = [r.at for r in self.stored.values()]
        return web.json_response({"stored": len(self.stored), "repeats": self.repeats(), "refused": len(self.refused),
                                  "bytes": sum(r.size for r in self.stored.values()),
                                  "first_at": min(firsts, default=None), "last_at": max(firsts, default=None)})

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.refused.append(reason)
        return web.json_response({"code": "refused", "detail": reason}, status=status)

    async def receive(self, request: web.Request) -> web.Response:
        if self.verify is not None:
            problem = await self.verify(request)
            if problem:
                return self._refuse(401, problem)
            # The signature covers the query, and the query covers the metadata headers.
            signed = request.query.get(META_PARAM, "")
            if not secrets.compare_digest(signed.encode(), metadata_digest(request.headers, META_HEADERS).encode()):
                return self._refuse(401, f"the metadata headers do not match the signed {META_PARAM}")
        h = request.headers
        key, declared, packet_id = h.get(H_IDEMPOTENCY, ""), h.get(H_CONTENT, ""), h.get(H_PACKET, "")
        if not key or not packet_id or key.split(":", 1)[0] != packet_id:
            return self._refuse(400, "missing or inconsistent idempotency key")
        if not SHA256_RE.fullmatch(declared):  # compared below; non-ASCII text would make that raise
            return self._refuse(400, f"{H_CONTENT} must be 64 lowercase hex digits")
        numbers = {name: h.get(name, "0") or "0" for name in (H_ATTEMPT, H_PRIORITY)}
        if not all(v.isascii() and v.isdigit() for v in numbers.values()):
            return self._refuse(400, f"{H_ATTEMPT} and {H_PRIORITY} must be whole numbers")
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # two copies racing: the second waits and is then a repeat
                duplicate = key in self.stored or (
                    self.directory is not None and (self.directory / _safe_name(key)).exists())
                final = self.directory / _safe_name(key) if self.directory is not None and not duplicate else None
                digest, size = await self._take(request, final)
                if not secrets.compare_digest(digest, declared):
                    return self._refuse(400, f"content hashes to {digest}, header says {declared}")
                reception = Reception(
                    key=key, packet_id=packet_id, sha256=digest, size=size, at=time.time(),
                    attempt=int(numbers[H_ATTEMPT]), duplicate=duplicate, subject=unquote(h.get(H_SUBJECT, "")),
                    source=h.get(H_FROM, ""), priority=int(numbers[H_PRIORITY]))
                if not duplicate:
                    self.stored[key] = reception
                self.receptions.append(reception)
        finally:
            if not lock.locked():
                self._locks.pop(key, None)
        return web.json_response({"received": True, "duplicate": duplicate},
                                 headers={H_CONTENT: digest, H_RECEIPT: key})

    async def _take(self, request: web.Request, final: Path | None) -> tuple[str, int]:
        """Hash the body; with `final`, also store it there, whole or not at all (a temporary file,
        published by the blob store's routine only once the hash matches)."""
        sha = hashlib.sha256()
        size = 0
        tmp = fh = None
        if final is not None:
            tmp = final.parent / ".tmp" / f"{secrets.token_hex(8)}.part"
            fh = await asyncio.to_thread(tmp.open, "wb")
        try:
            async for chunk in request.content.iter_chunked(1 << 20):
                sha.update(chunk)
                size += len(chunk)
                if fh is not None:
                    await asyncio.to_thread(fh.write, chunk)
            if fh is not None and tmp is not None and final is not None \
                    and sha.hexdigest() == request.headers.get(H_CONTENT, ""):
                await asyncio.to_thread(publish, fh, tmp, final, fsync=self.fsync)
        finally:
            if fh is not None and not fh.closed:  # cut off, or a wrong hash: nothing is kept
                await asyncio.to_thread(fh.close)
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        return sha.hexdigest(), size

    def repeats(self) -> int:
        return sum(1 for r in self.receptions if r.duplicate)


def _safe_name(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


async def serve(receiver: Receiver, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    return runner, server.sockets[0].getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LGSP REST push receiver (reference implementation)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--path", default="/lgsp/receive")
    parser.add_argument("--dir", help="store packets here (default: hash and discard them)")
    parser.add_argument("--public-key", help="the hub's public key (PEM file from `lgsp hub key`)")
    parser.add_argument("--access-key", help="the hub's access key (from `lgsp hub key`)")
    parser.add_argument("--no-verify", action="store_true", help="skip signature checks (benchmarks only)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="do not flush stored packets to disk before answering (benchmarks only)")
    args = parser.parse_args(argv)
    verify: Any = None
    if not args.no_verify:
        if not args.public_key or not args.access_key:
            parser.error("--public-key and --access-key are required (or --no-verify)")
        verify = HubVerifier(args.access_key, Path(args.public_key).read_text(encoding="ascii"))
    receiver = Receiver(Path(args.dir) if args.dir else None, verify, path=args.path, fsync=not args.no_fsync)

    async def run() -> None:
        runner, port = await serve(receiver, args.host, args.port)
        print(json.dumps({"listening": f"http://{args.host}:{port}{args.path}"}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
