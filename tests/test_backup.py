"""Online backup under traffic, restore into a new place, and the restored hub serves what it held."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.backup import BackupError, backup, restore
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub
from tests.conftest import PG_ADMIN_URL, Actor, base_env, pg_skip_reason


async def _traffic(a: Actor, b: Actor, stop: asyncio.Event, sent: list[str]) -> None:
    """Keep sending, and let the destination take and acknowledge every other packet (purges)."""
    n = 0
    while not stop.is_set():
        pid = await a.client.send(os.urandom(2_000 + n), [b.unit], subject=f"Trong lúc sao lưu {n}")
        sent.append(pid)
        if n % 2:
            data = await b.client.fetch_bytes(pid)
            await b.client.ack(pid, hashlib.sha256(data).hexdigest())
        n += 1
        await asyncio.sleep(0)


async def _backup_restore_round(hub: Hub, make_actor: object, tmp_path: Path, restored_env: dict[str, str]) -> None:
    a = await make_actor("000.00.00.H23")  # type: ignore[operator]
    b = await make_actor("000.00.01.H23")  # type: ignore[operator]
    before: dict[str, bytes] = {}
    for i in range(6):
        # Half of them in files, half small enough to be kept in the store (restored with it).
        content = os.urandom((hub.config.blobs.inline_bytes if i % 2 else 50_000) + i)
        before[await a.client.send(content, [b.unit], subject=f"Trước sao lưu {i}")] = content
    done_id = next(iter(before))
    data = await b.client.fetch_bytes(done_id)
    await b.client.ack(done_id, hashlib.sha256(data).hexdigest())  # completed and purged before the backup

    stop = asyncio.Event()
    during: list[str] = []
    traffic = asyncio.create_task(_traffic(a, b, stop, during))
    await asyncio.sleep(0.2)
    folder = tmp_path / "backup"
    report = await asyncio.to_thread(backup, hub.config, folder)
    stop.set()
    await traffic
    assert during, "traffic ran during the backup"
    assert not any(p.name.endswith(".key") for p in folder.rglob("*")), "the master key stays out of the backup"
    manifest = json.loads((folder / "backup.json").read_text(encoding="utf-8"))
    assert report.blob_files == len(manifest["blobs"]) > 0

    cfg = load_config(None, env=restored_env)
    result = await asyncio.to_thread(restore, cfg, folder, master_key_file=hub.config.master_key_path)
    assert result.blob_files == report.blob_files

    async with Hub(cfg) as restored:
        creds = Credentials(restored.url, b.key.access_key, "HMAC-SHA256", secret=b.key.secret)
        async with LgspClient(creds) as client:
            status = await client.status(done_id)
            assert status["state"] == "completed"
            for pid, content in before.items():
                if pid == done_id:
                    continue
                got = await client.fetch_bytes(pid)
                assert got == content, f"packet {pid} accepted before the backup is served as it was"


async def test_backup_under_traffic_restores_every_accepted_packet(hub: Hub, make_actor: object,
                                                                 tmp_path: Path) -> None:
    await _backup_restore_round(hub, make_actor, tmp_path, base_env(tmp_path / "restored"))


@pytest.fixture
async def second_pg_url() -> AsyncIterator[str]:
    reason = await pg_skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore not installed")
    import asyncpg
    from yarl import URL

    name = f"lgsp_restore_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield str(URL(PG_ADMIN_URL).with_scheme("postgresql+asyncpg").with_path("/" + name))
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_backup_on_postgresql_restores_into_an_empty_database(pg_url: str, second_pg_url: str,
                                                                   tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump not installed")
    cfg = load_config(None, env=base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url))
    async with Hub(cfg) as hub:
        clients: list[LgspClient] = []

        async def make(unit: str) -> Actor:
            await hub.directory.add_unit(unit, f"Đơn vị {unit}")
            app = await hub.directory.add_application(unit, f"app-{secrets.token_hex(3)}")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            client = LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))
            clients.append(client)
            return Actor(unit, key, client, hub)

        try:
            await _backup_restore_round(hub, make, tmp_path,
                                        base_env(tmp_path / "restored", LGSP_DATABASE_URL=second_pg_url))
        finally:
            await asyncio.gather(*(c.close() for c in clients))


async def test_restore_refuses_wrong_key_damaged_blobs_and_a_used_store(hub: Hub, make_actor: object,
                                                                      tmp_path: Path) -> None:
    a = await make_actor("000.00.00.H23")  # type: ignore[operator]
    b = await make_actor("000.00.01.H23")  # type: ignore[operator]
    await a.client.send(os.urandom(hub.config.blobs.inline_bytes + 1), [b.unit], subject="Một gói")  # a file
    folder = tmp_path / "backup"
    await asyncio.to_thread(backup, hub.config, folder)

    with pytest.raises(BackupError, match="đã có dữ liệu"):
        await asyncio.to_thread(backup, hub.config, folder)  # never into a folder that holds something

    other = load_config(None, env=base_env(tmp_path / "other"))
    other.master_key_path.parent.mkdir(parents=True)
    wrong = tmp_path / "wrong.key"
    from lgsp.core.masterkey import MasterKey

    MasterKey.load_or_create(wrong)
    with pytest.raises(BackupError, match="không phải khóa"):
        restore(other, folder, master_key_file=wrong)
    with pytest.raises(BackupError, match="không tìm thấy khóa chủ"):
        restore(other, folder)  # the backup does not carry the key
    assert not other.master_key_path.exists()

    blob = next(p for p in (folder / "blobs").rglob("*") if p.is_file())
    original = blob.read_bytes()
    blob.write_bytes(b"x" + original[1:])
    with pytest.raises(BackupError, match="không khớp"):
        restore(other, folder, master_key_file=hub.config.master_key_path)
    assert not Path(str(other.database_url).split("///", 1)[1]).exists(), "nothing half-written"
    blob.write_bytes(original)

    with pytest.raises(BackupError, match="chỉ khôi phục vào nơi trống"):
        restore(hub.config, folder)  # the live store is not empty: never overwritten

    restore(other, folder, master_key_file=hub.config.master_key_path)
    assert other.master_key_path.stat().st_mode & 0o077 == 0


async def test_an_interrupted_backup_is_not_restorable(tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / ".incomplete").touch()
    cfg: Config = load_config(None, env=base_env(tmp_path / "var"))
    with pytest.raises(BackupError, match="chưa hoàn tất"):
        restore(cfg, folder)
    with contextlib.suppress(FileNotFoundError):
        (folder / ".incomplete").unlink()
    with pytest.raises(BackupError, match="không phải bản sao lưu"):
        restore(cfg, folder)


async def test_backup_and_restore_commands_speak_one_line(hub: Hub, make_actor: object, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lgsp.cli.main import main

    a = await make_actor("000.00.00.H23")  # type: ignore[operator]
    b = await make_actor("000.00.01.H23")  # type: ignore[operator]
    await a.client.send(os.urandom(5_000), [b.unit], subject="Một gói")
    live = tmp_path / "live.yaml"
    live.write_text(f"hub:\n  data_dir: {hub.config.data_dir}\n", encoding="utf-8")
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(f"hub:\n  data_dir: {tmp_path / 'fresh'}\n", encoding="utf-8")
    folder = tmp_path / "bk"

    assert await asyncio.to_thread(main, ["backup", str(folder), "--config", str(live)]) == 0
    out = capsys.readouterr()
    assert "đã sao lưu" in out.out and str(hub.config.master_key_path) in out.out

    assert await asyncio.to_thread(main, ["backup", str(folder), "--config", str(live)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "đã có dữ liệu" in err

    assert await asyncio.to_thread(main, ["restore", str(folder), "--config", str(fresh)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--master-key" in err

    assert await asyncio.to_thread(main, ["restore", str(folder), "--config", str(fresh), "--master-key",
                                          str(hub.config.master_key_path)]) == 0
    assert "đã khôi phục" in capsys.readouterr().out


async def test_a_backup_taken_before_a_key_rotation_needs_the_old_key(hub: Hub, make_actor: object,
                                                                      tmp_path: Path) -> None:
    from .cli_support import arun_cli

    a = await make_actor("000.00.00.H23")  # type: ignore[operator]
    b = await make_actor("000.00.01.H23")  # type: ignore[operator]
    await a.client.send(os.urandom(5_000), [b.unit], subject="Trước khi đổi khóa")
    folder = tmp_path / "bk"
    await asyncio.to_thread(backup, hub.config, folder)
    old_key = tmp_path / "old.key"
    shutil.copy2(hub.config.master_key_path, old_key)
    env = {"LGSP_HUB_DATA_DIR": str(hub.config.data_dir)}

    kept = await arun_cli("masterkey", "rotate", "--keep-old", env=env)
    assert kept.returncode == 0, kept.stderr
    fresh = load_config(None, env=base_env(tmp_path / "one"))
    restore(fresh, folder, master_key_file=hub.config.master_key_path)  # the old key is still in the file

    retired = await arun_cli("masterkey", "retire", env=env)
    assert retired.returncode == 0, retired.stderr
    other = load_config(None, env=base_env(tmp_path / "two"))
    with pytest.raises(BackupError, match="masterkey rotate"):
        restore(other, folder, master_key_file=hub.config.master_key_path)
    restore(other, folder, master_key_file=old_key)
