"""Master key rotation (`lgsp masterkey rotate`) and the key-encryption key of the key file.

The rotation test runs the real command in another process against a live hub while units keep
sending, fetching and acknowledging packets and an adapter secret keeps being read: not one of
those calls may fail, and afterwards nothing is sealed under the old key and the old key is gone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.keyrotation import count_not_primary, sealed_columns
from lgsp.core.masterkey import Kek, MasterKey, MasterKeyError, key_id
from lgsp.core.store import tables
from lgsp.core.store.tables import audit_log, content_keys
from tests.conftest import MakeActor, base_env


def test_keyring_unseals_old_values_and_seals_under_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key = MasterKey.load_or_create(path)
    old_id = key.primary_id
    before = key.seal(b"data key", "content-key:p1")
    other = MasterKey.load(path)  # another process (the CLI) holding the same file
    other.new_primary()
    assert other.primary_id != old_id and other.key_ids == [other.primary_id, old_id]
    # The hub sees the file changed before it seals: new values go under the new key at once.
    after = key.seal(b"x", "c")
    assert after[1:9] == bytes.fromhex(other.primary_id)
    assert key.unseal(before, "content-key:p1") == b"data key"
    assert key.unseal(after, "c") == b"x"
    # Bound to its context: a value moved onto another row does not open.
    with pytest.raises(MasterKeyError):
        key.unseal(before, "content-key:p2")
    other.retire_older()
    with pytest.raises(MasterKeyError, match="does not hold"):
        key.unseal(before, "content-key:p1")
    assert MasterKey.load(path).key_ids == [other.primary_id]


def test_values_sealed_before_key_ids_existed_still_open(tmp_path: Path) -> None:
    """Version 1 values (no key id) from before rotation existed: tried under each key held."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = tmp_path / "master.key"
    key = MasterKey.load_or_create(path)
    raw = base64.b64decode(path.read_text().strip().split(":", 1)[1])
    nonce = os.urandom(12)
    legacy = b"\x01" + nonce + AESGCM(raw).encrypt(nonce, b"hmac secret", b"AK123")
    assert key.decrypt(legacy, "AK123") == "hmac secret"
    key.new_primary()
    assert key.decrypt(legacy, "AK123") == "hmac secret"
    assert not key.sealed_under_primary(legacy)


def test_key_file_sealed_under_a_kek_from_a_file_or_the_environment(tmp_path: Path) -> None:
    kek_file = tmp_path / "kek"
    kek_file.write_text(base64.b64encode(os.urandom(32)).decode())
    kek_file.chmod(0o600)
    kek = Kek.from_setting(f"file:{kek_file}")
    assert kek is not None
    path = tmp_path / "master.key"
    key = MasterKey.load_or_create(path, kek)
    sealed = key.seal(b"v", "c")
    text = path.read_text()
    assert text.startswith("lgsp-master-keyring-kek-v1:") and "lgsp-master-key-v1:" not in text
    assert MasterKey.load(path, kek).unseal(sealed, "c") == b"v"
    with pytest.raises(MasterKeyError, match="key-encryption key"):
        MasterKey.load(path)  # the file alone opens nothing
    wrong = Kek(os.urandom(32), "test")
    with pytest.raises(MasterKeyError, match="does not open"):
        MasterKey.load(path, wrong)
    env_kek = Kek.from_setting("env:LGSP_TEST_KEK", env={"LGSP_TEST_KEK": kek_file.read_text()})
    assert env_kek is not None and MasterKey.load(path, env_kek).unseal(sealed, "c") == b"v"
    with pytest.raises(MasterKeyError, match="not set"):
        Kek.from_setting("env:LGSP_NOPE", env={})
    with pytest.raises(MasterKeyError, match="module-path is missing"):
        Kek.from_setting("pkcs11:token=hub")
    kek_file.chmod(0o644)
    with pytest.raises(MasterKeyError, match="readable by other users"):
        Kek.from_setting(f"file:{kek_file}")


