"""The plugin contract: every hook lgsp calls, with its exact signature.

Adapters (REST, SOAP, SFTP, ...), signature algorithms and observers of the packet lifecycle are
all plugins of these hooks; the built-ins use them exactly as a third-party plugin would.
docs/plugins.md documents each hook; tests/test_plugins.py keeps the two in step.

Hooks whose docstring says "may return an awaitable" are called from the event loop and the hub
awaits what they return. A plugin must never block the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from lgsp.core.api import ContentInspector, Hub, PacketInfo, PushAdapter, SignatureAlgorithm
    from lgsp.core.api.edxml import PacketConverter

PROJECT = "lgsp"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lgsp_signature_algorithms() -> Iterable[SignatureAlgorithm] | None:
    """Signature algorithms this plugin provides.

    Each object has `name` (the `<ALG>` of the X-LGSP-Signature header, e.g. `HMAC-SHA256`),
    `shared_secret` (True when the hub keeps the secret, encrypted, and verifies with it),
    `sign(signing_key, message) -> bytes` and `verify(verification_key, message, signature) -> bool`.
    Shared-secret algorithms also offer `new_secret() -> str`; public-key ones
    `generate_keypair(bits) -> (private_pem, public_pem)` and `check_public_key(pem) -> pem`.
    Two plugins providing the same name is an error at start-up.
    """


@hookspec
def lgsp_problem_codes() -> Mapping[str, tuple[int, str] | tuple[int, str, str]] | None:
    """The problem codes this plugin raises that the hub's catalogue (`core/errors.py`) lacks.

    Return `{code: (HTTP status, Vietnamese title, English title)}`, e.g.
    `{"service.timeout": (504, "Dịch vụ đích không trả lời kịp", "The service did not answer in time")}`;
    lgsp's own adapters give `(HTTP status, N_("English title"))` instead, the title a msgid of lgsp's
    catalogues (docs/i18n.md);
    `Problem(code, ...)` then answers with that status and title. Collected when the Hub object is
    built, before anything can raise them. A code of the hub's own, one two plugins provide, or
    a malformed entry is an error at start-up. Declare codes here, never by changing the
    catalogue at import time.
    """


@hookspec
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef] | None:
    """Routes an inbound adapter mounts on the hub's HTTP server.

    Return aiohttp route definitions (`web.get(...)`, `web.post(...)`, ...). Handlers authenticate
    callers with `lgsp.core.api.authenticate(request)` (the signed-request protocol every adapter
    shares) and raise `lgsp.core.api.Problem` for errors. Called once, before the server starts.
    """


@hookspec
def lgsp_push_adapters(hub: Hub) -> Iterable[PushAdapter] | None:
    """Outbound delivery adapters this plugin provides (see `lgsp.core.api.PushAdapter`).

    Each adapter has a `protocol` name; a unit listed under `delivery.targets` with that
    `protocol` gets its packets pushed through it. Called when the Hub object is built (before it
    starts), so adapters must not do I/O here. Two adapters with the same protocol is an error.
    The delivery engine (core/engine.py) calls `push(job)` once per attempt, decides retries from
    the PushFailure raised, and calls `probe()` for presence; the target mapping the adapter sees
    holds `protocol` and its own keys (the engine's `concurrency` and `probe_interval_seconds` are
    removed). docs/delivery.md describes the contract.
    """


@hookspec
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]] | None:
    """Validate this plugin's own settings (e.g. its `adapters.<name>` section).

    Return (key path, message) pairs, e.g. `("adapters.sftp.poll_interval_seconds", "must be > 0")`;
    the hub reports them with the YAML line, like its own settings, and refuses to start.
    Called before the hub starts and by `lgsp config check`; must not do I/O.
    """


@hookspec
def lgsp_startup(hub: Hub) -> Awaitable[None] | None:
    """The hub is up (store migrated and open, HTTP server listening); may return an awaitable.

    Start listeners and background tasks here (pollers, schedulers). Anything started must be
    stopped in `lgsp_shutdown`. An exception aborts the start.
    """


@hookspec
def lgsp_shutdown(hub: Hub) -> Awaitable[None] | None:
    """The hub is stopping; stop what `lgsp_startup` started. May return an awaitable."""


@hookspec
def lgsp_packet_accepted(hub: Hub, packet: PacketInfo) -> Awaitable[None] | None:
    """A packet's content has been stored and checked and its deliveries planned.

    Called after the state is committed; may return an awaitable. Exceptions are logged and do not
    affect the packet.
    """


@hookspec
def lgsp_packet_delivered(hub: Hub, packet: PacketInfo, unit: str) -> Awaitable[None] | None:
    """Destination `unit` acknowledged `packet` with the right hash (state committed first).

    May return an awaitable; exceptions are logged and do not affect the packet.
    """


@hookspec
def lgsp_packet_failed(hub: Hub, packet: PacketInfo, unit: str, state: str,
                       reason: str) -> Awaitable[None] | None:
    """The delivery of `packet` to `unit` ended without success.

    `state` is `failed`, `expired` or `cancelled`; `reason` says why. Called after the state is
    committed; may return an awaitable; exceptions are logged and do not affect the packet.
    """


@hookspec
def lgsp_readiness(hub: Hub) -> Mapping[str, bool] | Awaitable[Mapping[str, bool]] | None:
    """Whether this plugin can do its work now, for `GET /readyz`; may return an awaitable.

    Return a mapping of short check names (letters, digits, `._-`) to True when ready, e.g.
    `{"sftp.inbound": True}`. Report the plugin's own machinery (its tasks run, its files load),
    never a remote system's health: a unit's server being down must not take the hub out of its
    load balancer. Anything but True, an exception, or taking longer than 5 seconds makes the hub
    unready. The answer is public: names only, never details; log the reason instead. Called on
    every readiness round (at most about once a second), so keep it cheap.
    """


# -- content inspection and format conversion (edXML) ---------------------------------------------

@hookspec
def lgsp_content_inspectors(hub: Hub) -> Iterable[ContentInspector] | None:
    """Inspectors that read, check and transform the content of some data types (`core/content.py`).

    Each inspector names its `data_types` (e.g. `{"edxml", "edxml+json"}`), a format `family`
    and its `default_format`; `formats()` lists the formats a unit of the family may take.
    `async inspect(job)` runs after an upload's size and hash are checked and before the packet
    is accepted: it raises `Problem` to refuse the content (nothing is kept), or returns an
    `Inspection` (destinations, subject, priority, metadata, content variants). `async
    describe(conn, packet, unit, is_source)` adds members to `GET /v1/packets/{id}`. Called when
    the store opens; two inspectors for one data type is an error.
    """


@hookspec
def lgsp_packet_converters(hub: Hub) -> Iterable[PacketConverter] | None:
    """Format converters (`lgsp.core.api.edxml.PacketConverter`): `source_format`, `target_format`
    and a synchronous `convert(src, dst, *, store=None)`.

    Inspectors use them to produce the variant a destination's format asks for (e.g. edXML to
    the JSON form); the targets reachable from a family's default format are the formats a unit
    may declare. Called when the store opens; two converters for one pair of formats is an error.
    """


def hook_names() -> list[str]:
    """Names of every hook in this module, in definition order (used by the docs test)."""
    return [name for name, obj in globals().items()
            if name.startswith("lgsp_") and callable(obj) and _is_spec(obj)]


def _is_spec(obj: Any) -> bool:
    return hasattr(obj, f"{PROJECT}_spec")
