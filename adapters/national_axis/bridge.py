"""The running bridge to the axis: one client and the periodic jobs (inbound poll, tracking, sync).

The jobs are APScheduler interval jobs (in memory: the store is the state, so nothing needs
persisting), each round at most once at a time, and on PostgreSQL one node at a time
(`Database.single_node`): two nodes polling together would fetch every document twice and race
on its acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .client import AxisClient
from .settings import AxisSettings

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.adapters.national_axis")

#: One round of a periodic job; its result is kept for status displays.
Job = Callable[["AxisBridge"], Awaitable[Any]]

_bridges: weakref.WeakKeyDictionary[Hub, AxisBridge] = weakref.WeakKeyDictionary()


def bridge_of(hub: Hub) -> AxisBridge | None:
    """The bridge running for `hub` (None before start-up and after shutdown)."""
    return _bridges.get(hub)


@dataclass
class JobStats:
    rounds: int = 0
    last_error: str | None = None
    last_result: Any = None
    last_at: datetime | None = None


@dataclass(eq=False)
class AxisBridge:
    hub: Hub
    settings: AxisSettings
    client: AxisClient
    stats: dict[str, JobStats] = field(default_factory=dict)
    fetch_failures: dict[str, int] = field(default_factory=dict)
    refusals: list[tuple[str, str]] = field(default_factory=list)
    scheduler: AsyncIOScheduler | None = None
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def run(self, name: str, job: Job) -> Any:
        """One round of a job, on one node at a time; errors are logged and kept, never raised."""
        stats = self.stats.setdefault(name, JobStats())
        lock = self.locks.setdefault(name, asyncio.Lock())
        try:  # one round of a job at a time in this process (the CLI or a test may call one too)
            async with lock, self.hub.db.single_node(f"national_axis:{name}") as mine:
                if not mine:
                    return None
                result = await job(self)
        except Exception as exc:
            stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("national axis: %s round failed", name)
            return None
        stats.rounds += 1
        stats.last_error = None
        stats.last_result = result
        stats.last_at = datetime.now(UTC)
        return result

    def start_jobs(self, jobs: dict[str, tuple[float, Job]]) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                                                 "misfire_grace_time": None})
        now = datetime.now(UTC)
        for name, (interval, job) in jobs.items():
            if interval > 0:
                scheduler.add_job(self.run, "interval", seconds=interval, args=(name, job), id=name,
                                  next_run_time=now)
        scheduler.start()
        self.scheduler = scheduler

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await self.client.close()


async def open_bridge(hub: Hub, settings: AxisSettings) -> AxisBridge:
    """The client with the secret from the store (a missing secret stops the start, naming it)."""
    secret = await hub.secrets.reveal(settings.secret_name)
    client = AxisClient(settings.endpoint, settings.system_id, secret, timeout=settings.timeout,
                        connect_timeout=settings.connect_timeout,
                        max_document_bytes=int(hub.config.limits.max_packet_size))
    bridge = AxisBridge(hub, settings, client)
    _bridges[hub] = bridge
    return bridge


def close_bridge(hub: Hub) -> AxisBridge | None:
    return _bridges.pop(hub, None)