def test_kek_setting_is_checked_with_its_key_path(tmp_path: Path) -> None:
    from lgsp.core.config import ConfigError
    from lgsp.core.i18n import speaking

    with pytest.raises(ConfigError, match=r"security\.master_key_kek"):
        load_config(None, env=base_env(tmp_path, LGSP_SECURITY_MASTER_KEY_KEK="vault:abc"))
    with pytest.raises(ConfigError, match=r"security\.master_key_kek.*thiếu token"):  # Vietnamese by default
        load_config(None, env=base_env(tmp_path, LGSP_SECURITY_MASTER_KEY_KEK="pkcs11:slot=0"))
    with speaking("en"), pytest.raises(ConfigError, match=r"security\.master_key_kek.*token is missing"):
        load_config(None, env=base_env(tmp_path, LGSP_SECURITY_MASTER_KEY_KEK="pkcs11:slot=0"))
    # The PIN never sits in the config itself.
    with speaking("en"), pytest.raises(ConfigError, match="pin-value is refused"):
        load_config(None, env=base_env(tmp_path, LGSP_SECURITY_MASTER_KEY_KEK=(
            "pkcs11:token=t;object=k?module-path=/m.so&pin-source=env:P&pin-value=1234")))


def test_every_sealed_column_is_rotated() -> None:
    """A new column of sealed values must be listed in core/keyrotation.py, or rotation would leave
    it under a key that is then retired."""
    listed = {(c.table.name, c.sealed.name) for c in sealed_columns()}
    found = {(t.name, col.name) for t in tables.metadata.sorted_tables for col in t.columns
             if "sealed" in col.name}
    assert found == listed


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lgsp.cli.main", *args], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_rotation_under_traffic_fails_no_request(tmp_path: Path, make_actor: MakeActor, hub: Hub) -> None:
    env = base_env(tmp_path / "var") | {"LGSP_HUB_DATA_DIR": str(hub.config.data_dir)}
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    await hub.secrets.set("sftp-h23", "mat khau")
    # Content waiting across the rotation: its data key is re-sealed, not lost.
    waiting = os.urandom(300_000)
    waiting_id = await a.client.send(waiting, [b.unit], subject="chờ")
    old_id = hub.master_key.primary_id
    stop = asyncio.Event()
    done: list[int] = []

    async def traffic(n: int) -> None:
        while not stop.is_set():
            content = os.urandom(20_000 + n)
            pid = await a.client.send(content, [b.unit], subject=f"trong lúc xoay khóa {n}")
            assert await b.client.fetch_bytes(pid) == content
            assert await b.client.ack(pid, hashlib.sha256(content).hexdigest()) == "delivered"
            assert await hub.secrets.reveal("sftp-h23") == "mat khau"
            done.append(n)

    workers = [asyncio.create_task(traffic(i)) for i in range(3)]
    await asyncio.sleep(0.3)
    result = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "rotate", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    count_at_rotation = len(done)
    await asyncio.sleep(0.5)  # traffic goes on under the new key only
    stop.set()
    await asyncio.gather(*workers)  # any failed call raised here
    assert len(done) > count_at_rotation > 0
    assert report["sealing_key"] != old_id and report["retired"] == [old_id] and report["left"] == 0
    # the test's secret and the hub's transfer-URL key
    assert report["resealed"]["secrets"] == 2 and report["resealed"]["access_keys"] >= 2
    assert report["resealed"]["content_keys"] >= 1
    # Nothing is left under the old key, which the file no longer holds.
    assert await count_not_primary(hub.db, hub.master_key) == 0
    assert MasterKey.load(hub.config.master_key_path).key_ids == [report["sealing_key"]]
    async with hub.db.read() as conn:
        sealed = await conn.scalar(select(content_keys.c.sealed).where(content_keys.c.key_id == waiting_id))
    assert bytes(sealed)[1:9] == bytes.fromhex(report["sealing_key"])
    assert await b.client.fetch_bytes(waiting_id) == waiting
    status = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "status", "--json")
    assert json.loads(status.stdout)["values_under_older_keys"] == 0


