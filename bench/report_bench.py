"""Statistics: a year of a busy hub, and how long a unit's yearly report takes.

Fills a store with generated history by bulk inserts (units, packets, deliveries with every end
state, deadlines, failure reasons, presence changes), folds it into the aggregates once (the
backfill a first roll-up does on an existing hub), then times `unit_report` for a year against
`unit_report_raw` (the on-demand computation from the raw rows, the baseline) for the busiest units,
in the same run. Also times one incremental roll-up round after a burst of new events.

    python -m bench.report_bench --db postgresql+asyncpg://lgsp:lgsp@localhost/lgsp_bench \
        --units 200 --packets 1000000
    python -m bench.run --only report

`fill` is also what tests/test_statistics.py generates its history with (small sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import time
import uuid
from typing import Any

DATA_TYPES = ("edoc", "edxml", "json", "report", "attachment")
REASONS = ("push target refused: HTTP 503", "content rejected: invalid edXML", "destination unit retired",
           "  timeout after 30 s  ", "")
VN = dt.timezone(dt.timedelta(hours=7))


def unit_id(i: int) -> str:
    return f"000.{i // 100:02d}.{i % 100:02d}.H23"


async def fill(db: Any, *, units: int, days: int, packets: int, start: dt.date, seed: int = 1,
               presence_per_day: int = 3, events: bool = False, batch: int = 5000) -> dict[str, int]:
    """Generated history: `packets` packets over `days` Vietnam days from `start` among `units`
    units (a few busy ones), 1–3 destinations each among the source's partners; returns counts."""
    from lgsp.core.store.tables import deliveries, packet_events, presence_log
    from lgsp.core.store.tables import packets as packets_t
    from lgsp.core.store.tables import units as units_t

    rng = random.Random(seed)
    ids = [unit_id(i) for i in range(units)]
    origin = dt.datetime.combine(start, dt.time(), tzinfo=VN).astimezone(dt.UTC)
    created0 = origin - dt.timedelta(days=30)
    async with db.write() as conn:
        await conn.execute(units_t.insert(), [
            {"id": u, "name": f"Đơn vị {u}", "name_folded": f"don vi {u}", "zone": "local", "legacy": False,
             "status": "active", "created_at": created0, "online": False, "stream_cursor": 0} for u in ids])
    partners = {u: rng.sample(ids, min(len(ids), 12)) for u in ids}
    weights = [1.0 / (1 + i) ** 0.8 for i in range(units)]  # some units are much busier
    counts = {"packets": 0, "deliveries": 0, "events": 0, "presence": 0}
    pk: list[dict[str, Any]] = []
    dl: list[dict[str, Any]] = []
    ev: list[dict[str, Any]] = []

    async def flush() -> None:
        async with db.write() as conn:
            if pk:
                await conn.execute(packets_t.insert(), pk)
            if dl:
                await conn.execute(deliveries.insert(), dl)
            if ev:
                await conn.execute(packet_events.insert(), ev)
        counts["packets"] += len(pk)
        counts["deliveries"] += len(dl)
        counts["events"] += len(ev)
        pk.clear()
        dl.clear()
        ev.clear()

    span = days * 86400.0
    sources = rng.choices(ids, weights=weights, k=packets)
    for source in sources:
        created = origin + dt.timedelta(seconds=rng.random() * span)
        pid = str(uuid.UUID(int=rng.getrandbits(128)))
        accepted = created + dt.timedelta(seconds=rng.random() * 2) if rng.random() < 0.97 else None
        deadline = created + dt.timedelta(hours=rng.choice((1, 4, 24, 72))) if rng.random() < 0.3 else None
        size = rng.randint(200, 5_000_000)
        data_type = rng.choice(DATA_TYPES)
        dests = rng.sample([p for p in partners[source] if p != source] or [source], rng.randint(1, 3))
        pk.append({"id": pid, "source_unit": source, "subject": "Công văn", "priority": 1, "data_type": data_type,
                   "size": size, "sha256": "0" * 64, "state": "completed" if accepted else "expired",
                   "content_state": "purged", "created_at": created, "upload_expires_at": created,
                   "accepted_at": accepted, "completed_at": None, "deadline": deadline})
        for dest in dests:
            roll = rng.random()
            reason = None
            if accepted is None:
                state, updated, reason = "expired", created + dt.timedelta(hours=1), "content was never uploaded"
            elif roll < 0.85:
                state = "delivered"
                seconds = rng.lognormvariate(2.0, 2.0)  # seconds to hours, a long tail
                updated = accepted + dt.timedelta(seconds=seconds)
            elif roll < 0.91:
                state, updated, reason = "failed", accepted + dt.timedelta(minutes=5), rng.choice(REASONS)
            elif roll < 0.94:
                state, updated, reason = "expired", accepted + dt.timedelta(days=2), "deadline passed"
            elif roll < 0.96:
                state, updated, reason = "cancelled", accepted + dt.timedelta(minutes=1), "cancelled by the source"
            else:
                state, updated = rng.choice(("queued", "notified", "retrying")), accepted
            dl.append({"packet_id": pid, "unit_id": dest, "state": state, "priority": 1, "packet_created_at": created,
                       "updated_at": updated, "reason": reason, "attempts": 1, "mode": "pull"})
        if events:
            ev.append({"packet_id": pid, "at": created, "type": "packet.created", "unit": source})
        if len(pk) >= batch:
            await flush()
    await flush()
    rows = []
    for u in ids:
        for day in range(days):
            for _ in range(rng.randint(0, presence_per_day * 2)):
                rows.append({"unit_id": u, "at": origin + dt.timedelta(days=day, seconds=rng.random() * 86400),
                             "online": rng.random() < 0.5, "cause": "sweep"})
    rows.sort(key=lambda r: r["at"])
    for i in range(0, len(rows), batch):
        async with db.write() as conn:
            await conn.execute(presence_log.insert(), rows[i:i + batch])
    counts["presence"] = len(rows)
    return counts


