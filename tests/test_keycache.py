"""The per-process access-key cache (core/keycache.py): a signed request does not read its key from
the store, and whatever changes what authenticates a key holds on the very next request — in this
process, from another process (the CLI on the same SQLite file), and on another node sharing
PostgreSQL. Real HTTP, real stores; statements counted with SQLAlchemy's cursor events."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text, update

from lgsp.core.config import load_config
from lgsp.core.directory import NATIONAL_ZONE, ZoneEntry
from lgsp.core.hub import Hub
from lgsp.core.store.tables import access_keys, key_generation

from .conftest import Actor, MakeActor, base_env, raw_request
from .test_auth import assert_problem

UNIT = "000.00.00.H23"


@contextmanager
def statements(hub: Hub) -> Iterator[list[str]]:
    """Every SQL statement the hub's store runs inside the block, on any of its connections."""
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engines = {id(e): e.sync_engine for e in (hub.db.writer, hub.db.reader)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", listener)


def key_reads(seen: list[str]) -> int:
    return sum(1 for s in seen if "FROM access_keys" in s)


async def inbox(actor: Actor, hub: Hub | None = None) -> tuple[int, dict[str, str], Any]:
    return await raw_request((hub or actor.hub).url, "GET", "/v1/inbox", signer=actor.signer)


async def test_a_cached_key_is_not_read_again(hub: Hub, make_actor: MakeActor) -> None:
    a = await make_actor(UNIT)
    assert (await inbox(a))[0] == 200  # read once, kept
    with statements(hub) as seen:
        for _ in range(5):
            assert (await inbox(a))[0] == 200
    assert key_reads(seen) == 0, seen
    assert any("INSERT INTO nonces" in s and "key_generation" in s for s in seen)  # the check rides on it
    assert hub.auth.keys.hits >= 5


async def test_without_the_cache_every_request_reads_its_key(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", LGSP_SECURITY_KEY_CACHE_SECONDS="0")
    async with Hub(load_config(None, env=env)) as hub:
        await hub.directory.add_unit(UNIT, "Đơn vị")
        app = await hub.directory.add_application(UNIT, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.core.signing import Signer
        from lgsp.plugins.signatures import HMAC_SHA256
        signer = Signer(key.access_key, HMAC_SHA256, key.secret)
        with statements(hub) as seen:
            for _ in range(3):
                assert (await raw_request(hub.url, "GET", "/v1/inbox", signer=signer))[0] == 200
        assert key_reads(seen) == 3
        assert len(hub.auth.keys) == 0


async def _revoke(hub: Hub, a: Actor) -> None:
    await hub.directory.revoke_key(a.key.access_key)


async def _suspend(hub: Hub, a: Actor) -> None:
    await hub.directory.set_unit_status(a.unit, "suspended")


async def _pin(hub: Hub, a: Actor) -> None:
    await hub.directory.pin_certificates(a.unit, ["ab" * 32])  # this client sends none


async def _retire(hub: Hub, a: Actor) -> None:
    # What cancelling an application's registration runs (core/registration/workflow.py), or an
    # operator's SQL: any writer of the table, through no method of ours.
    async with hub.db.write() as conn:
        await conn.execute(update(access_keys).where(access_keys.c.application_id == a.key.application_id)
                           .values(revoked_at=datetime.now(UTC)))


CHANGES: dict[str, tuple[Callable[[Hub, Actor], Awaitable[None]], str]] = {
    "key revoked": (_revoke, "auth.revoked_key"),
    "unit suspended": (_suspend, "auth.revoked_key"),
    "certificate pinned": (_pin, "auth.bad_certificate"),
    "keys revoked by SQL": (_retire, "auth.revoked_key"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_change_holds_on_the_very_next_request(hub: Hub, make_actor: MakeActor, change: str) -> None:
    a = await make_actor(UNIT)
    assert (await inbox(a))[0] == 200
    assert a.key.access_key in {k for k in hub.auth.keys._entries}  # served from memory from now on
    make_change, code = CHANGES[change]
    await make_change(hub, a)
    assert_problem(*await inbox(a), 401, code)
    assert_problem(*await inbox(a), 401, code)  # and stays refused


async def test_a_directory_sync_suspending_a_unit_holds_on_the_next_request(hub: Hub, make_actor: MakeActor) -> None:
    await hub.directory.add_unit("000.00.99.G01", "Bộ A", zone=NATIONAL_ZONE)
    a = await make_actor("000.00.99.G01", existing=True)
    assert (await inbox(a))[0] == 200
    report = await hub.directory.sync_zone(NATIONAL_ZONE, [ZoneEntry("000.00.99.G01", "Bộ A", deleted=True)])
    assert report.suspended == 1
    assert_problem(*await inbox(a), 401, "auth.revoked_key")


async def test_a_reactivated_unit_is_served_at_once(hub: Hub, make_actor: MakeActor) -> None:
    """Refusals are never cached: the store decides them, and it may say yes again."""
    a = await make_actor(UNIT)
    assert (await inbox(a))[0] == 200
    await hub.directory.set_unit_status(UNIT, "suspended")
    assert_problem(*await inbox(a), 401, "auth.revoked_key")
    await hub.directory.set_unit_status(UNIT, "active")
    assert (await inbox(a))[0] == 200


async def test_a_change_to_another_key_costs_one_read_and_serves(hub: Hub, make_actor: MakeActor) -> None:
    a = await make_actor(UNIT)
    b = await make_actor("000.00.01.H23")
    assert (await inbox(a))[0] == 200
    await hub.directory.revoke_key(b.key.access_key)  # the generation is global: a's entry is now old
    stale = hub.auth.keys.stale
    with statements(hub) as seen:
        assert (await inbox(a))[0] == 200
        assert (await inbox(a))[0] == 200
    assert key_reads(seen) == 1 and hub.auth.keys.stale == stale + 1


async def test_presence_and_names_do_not_move_the_generation(hub: Hub, make_actor: MakeActor) -> None:
    """Only what authenticates a key moves it: presence writes `units` on every flush."""
    a = await make_actor(UNIT)
    assert (await inbox(a))[0] == 200

    async def generation() -> int:
        async with hub.db.read() as conn:
            return int(await conn.scalar(select(key_generation.c.generation)) or 0)

    before = await generation()
    await hub.presence.flush()
    await hub.directory.set_unit_status(UNIT, "active")  # unchanged
    await hub.directory.pin_certificates(UNIT, [])  # none before, none after
    assert await generation() == before
    await hub.directory.revoke_key(a.key.access_key)
    assert await generation() == before + 1


async def test_a_replayed_request_of_a_revoked_key_says_revoked(hub: Hub, make_actor: MakeActor) -> None:
    """A refusal is the store's answer, as without a cache (not `auth.replay` from the cached key)."""
    a = await make_actor(UNIT)
    headers = a.signer.headers("GET", "/v1/inbox")
    assert (await raw_request(hub.url, "GET", "/v1/inbox", headers=headers))[0] == 200
    await hub.directory.revoke_key(a.key.access_key)
    assert_problem(*await raw_request(hub.url, "GET", "/v1/inbox", headers=headers), 401, "auth.revoked_key")


async def test_the_generation_is_what_refuses_a_cached_key(hub: Hub, make_actor: MakeActor) -> None:
    """Without the triggers the cache would serve a revoked key until its time limit: this shows the
    cache is what answers, the generation what keeps it true, and the time limit the safety net."""
    a = await make_actor(UNIT)
    assert (await inbox(a))[0] == 200
    async with hub.db.write() as conn:  # as a store whose triggers were lost would behave
        for name in ("lgsp_key_generation_access_keys_update", "lgsp_key_generation_access_keys_delete",
                     "lgsp_key_generation_units_update", "lgsp_key_generation_units_delete"):
            await conn.execute(text(f"DROP TRIGGER {name}"))
    await hub.directory.revoke_key(a.key.access_key)
    assert (await inbox(a))[0] == 200  # served from memory: nothing told this process
    entry = hub.auth.keys._entries[a.key.access_key]
    hub.auth.keys.clock = lambda: entry.expires  # the time limit passes
    assert_problem(*await inbox(a), 401, "auth.revoked_key")


async def test_the_triggers_exist_at_the_head_revision(hub: Hub) -> None:
    """A migration that rebuilds `units` or `access_keys` on SQLite (batch mode) drops their
    triggers; it must create them again."""
    async with hub.db.read() as conn:
        names = set((await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))).scalars())
    assert {"lgsp_key_generation_access_keys_update", "lgsp_key_generation_access_keys_delete",
            "lgsp_key_generation_units_update", "lgsp_key_generation_units_delete"} <= names


def test_cache_bounds() -> None:
    from lgsp.core.directory import KeyMaterial
    from lgsp.core.keycache import KeyCache

    now = [0.0]
    cache = KeyCache(ttl_seconds=30, max_entries=3, clock=lambda: now[0])

    def key(name: str, generation: int | None = 1) -> KeyMaterial:
        return KeyMaterial(name, UNIT, "app", "HMAC-SHA256", False, True, "secret", generation=generation)

    for name in "abcd":
        cache.put(key(name))
    assert len(cache) == 3 and cache.get("a") is None  # the least recently used went first
    assert cache.get("b") is not None
    cache.put(key("e"))
    assert cache.get("c") is None and cache.get("b") is not None
    cache.put(key("f", generation=None))  # read without a generation: never kept
    assert cache.get("f") is None
    now[0] = 30.0
    assert cache.get("b") is None  # its time is up
    off = KeyCache(ttl_seconds=0)
    off.put(key("a"))
    assert len(off) == 0


# -- another process: the CLI on the same SQLite file ----------------------------------------------

async def test_a_revocation_by_the_cli_in_another_process_holds_on_the_next_request(
        tmp_path: Path) -> None:
    env = base_env(tmp_path / "var")
    async with Hub(load_config(None, env=env)) as hub:
        await hub.directory.add_unit(UNIT, "Đơn vị")
        app = await hub.directory.add_application(UNIT, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.core.signing import Signer
        from lgsp.plugins.signatures import HMAC_SHA256
        signer = Signer(key.access_key, HMAC_SHA256, key.secret)
        assert (await raw_request(hub.url, "GET", "/v1/inbox", signer=signer))[0] == 200
        assert (await raw_request(hub.url, "GET", "/v1/inbox", signer=signer))[0] == 200
        assert key.access_key in hub.auth.keys._entries
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "lgsp.cli.main", "key", "revoke", key.access_key],
            env=clean | env | {"LGSP_LANG": "en"}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "revoked" in done.stdout
        assert_problem(*await raw_request(hub.url, "GET", "/v1/inbox", signer=signer), 401, "auth.revoked_key")


# -- two nodes on one PostgreSQL --------------------------------------------------------------------

@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, Hub]]:
    env = base_env(tmp_path / "shared", LGSP_DATABASE_URL=pg_url, LGSP_DATABASE_POOL_SIZE="4")
    first, second = Hub(load_config(None, env=env)), Hub(load_config(None, env=env))
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await asyncio.gather(first.stop(), second.stop(), return_exceptions=True)


async def _pg_actor(hub: Hub, unit: str) -> Actor:
    from lgsp.client import Credentials, LgspClient

    await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    app = await hub.directory.add_application(unit, "vbql")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    return Actor(unit, key, LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)), hub)


