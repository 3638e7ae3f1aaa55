"""Store: migrations equal the table definitions, blobs appear only whole, secrets are sealed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from lgsp.core.config import load_config
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.core.identifiers import InvalidIdentifier, check_identifier, fold, identifier_form
from lgsp.core.masterkey import MasterKey, MasterKeyError
from lgsp.core.store.blobs import BlobStore
from lgsp.core.store.database import Database, store_unavailable
from lgsp.core.store.tables import access_keys, metadata

from .conftest import base_env


async def _schema_diff(db: Database) -> list[object]:
    async with db.reader.connect() as conn:
        return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(
            c, opts={"compare_type": True}), metadata))


async def test_sqlite_migrations_build_exactly_the_tables(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await db.upgrade()
        assert await db.current_revision() == Database.head_revision()
        assert await _schema_diff(db) == []
        await db.upgrade()  # idempotent
    finally:
        await db.close()


async def test_purges_left_half_done_by_earlier_code_are_finished(tmp_path: Path) -> None:
    """A packet left `purging` by the two-step purge of earlier versions ends `purged` (0005)."""
    from datetime import UTC, datetime

    from lgsp.core.store.tables import packets, units

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await db.upgrade("0004")
        done = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
        async with db.write() as conn:
            await conn.execute(units.insert().values(id="000.00.00.H23", name="UBND", name_folded=fold("UBND"),
                                                     status="active", created_at=done))
            for pid, state in (("p-purging", "purging"), ("p-stored", "stored")):
                await conn.execute(packets.insert().values(
                    id=pid, source_unit="000.00.00.H23", subject="s", priority=0, data_type="binary", size=1,
                    sha256="0" * 64, state="completed" if state == "purging" else "accepted",
                    content_state=state, created_at=done, upload_expires_at=done,
                    completed_at=done if state == "purging" else None))
        await db.upgrade()
        async with db.read() as conn:
            rows = {r.id: (r.content_state, r.purged_at) for r in (await conn.execute(select(packets))).all()}
        assert rows == {"p-purging": ("purged", done), "p-stored": ("stored", None)}
    finally:
        await db.close()


@pytest.mark.postgres
async def test_postgres_migrations_build_exactly_the_tables(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        await db.upgrade()
        assert await _schema_diff(db) == []
        assert await db.current_revision() == Database.head_revision()
    finally:
        await db.close()


async def test_blob_written_whole_or_not_at_all(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", chunk_size=4096)
    store.open()
    data = os.urandom(50_000)
    async with store.writer("abc") as w:
        for i in range(0, len(data), 7000):
            await w.write(data[i:i + 7000])
            assert not store.exists("abc")  # never visible while being written
        assert await w.finish() == hashlib.sha256(data).hexdigest()
        await w.commit()
    assert store.path("abc").read_bytes() == data
    assert list(store.tmp.iterdir()) == []

    async def interrupted() -> None:
        async with store.writer("def") as w:
            await w.write(data)
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="went away"):
        await interrupted()
    assert not store.exists("def") and list(store.tmp.iterdir()) == []

    chunks = [c async for c in store.read_chunks("abc", offset=10_000)]
    assert b"".join(chunks) == data[10_000:]
    assert await store.delete("abc") and not await store.delete("abc")
    with pytest.raises(ValueError, match="bad blob key"):
        store.path("../etc/passwd")


def test_sweep_removes_only_old_temporaries_of_earlier_versions(tmp_path: Path) -> None:
    """Files directly in tmp/ (written before per-process folders) still go by age."""
    store = BlobStore(tmp_path)
    store.open()
    old = store.tmp_root / "x.1.part"
    new = store.tmp_root / "y.2.part"
    old.write_bytes(b"1")
    new.write_bytes(b"2")
    os.utime(old, (1, 1))
    assert store.sweep_tmp(older_than_seconds=60) == 1
    assert not old.exists() and new.exists()


_WRITER = """
import sys, time
from pathlib import Path
from typing import Any
from lgsp.core.store.blobs import BlobStore
store = BlobStore(Path(sys.argv[1]))
store.open()
(store.tmp / (sys.argv[2] + "-0badc0de.1.part")).write_bytes(b"start of the content")
print(store.tmp, flush=True)
time.sleep(600)
"""


def _writer_process(root: Path, key: str) -> tuple[subprocess.Popen[str], Path]:
    """Another hub process writing a partial upload into its own temporary folder."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), key], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_dead_writers_folder_goes_at_once_a_live_ones_stays(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, owner_stale_seconds=300)
    store.open()
    mine = store.tmp / "aaaa-1.2.part"
    mine.write_bytes(b"mine")
    killed, killed_dir = _writer_process(tmp_path, "bbbb")
    alive, alive_dir = _writer_process(tmp_path, "cccc")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        # the live writer's heartbeat is old, but it holds its lock: never judged dead
        os.utime(alive_dir.with_name(alive_dir.name + ".owner"), (1, 1))
        assert store.sweep_tmp(older_than_seconds=3600) == 1
        assert not killed_dir.exists() and not killed_dir.with_name(killed_dir.name + ".owner").exists()
        assert [p.name for p in alive_dir.iterdir()] == ["cccc-0badc0de.1.part"]
        assert mine.exists()  # this process's own files are never swept
        assert store.partials("cccc") == [alive_dir / "cccc-0badc0de.1.part"]
    finally:
        alive.kill()
        alive.wait(10)
    assert store.sweep_tmp(older_than_seconds=3600) == 1 and not alive_dir.exists()
    store.close()
    assert list(store.tmp_root.iterdir()) == []


