"""`GET /v1/presence`: a unit's own connection history over the signed API, as the OpenAPI document says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml
from sqlalchemy import update

from lgsp.core.hub import Hub
from lgsp.core.store.tables import presence_log, units
from lgsp.schemas import __file__ as schemas_init

UNIT = "000.00.00.H23"
OTHER = "000.00.01.H23"
T0 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)


def _at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def _z(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def _history(hub: Hub) -> None:
    """Online from hour 1, offline (timeout) from hour 5, online again from 8, a repeated online at 9."""
    async with hub.db.write() as conn:
        await conn.execute(update(units).where(units.c.id == UNIT).values(created_at=_at(-100),
                                                                           clock_offset_seconds=-2.5))
        await conn.execute(presence_log.insert(), [
            {"unit_id": UNIT, "at": _at(1), "online": True, "cause": "request"},
            {"unit_id": UNIT, "at": _at(5), "online": False, "cause": "timeout"},
            {"unit_id": UNIT, "at": _at(8), "online": True, "cause": "stream_open"},
            {"unit_id": UNIT, "at": _at(9), "online": True, "cause": "request"},
            {"unit_id": OTHER, "at": _at(2), "online": True, "cause": "request"},
        ])


def _schema() -> dict[str, Any]:
    from pathlib import Path

    doc = yaml.safe_load((Path(schemas_init).parent / "openapi.yaml").read_text(encoding="utf-8"))
    return dict(doc["paths"]["/v1/presence"]["get"]["responses"]["200"]["content"]["application/json"]["schema"])


async def test_a_unit_reads_its_periods_and_clock_offset(hub: Hub, make_actor: Any) -> None:
    me = await make_actor(UNIT)
    await make_actor(OTHER)
    await _history(hub)
    status, _, body = await me.raw("GET", f"/v1/presence?from={_z(_at(3))}&to={_z(_at(10))}")
    assert status == 200, body
    assert body["unit"] == UNIT and body["from"] == _z(_at(3)) and body["to"] == _z(_at(10))
    # The state at `from` comes from the last change before it; the repeated online at 9 continues.
    assert body["periods"] == [
        {"from": _z(_at(3)), "to": _z(_at(5)), "online": True, "cause": "request"},
        {"from": _z(_at(5)), "to": _z(_at(8)), "online": False, "cause": "timeout"},
        {"from": _z(_at(8)), "to": _z(_at(10)), "online": True, "cause": "stream_open"},
    ]
    assert [c["at"] for c in body["changes"]] == [_z(_at(5)), _z(_at(8)), _z(_at(9))]
    assert body["clock_offset_seconds"] == -2.5
    assert body["online"] is True and body["last_seen_at"] is not None   # the signed call itself was seen

    import jsonschema

    jsonschema.validate(body, _schema())
    for name in _schema()["required"]:
        assert name in body

    # Before the first change ever recorded nothing is known: no period is invented.
    status, _, body = await me.raw("GET", f"/v1/presence?from={_z(_at(-10))}&to={_z(_at(3))}")
    assert status == 200 and body["periods"] == [
        {"from": _z(_at(1)), "to": _z(_at(3)), "online": True, "cause": "request"}]
    # Dates are Vietnam midnights; naming itself explicitly is the same as the default.
    status, _, body = await me.raw("GET", f"/v1/presence?unit={UNIT}&from=2026-11-02&to=2026-11-03")
    assert status == 200 and body["from"] == "2026-11-01T17:00:00.000Z" and body["to"] == "2026-11-02T17:00:00.000Z"


async def test_a_unit_cannot_read_another_and_bad_input_is_a_problem(hub: Hub, make_actor: Any) -> None:
    me = await make_actor(UNIT)
    await make_actor(OTHER)
    await _history(hub)
    status, headers, body = await me.raw("GET", f"/v1/presence?unit={OTHER}")
    assert status == 403 and body["code"] == "forbidden" and "problem+json" in headers["Content-Type"]
    for query, field in (("from=yesterday", "from"), ("to=2026-13-01", "to"), ("from=2026-11-02T00:00:00", "from"),
                         ("from=2026-11-03&to=2026-11-02", "from"), ("from=2024-01-01&to=2026-01-01", "from")):
        status, headers, body = await me.raw("GET", f"/v1/presence?{query}")
        assert status == 422 and body["code"] == "request.invalid" and body.get("field") == field, (query, body)
    status, _, body = await me.raw("GET", "/v1/presence", sign=False)
    assert status == 401