async def test_rotate_keep_old_then_retire(tmp_path: Path, make_actor: MakeActor, hub: Hub) -> None:
    env = base_env(tmp_path / "var") | {"LGSP_HUB_DATA_DIR": str(hub.config.data_dir)}
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    content = b"noi dung " * 100
    pid = await a.client.send(content, [b.unit], subject="s")
    ready = await b.client.ready(pid)  # a download URL issued under the old key
    old_id = hub.master_key.primary_id
    result = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "rotate", "--keep-old")
    assert result.returncode == 0, result.stderr
    assert "lgsp masterkey retire" in result.stdout  # Vietnamese by default, the command as is
    assert MasterKey.load(hub.config.master_key_path).key_ids[1:] == [old_id]
    # The URL issued before the rotation still works while the old key is held.
    assert await b.client.download(pid, tmp_path / "got", download_url=ready["url"], resume=False)
    assert (tmp_path / "got").read_bytes() == content
    result = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "retire")
    assert result.returncode == 0, result.stderr
    assert old_id in result.stdout
    assert MasterKey.load(hub.config.master_key_path).key_ids == [hub.master_key.primary_id]
    assert key_id(os.urandom(32)).hex() not in result.stdout
    # Both steps are in the audit log, with the key ids (never a key) and the operator.
    await hub.audit.chain()
    async with hub.db.read() as conn:
        recorded = (await conn.execute(select(audit_log).where(audit_log.c.action.like("masterkey.%"))
                                       .order_by(audit_log.c.seq))).all()
    assert [r.action for r in recorded] == ["masterkey.rotated", "masterkey.retired"]
    assert recorded[0].detail["sealing_key"] == hub.master_key.primary_id and recorded[0].detail["retired"] == []
    assert recorded[1].detail["retired"] == [old_id] and recorded[1].address == "cli"
    assert all(r.actor for r in recorded)  # the operator ($LGSP_OPERATOR, else the login name)


async def test_rotation_seals_the_key_file_under_a_newly_configured_kek(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var")
    async with Hub(load_config(None, env=env)) as hub:
        await hub.secrets.set("s1", "v1")
        key_path = hub.config.master_key_path
    kek_value = base64.b64encode(os.urandom(32)).decode()
    with_kek = env | {"LGSP_SECURITY_MASTER_KEY_KEK": "env:LGSP_TEST_KEK", "LGSP_TEST_KEK": kek_value}
    result = await asyncio.to_thread(run_cli, with_kek, tmp_path, "masterkey", "rotate")
    assert result.returncode == 0, result.stderr
    assert key_path.read_text().startswith("lgsp-master-keyring-kek-v1:")
    os.environ["LGSP_TEST_KEK"] = kek_value
    try:
        async with Hub(load_config(None, env=with_kek)) as hub:
            assert await hub.secrets.reveal("s1") == "v1"
    finally:
        del os.environ["LGSP_TEST_KEK"]
    # Without the KEK the hub does not start, and says why in one line.
    bad = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "status")
    assert bad.returncode != 0 and "security.master_key_kek" in bad.stderr and len(bad.stderr.splitlines()) == 1