def test_owners_on_other_hosts_are_judged_by_their_heartbeat(tmp_path: Path) -> None:
    """When the lock can be taken (another host, or locks not shared), a writer is dead only once
    its owner file has been silent for owner_stale_seconds: a live writer's files are never taken."""
    store = BlobStore(tmp_path, owner_stale_seconds=300)
    store.open()
    folders = {}
    for name, info in (("fresh", {"boot": "another-host", "pid": 1}), ("stale", {"boot": "another-host", "pid": 1}),
                       ("unreadable", None)):
        folder = store.tmp_root / f"host-{name}"
        folder.mkdir()
        (folder / f"{name}-0badc0de.1.part").write_bytes(b"x")
        owner = store.tmp_root / f"host-{name}.owner"
        owner.write_text(json.dumps(info) if info else "{", encoding="utf-8")
        folders[name] = folder
    os.utime(store.tmp_root / "host-stale.owner", (1, 1))
    orphan = store.tmp_root / "no-owner"  # a folder whose owner file a crashed sweep already removed
    orphan.mkdir()
    (orphan / "d-1.part").write_bytes(b"x")
    os.utime(orphan, (1, 1))
    assert store.sweep_tmp(older_than_seconds=3600) == 2
    assert folders["fresh"].exists() and folders["unreadable"].exists()
    assert not folders["stale"].exists() and not orphan.exists()


def test_master_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "var" / "master.key"
    key = MasterKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = key.encrypt("bí mật", "AK1")
    again = MasterKey.load_or_create(path)  # never overwritten
    assert again.decrypt(sealed, "AK1") == "bí mật"
    with pytest.raises(MasterKeyError):
        again.decrypt(sealed, "AK2")  # bound to its key row
    with pytest.raises(MasterKeyError):
        MasterKey.load_or_create(tmp_path / "other.key").decrypt(sealed, "AK1")
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        MasterKey.load(path)
    assert "bí" not in repr(key)


async def test_hmac_secrets_are_stored_sealed(tmp_path: Path) -> None:
    hub = Hub(load_config(None, env=base_env(tmp_path)))
    await hub.open_store()
    try:
        await hub.directory.add_unit("000.00.00.H23", "Sở A")
        app = await hub.directory.add_application("000.00.00.H23", "vbql")
        issued = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        rsa = await hub.directory.issue_key(app.id, "RSA-SHA256")
        async with hub.db.read() as conn:
            rows = {r.id: r for r in (await conn.execute(select(access_keys))).all()}
        assert issued.secret is not None
        assert issued.secret.encode() not in bytes(rows[issued.access_key].secret_sealed)
        assert rows[issued.access_key].public_key_pem is None
        assert rows[rsa.access_key].secret_sealed is None
        assert "PRIVATE" not in rows[rsa.access_key].public_key_pem
        assert issued.secret.encode() not in (tmp_path / "lgsp.db").read_bytes()
        await hub.secrets.set("sftp-h23", "p@ss")
        assert await hub.secrets.reveal("sftp-h23") == "p@ss"
        assert b"p@ss" not in (tmp_path / "lgsp.db").read_bytes()
    finally:
        await hub.db.close()


