"""Push adapter `soap`: delivers a packet to a unit's own SOAP receive operation.

Many document-management systems expose a "receive document" SOAP operation instead of polling
the hub. A unit configured under `delivery.targets` with `protocol: soap` gets its packets pushed
here: zeep reads the unit's WSDL and builds the request for the configured operation (right
namespace, SOAPAction, SOAP version, the other parameters), with a placeholder in the
base64Binary parameter that carries the edXML; the request is then streamed with the packet's
bytes Base64-encoded in place of the placeholder (memory stays flat for any size), and zeep
parses the answer (result or fault).

Target settings (validate_target checks them):

    wsdl: https://vbql.example.gov.vn/ws/LienThong?wsdl     # required
    operation: nhanVanBan                                    # required
    content_parameter: noiDung      # the base64Binary parameter; default: the only one there is
    parameters: {maDonViGui: "{from}", maGoiTin: "{packet_id}"}   # other parameters; placeholders
                # {packet_id} {from} {to} {sha256} {size} {document_id} {subject}
    service: LienThongService       # optional, to pick a service/port of the WSDL
    port: LienThongPort
    address: https://...            # optional: overrides the WSDL's soap:address
    timeout_seconds: 300
    access_key: AK...               # optional: sign the POST with LGSP1 (HMAC-SHA256) ...
    secret: vbql-so-tc              # ... with the secret of that name (`lgsp secret set`)
    username: lgsp                  # optional: HTTP Basic (for the WSDL too) ...
    password_secret: vbql-basic     # ... password from the secret store
    result_field: maVanBan          # optional: which field of the answer is the remote id
    tls_ca_file: /etc/lgsp/units/vbql-ca.pem   # optional: the unit's own CA ...
    tls_fingerprint: "AB:CD:..."    # ... or its certificate's SHA-256, pinned (WSDL and POST alike)

The WSDL is read on the first push and again after WSDL_TTL_SECONDS (an hour).

Failures: connection errors, timeouts, HTTP 5xx/408/429 and SOAP Server/Receiver faults are
retryable (Retry-After is passed on); SOAP Client/Sender faults, other HTTP 4xx and a target
that does not match its WSDL are not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import requests
import requests.adapters
import requests.auth
import zeep
import zeep.exceptions
from requests.structures import CaseInsensitiveDict
from zeep.wsdl.utils import etree_to_string
from zeep.xsd.types.builtins import Base64Binary

from lgsp.core.api import TLS_TARGET_KEYS as TLS_KEYS
from lgsp.core.api import PushFailure, PushJob, PushReceipt, Signer, Text, client_ssl, logs, normalise_fingerprint
from lgsp.core.api import tls_target_problems as tls_problems
from lgsp.plugins.signatures import BUILTIN_ALGORITHMS

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.soap.push")

CHUNK = 3 << 18
MAX_REPLY = 16 << 20
WSDL_TTL_SECONDS = 3600.0  # how long a unit's WSDL, once read, is trusted before it is read again
PLACEHOLDERS = frozenset({"packet_id", "from", "to", "sha256", "size", "document_id", "subject"})
_ENGINE_KEYS = frozenset({"protocol", "concurrency", "probe_interval_seconds"})
_STR_KEYS = ("wsdl", "operation", "content_parameter", "service", "port", "address", "access_key", "secret",
             "username", "password_secret", "result_field")
KNOWN_KEYS = _ENGINE_KEYS | set(_STR_KEYS) | {"parameters", "timeout_seconds"} | set(TLS_KEYS)
_HMAC = {a.name: a for a in BUILTIN_ALGORITHMS}["HMAC-SHA256"]


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@dataclass
class _Endpoint:
    """A loaded WSDL: the zeep client, the bound port, the operation and its base64Binary parameter."""

    client: zeep.Client
    proxy: Any
    address: str
    operation: str
    content_parameter: str


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Reads the WSDL only from a server whose certificate has the pinned SHA-256 (urllib3's
    `assert_fingerprint`, checked on every connection), as aiohttp's Fingerprint does for the POST."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint  # before super().__init__, which builds the pool manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)


class SoapPushAdapter:
    protocol = "soap"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._endpoints: dict[tuple[Any, ...], tuple[_Endpoint, float]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}  # one per WSDL: a slow unit holds up no other

    # -- settings ---------------------------------------------------------------------------------
    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in sorted(set(target) - KNOWN_KEYS):
            out.append((key, Text("unknown key (known: {known})", known=", ".join(sorted(KNOWN_KEYS - _ENGINE_KEYS)))))
        for key in _STR_KEYS:
            if key in target and (not isinstance(target[key], str) or not target[key].strip()):
                out.append((key, Text("must be a non-empty string")))
        out.extend(tls_problems(target))
        if not _is_url(target.get("wsdl")):
            out.append(("wsdl", Text("required: the http(s) URL of the unit's WSDL")))
        if not isinstance(target.get("operation"), str) or not target.get("operation"):
            out.append(("operation", Text("required: the name of the unit's receive operation")))
        if "address" in target and not _is_url(target["address"]):
            out.append(("address", Text("must be an http(s) URL")))
        timeout = target.get("timeout_seconds")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            out.append(("timeout_seconds", Text("must be a number of seconds greater than 0")))
        params = target.get("parameters")
        if params is not None:
            if not isinstance(params, Mapping):
                out.append(("parameters", Text("must map parameter names to values")))
            else:
                for name, value in params.items():
                    if not isinstance(value, str | int):
                        out.append((f"parameters.{name}", Text("must be a string or an integer")))
                        continue
                    try:
                        unknown = _fields(str(value)) - PLACEHOLDERS
                    except ValueError as exc:
                        out.append((f"parameters.{name}", Text("bad placeholder: {problem}", problem=exc)))
                        continue
                    if unknown:
                        out.append((f"parameters.{name}", Text("unknown placeholder(s) {unknown}; known: {known}",
                                                           unknown=sorted(unknown),
                                                           known=", ".join(sorted(PLACEHOLDERS)))))
        for a, b in (("access_key", "secret"), ("username", "password_secret")):
            if (a in target) != (b in target):
                out.append((b if a in target else a, Text("{a} and {b} go together", a=a, b=b)))
        return out

    # -- WSDL -------------------------------------------------------------------------------------
    async def _endpoint(self, target: Mapping[str, Any]) -> _Endpoint:
        """The operation read from the unit's WSDL, kept for WSDL_TTL_SECONDS: a unit that upgrades its
        VBQL (a new address, a changed operation) is followed without a hub restart."""
        key = (target["wsdl"], target.get("service"), target.get("port"), target.get("address"), target["operation"],
               target.get("content_parameter"), target.get("username"),
               *(str(target.get(k)) for k in TLS_KEYS))  # a WSDL read under other TLS checks is not reused
        async with self._locks.setdefault(key, asyncio.Lock()):
            found = self._endpoints.get(key)
            if found is None or time.monotonic() - found[1] > WSDL_TTL_SECONDS:
                password = (await self.hub.secrets.reveal(target["password_secret"])
                            if target.get("username") else None)
                fresh = (await asyncio.to_thread(self._load, target, password), time.monotonic())
                if found is not None:
                    found[0].client.transport.session.close()
                self._endpoints[key] = found = fresh
        return found[0]

    @staticmethod
    def _load(target: Mapping[str, Any], password: str | None = None) -> _Endpoint:
        settings = zeep.Settings(strict=False, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                                 xml_huge_tree=False)
        session = requests.Session()
        # Like the POST (aiohttp), ignore the environment: REQUESTS_CA_BUNDLE would otherwise take
        # the place of the unit's own CA, of a pinned certificate and of `verify_tls: false`.
        session.trust_env = False
        # The same check as the pushes themselves (core/tls.py): the unit's own CA, its pinned
        # certificate, or none only when `verify_tls: false` says so.
        session.verify = False if target.get("verify_tls") is False else target.get("tls_ca_file", True)
        if isinstance(target.get("tls_fingerprint"), str):
            session.verify = False  # no CA check: the pinned certificate is checked instead
            session.mount("https://", _PinnedAdapter(normalise_fingerprint(target["tls_fingerprint"])))
        if target.get("username"):  # a WSDL behind the same Basic auth as the service
            # UTF-8, as for the POST (requests would encode str credentials as Latin-1)
            session.auth = requests.auth.HTTPBasicAuth(target["username"].encode(), (password or "").encode())
        transport = zeep.Transport(session=session, timeout=30, operation_timeout=30)
        try:
            client = zeep.Client(target["wsdl"], transport=transport, settings=settings)
            proxy = client.bind(target.get("service"), target.get("port")) if (
                target.get("service") or target.get("port")) else client.service
        except (requests.RequestException, OSError) as exc:
            raise PushFailure(Text("cannot load the WSDL {wsdl}: {exc}", wsdl=target['wsdl'], exc=exc),
                              retryable=True) from None
        except Exception as exc:  # a WSDL zeep cannot read, or a service/port it lacks
            raise PushFailure(Text("unusable WSDL {wsdl}: {exc}", wsdl=target['wsdl'], exc=exc),
                              retryable=False) from None
        binding = proxy._binding
        try:
            operation = binding.get(target["operation"])
        except (ValueError, KeyError, zeep.exceptions.Error):
            known = ", ".join(sorted(binding._operations))
            raise PushFailure(Text("the WSDL has no operation {operation!r} (it has {known})",
                                   operation=target['operation'], known=known),
                              retryable=False) from None
        binary = [name for name, element in operation.input.body.type.elements
                  if isinstance(element.type, Base64Binary)]
        wanted = target.get("content_parameter")
        if wanted is None:
            if len(binary) != 1:
                raise PushFailure(Text("operation {operation} has {count} base64Binary parameters ({binary}); set "
                                       "content_parameter", operation=target['operation'], count=len(binary),
                                       binary=binary), retryable=False)
            wanted = binary[0]
        elif wanted not in binary:
            raise PushFailure(Text("{wanted!r} is not a base64Binary parameter of {operation} ({binary})",
                                   wanted=wanted, operation=target['operation'], binary=binary),
                              retryable=False)
        address = target.get("address") or proxy._binding_options["address"]
        return _Endpoint(client, proxy, address, target["operation"], wanted)

    # -- push -------------------------------------------------------------------------------------
    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def push(self, job: PushJob) -> PushReceipt:
        target = job.target
        endpoint = await self._endpoint(target)
        size = job.packet.size  # of the plaintext (the stored file is encrypted)
        params = self._parameters(job, size)
        token = secrets.token_bytes(24)  # its Base64 (32 characters, no padding) marks the payload's place
        params[endpoint.content_parameter] = token
        try:
            envelope, headers = endpoint.proxy._binding._create(
                endpoint.operation, (), params, client=endpoint.client, options={"address": endpoint.address})
        except (TypeError, ValueError, zeep.exceptions.Error) as exc:
            raise PushFailure(Text("cannot build {operation} from the target's parameters: {exc}",
                                   operation=endpoint.operation, exc=exc),
                              retryable=False) from None
        head, sep, tail = etree_to_string(envelope).partition(base64.b64encode(token))
        if not sep:  # pragma: no cover - zeep always writes base64Binary as Base64 text
            raise PushFailure(Text("could not place the packet in the SOAP request"), retryable=False)
        length = len(head) + 4 * ((size + 2) // 3) + len(tail)
        headers = {k: str(v) for k, v in headers.items()}
        headers.update(await self._auth_headers(target, endpoint.address, job, head, tail))
        headers["Content-Length"] = str(length)
        headers["X-LGSP-Packet"] = job.packet.id
        headers["Idempotency-Key"] = job.idempotency_key
        # The id of the request that accepted the packet, as on REST pushes: one id across the hop.
        headers[logs.REQUEST_ID_HEADER] = logs.request_id.get() or logs.request_id_for(job.packet.id)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=float(target.get("timeout_seconds",
                                                                                                   300)))
        try:
            async with self.http.post(endpoint.address, data=self._body(job, head, tail), headers=headers,
                                      timeout=timeout, ssl=client_ssl(target)) as resp:
                body = await resp.content.read(MAX_REPLY + 1)
                status, reply_headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PushFailure(Text("POST {address} failed: {error}: {exc}", address=endpoint.address,
                                   error=type(exc).__name__, exc=exc), retryable=True) from None
        return await asyncio.to_thread(self._reply, endpoint, target, status, reply_headers, body)

    def _parameters(self, job: PushJob, size: int) -> dict[str, Any]:
        meta = (job.packet.meta or {}).get("edxml", {}) if isinstance(job.packet.meta, Mapping) else {}
        values = {"packet_id": job.packet.id, "from": job.packet.source, "to": job.unit,
                  "sha256": job.packet.sha256, "size": size, "document_id": meta.get("document_id", ""),
                  "subject": job.packet.subject}
        out: dict[str, Any] = {}
        for name, template in (job.target.get("parameters") or {}).items():
            out[name] = str(template).format_map(values) if isinstance(template, str) else template
        return out

    async def _auth_headers(self, target: Mapping[str, Any], address: str, job: PushJob, head: bytes,
                            tail: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        if target.get("access_key"):
            secret = await self.hub.secrets.reveal(target["secret"])
            digest = await asyncio.to_thread(self._body_sha256, job, head, tail)
            url = urlsplit(address)
            out.update(Signer(target["access_key"], _HMAC, secret).headers(
                "POST", url.path or "/", url.query, digest))
        out.update(await self._basic_auth(target))
        return out

    async def _basic_auth(self, target: Mapping[str, Any]) -> dict[str, str]:
        """The HTTP Basic header of a target with `username` (UTF-8), else nothing."""
        if not target.get("username"):
            return {}
        password = await self.hub.secrets.reveal(target["password_secret"])
        raw = f"{target['username']}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    @staticmethod
    def _body_sha256(job: PushJob, head: bytes, tail: bytes) -> str:
        """SHA-256 of the exact body (the signature covers it): one pass over the file before sending."""
        sha = hashlib.sha256(head)
        with job.open() as fh:
            while block := fh.read(CHUNK):
                sha.update(binascii.b2a_base64(block, newline=False))
        sha.update(tail)
        return sha.hexdigest()

    @staticmethod
    async def _body(job: PushJob, head: bytes, tail: bytes) -> AsyncIterator[bytes]:
        yield head
        async for block in job.content(CHUNK):
            yield binascii.b2a_base64(block, newline=False)
        yield tail

    @staticmethod
    def _reply(endpoint: _Endpoint, target: Mapping[str, Any], status: int, headers: Mapping[str, str],
               body: bytes) -> PushReceipt:
        retry_after = _retry_after(headers.get("Retry-After"))
        if len(body) > MAX_REPLY:
            raise PushFailure(Text("the answer is larger than {limit} bytes", limit=MAX_REPLY),
                              retryable=status >= 500)
        response = requests.Response()
        response.status_code = status
        response._content = body
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = None
        response.url = endpoint.address
        binding = endpoint.proxy._binding
        try:
            result = binding.process_reply(endpoint.client, binding.get(endpoint.operation), response)
        except zeep.exceptions.Fault as fault:
            code = str(fault.code or "")
            client_side = "client" in code.lower() or "sender" in code.lower()
            raise PushFailure(Text("SOAP fault {code}: {message}", code=code, message=fault.message),
                              retryable=not client_side,
                              retry_after=retry_after) from None
        except zeep.exceptions.TransportError as exc:
            raise PushFailure(Text("HTTP {status}: {reason}", status=status, reason=str(exc)[:300]),
                              retryable=status >= 500 or status in (408, 429),
                              retry_after=retry_after) from None
        except Exception as exc:  # an answer zeep cannot read as this operation's output
            raise PushFailure(Text("unreadable answer (HTTP {status}): {error}: {reason}", status=status,
                                   error=type(exc).__name__, reason=str(exc)[:300]),
                              retryable=status >= 500) from None
        if status >= 300:
            raise PushFailure(Text("HTTP {status}", status=status), retryable=status >= 500 or status in (408, 429),
                              retry_after=retry_after)
        remote_id = _pick(result, target.get("result_field"))
        return PushReceipt(detail=Text("{operation} accepted the packet", operation=endpoint.operation),
                           remote_id=remote_id)

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        """Up when the unit's WSDL answers 200, read with the same Basic auth a push uses."""
        try:
            async with self.http.get(target["wsdl"], timeout=aiohttp.ClientTimeout(total=10),
                                     headers=await self._basic_auth(target), ssl=client_ssl(target)) as resp:
                await resp.content.read(1 << 16)
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError, KeyError):
            return False

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        for endpoint, _ in self._endpoints.values():
            endpoint.client.transport.session.close()
        self._endpoints.clear()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _pick(result: Any, field: str | None) -> str | None:
    if result is None:
        return None
    if field:
        value = result.get(field) if isinstance(result, Mapping) else getattr(result, field, None)
        return None if value is None else str(value)
    if isinstance(result, str | int | float):
        return str(result)
    return None
