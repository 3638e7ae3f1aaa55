"""Retry timers: APScheduler 3 jobs persisted through SQLAlchemy, kept off the event loop.

The deliveries table is the source of truth (state `retrying`, `next_attempt_at`); a job here is
only the alarm clock that wakes the destination's push queue at that time. Losing a job loses
nothing: at start-up the engine re-creates the jobs of every retrying delivery, and the queues
are also re-read every `delivery.poll_interval_seconds`.

APScheduler 3's SQLAlchemyJobStore is synchronous. So the scheduler is a BackgroundScheduler (its
own thread does the job store reads when jobs fall due), and every add/remove we make goes through
one dedicated worker thread: the event loop never waits on job store I/O, and job store writes
are serialised. On SQLite the job store is its own file (`scheduler.db`), so it never competes
with the hub's single writer connection on the main database; on PostgreSQL it is the
`scheduler_jobs` table of the main database, reached through the synchronous psycopg driver.
A fired job only hands (packet, unit) to the event loop with `call_soon_threadsafe`.

Several nodes share the job table (PostgreSQL). Each node's scheduler runs the jobs it finds due,
so a retry may fire on two nodes: harmless, since firing only wakes the lane and one node claims
the delivery. A job the other node already ran and removed is gone, not an error (APScheduler would
otherwise end its scheduler thread on the failed removal). A scheduler only knows the wake-up time
of the jobs it saw, so each is nudged every NUDGE_SECONDS to look at the table again: a job stored
by a node that died meanwhile fires on a survivor within that much of its time. (On SQLite the
job store is one node's own file: no nudge.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

log = logging.getLogger(__name__)

T = TypeVar("T")
TABLE = "scheduler_jobs"
#: How often a scheduler looks for due jobs other nodes stored (one indexed SELECT on the job table).
NUDGE_SECONDS = 1.0

# Route → callbacks of the engines using a job store in this process (one in a hub process; several
# when nodes share a process, as in tests: a job fired wakes them all, and one claims the delivery).
# Jobs must reference a module-level function and survive restarts, so each carries the route of its
# store: a digest of the store's URL (never the URL itself, which may hold a database password).
_ROUTES: dict[str, list[Callable[[str, str], None]]] = {}


def route_of(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def fire(route: str, packet_id: str, unit: str) -> None:
    """Run by APScheduler (its thread) when a retry falls due."""
    callbacks = list(_ROUTES.get(route, ()))
    if not callbacks:
        log.warning("retry job for %s:%s fired with no engine attached; the queue poll will catch it",
                    packet_id, unit)
    for callback in callbacks:
        callback(packet_id, unit)


def job_id(packet_id: str, unit: str) -> str:
    return f"retry:{packet_id}:{unit}"


def jobstore_url_for(configured: str, database_url: str, data_dir: Any) -> str:
    """The job store's synchronous URL: as configured, else next to / inside the main database."""
    if configured:
        return configured
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return f"sqlite:///{data_dir}/scheduler.db"


def _sync_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


class _SharedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The job table of several nodes: removing a job another node already ran and removed is done."""

    def remove_job(self, job_id: str) -> None:
        with contextlib.suppress(JobLookupError):
            super().remove_job(job_id)


class RetryScheduler:
    def __init__(self, url: str) -> None:
        self.url = url
        self.route = route_of(url)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lgsp-jobstore")
        self._engine: Engine | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nudger: asyncio.Task[None] | None = None
        self._deliver: Callable[[str, str], None] | None = None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, partial(fn, *args, **kwargs))

    async def start(self, on_due: Callable[[str, str], None]) -> None:
        """Start the scheduler; `on_due(packet_id, unit)` is then called on the event loop."""
        self._loop = asyncio.get_running_loop()
        loop = self._loop

        def deliver(packet_id: str, unit: str) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(on_due, packet_id, unit)

        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # APScheduler logs every job added, run and removed at INFO: one retry would be four lines.
            logging.getLogger("apscheduler").setLevel(logging.WARNING)

        def start() -> BackgroundScheduler:
            self._engine = _sync_engine(self.url)
            store = _SharedJobStore(engine=self._engine, tablename=TABLE)
            scheduler = BackgroundScheduler(
                jobstores={"default": store}, executors={"default": JobExecutor(4)}, timezone=UTC,
                job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1})
            self._deliver = deliver
            _ROUTES.setdefault(self.route, []).append(deliver)
            scheduler.start()
            return scheduler

        self._scheduler = await self._run(start)
        if make_url(self.url).get_backend_name() != "sqlite":  # a table other nodes may add to
            self._nudger = asyncio.create_task(self._nudge(), name="lgsp-retry-nudge")

    async def _nudge(self) -> None:
        while self._scheduler is not None:
            await asyncio.sleep(NUDGE_SECONDS)
            if self._scheduler is not None:
                self._scheduler.wakeup()  # sets an event its thread waits on: no I/O here

    async def stop(self) -> None:
        if self._nudger is not None:
            self._nudger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._nudger
            self._nudger = None
        scheduler, self._scheduler = self._scheduler, None
        if self._deliver is not None:
            callbacks = _ROUTES.get(self.route, [])
            with contextlib.suppress(ValueError):
                callbacks.remove(self._deliver)
            if not callbacks:
                _ROUTES.pop(self.route, None)
            self._deliver = None
        if scheduler is not None:
            await self._run(scheduler.shutdown, wait=False)
        if self._engine is not None:
            await self._run(self._engine.dispose)
        self._io.shutdown(wait=True)

    async def schedule(self, packet_id: str, unit: str, at: datetime) -> None:
        """Wake (packet, unit)'s queue at `at` (replaces an earlier job for the same delivery)."""
        scheduler = self._require()
        await self._run(scheduler.add_job, fire, trigger="date", run_date=at.astimezone(UTC),
                        args=(self.route, packet_id, unit), id=job_id(packet_id, unit), replace_existing=True)

    async def jobs(self) -> dict[str, datetime | None]:
        """Job id → next run time, as stored."""
        scheduler = self._require()
        return await self._run(lambda: {j.id: j.next_run_time for j in scheduler.get_jobs()})

    async def reconcile(self, wanted: dict[tuple[str, str], datetime]) -> tuple[int, int]:
        """Make the stored jobs exactly `wanted` ((packet, unit) → when); returns (added, removed)."""
        scheduler = self._require()

        def sync() -> tuple[int, int]:
            have = {j.id for j in scheduler.get_jobs()}
            want_ids = {job_id(p, u): (p, u, at) for (p, u), at in wanted.items()}
            added = removed = 0
            for jid in have - set(want_ids):
                try:
                    scheduler.remove_job(jid)
                    removed += 1
                except JobLookupError:
                    pass
            for jid, (p, u, at) in want_ids.items():
                if jid not in have:
                    scheduler.add_job(fire, trigger="date", run_date=at.astimezone(UTC), args=(self.route, p, u),
                                      id=jid, replace_existing=True)
                    added += 1
            return added, removed

        return await self._run(sync)

    def _require(self) -> BackgroundScheduler:
        if self._scheduler is None:
            raise RuntimeError("the retry scheduler is not running")
        return self._scheduler