@pytest.mark.parametrize("code", ["000.00.00.H23", "001.00.10.H47", "H23.01.02", "G22", "A01.1.2.3",
                                  "Y99.ABC.0001"])
def test_official_identifiers(code: str) -> None:
    assert identifier_form(code) is not None
    assert check_identifier(code) == code


@pytest.mark.parametrize("code", ["28.22.H17", "01.02.G22", "001.00.20.JB2", "00.00.008.K99", "Z01.02",
                                  "h23.01", "A1.02", "A01.", "A01..2", "A01-02", "A" + "0" * 40])
def test_irregular_identifiers_need_legacy(code: str) -> None:
    with pytest.raises(InvalidIdentifier):
        check_identifier(code)


@pytest.mark.parametrize("code", ["28.22.H17", "01.02.G22", "00.00.008.K99", "vxp.saas.02", "VXP.SAAS.02",
                                  "h23.01", "A01-02", "don_vi.01", "abc", "x" * 35])
def test_legacy_accepts_the_codes_of_other_systems(code: str) -> None:
    """Irregular codes, the national axis's system ids (`vxp.saas.02`) and vendors' own codes."""
    assert check_identifier(code, legacy=True) == code


@pytest.mark.parametrize("code", ["28 22 H17", "vxp saas", "a/b", "..", "../etc", "a\\b", "a\tb", "a\nb",
                                  "vxp.saas.02\n", "G22\n", "vxp..saas", ".vxp", "vxp.", "-a", "a--b", "vxp:saas",
                                  "a@b", "đơn.vị", "\u0660\u0660\u0660.\u0660\u0660.\u0660\u0660.H23", "X" * 36, ""])
def test_legacy_still_refuses_what_no_system_uses(code: str) -> None:
    """Spaces, control characters, slashes, other punctuation, empty groups, non-ASCII, over-long."""
    with pytest.raises(InvalidIdentifier):
        check_identifier(code, legacy=True)
    with pytest.raises(InvalidIdentifier):
        check_identifier(code)


async def test_identifiers_are_unique_regardless_of_case(hub: Hub) -> None:
    await hub.directory.add_unit("vxp.saas.02", "Hệ thống VXP", legacy=True)
    with pytest.raises(Problem) as err:
        await hub.directory.add_unit("VXP.SAAS.02", "again", legacy=True)
    assert err.value.code == "conflict" and "vxp.saas.02" in err.value.detail
    assert [u.id for u in await hub.directory.search_units("VXP")] == ["vxp.saas.02"]
    assert [u.id for u in await hub.directory.search_units("vxp.s")] == ["vxp.saas.02"]


def test_fold_for_search() -> None:
    assert fold("Sở Kế hoạch và Đầu tư") == "so ke hoach va dau tu"
    assert fold("ĐẮK LẮK") == fold("đắk lắk") == "dak lak"


def _count_hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls that go to the store's thread from now on (calls[0])."""
    from lgsp.core.store.sqlite_inline import InlineEngine

    calls = [0]
    real = InlineEngine.off_loop

    async def counting(self: InlineEngine, fn: Any, *a: Any, **kw: Any) -> Any:
        calls[0] += 1
        return await real(self, fn, *a, **kw)

    monkeypatch.setattr(InlineEngine, "off_loop", counting)
    return calls


