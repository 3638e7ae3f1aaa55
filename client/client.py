"""A small asyncio client for the hub: signing, the exchange calls, streaming, the event stream.

Integrators can use it as is, or read it as the reference of the protocol in docs/integrator-guide.md.
Content is streamed from and to files in chunks; a download resumes with a Range request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from lgsp.core.i18n import Text
from lgsp.core.signing import EMPTY_SHA256, H_CONTENT, Signer
from lgsp.plugins.signatures import BUILTIN_ALGORITHMS

ALGORITHMS = {alg.name: alg for alg in BUILTIN_ALGORITHMS}
CHUNK = 1 << 20
Progress = Callable[[int], None]


class LgspError(Exception):
    """The hub answered with a problem (or the transport failed); `code` is the stable error code."""

    def __init__(self, status: int, code: str, detail: str = "", body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body or {}


@dataclass(frozen=True)
class Credentials:
    url: str
    access_key: str
    algorithm: str = "HMAC-SHA256"
    secret: str | None = None
    private_key_pem: str | None = None

    def __repr__(self) -> str:
        return f"Credentials({self.url!r}, {self.access_key!r}, {self.algorithm})"

    @property
    def urls(self) -> list[str]:
        """The hub's addresses: `url` may list several nodes of one cluster, separated by commas."""
        found = [part.strip().rstrip("/") for part in self.url.split(",") if part.strip()]
        if not found:
            raise ValueError(Text("no hub URL"))
        for url in found:
            parsed = URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError(Text("not an http(s) URL: {url!r}", url=url))
        return found

    def signer(self) -> Signer:
        alg = ALGORITHMS.get(self.algorithm)
        if alg is None:
            raise ValueError(Text("unknown algorithm {name!r}", name=self.algorithm))
        key = self.secret if alg.shared_secret else self.private_key_pem
        if not key:
            if alg.shared_secret:
                raise ValueError(Text("{name} needs a secret", name=self.algorithm))
            raise ValueError(Text("{name} needs a private key", name=self.algorithm))
        return Signer(self.access_key, alg, key)


def file_sha256(path: Path, chunk: int = CHUNK) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


async def _file_chunks(path: Path, offset: int = 0, progress: Progress | None = None) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        if offset:
            await asyncio.to_thread(fh.seek, offset)
        while True:
            block = await asyncio.to_thread(fh.read, CHUNK)
            if not block:
                return
            if progress:
                progress(len(block))
            yield block
    finally:
        await asyncio.to_thread(fh.close)


