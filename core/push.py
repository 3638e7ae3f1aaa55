"""The contract between the delivery engine and push adapters (REST webhook, SFTP, SOAP, ...).

A destination unit configured under `delivery.targets` is reached by push: the engine hands each of
its deliveries to the adapter of the target's `protocol` as a PushJob, and learns the outcome from
the PushReceipt or the PushFailure raised. Whether and when to retry is the engine's decision,
guided by `PushFailure.retryable` and `retry_after`; adapters never sleep or loop on failure.

What counts as retryable: connection errors and timeouts (raise PushFailure(retryable=True)), and
for HTTP-based adapters what `http_failure` says (5xx, 408, 425, 429 with Retry-After honoured; any
other 4xx is final). Any other exception escaping `push()` is treated as retryable and logged.
Adapters must not keep state between attempts: after a restart the same delivery is attempted
again with the same `idempotency_key` and a higher `attempt`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from lgsp.core.i18n import Text

if TYPE_CHECKING:
    from lgsp.core.exchange import PacketInfo


class PushFailure(Exception):
    """A push attempt failed. `retryable` says whether trying again later can help."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class PushJob:
    packet: PacketInfo
    unit: str
    target: Mapping[str, Any]
    idempotency_key: str
    attempt: int
    content_path: Path
    #: Opens the content's plaintext (the blob is encrypted at rest); call from a worker thread.
    #: None: `content_path` is read as it is (a plain file).
    opener: Callable[[], BinaryIO] | None = None
    #: Whether the hub still holds the content (`ContentService.holds`); None: `content_path` is a file.
    holder: Callable[[], Awaitable[bool]] | None = None

    async def content_held(self) -> bool:
        """Whether the content is still there to send (a purge may have come first)."""
        if self.holder is not None:
            return await self.holder()
        return await asyncio.to_thread(self.content_path.is_file)

    def open(self) -> BinaryIO:
        """The content's plaintext as a file (blocking: call from a worker thread)."""
        return self.opener() if self.opener is not None else self.content_path.open("rb")

    async def content(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The stored content, streamed in chunks read off the event loop."""
        fh = await asyncio.to_thread(self.open)
        try:
            while True:
                block = await asyncio.to_thread(fh.read, chunk_size)
                if not block:
                    return
                yield block
        finally:
            await asyncio.to_thread(fh.close)


@dataclass(frozen=True)
class PushReceipt:
    """What the destination said when it took the packet (kept in the packet's history).

    `pending`: the packet was handed to another exchange (the national axis, a peer hub) that has
    not yet reached the destination; the delivery becomes `forwarded` with `remote_id` recorded,
    and the adapter's tracker ends it later (`Exchange.end_delivery`).
    """

    detail: str = ""
    remote_id: str | None = None
    pending: bool = False


@runtime_checkable
class PushAdapter(Protocol):
    protocol: str

    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with a unit's target settings as (key, message) pairs; empty when usable."""
        ...

    async def push(self, job: PushJob) -> PushReceipt:
        """Deliver one packet; raise PushFailure when it did not arrive."""
        ...

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        """Is the destination's endpoint answering? Used for presence of push units."""
        ...


def carried_data_types(adapter: PushAdapter) -> frozenset[str] | None:
    """The data types an adapter can carry (an optional `data_types` attribute); None: any."""
    kinds = getattr(adapter, "data_types", None)
    return frozenset(kinds) if kinds is not None else None


def idempotency_key(packet_id: str, unit: str) -> str:
    return f"{packet_id}:{unit}"


# Target keys the delivery engine reads itself; they are removed from the mapping adapters see
# (validate_target, PushJob.target, probe), so an adapter only ever meets `protocol` and its own keys.
ENGINE_TARGET_KEYS = frozenset({"concurrency", "probe_interval_seconds"})


def adapter_settings(target: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in target.items() if k not in ENGINE_TARGET_KEYS}


def engine_target_problems(target: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with the engine's own keys of a target, as (key, message)."""
    out: list[tuple[str, str]] = []
    c = target.get("concurrency")
    if c is not None and (not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= 64):
        out.append(("concurrency", Text("must be an integer from 1 to 64")))
    p = target.get("probe_interval_seconds")
    if p is not None and (not isinstance(p, (int, float)) or isinstance(p, bool) or p < 0):
        out.append(("probe_interval_seconds", Text("must be a number of seconds, 0 or more (0: never probe)")))
    return out


# HTTP answers worth another try (RFC 9110): timeouts, throttling, and any server-side error.
RETRYABLE_STATUS = frozenset({408, 425, 429})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # however large: core/retry.py caps what it honours
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def http_failure(status: int, detail: str, retry_after: str | None = None) -> PushFailure:
    """The PushFailure for an unsuccessful HTTP answer: 5xx, 408, 425, 429 are retried, other 4xx not.

    Shared by every HTTP-based adapter (REST, SOAP) so they classify alike.
    """
    retryable = status >= 500 or status in RETRYABLE_STATUS
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    return PushFailure(reason, retryable=retryable, retry_after=parse_retry_after(retry_after) if retryable else None)