async def test_sqlite_runs_transactions_on_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline engine gives the same results as the async layer, runs statements and, with
    synchronous=NORMAL, COMMIT on the loop's thread (no hand-off at all), keeps rows readable after
    the block, and rolls back a failed transaction whole."""
    from sqlalchemy import text

    from lgsp.core.store.sqlite_inline import InlineEngine

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    assert isinstance(db.writer, InlineEngine) and db.writer.commit_inline
    try:
        await db.upgrade()
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)"))
        calls = _count_hand_offs(monkeypatch)
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t (b) VALUES ('x'), ('y')"))
            rows = (await conn.execute(text("SELECT a, b FROM t ORDER BY a"))).all()
        assert [tuple(r) for r in rows] == [(1, "x"), (2, "y")]
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
            kept = await conn.execute(text("SELECT b FROM t ORDER BY a"))
        assert kept.scalars().all() == ["x", "y"]  # fetched during the statement
        assert calls[0] == 0

        async def half_then_duplicate() -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t (b) VALUES ('z')"))
                await conn.execute(text("INSERT INTO t (a, b) VALUES (1, 'dup')"))

        with pytest.raises(Exception, match="UNIQUE"):
            await half_then_duplicate()
        async with db.read() as conn:  # the failed transaction was rolled back, nothing half-written
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
        async with db.write() as conn:  # and the writer is usable again
            await conn.execute(text("INSERT INTO t (b) VALUES ('z')"))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 3
    finally:
        await db.close()


async def test_sqlite_full_synchronous_commits_on_the_thread(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With synchronous=FULL each COMMIT fsyncs, so it goes to the store's thread: one hand-off per
    write transaction, none for a read; SQLite's own checkpoint stays on (it runs in that COMMIT)."""
    from sqlalchemy import text

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}", sqlite_synchronous="full")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY)"))
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 1000
        calls = _count_hand_offs(monkeypatch)
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        assert calls[0] == 1
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 1
        assert calls[0] == 1
    finally:
        await db.close()


async def test_sqlite_wal_is_checkpointed_off_the_loop(tmp_path: Path) -> None:
    """With inline commits SQLite's automatic checkpoint (an fsync inside COMMIT) is off on the writer,
    and the Checkpointer runs one on the store's thread every CHECKPOINT_EVERY_COMMITS commits."""
    from sqlalchemy import text

    from lgsp.core.store import sqlite_inline

    path = tmp_path / "c.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)"))
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        checkpointer = db.writer.checkpointer
        assert checkpointer is not None and checkpointer.done == 0
        for i in range(sqlite_inline.CHECKPOINT_EVERY_COMMITS + 1):
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:a, zeroblob(4096))"), {"a": i})
        for _ in range(200):
            if checkpointer.done:
                break
            await asyncio.sleep(0.01)
        assert checkpointer.done == 1
    finally:
        await db.close()
    import sqlite3

    other = sqlite3.connect(path)
    try:  # everything committed is in the database after close
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == sqlite_inline.CHECKPOINT_EVERY_COMMITS + 1
    finally:
        other.close()


async def _ticks_while(coro: Any) -> tuple[Any, int]:
    """Run `coro` while another task counts event-loop turns: how often the loop got to run."""
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        result = await coro
    finally:
        done = True
        await ticker
    return result, ticks


async def test_sqlite_long_read_moves_to_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that outgrows its step budget is interrupted and run again on the SQLite thread, with
    the full answer, while the event loop keeps running; a short read never leaves the loop."""
    from sqlalchemy import text

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    heavy = text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
                 "SELECT count(*), sum(x) FROM c")
    try:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
        calls = _count_hand_offs(monkeypatch)

        async def read() -> Any:
            async with db.read() as conn:
                return (await conn.execute(heavy)).one()

        row, ticks = await _ticks_while(read())
        assert tuple(row) == (3000000, 3000000 * 3000001 // 2)
        assert calls[0] == 1
        assert ticks >= 3  # the loop kept turning while SQLite counted on its thread
        calls[0] = 0
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT 40 + 2"))).scalar() == 42
        assert calls[0] == 0
    finally:
        await db.close()


async def _store_and_another_writer(path: Path) -> tuple[Database, Any]:
    """A store with a table `t (a INTEGER PRIMARY KEY)`, and a plain sqlite3 connection to the same
    file standing for another process (the CLI, a second hub)."""
    import sqlite3

    from sqlalchemy import text

    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY)"))
    return db, sqlite3.connect(path, isolation_level=None, check_same_thread=False)


async def test_sqlite_begin_waits_for_another_process_off_the_loop(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While another connection (another process: the CLI, a second hub) holds the write lock,
    BEGIN IMMEDIATE waits on the store's thread with the busy timeout, not on the event loop, and
    the transaction goes ahead once the lock is released."""
    from sqlalchemy import text

    db, other = await _store_and_another_writer(tmp_path / "b.db")
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        loop = asyncio.get_running_loop()
        loop.call_later(0.4, other.execute, "COMMIT")
        calls = _count_hand_offs(monkeypatch)

        async def write() -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        started = loop.time()
        _, ticks = await _ticks_while(write())
        assert loop.time() - started >= 0.35  # it did wait for the other writer
        assert ticks >= 5  # and the loop ran meanwhile (a tick every 5 ms when it is free)
        assert calls[0] == 1  # BEGIN on the thread (it had to wait); the COMMIT inline
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
        calls[0] = 0
        async with db.write() as conn:  # uncontended again: no hand-off
            await conn.execute(text("INSERT INTO t VALUES (3)"))
        assert calls[0] == 0
    finally:
        other.close()
        await db.close()