def tls_context(ca_file: str | None = None, cert_file: str | None = None,
                key_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context: trust `ca_file` (else the system's CAs) and, for a hub that pins this
    unit's certificate, present `cert_file`/`key_file`."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class LgspClient:
    def __init__(self, credentials: Credentials, *, session: aiohttp.ClientSession | None = None,
                 timeout: float = 300.0, lang: str = "vi", ssl_context: ssl.SSLContext | None = None) -> None:
        self.credentials = credentials
        self.bases = credentials.urls
        self.base = self.bases[0]
        self.signer = credentials.signer()
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout)
        self.lang = lang
        self.session_token: str | None = None
        # For an HTTPS hub with its own CA, or mutual TLS (see `tls_context`); None: the system's CAs.
        self.ssl_context = ssl_context

    async def __aenter__(self) -> LgspClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context) if self.ssl_context is not None else None
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- signing and failover -----------------------------------------------------------------
    def _url(self, path_or_url: str) -> URL:
        if path_or_url.startswith(("http://", "https://")):
            url = URL(path_or_url, encoded=True)
            # A transfer URL one node handed out is good on every node of the cluster (the signature
            # covers path and query, not the host): follow the node this client now talks to.
            if len(self.bases) > 1 and any(str(url.origin()) == str(URL(b).origin()) for b in self.bases):
                return URL(self.base + url.raw_path_qs, encoded=True)
            return url
        return URL(self.base + path_or_url, encoded=True)

    def _fail_over(self, tried: int) -> bool:
        """After a connection failure, move to the next node; False once every node was tried."""
        if tried >= len(self.bases):
            return False
        self.base = self.bases[(self.bases.index(self.base) + 1) % len(self.bases)]
        return True

    @asynccontextmanager
    async def _request(self, method: str, target: str, *, content_sha256: str = EMPTY_SHA256,
                       headers: dict[str, str] | None = None, data: Callable[[], Any] | None = None,
                       sign: bool = True) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, sent to the next node when a node cannot be reached.

        Only a failure to connect moves on (nothing was sent, so nothing can happen twice); each
        attempt is signed afresh, so its nonce is new. `data` makes the body, once per attempt.
        """
        tried = 0
        while True:
            url = self._url(target)
            sent = self.signed_headers(method, url, content_sha256) if sign else {}
            sent.update(headers or {})
            try:
                resp = await self.http.request(method, url, data=data() if data else None, headers=sent)
            except aiohttp.ClientConnectorError:
                tried += 1
                if not self._fail_over(tried):
                    raise
                continue
            try:
                yield resp
            finally:
                resp.release()
            return

    def signed_headers(self, method: str, url: URL, content_sha256: str = EMPTY_SHA256) -> dict[str, str]:
        headers = self.signer.headers(method, url.raw_path, url.raw_query_string, content_sha256,
                                      session=self.session_token)
        headers["Accept-Language"] = self.lang
        return headers

    async def call(self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...] = (200, 201)) -> Any:
        """A signed JSON call; returns the decoded answer or raises LgspError."""
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        extra = {"Content-Type": "application/json"} if data else {}
        async with self._request(method, path, content_sha256=hashlib.sha256(data).hexdigest(), headers=extra,
                                 data=(lambda: data) if data else None) as resp:
            return await _answer(resp, expect)

    # -- the exchange -------------------------------------------------------------------------
    async def time(self) -> str:
        async with self._request("GET", "/v1/time", sign=False) as resp:
            return (await _answer(resp, (200,)))["now"]

    async def create_packet(self, to: list[str], *, subject: str, size: int, sha256: str, priority: int = 0,
                            data_type: str = "binary", protocol: str | None = None,
                            deadline: str | None = None, policy: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"to": to, "subject": subject, "priority": priority, "data_type": data_type,
                                "size": size, "sha256": sha256}
        for name, value in (("protocol", protocol), ("deadline", deadline), ("policy", policy)):
            if value is not None:
                body[name] = value
        return await self.call("POST", "/v1/packets", body)

    async def upload(self, upload_url: str, source: Path | bytes, sha256: str,
                     progress: Progress | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/octet-stream"}
        data: Callable[[], Any]
        if isinstance(source, bytes):
            data = lambda: source  # noqa: E731 - one body per attempt
            headers["Content-Length"] = str(len(source))
        else:
            data = lambda: _file_chunks(source, progress=progress)  # noqa: E731
            headers["Content-Length"] = str((await asyncio.to_thread(source.stat)).st_size)
        async with self._request("PUT", upload_url, content_sha256=sha256, headers=headers, data=data) as resp:
            return await _answer(resp, (200,))

    async def send(self, source: Path | bytes, to: list[str], *, subject: str, priority: int = 0,
                   data_type: str = "binary", protocol: str | None = None, deadline: str | None = None,
                   progress: Progress | None = None) -> str:
        """Create a packet and upload its content; returns the packet id."""
        if isinstance(source, bytes):
            sha, size = hashlib.sha256(source).hexdigest(), len(source)
        else:
            sha, size = await asyncio.to_thread(file_sha256, source)
        created = await self.create_packet(to, subject=subject, size=size, sha256=sha, priority=priority,
                                           data_type=data_type, protocol=protocol, deadline=deadline)
        await self.upload(created["upload"]["url"], source, sha, progress)
        return created["id"]

    async def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        """The first `limit` packets of the inbox (`inbox_page` / `inbox_all` for the rest)."""
        return (await self.inbox_page(limit))["items"]

    async def inbox_page(self, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page: `{"items": [...], "next": cursor or None}`; pass `next` back for the page after."""
        query = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        return await self.call("GET", "/v1/inbox" + str(URL.build(query=query)))

    async def inbox_all(self, page_size: int = 100) -> list[dict[str, Any]]:
        """Every pending packet, following the cursor page by page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.inbox_page(page_size, cursor)
            items += page["items"]
            cursor = page.get("next")
            if not cursor:
                return items

    async def ready(self, packet_id: str) -> dict[str, Any]:
        return (await self.call("POST", f"/v1/packets/{packet_id}/ready"))["download"]

    async def download(self, packet_id: str, dest: Path, *, resume: bool = True,
                       progress: Progress | None = None, download_url: str | None = None) -> str:
        """Fetch the content into `dest` (resuming a partial file), verify it; returns its SHA-256."""
        target = download_url or (await self.ready(packet_id))["url"]
        offset = await asyncio.to_thread(_existing_size, dest) if resume else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self._request("GET", target, headers=headers) as resp:
            if resp.status == 416:  # the partial file is already complete (or longer): start over
                offset = 0
                await asyncio.to_thread(dest.unlink)
                return await self.download(packet_id, dest, resume=False, progress=progress)
            if resp.status not in (200, 206):
                await _answer(resp, (200, 206))
            expected = resp.headers.get(H_CONTENT, "")
            if resp.status == 200:
                offset = 0
            # Hash while writing (one pass over the bytes); a resumed file's prefix is hashed first.
            hasher = await asyncio.to_thread(_prefix_hash, dest, offset)
            fh = await asyncio.to_thread(dest.open, "ab" if offset else "wb")
            try:
                async for block in resp.content.iter_chunked(CHUNK):
                    await asyncio.to_thread(_write_and_hash, fh, hasher, block)
                    if progress:
                        progress(len(block))
            finally:
                await asyncio.to_thread(fh.close)
        sha = hasher.hexdigest()
        if expected and sha != expected:
            raise LgspError(0, "content.hash_mismatch", f"downloaded content hashes to {sha}, hub says {expected}")
        return sha

    async def fetch_bytes(self, packet_id: str) -> bytes:
        """Small packets only: the whole content in memory."""
        async with self._request("GET", (await self.ready(packet_id))["url"]) as resp:
            if resp.status != 200:
                await _answer(resp, (200,))
            return await resp.read()

    async def ack(self, packet_id: str, sha256: str) -> str:
        return (await self.call("POST", f"/v1/packets/{packet_id}/ack", {"sha256": sha256}))["state"]

    async def fail(self, packet_id: str, reason: str) -> str:
        return (await self.call("POST", f"/v1/packets/{packet_id}/fail", {"reason": reason}))["state"]

    async def cancel(self, packet_id: str) -> dict[str, Any]:
        return await self.call("POST", f"/v1/packets/{packet_id}/cancel")

    async def status(self, packet_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/packets/{packet_id}")

    async def units(self, q: str = "", limit: int = 50) -> list[dict[str, Any]]:
        query = str(URL.build(query={"q": q, "limit": str(limit)}))
        return (await self.call("GET", "/v1/units" + query))["items"]

    async def open_session(self, target: str | None = None) -> dict[str, Any]:
        answer = await self.call("POST", "/v1/sessions", {"target": target} if target else {})
        return answer

    async def verify(self, method: str, path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
        return await self.call("POST", "/v1/verify", {"method": method, "path": path, "query": query,
                                                      "headers": headers})

    async def stream_ticket(self) -> dict[str, Any]:
        """A single-use ticket for a browser page's event stream: `{"ticket", "expires_at", "unit",
        "url"}`; hand the page `url` (never the key), which it opens with `new WebSocket(url)`."""
        return await self.call("POST", "/v1/events/tickets", expect=(201,))

    @asynccontextmanager
    async def events(self, *, heartbeat: float = 30.0) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """`async with client.events() as stream: async for message in stream: ...`"""
        tried = 0
        while True:
            url = self._url("/v1/events")
            try:
                ws = await self.http.ws_connect(url, headers=self.signed_headers("GET", url), heartbeat=heartbeat)
                break
            except aiohttp.ClientConnectorError:
                tried += 1
                if not self._fail_over(tried):
                    raise
            except aiohttp.WSServerHandshakeError as exc:
                await self._handshake_problem(url, exc)

        async def messages() -> AsyncIterator[dict[str, Any]]:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield json.loads(msg.data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    return

        try:
            yield messages()
        finally:
            await ws.close()

    async def _handshake_problem(self, url: URL, exc: aiohttp.WSServerHandshakeError) -> NoReturn:
        """The handshake error carries no body: ask again as a plain GET to read the hub's problem
        (its code, e.g. auth.revoked_key, is what the caller needs, not the bare status)."""
        if 400 <= exc.status < 500:
            async with self.http.get(url, headers=self.signed_headers("GET", url)) as resp:
                await _answer(resp, ())
        raise LgspError(exc.status, _code_for(exc.status), exc.message) from exc


def _code_for(status: int) -> str:
    return {401: "auth.missing", 403: "forbidden", 404: "not_found"}.get(status, "transport.error")


async def _answer(resp: aiohttp.ClientResponse, expect: tuple[int, ...]) -> Any:
    text = await resp.text()
    if resp.status in expect:
        return json.loads(text) if text else {}
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise LgspError(resp.status, str(body.get("code", f"http.{resp.status}")), str(body.get("detail", text[:200])),
                    body)


def _prefix_hash(path: Path, length: int) -> Any:
    sha = hashlib.sha256()
    if length:
        with path.open("rb") as fh:
            remaining = length
            while remaining and (block := fh.read(min(CHUNK, remaining))):
                sha.update(block)
                remaining -= len(block)
    return sha


def _write_and_hash(fh: Any, hasher: Any, block: bytes) -> None:
    hasher.update(block)
    fh.write(block)


def _existing_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def load_private_key(path: str | os.PathLike[str]) -> str:
    return Path(path).read_text(encoding="ascii")
