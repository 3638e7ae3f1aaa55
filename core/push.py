"""The contract between the delivery engine and push adapters (REST webhook, SFTP, SOAP, ...).

A destination unit configured under `delivery.targets` is reached by push: the engine hands each of
its deliveries to the adapter of the target's `protocol` as a PushJob, and learns the outcome from
the PushReceipt or the PushFailure raised. Whether and when to retry is the engine's decision,
guided by `PushFailure.retryable` and `retry_after`; adapters never sleep or loop on failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from lgsp.core.packets import PacketInfo


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

    async def content(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The stored content, streamed in chunks read off the event loop."""
        fh = await asyncio.to_thread(self.content_path.open, "rb")
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
    """What the destination said when it took the packet (kept in the packet's history)."""

    detail: str = ""
    remote_id: str | None = None


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


def idempotency_key(packet_id: str, unit: str) -> str:
    return f"{packet_id}:{unit}"
