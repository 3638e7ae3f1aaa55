"""The delivery engine on PostgreSQL: claims with SKIP LOCKED, retry jobs in the main database (psycopg).

Skipped, saying why, when no PostgreSQL answers on localhost:5432. Each test gets a database of
its own (the shared `pg_url` fixture creates and drops it), so it never touches data of other test runs.
"""

from __future__ import annotations

import pytest

from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.scheduler import job_id

from .helpers import (
    UNITS,
    add_units,
    fast_retries,
    has_state,
    hub_verifier,
    receiver_server,
    status,
    wait_for,
    with_delivery,
)

pytestmark = pytest.mark.postgres

SRC, DST = UNITS[0], UNITS[1]



async def test_push_retry_on_postgres_keeps_its_job_in_the_main_database(cfg: Config, pg_url: str) -> None:
    async with receiver_server() as rr:
        rr.script.steps = [status(503)]
        cfg = cfg.replace(database={"url": pg_url})
        cfg = fast_retries(with_delivery(cfg, targets={DST: {"protocol": "rest", "url": rr.url}},
                                         probe_interval_seconds=0), base=1.5, cap=1.5, jitter=0.0)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST])
            async with creds[SRC].client(hub.url) as src:
                pid = await src.send(b"pg", [DST], subject="s")
                await wait_for(lambda: has_state(hub, pid, DST, "retrying"), what="retrying")

                async def job_ids() -> list[str]:
                    from sqlalchemy import text

                    async with hub.db.read() as conn:
                        return [r[0] for r in (await conn.execute(text("SELECT id FROM scheduler_jobs"))).all()]

                # The retry is committed first and its job stored right after (the table is the truth).
                await wait_for(job_ids, what="the retry job in the main database")
                assert await job_ids() == [job_id(pid, DST)]
                await wait_for(lambda: has_state(hub, pid, DST, "delivered"), timeout=10, what="delivered")
                many = [await src.send(f"m{i}".encode(), [DST], subject="m") for i in range(8)]
                for p in many:
                    await wait_for(lambda p=p: has_state(hub, p, DST, "delivered"), what="all delivered")
            assert len(rr.receiver.stored) == 9
            assert rr.receiver.repeats() == 0

