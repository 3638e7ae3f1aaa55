"""The clock-offset history: signed requests with a skewed clock over (the hub's) time leave samples,
written by the presence flush at most once per interval or at once on a jump, read back through
`GET /v1/presence` (as the OpenAPI document says), summarised per slice over long periods, and
pruned by the leader's housekeeping after the retention period. On SQLite; the slicing also on
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from lgsp.core.clock import ManualClock
from lgsp.core.clockoffsets import MAX_POINTS, history
from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.signing import format_date
from lgsp.core.store.database import Database
from lgsp.core.store.tables import clock_offsets, presence_log, units
from lgsp.schemas import __file__ as schemas_init

from ..conftest import Actor, raw_request

UNIT = "000.00.00.H23"
OTHER = "000.00.01.H23"
INTERVAL = 60.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def hub(hub_config: Config, clock: ManualClock) -> AsyncIterator[Hub]:
    """A hub whose time moves only when the test says (its housekeeping loop never runs on its own)."""
    cfg = hub_config.replace(presence={"sweep_interval_seconds": 3600, "clock_offset_sample_seconds": INTERVAL,
                                       "clock_offset_jump_seconds": 5.0, "clock_offset_retention_days": 30})
    async with Hub(cfg, clock=clock) as h:
        yield h


async def signed(actor: Actor, clock: ManualClock, path: str, skew: float) -> tuple[int, Any]:
    """A signed GET whose X-LGSP-Date is the hub's time plus `skew` seconds (the unit's clock)."""
    path_only, _, query = path.partition("?")
    headers = actor.signer.headers("GET", path_only, query,
                                   date=format_date(clock.now() + dt.timedelta(seconds=skew)))
    status, _, body = await raw_request(actor.hub.url, "GET", path, headers=headers)
    return status, body


def _z(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _schema() -> dict[str, Any]:
    doc = yaml.safe_load((Path(schemas_init).parent / "openapi.yaml").read_text(encoding="utf-8"))
    return dict(doc["paths"]["/v1/presence"]["get"]["responses"]["200"]["content"]["application/json"]["schema"])


async def _samples(hub: Hub) -> list[Any]:
    async with hub.db.read() as conn:
        return list((await conn.execute(select(clock_offsets).order_by(clock_offsets.c.at))).all())


async def test_skewed_requests_leave_one_sample_per_interval_or_at_a_jump(hub: Hub, clock: ManualClock,
                                                                          make_actor: Any) -> None:
    me = await make_actor(UNIT)
    await make_actor(OTHER)
    clock.catch_up()
    clock.advance(1 - clock.now().microsecond / 1e6)   # a whole second: X-LGSP-Date has no fraction
    t0 = clock.now()

    async def request(skew: float) -> None:
        status, body = await signed(me, clock, "/v1/inbox", skew)
        assert status == 200, body
        await hub.presence.flush()

    await request(30)                     # the first: written at once
    assert [round(s.offset_seconds) for s in await _samples(hub)] == [30]
    clock.advance(10)
    await request(32)
    clock.advance(10)
    await request(28)                     # within the interval, no jump: kept in memory
    assert len(await _samples(hub)) == 1
    clock.advance(INTERVAL)
    await hub.presence.flush()            # the interval passed: the two are one sample, no request needed
    clock.advance(10)
    await request(-20)                    # the clock was stepped back: written at once
    clock.advance(30)
    await hub.presence.flush()            # nothing observed since: nothing written
    rows = await _samples(hub)
    assert [(r.unit_id, r.requests) for r in rows] == [(UNIT, 1), (UNIT, 2), (UNIT, 1)]
    assert [round(r.offset_seconds) for r in rows] == [30, 28, -20]
    assert (rows[1].min_seconds, rows[1].max_seconds) == (28, 32)
    assert rows[0].at == t0 and rows[1].at == t0 + dt.timedelta(seconds=20)   # the latest request each covers

    # The API shows them; the calls themselves sign with the unit's current clock (no jump, in the interval).
    window = f"from={_z(t0 - dt.timedelta(hours=1))}&to={_z(t0 + dt.timedelta(hours=1))}"
    status, body = await signed(me, clock, f"/v1/presence?{window}", -20)
    assert status == 200, body
    import jsonschema

    jsonschema.validate(body, _schema())
    assert body["clock_offsets_bucket_seconds"] is None
    got = body["clock_offsets"]
    assert [round(o["offset_seconds"]) for o in got] == [30, 28, -20]
    assert [o["requests"] for o in got] == [1, 2, 1]
    assert got[1]["min_seconds"] == 28 and got[1]["max_seconds"] == 32
    assert got[0]["at"].startswith(_z(t0)[:19])
    # Only the unit's own: another unit's history is refused, and its own is empty of ours.
    status, body = await signed(me, clock, f"/v1/presence?unit={OTHER}&{window}", -20)
    assert status == 403 and body["code"] == "forbidden"
    other = await make_actor(OTHER, existing=True)
    status, body = await signed(other, clock, f"/v1/presence?{window}", 0)
    assert status == 200 and body["clock_offsets"] == []


async def test_the_last_observations_are_written_when_the_hub_stops(hub_config: Config) -> None:
    """Observations still inside their interval are not lost at a clean stop."""
    cfg = hub_config.replace(presence={"clock_offset_sample_seconds": 3600})
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1))
    async with Hub(cfg, clock=clock) as hub:
        await hub.directory.add_unit(UNIT, "Đơn vị")
        app = await hub.directory.add_application(UNIT, "app")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.client.client import Credentials, LgspClient

        async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as client:
            actor = Actor(UNIT, key, client, hub)
            for skew in (10, 11, 12):
                status, _ = await signed(actor, clock, "/v1/inbox", skew)
                assert status == 200
                await hub.presence.flush()
                clock.advance(5)
    db = Database(cfg.database_url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(select(clock_offsets.c.requests, clock_offsets.c.offset_seconds)
                                       .order_by(clock_offsets.c.at))).all()
    finally:
        await db.close()
    assert [(r.requests, round(r.offset_seconds)) for r in rows] == [(1, 10), (2, 12)]


async def test_housekeeping_prunes_samples_past_retention(hub: Hub, clock: ManualClock, make_actor: Any) -> None:
    await make_actor(UNIT)
    clock.catch_up()
    now = clock.now()
    ages = {"400 days": dt.timedelta(days=400), "31 days": dt.timedelta(days=31),
            "30 days less 2 minutes": dt.timedelta(days=30, minutes=-2), "1 day": dt.timedelta(days=1)}
    async with hub.db.write() as conn:
        await conn.execute(clock_offsets.insert(), [
            {"unit_id": UNIT, "at": now - age, "offset_seconds": 1.0, "min_seconds": 1.0, "max_seconds": 1.0,
             "requests": 1} for age in ages.values()])

    async def left() -> list[dt.timedelta]:
        return sorted(now - r.at for r in await _samples(hub))

    assert await hub.housekeeping_round()    # the leader (one node on SQLite); retention is 30 days here
    assert await left() == [ages["1 day"], ages["30 days less 2 minutes"]]
    # It runs at most every ten minutes: a sample that expires meanwhile waits for the next run.
    clock.advance(300)
    await hub.housekeeping_round()
    assert await left() == [ages["1 day"], ages["30 days less 2 minutes"]]
    clock.advance(300)
    await hub.housekeeping_round()
    assert await left() == [ages["1 day"]]


async def _many(db: Database, start: dt.datetime, n: int, step: float) -> None:
    rows = []
    for i in range(n):
        offset = float(i % 7) - 3.0
        rows.append({"unit_id": UNIT, "at": start + dt.timedelta(seconds=i * step), "offset_seconds": offset,
                     "min_seconds": offset - 0.5, "max_seconds": offset + 0.5, "requests": 2})
    async with db.write() as conn:
        await conn.execute(clock_offsets.insert(), rows)


async def _check_slices(db: Database) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    await _many(db, start, 3 * MAX_POINTS, 300.0)   # ~10 days of 5-minute samples
    until = start + dt.timedelta(days=12)
    points, width = await history(db, UNIT, start, until)
    assert width == 1037 and 0 < len(points) <= MAX_POINTS     # 12 days in at most 1000 slices
    assert sum(p["requests"] for p in points) == 2 * 3 * MAX_POINTS
    assert min(p["min_seconds"] for p in points) == -3.5 and max(p["max_seconds"] for p in points) == 3.5
    assert points[0]["at"] == start and all(a["at"] < b["at"] for a, b in itertools.pairwise(points))
    for p in points:
        assert p["min_seconds"] <= p["offset_seconds"] <= p["max_seconds"]
    # A short period is the samples themselves.
    points, width = await history(db, UNIT, start, start + dt.timedelta(hours=1))
    assert width is None and [p["offset_seconds"] for p in points] == [-3.0 + i for i in range(7)] + [-3.0, -2.0,
                                                                                                      -1.0, 0.0, 1.0]


async def test_a_long_period_is_summarised_per_slice(hub: Hub, make_actor: Any, clock: ManualClock) -> None:
    me = await make_actor(UNIT)
    await _check_slices(hub.db)
    status, body = await signed(me, clock, "/v1/presence?from=2026-01-01&to=2026-01-13", 0)
    assert status == 200, body
    assert body["clock_offsets_bucket_seconds"] == 1037 and len(body["clock_offsets"]) <= MAX_POINTS
    import jsonschema

    jsonschema.validate(body, _schema())


async def test_a_long_period_is_summarised_per_slice_on_postgresql(pg_url: str) -> None:
    db = Database(pg_url, pool_size=2)
    try:
        await db.upgrade()
        now = dt.datetime.now(dt.UTC)
        async with db.write() as conn:
            await conn.execute(units.insert().values(id=UNIT, name=UNIT, name_folded=UNIT, zone="local",
                                                     legacy=False, status="active", created_at=now, online=False,
                                                     stream_cursor=0))
        # The presence flush writes its samples on PostgreSQL too (in its one transaction).
        from lgsp.core.clockoffsets import OffsetSampler
        from lgsp.core.presence import Presence

        presence = Presence(db, 300, offsets=OffsetSampler(60, 5))
        presence.request_seen(UNIT, now, 12.5)
        await presence.flush()
        async with db.read() as conn:
            assert (await conn.execute(select(clock_offsets.c.offset_seconds, clock_offsets.c.at))).all() == [
                (12.5, now)]
        await _check_slices(db)
    finally:
        await db.close()


async def test_bad_periods_are_problems_not_errors(hub: Hub, make_actor: Any, clock: ManualClock) -> None:
    me = await make_actor(UNIT)
    for query, field in (("from=2026-02-30", "from"), ("to=20260101", "to"), ("from=2026-01-01T00:00:00", "from"),
                         ("from=2026-01-02&to=2026-01-01", "from"), ("from=2026-01-01&to=2026-01-01", "from"),
                         ("from=2020-01-01&to=2026-01-01", "from"), ("from=%00", "from"),
                         ("from=9999-12-31T23:59:59%2B14:00", "from"), ("from=0001-01-01T00:00:00%2B14:00", "from"),
                         ("to=0001-01-01", "to"), ("to=0001-01-02", "to"), ("to=9999-12-31T23:59:59-12:00", "to")):
        status, body = await signed(me, clock, f"/v1/presence?{query}", 0)
        assert status in (400, 422) and body["code"] in ("request.invalid", "request.malformed"), (query, body)
        assert body.get("field", field) == field, (query, body)


def test_the_cli_prints_the_connection_history(tmp_path: Path) -> None:
    """`lgsp connections`: a unit's periods and offsets, a table in Vietnamese or JSON; bad input in one line."""
    import asyncio
    import json

    from tests.cli_support import run_cli
    from tests.test_cli import Env

    cli = Env(tmp_path)

    def run(*args: str) -> Any:
        return run_cli(*args, "-c", str(cli.config), env=cli.env, cwd=cli.tmp, lang="vi")

    assert run("unit", "add", UNIT, "Sở A").returncode == 0
    start = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)   # 08:00 in Vietnam

    async def history_of_the_unit() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'lgsp.db'}")
        try:
            async with db.write() as conn:
                await conn.execute(update(units).where(units.c.id == UNIT)
                                   .values(created_at=start - dt.timedelta(days=9)))
                await conn.execute(presence_log.insert(), [
                    {"unit_id": UNIT, "at": start, "online": True, "cause": "request"},
                    {"unit_id": UNIT, "at": start + dt.timedelta(hours=2), "online": False, "cause": "timeout"}])
                await conn.execute(clock_offsets.insert(), [
                    {"unit_id": UNIT, "at": start + dt.timedelta(minutes=5 * i), "offset_seconds": 2.0 + i,
                     "min_seconds": 1.5 + i, "max_seconds": 2.5 + i, "requests": 3} for i in range(3)])
        finally:
            await db.close()

    asyncio.run(history_of_the_unit())
    res = run("connections", "--unit", UNIT, "--from", "2026-11-02", "--to", "2026-11-02")
    assert res.returncode == 0, res.stderr
    assert "08:00:00" in res.stdout and "trực tuyến" in res.stdout and "ngoại tuyến" in res.stdout
    assert "+2.0" in res.stdout and "+4.0" in res.stdout and "+4.5" in res.stdout   # offsets, min and max
    res = run("connections", "--unit", UNIT, "--from", "2026-11-01", "--to", "2026-11-03", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [o["offset_seconds"] for o in data["clock_offsets"]] == [2.0, 3.0, 4.0]
    assert data["clock_offsets_bucket_seconds"] is None and data["periods"][0]["online"] is True
    for args in (("--unit", "000.00.99.H23"), ("--unit", UNIT, "--from", "2026-13-01"),
                 ("--unit", UNIT, "--to", "0001-01-01"),
                 ("--unit", UNIT, "--from", "2026-11-03", "--to", "2026-11-01")):
        res = run("connections", *args)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr


async def test_the_console_draws_the_offsets_for_the_units_own_admin_only(hub: Hub, clock: ManualClock,
                                                                          make_actor: Any, accounts: Any,
                                                                          page: Any, tmp_path: Path) -> None:
    """A real browser: the unit admin's connection page shows the timeline (inline SVG, coloured by the
    stylesheet under the console's CSP) and the same offsets as a table; another unit's page is 404."""
    from .conftest import PASSWORD, shot, sign_in

    me = await make_actor(UNIT)
    other = await make_actor(OTHER)
    clock.catch_up()
    clock.advance(1 - clock.now().microsecond / 1e6)
    for actor, skew, step in ((me, 40, 70), (me, 42, 10), (me, -15, 5), (other, 100, 0)):
        status, _ = await signed(actor, clock, "/v1/inbox", skew)
        assert status == 200
        await hub.presence.flush()
        clock.advance(step)
    clock.advance(INTERVAL)
    await hub.presence.flush()
    await accounts.add("qt.so.a", PASSWORD, "unit_admin", unit_id=UNIT)
    await sign_in(page, hub, "qt.so.a")

    await page.goto(hub.url + f"/console/connections?unit={UNIT}")
    svg = page.locator("figure#timeline svg[role=img]")
    assert await svg.count() == 1
    desc = await page.text_content("#timeline-desc") or ""
    assert "Độ lệch đồng hồ từ -15.0 đến +42.0 giây" in desc and "cuối kỳ là -15.0" in desc, desc
    assert await page.locator("#timeline circle.tl-dot").count() == 3
    assert len((await page.get_attribute("#timeline polyline.tl-line", "points") or "").split()) == 3
    # Colours come from console.css (no inline style is allowed): the online strip is the "ok" green.
    fill = await page.eval_on_selector("#timeline rect.tl-on", "r => getComputedStyle(r).fill")
    assert fill == "rgb(29, 107, 29)", fill
    table = await page.inner_text("#offsets table")
    assert "+40.0" in table and "+42.0" in table and "-15.0" in table and "+100.0" not in table
    assert await page.locator("#offsets tbody tr").count() == 3
    assert "Bảng độ lệch đồng hồ (3 mẫu)" in await page.inner_text("#offsets summary")
    await shot(page, "ket-noi", tmp_path)

    response = await page.goto(hub.url + f"/console/connections?unit={OTHER}")
    assert response is not None and response.status == 404
    assert "+100.0" not in await page.content()
    # A period with nothing recorded says so, in the picture and in the table.
    await page.goto(hub.url + f"/console/connections?unit={UNIT}&from=2020-01-01&to=2020-01-31")
    nothing = "Không có độ lệch đồng hồ nào được ghi trong khoảng này."
    assert nothing in (await page.text_content("#timeline-desc") or "")
    assert await page.locator("#timeline polyline").count() == 0
    # Days at the calendar's ends (no UTC instant for them) and non-days are never a 500: the page says
    # which field is wrong and draws nothing (tests/console/test_console_filters.py has the wording).
    for query in ("from=0001-01-01&to=9999-12-31", "from=9999-12-31", "to=0001-01-01", "from=2026-02-30&to=x"):
        response = await page.goto(hub.url + f"/console/connections?unit={UNIT}&{query}")
        assert response is not None and response.status == 422, query
        assert await page.locator("#filter-error").count() == 1
        assert await page.locator("figure#timeline svg").count() == 0
    for path in ("/console/traffic?from=0001-01-01&to=9999-12-31", "/console/reports?period=year&day=0001-01-01"):
        response = await page.goto(hub.url + path + f"&unit={UNIT}")
        assert response is not None and response.status == 422, path
        assert "1970-01-01" in await page.inner_text("#filter-error")


def test_the_timeline_scales_any_offsets_into_its_frame() -> None:
    """The drawing's numbers stay inside the SVG for flat, negative-only and wide offsets, and periods."""
    from lgsp.adapters.console import timeline

    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    until = since + dt.timedelta(days=401)
    cases = [[3.0, 3.0, 3.0], [-250.0, -249.5], [-0.2, 290.0, 0.1], [0.0]]
    for values in cases:
        offsets = [{"at": since + dt.timedelta(days=i * 50), "offset_seconds": v, "min_seconds": v - 1,
                    "max_seconds": v + 1, "requests": 1} for i, v in enumerate(values)]
        chart = timeline.build([{"from": since - dt.timedelta(days=3), "to": since + dt.timedelta(days=1),
                                 "online": True, "cause": "request"}], offsets, since, until)
        ys = [float(p.split(",")[1]) for p in chart.line.split()]
        assert all(timeline.PLOT_TOP <= y <= timeline.PLOT_BOTTOM for y in ys), (values, ys)
        assert all(timeline.PLOT_TOP - 0.1 <= t["y"] <= timeline.PLOT_BOTTOM + 0.1 for t in chart.y_ticks)
        assert chart.zero is not None and len(chart.y_ticks) >= 2 and len(chart.dots) == len(values)
        assert chart.periods[0]["x"] == timeline.LEFT and chart.x_ticks[-1]["label"] == "02/2027"   # months
    empty = timeline.build([], [], since, since)
    assert empty.line == "" and empty.online_share is None and empty.latest is None


def test_the_sampler_writes_what_is_due_and_keeps_what_failed() -> None:
    """The in-memory part alone: first sample at once, the interval from the last sample, a jump at
    once (and the interval then counts from it), a failed write merged back and written next time."""
    from lgsp.core.clockoffsets import OffsetSampler

    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

    def at(seconds: float) -> dt.datetime:
        return t0 + dt.timedelta(seconds=seconds)

    s = OffsetSampler(interval_seconds=60, jump_seconds=5)
    s.observe("A", at(0), 1.0)
    s.observe("B", at(0), -1.0)
    assert [(x.unit, x.count) for x in s.due(at(0))] == [("A", 1), ("B", 1)]
    s.observe("A", at(10), 2.0)
    s.observe("B", at(20), -2.0)
    assert s.due(at(59)) == []
    s.observe("A", at(50), 30.0)                   # a jump: at once, with what came before it
    assert [(x.unit, x.count, x.low, x.high, x.last) for x in s.due(at(50))] == [("A", 2, 2.0, 30.0, 30.0)]
    assert [x.unit for x in s.due(at(60))] == ["B"]  # B's interval (from its sample at 0) has passed
    s.observe("A", at(65), 31.0)
    assert s.due(at(109)) == []                    # A's interval counts from its jump sample at 50
    assert [x.unit for x in s.due(at(110))] == ["A"]
    s.observe("A", at(120), 31.0)
    failed = s.due(at(125))
    assert [(x.unit, x.last) for x in failed] == [("A", 31.0)]
    s.observe("A", at(126), 32.0)
    s.restore(failed)                              # the write failed: merged, due at the next flush
    assert [(x.unit, x.count, x.low, x.high, x.last) for x in s.due(at(127))] == [("A", 2, 31.0, 32.0, 32.0)]
    s.observe("B", at(130), -2.0)
    s.drain()
    assert [x.unit for x in s.due(at(131))] == ["B"]


async def _online_40_days_ahead(hub: Hub, clock: ManualClock, me: Actor) -> dt.datetime:
    """Move the hub's clock 40 days past the machine's (always another month), have the unit seen
    online then, and two minutes pass; when it was seen."""
    clock.catch_up()
    clock.advance(40 * 86400 + 1 - clock.now().microsecond / 1e6)   # a whole second: X-LGSP-Date has none
    status, body = await signed(me, clock, "/v1/inbox", 0)
    assert status == 200, body
    await hub.presence.flush()
    seen = clock.now()
    clock.advance(120)
    return seen


async def test_the_default_periods_follow_the_hub_s_clock(hub: Hub, clock: ManualClock, make_actor: Any) -> None:
    """With no `from`/`to`, `GET /v1/presence` reads the week up to the hub's "now" (core/clock.py), not
    the machine's, and its last period runs to that moment; `GET /v1/stats` with no `day` reports the
    hub's month."""
    me = await make_actor(UNIT)
    seen = await _online_40_days_ahead(hub, clock, me)
    status, body = await signed(me, clock, "/v1/presence", 0)
    assert status == 200, body
    now = clock.now()

    def at(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert (at(body["to"]), at(body["from"])) == (now, now - dt.timedelta(days=7))
    assert [(at(p["from"]), at(p["to"]), p["online"]) for p in body["periods"]] == [(seen, now, True)]
    status, body = await signed(me, clock, "/v1/stats", 0)
    assert status == 200, body
    hub_day = now.astimezone(dt.timezone(dt.timedelta(hours=7))).date()
    assert at(body["from"]).astimezone(dt.timezone(dt.timedelta(hours=7))).date() == hub_day.replace(day=1)
    assert body["online_ratio"] is not None and body["online_ratio"] > 0


async def test_the_console_s_default_periods_follow_the_hub_s_clock(hub: Hub, clock: ManualClock, make_actor: Any,
                                                                    page: Any) -> None:
    """The connection and report pages default to the hub's today and end a current period at the
    hub's "now", as `GET /v1/presence` does."""
    from lgsp.core.accounts import Accounts

    from .conftest import PASSWORD, sign_in

    me = await make_actor(UNIT)
    await Accounts(hub.db, hub.master_key).add("vanhanh", PASSWORD, "operator")
    await _online_40_days_ahead(hub, clock, me)
    today = clock.now().astimezone(dt.timezone(dt.timedelta(hours=7))).date().isoformat()
    await sign_in(page, hub, "vanhanh")
    await page.goto(f"{hub.url}/console/connections?unit={UNIT}")
    assert await page.input_value("#f-to") == today
    assert await page.locator("#timeline rect.tl-on").count() == 1    # online from then to the hub's now
    await page.goto(f"{hub.url}/console/reports?unit={UNIT}")
    assert await page.input_value("#f-day") == today