def _same(a: Any, b: Any) -> bool:
    da, db_ = a.as_dict(), b.as_dict()
    da["delivery_seconds"] = {k: v for k, v in da["delivery_seconds"].items() if k == "delivered"}
    db_["delivery_seconds"] = {k: v for k, v in db_["delivery_seconds"].items() if k == "delivered"}
    return bool(da == db_)


async def measure(url: str, *, units: int, packets: int, repeats: int = 5, busiest: int = 3,
                  log: Any = print) -> dict[str, Any]:
    """Fill a fresh store at `url`, back-fill the aggregates, and time yearly reports (seconds)."""
    from lgsp.core import statistics as st
    from lgsp.core.reports import period_bounds, unit_report, unit_report_raw
    from lgsp.core.store.database import Database

    db = Database(url)
    try:
        await db.upgrade()
        t0 = time.perf_counter()
        start = dt.date(2025, 1, 1)
        counts = await fill(db, units=units, days=365, packets=packets, start=start)
        fill_s = time.perf_counter() - t0
        log(f"filled {counts} in {fill_s:.1f} s")
        t0 = time.perf_counter()
        assert await st.rollup(db)
        backfill_s = time.perf_counter() - t0
        log(f"back-filled the aggregates in {backfill_s:.1f} s")
        since, until = period_bounds("year", start)
        out: dict[str, Any] = {"units": units, "counts": counts, "fill_seconds": round(fill_s, 1),
                               "backfill_seconds": round(backfill_s, 1), "reports": []}
        for i in range(busiest):
            unit = unit_id(i)
            agg_times, raw_times = [], []
            for _ in range(repeats):   # interleaved, so a slow moment of the machine hits both
                t0 = time.perf_counter()
                agg = await unit_report(db, unit, since, until)
                agg_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                raw = await unit_report_raw(db, unit, since, until)
                raw_times.append(time.perf_counter() - t0)
            assert _same(agg, raw), (agg.as_dict(), raw.as_dict())
            row = {"unit": unit, "sent_deliveries": sum(v.get("sent", 0) for v in raw.by_partner.values()),
                   "received": raw.received_packets,
                   "aggregates_median_s": round(statistics.median(agg_times), 4),
                   "raw_median_s": round(statistics.median(raw_times), 4),
                   "aggregates_times_s": [round(x, 4) for x in agg_times],
                   "raw_times_s": [round(x, 4) for x in raw_times]}
            out["reports"].append(row)
            log(json.dumps(row))
        # One incremental round: a burst of changes to old days (deliveries ending), one event each.
        await _burst(db, 2000)
        t0 = time.perf_counter()
        assert await st.rollup(db)
        out["incremental_round_2000_events_s"] = round(time.perf_counter() - t0, 3)
        log(f"incremental round after 2000 events: {out['incremental_round_2000_events_s']} s")
        return out
    finally:
        await db.close()


async def _burst(db: Any, n: int) -> None:
    from sqlalchemy import select, update

    from lgsp.core.store.tables import deliveries, packet_events

    async with db.read() as conn:
        rows = (await conn.execute(select(deliveries.c.packet_id, deliveries.c.unit_id, deliveries.c.updated_at)
                                   .where(deliveries.c.state.in_(("queued", "notified"))).limit(n))).all()
    async with db.write() as conn:
        for r in rows:
            at = r.updated_at + dt.timedelta(seconds=42)
            await conn.execute(update(deliveries).where(deliveries.c.packet_id == r.packet_id,
                                                        deliveries.c.unit_id == r.unit_id)
                               .values(state="delivered", updated_at=at))
            await conn.execute(packet_events.insert().values(packet_id=r.packet_id, at=at, type="packet.delivered",
                                                             unit=r.unit_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="an empty store (SQLAlchemy URL); it is filled")
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.db, units=args.units, packets=args.packets, repeats=args.repeats)),
                     indent=2))


if __name__ == "__main__":
    main()