async def test_sqlite_cancelled_while_waiting_for_the_lock_writes_nothing(tmp_path: Path) -> None:
    """A request cancelled while its BEGIN waits on the store's thread for another process's lock
    leaves nothing behind, and the writer serves the next transaction."""
    from sqlalchemy import text

    db, other = await _store_and_another_writer(tmp_path / "x.db")
    try:
        other.execute("BEGIN IMMEDIATE")

        async def write(value: int) -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:a)"), {"a": value})

        task = asyncio.create_task(write(1))
        await asyncio.sleep(0.2)  # waiting in BEGIN on the thread
        task.cancel()
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, other.execute, "COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(write(2), 10)
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT a FROM t"))).scalars().all() == [2]
    finally:
        other.close()
        await db.close()


async def test_sqlite_checkout_waits_without_blocking_the_loop(tmp_path: Path) -> None:
    """More readers than connections wait their turn on the loop (a blocked checkout would freeze
    the hub), and one that waits longer than the pool timeout gets the store's TimeoutError, which
    the hub answers with 503 (`store_unavailable`)."""
    import sqlalchemy.exc
    from sqlalchemy import text

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", pool_size=1)
    try:
        async with db.read() as held:
            await held.execute(text("SELECT 1"))

            async def second() -> int:
                async with db.read() as conn:
                    return int((await conn.execute(text("SELECT 2"))).scalar_one())

            waiting = asyncio.create_task(second())
            _, ticks = await _ticks_while(asyncio.sleep(0.1))
            assert ticks >= 5 and not waiting.done()
        assert await asyncio.wait_for(waiting, 5) == 2
        db.reader._pool_timeout = 0.1  # type: ignore[attr-defined]
        async with db.read():
            with pytest.raises(sqlalchemy.exc.TimeoutError) as caught:
                async with db.read():
                    pass
            assert store_unavailable(caught.value)
    finally:
        await db.close()


async def test_sqlite_database_closes_twice(tmp_path: Path) -> None:
    """A hub stopped twice (a restart after a stop) closes its store twice: the second is a no-op."""
    from sqlalchemy import text

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'twice.db'}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE t (a INTEGER)"))
    await db.close()
    await db.close()


async def test_sqlite_connections_are_kept_between_uses(tmp_path: Path) -> None:
    """A block takes a kept connection (no pool checkout), finds no transaction left open by the
    previous one, and a connection that broke is replaced, not handed out again."""
    from sqlalchemy import text

    from lgsp.core.store.sqlite_inline import InlineEngine

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    assert isinstance(db.reader, InlineEngine)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (a INTEGER)"))
        async with db.read() as conn:
            first = conn.sync_connection
            await conn.execute(text("SELECT count(*) FROM t"))
        async with db.read() as conn:
            assert conn.sync_connection is first
            assert not (await conn.get_raw_connection()).dbapi_connection.in_transaction
            await conn.invalidate()
        async with db.read() as conn:
            assert conn.sync_connection is not first
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        async with db.write() as conn:
            writer = conn.sync_connection
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with db.write() as conn:
            assert conn.sync_connection is writer
        assert db.reader.pool_counts()["in_use"] == 0  # type: ignore[attr-defined]
    finally:
        await db.close()
