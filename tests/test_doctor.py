"""`lgsp doctor` on each node: the same store, blob folder, master key and signing key, or what to fix."""

from __future__ import annotations

import shutil
from pathlib import Path

from .cli_support import run_cli


def _config(path: Path, data_dir: Path, database: str | None = None, blobs: Path | None = None) -> Path:
    text = f"hub:\n  data_dir: {data_dir}\n"
    if database:
        text += f"database:\n  url: {database}\n"
    if blobs:
        text += f"blobs:\n  path: {blobs}\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_nodes_sharing_everything_pass_and_agree(pg_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    a = _config(tmp_path / "a.yaml", tmp_path / "a", pg_url, shared / "blobs")
    b = _config(tmp_path / "b.yaml", tmp_path / "b", pg_url, shared / "blobs")
    assert run_cli("db", "upgrade", "-c", str(a)).returncode == 0  # the first node: store and master key made
    first = run_cli("doctor", "-c", str(a))
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("✓") == 5 and "✗" not in first.stdout

    missing = run_cli("doctor", "-c", str(b))  # node B has no master key yet: refused, none created
    assert missing.returncode == 1 and "master key" in missing.stderr and missing.stderr.count("\n") == 1
    assert not (tmp_path / "b" / "master.key").exists()

    (tmp_path / "b").mkdir()
    shutil.copy2(tmp_path / "a" / "master.key", tmp_path / "b" / "master.key")
    second = run_cli("doctor", "-c", str(b))
    assert second.returncode == 0, second.stdout + second.stderr

    def line(out: str, name: str) -> str:
        return next(x for x in out.splitlines() if x.startswith(f"✓ {name}:"))

    assert line(first.stdout, "signing key") == line(second.stdout, "signing key")
    assert line(first.stdout, "cluster") == line(second.stdout, "cluster")
    assert line(first.stdout, "master key").split("fingerprint")[1] == line(second.stdout, "master key").split(
        "fingerprint")[1]


def test_a_local_blob_folder_or_another_key_is_caught(pg_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    a = _config(tmp_path / "a.yaml", tmp_path / "a", pg_url, shared / "blobs")
    assert run_cli("db", "upgrade", "-c", str(a)).returncode == 0
    assert run_cli("doctor", "-c", str(a)).returncode == 0

    (tmp_path / "b").mkdir()
    shutil.copy2(tmp_path / "a" / "master.key", tmp_path / "b" / "master.key")
    local = _config(tmp_path / "b.yaml", tmp_path / "b", pg_url, tmp_path / "b" / "local-blobs")
    (tmp_path / "b" / "local-blobs").mkdir()
    (tmp_path / "b" / "local-blobs" / "cluster-id").write_text("0" * 32 + "\n", encoding="ascii")
    res = run_cli("doctor", "-c", str(local))
    assert res.returncode == 1 and "✗ blobs:" in res.stdout and "another hub" in res.stdout

    (tmp_path / "c").mkdir()
    from lgsp.core.masterkey import MasterKey

    MasterKey.load_or_create(tmp_path / "c" / "master.key")  # a key from another installation
    other = _config(tmp_path / "c.yaml", tmp_path / "c", pg_url, shared / "blobs")
    res = run_cli("doctor", "-c", str(other))
    assert res.returncode == 1 and "✗ master key:" in res.stdout
