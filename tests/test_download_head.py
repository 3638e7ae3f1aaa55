"""A HEAD on a download answers what the GET would, without its body, and changes nothing.

A client checking the size with HEAD must not make the source see the packet as fetched, nor leave
events or audit entries of a download that never happened. Real HTTP on loopback, real SQLite.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from yarl import URL

from lgsp.core.auth import Principal
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.core.store.tables import audit_log, deliveries, packet_events

from .conftest import Actor, MakeActor
from .test_auth import assert_problem

CONTENT = b"noi dung cong van " * 4000  # several I/O chunks
A, B, C = "000.00.00.H23", "000.00.01.H23", "000.00.02.H23"


async def snapshot(hub: Hub, packet_id: str) -> tuple[Any, ...]:
    """Everything a download may change: the deliveries, the packet's events, the audit log."""
    async with hub.db.read() as conn:
        rows = (await conn.execute(select(deliveries.c.unit_id, deliveries.c.state, deliveries.c.updated_at)
                                   .where(deliveries.c.packet_id == packet_id))).all()
        events = (await conn.execute(select(packet_events.c.id, packet_events.c.type, packet_events.c.unit)
                                     .where(packet_events.c.packet_id == packet_id))).all()
        audit = (await conn.execute(select(func.count(), func.max(audit_log.c.id)))).one()
    return sorted(map(tuple, rows)), sorted(map(tuple, events)), tuple(audit)


def comparable(headers: dict[str, str]) -> dict[str, str]:
    """The answer's headers but those naming the request (when it was sent, its id)."""
    return {k: v for k, v in headers.items() if k.lower() not in ("date", "x-request-id")}


async def sent(make_actor: MakeActor) -> tuple[Actor, Actor, Actor, str]:
    a, b, c = [await make_actor(u) for u in (A, B, C)]
    return a, b, c, await a.client.send(CONTENT, [b.unit], subject="Kiểm tra HEAD")


@pytest.mark.parametrize("form", ["signed", "transfer URL", "range"])
async def test_a_head_answers_as_the_get_and_changes_nothing(make_actor: MakeActor, hub: Hub, form: str) -> None:
    a, b, _, packet_id = await sent(make_actor)
    path = f"/v1/packets/{packet_id}/content"
    if form == "transfer URL":
        path = URL((await b.client.ready(packet_id))["url"], encoded=True).path_qs
    headers = {"Range": "bytes=100-"} if form == "range" else None
    before = await snapshot(hub, packet_id)
    assert before[0] == [(b.unit, "queued", before[0][0][2])]

    status, head_headers, body = await b.raw("HEAD", path, headers=headers)
    assert (status, body) == ((206 if form == "range" else 200), None)
    assert await snapshot(hub, packet_id) == before, "a HEAD moved the delivery or recorded something"
    assert (await b.client.status(packet_id))["deliveries"][0]["state"] == "queued"
    if form == "signed":  # the source may check its own content the same way
        status, source_headers, _ = await a.raw("HEAD", path)
        assert status == 200 and source_headers["Content-Length"] == str(len(CONTENT))
        assert await snapshot(hub, packet_id) == before

    status, get_headers, body = await b.raw("GET", path, headers=headers)
    assert body == (CONTENT[100:] if form == "range" else CONTENT)
    assert comparable(head_headers) == comparable(get_headers)
    assert head_headers["Content-Length"] == str(len(body))
    assert head_headers["X-LGSP-Content-SHA256"] == hashlib.sha256(CONTENT).hexdigest()
    # The GET is the download: it, and only it, marks the delivery fetched.
    after = await snapshot(hub, packet_id)
    assert after[0][0][1] == "fetched"
    assert [e[1] for e in after[1][len(before[1]):]] == ["packet.fetched"]


def principal_of(actor: Actor) -> Principal:
    """The principal the hub makes of the actor's signed requests."""
    return Principal(actor.unit, actor.key.application_id, actor.key.access_key, actor.key.algorithm)


REFUSALS = {  # case: (status, code)
    "a unit that may not see it": (404, "not_found"),
    "no such packet": (404, "not_found"),
    "a token of another packet": (403, "forbidden"),
    "an expired URL": (410, "transfer.expired"),
    "an unservable range": (416, "content.range_not_satisfiable"),
    "an ended delivery": (410, "content.gone"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_head_is_refused_as_the_get_is(make_actor: MakeActor, hub: Hub, case: str) -> None:
    a, b, c, packet_id = await sent(make_actor)
    caller, path, headers = b, f"/v1/packets/{packet_id}/content", None
    expires = token = None
    if case == "a unit that may not see it":
        caller = c
    elif case == "no such packet":
        path = "/v1/packets/00000000-0000-4000-8000-000000000000/content"
    elif case == "a token of another packet":
        other = await a.client.send(b"khac", [b.unit], subject="Gói khác")
        query = URL((await b.client.ready(other))["url"], encoded=True).raw_query_string
        path += "?" + query
        expires, token = URL("?" + query).query["expires"], URL("?" + query).query["token"]
    elif case == "an expired URL":
        query = hub.exchange.tokens.make("download", packet_id, b.unit, datetime.now(UTC) - timedelta(seconds=5))
        path += "?" + query
        expires, token = URL("?" + query).query["expires"], URL("?" + query).query["token"]
    elif case == "an unservable range":
        headers = {"Range": f"bytes={len(CONTENT)}-"}
    elif case == "an ended delivery":
        assert await b.client.fail(packet_id, "Không đúng thẩm quyền") == "failed"
    want_status, want_code = REFUSALS[case]
    before = await snapshot(hub, packet_id)

    status, head_headers, body = await caller.raw("HEAD", path, headers=headers)
    assert (status, body) == (want_status, None)
    assert await snapshot(hub, packet_id) == before, "a refused HEAD moved the delivery or recorded something"
    if case != "an unservable range":  # the range is checked by the adapter, after the use case
        # The answer carries no body: the use case HEAD calls names the code.
        packet = path.split("/")[3]
        with pytest.raises(Problem) as refused:
            await hub.exchange.peek_download(principal_of(caller), packet, expires=expires, token=token)
        assert refused.value.code == want_code

    status, get_headers, body = await caller.raw("GET", path, headers=headers)
    assert_problem(status, get_headers, body, want_status, want_code)
    assert comparable(head_headers) == comparable(get_headers)  # problem+json, its length, ...
    # A refused GET is no download either: an unservable range used to mark the delivery fetched first.
    assert await snapshot(hub, packet_id) == before, "a refused GET moved the delivery or recorded something"


async def test_a_ranged_get_reads_the_packet_once(make_actor: MakeActor, hub: Hub) -> None:
    """The range is checked on the packet the download loads (before the delivery is marked
    fetched), not on a load of its own."""
    _, b, _, packet_id = await sent(make_actor)
    loads: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM packets" in statement:
            loads.append(statement)

    engines = {id(e.sync_engine): e.sync_engine for e in (hub.db.reader, hub.db.writer)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_execute)
    try:
        status, _, body = await b.raw("GET", f"/v1/packets/{packet_id}/content", headers={"Range": "bytes=10-19"})
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_execute)
    assert (status, body) == (206, CONTENT[10:20])
    assert len(loads) == 1, loads
    assert (await snapshot(hub, packet_id))[0][0][1] == "fetched"