async def test_data_keys_and_rotation_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The same store code on PostgreSQL: two writers racing for a packet's data key get one key;
    rotation re-seals it and the secrets; purging destroys it."""
    from lgsp.core.contentkeys import ContentKeys
    from lgsp.core.keyrotation import reseal_all
    from lgsp.core.secretstore import SecretStore
    from lgsp.core.store.database import Database

    db = Database(pg_url)
    try:
        await db.upgrade()
        key = MasterKey.load_or_create(tmp_path / "master.key")
        keys = ContentKeys(db, key)
        packet = "3f2b8c1e-0000-4000-8000-0000000000aa"
        first, second = await asyncio.gather(keys.get_or_create(packet), keys.get_or_create(packet))
        assert first == second and len(first) == 32
        await SecretStore(db, key).set("s1", "v1")
        cli = MasterKey.load(tmp_path / "master.key")  # the rotating process
        cli.new_primary()
        counts = await reseal_all(db, cli)
        assert counts["content_keys"] == 1 and counts["secrets"] == 1
        assert await count_not_primary(db, cli) == 0
        cli.retire_older()
        assert await keys.get(packet) == first  # the serving side follows the file
        assert await SecretStore(db, key).reveal("s1") == "v1"
        async with db.write() as conn:
            await ContentKeys.destroy(conn, [packet])
        assert await keys.get(packet) is None
    finally:
        await db.close()


async def test_transfer_urls_handed_out_before_a_rotation_still_work_after_it(
        tmp_path: Path, make_actor: MakeActor, hub: Hub) -> None:
    """Upload and download URLs are signed with the hub's transfer key (sealed in the store), so a
    rotation that retires the old master key does not break the URLs clients already hold."""
    env = base_env(tmp_path / "var") | {"LGSP_HUB_DATA_DIR": str(hub.config.data_dir)}
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    first, second = os.urandom(20_000), os.urandom(30_000)
    sent = await a.client.send(first, [b.unit], subject="Trước khi đổi khóa")
    download_url = (await b.client.ready(sent))["url"]
    created = await a.client.create_packet([b.unit], subject="Tải lên sau khi đổi khóa", size=len(second),
                                           sha256=hashlib.sha256(second).hexdigest())
    result = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "rotate", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["retired"], "the old master key is gone from the file"
    await a.client.upload(created["upload"]["url"], second, hashlib.sha256(second).hexdigest())
    assert await b.client.download(sent, tmp_path / "first.bin", download_url=download_url) == \
        hashlib.sha256(first).hexdigest()


def test_derived_keys_are_made_once_and_follow_every_change_of_the_key_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`derive_all` runs HKDF once per purpose and key set; a rotation or a retirement (here by
    another holder of the file, as the CLI does, and by this one) changes what it answers at once."""
    from lgsp.core import masterkey

    made: list[bytes] = []
    real = masterkey.HKDF

    class CountingHKDF:  # the real HKDF, counting what it derives
        def __init__(self, **kwargs: Any) -> None:
            self._real = real(**kwargs)

        def derive(self, key_material: bytes) -> bytes:
            made.append(key_material)
            return self._real.derive(key_material)

    monkeypatch.setattr(masterkey, "HKDF", CountingHKDF)
    path = tmp_path / "master.key"
    key = MasterKey.load_or_create(path)
    first = key.derive_all("transfer-url")
    assert key.derive_all("transfer-url") == first and key.derive("transfer-url") == first[0]
    assert len(made) == 1  # derived once, however often it is asked for
    other_purpose = key.derive_all("backup fingerprint")
    assert other_purpose != first and len(made) == 2
    key.derive_all("transfer-url").append(b"not in the cache")  # a caller's copy
    assert key.derive_all("transfer-url") == first

    other = MasterKey.load(path)  # the CLI: a new sealing key, the old one kept
    other.new_primary()
    rotated = key.derive_all("transfer-url")  # the file re-read: the new key first, the old one after
    assert len(rotated) == 2 and rotated[1] == first[0] and rotated[0] != first[0]
    assert rotated == other.derive_all("transfer-url")
    other.retire_older()
    assert key.derive_all("transfer-url") == rotated[:1]  # the retired key's derived key is gone
    # Nothing derived from the retired key stays in memory, for any purpose.
    assert all(held is key._keys for held, _ in key._derived.values())

    key.new_primary()  # this holder rotates: its own write takes effect as well
    again = key.derive_all("transfer-url")
    assert len(again) == 2 and again[1] == rotated[0]
    key.retire_older()
    assert key.derive_all("transfer-url") == again[:1]


def test_transfer_tokens_made_before_a_rotation_check_until_the_old_key_is_retired(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from lgsp.core.errors import Problem
    from lgsp.core.exchange.tokens import TransferTokens

    path = tmp_path / "master.key"
    key = MasterKey.load_or_create(path)
    tokens = TransferTokens(lambda: key.derive_all("transfer-url"))
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=5)

    def check(query: str) -> None:
        params = dict(part.split("=", 1) for part in query.split("&"))
        tokens.check("download", "p1", "u1", params["expires"], params["token"], now)

    before = tokens.make("download", "p1", "u1", expires)
    check(before)
    other = MasterKey.load(path)
    other.new_primary()
    after = tokens.make("download", "p1", "u1", expires)
    assert after != before  # signed with the new key now
    check(before)  # the old key is still held: what it signed still checks
    check(after)
    other.retire_older()
    check(after)
    with pytest.raises(Problem) as refused:
        check(before)
    assert refused.value.code == "forbidden"