@pytest.mark.postgres
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_change_on_one_node_holds_on_the_other_at_once(nodes: tuple[Hub, Hub], change: str) -> None:
    one, two = nodes
    a = await _pg_actor(one, UNIT)
    try:
        assert (await inbox(a, two))[0] == 200
        with statements(two) as seen:
            assert (await inbox(a, two))[0] == 200
        assert key_reads(seen) == 0  # node two serves the key from memory
        make_change, code = CHANGES[change]
        await make_change(one, a)  # made on node one
        assert_problem(*await inbox(a, two), 401, code)
        assert_problem(*await inbox(a, one), 401, code)
    finally:
        await a.client.close()


@pytest.mark.postgres
async def test_postgresql_has_the_triggers(nodes: tuple[Hub, Hub]) -> None:
    one, _ = nodes
    async with one.db.read() as conn:
        names = set((await conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))).scalars())
    assert {"lgsp_key_generation_access_keys", "lgsp_key_generation_units"} <= names


@pytest.mark.postgres
async def test_concurrent_changes_on_two_nodes_do_not_deadlock(nodes: tuple[Hub, Hub]) -> None:
    """A directory sync (many units in one transaction: names first, then statuses) and suspensions
    of the same units from the other node, at once: every transaction that changes what
    authenticates a key takes the generation's row before any unit's, so none waits in a cycle."""
    one, two = nodes
    codes = [f"000.00.{i:02d}.G01" for i in range(20)]
    await one.directory.sync_zone(NATIONAL_ZONE, [ZoneEntry(c, f"Bộ {c}") for c in codes])
    for round_ in range(4):
        # the first half renamed (a write the triggers ignore), the second half suspended or back
        entries = [ZoneEntry(c, f"Bộ {c} ({round_})") for c in codes[:10]]
        entries += [ZoneEntry(c, f"Bộ {c}", deleted=round_ % 2 == 0) for c in codes[10:]]
        results = await asyncio.gather(
            one.directory.sync_zone(NATIONAL_ZONE, entries),
            *(two.directory.set_unit_status(c, "suspended" if round_ % 2 else "active") for c in codes[:10]),
            return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
