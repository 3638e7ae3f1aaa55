"""Online backup and restore of a hub: the store and the blobs, never the master key beside them.

Why this order: the blob files present when the backup starts are first *held* (hard links in a
folder of the blob store, so a purge that deletes a file while the backup runs does not take the
held copy), then the store is copied as one consistent snapshot (SQLite's backup API, or
`pg_dump`, which reads inside one transaction), then the held files and any blob written since are
copied out. Every packet accepted before the backup started therefore has its content in the
backup unless the snapshot already says it was purged. A packet accepted *during* the backup may
have been delivered and purged before its file was copied; the manifest lists such files as
`missing` so nobody mistakes them for loss.

The master key stays out of the backup folder on purpose (a stolen backup must not open the
sealed secrets): the manifest records a fingerprint of it, and `restore` refuses a key that does
not match. Restore writes only into an empty store and an empty blob folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from lgsp.core.config import Config
from lgsp.core.i18n import Text, render
from lgsp.core.masterkey import Kek, MasterKey, MasterKeyError

__all__ = ["BackupError", "BackupReport", "RestoreReport", "backup", "master_key_fingerprint", "restore"]

FORMAT = "lgsp-backup/1"
MANIFEST = "backup.json"
SQLITE_FILE = "lgsp.db"
PG_DUMP_FILE = "lgsp.pgdump"
BLOBS_DIR = "blobs"
_HOLD_DIR = "backup-hold"
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot proceed; the message (a `Text`) says why, for one CLI line:
    `str()` gives it in the current language (LGSP_LANG for the CLI)."""

    def __str__(self) -> str:
        return render(self.args[0]) if len(self.args) == 1 and isinstance(self.args[0], Text) else super().__str__()


@dataclass(frozen=True)
class BackupReport:
    folder: Path
    database: str
    blob_files: int
    blob_bytes: int
    missing: tuple[str, ...]
    master_key_path: Path
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class RestoreReport:
    folder: Path
    database: str
    database_url: str
    blob_files: int
    blob_bytes: int
    created_at: str


@dataclass
class _Blobs:
    files: dict[str, dict[str, int | str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())


def _kek(config: Config) -> Kek | None:
    """The key-encryption key the master key file is sealed under, if one is configured."""
    return Kek.from_setting(config.security.master_key_kek)


def master_key_fingerprint(key: MasterKey) -> str:
    """A public fingerprint of the master key (derived one way, so it reveals nothing of the key)."""
    return hashlib.sha256(key.derive("backup fingerprint")).hexdigest()[:32]


def held_fingerprints(key: MasterKey) -> list[str]:
    """The fingerprint of every key the file holds (after `masterkey rotate --keep-old` the old
    key still opens a backup taken before the rotation)."""
    return [hashlib.sha256(k).hexdigest()[:32] for k in key.derive_all("backup fingerprint")]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL for pg_dump/pg_restore, and the environment carrying the password (never argv)."""
    parsed: URL = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
        parsed = parsed.set(password=None)
    return parsed.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(Text("command {name} not found (install the postgresql-client package)", name=name))
    return found


def _sha256_copy(src: Path, dst: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return size, sha.hexdigest()


def _files_under(root: Path) -> Iterator[tuple[str, Path]]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path.relative_to(root).as_posix(), path


@contextlib.contextmanager
def _held(objects: Path, blob_root: Path) -> Iterator[Path | None]:
    """Hard links to every blob file now present; None when the filesystem cannot link."""
    hold = blob_root / _HOLD_DIR / secrets.token_hex(8)
    try:
        hold.mkdir(parents=True)
        for rel, path in _files_under(objects):
            target = hold / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # purged between listing and linking
                os.link(path, target)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        shutil.rmtree(hold, ignore_errors=True)
        yield None
        return
    try:
        yield hold
    finally:
        shutil.rmtree(hold, ignore_errors=True)
        with contextlib.suppress(OSError):
            (blob_root / _HOLD_DIR).rmdir()


def _copy_blobs(objects: Path, hold: Path | None, dest: Path) -> _Blobs:
    out = _Blobs()
    if hold is not None:
        for rel, path in _files_under(hold):
            size, sha = _sha256_copy(path, dest / rel)
            out.files[rel] = {"size": size, "sha256": sha}
    # Written since the hold (or everything, when the filesystem cannot hard-link).
    for rel, path in _files_under(objects):
        if rel in out.files:
            continue
        try:
            size, sha = _sha256_copy(path, dest / rel)
        except FileNotFoundError:
            out.missing.append(rel)
            with contextlib.suppress(FileNotFoundError):
                (dest / rel).unlink()
            continue
        out.files[rel] = {"size": size, "sha256": sha}
    return out


def _sqlite_copy(src: Path, dst: Path) -> None:
    """SQLite's online backup API: a consistent copy while the hub keeps writing."""
    source = sqlite3.connect(src)  # read only in effect; WAL readers need the -shm file writable
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def backup(config: Config, folder: Path) -> BackupReport:
    """Take a consistent online backup of the hub described by `config` into `folder` (new or empty)."""
    if folder.exists() and any(folder.iterdir()):
        raise BackupError(Text("the backup folder {folder} is not empty; choose an empty folder", folder=folder))
    key_path = config.master_key_path
    try:
        key = MasterKey.load(key_path, _kek(config))
    except FileNotFoundError as exc:
        raise BackupError(Text("master key {path} not found", path=key_path)) from exc
    except MasterKeyError as exc:
        raise BackupError(exc.args[0] if len(exc.args) == 1 else str(exc)) from exc
    url = config.database_url
    sqlite = _is_sqlite(url)
    if sqlite:
        db_path = Path(str(make_url(url).database))
        if not db_path.is_file():
            raise BackupError(Text("database {path} not found", path=db_path))
    started = _now()
    folder.mkdir(parents=True, exist_ok=True)
    objects = config.blob_path / "objects"
    partial = folder / ".incomplete"
    partial.touch()
    with _held(objects, config.blob_path) as hold:
        if sqlite:
            _sqlite_copy(db_path, folder / SQLITE_FILE)
        else:
            dsn, env = _libpq(url)
            done = subprocess.run(  # noqa: S603 - fixed program, arguments are not shell-parsed
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                 f"--file={folder / PG_DUMP_FILE}", f"--dbname={dsn}"],
                env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BackupError(Text("pg_dump failed: {reason}",
                                       reason=done.stderr.strip().splitlines()[-1:] or done.returncode))
        blobs = _copy_blobs(objects, hold, folder / BLOBS_DIR)
    finished = _now()
    manifest = {
        "format": FORMAT,
        "hub": config.hub.identifier,
        "database": "sqlite" if sqlite else "postgresql",
        "database_file": SQLITE_FILE if sqlite else PG_DUMP_FILE,
        "started_at": started,
        "finished_at": finished,
        "master_key_fingerprint": master_key_fingerprint(key),
        "blobs": blobs.files,
        "missing": blobs.missing,
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)
    partial.unlink()
    return BackupReport(folder, str(manifest["database"]), len(blobs.files), blobs.size, tuple(blobs.missing),
                        key_path, started, finished)


def _read_manifest(folder: Path) -> dict[str, object]:
    if (folder / ".incomplete").exists():
        raise BackupError(Text("the backup {folder} is not complete (the backup command stopped half way)",
                               folder=folder))
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(Text("{folder} is not an lgsp backup ({file} is missing)",
                               folder=folder, file=MANIFEST)) from exc
    except ValueError as exc:
        raise BackupError(Text("{file} is damaged: {reason}", file=folder / MANIFEST, reason=exc)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(Text("{file}: unsupported format ({format} expected)", file=folder / MANIFEST, format=FORMAT))
    return data


async def _pg_is_empty(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: sa_inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return not names


def restore(config: Config, folder: Path, *, master_key_file: Path | None = None) -> RestoreReport:
    """Bring a backup back into the (empty) store and blob folder that `config` names.

    The master key must already be at the configured path, or be given as `master_key_file`
    (copied there with mode 0600); either way it must match the backup's fingerprint.
    """
    manifest = _read_manifest(folder)
    key_path = config.master_key_path
    source_key = master_key_file or key_path
    try:
        key = MasterKey.load(source_key, _kek(config))
    except FileNotFoundError as exc:
        raise BackupError(Text("master key {path} not found; a backup does not hold the master key: name the key "
                               "file kept apart (--master-key)", path=source_key)) from exc
    except MasterKeyError as exc:
        raise BackupError(exc.args[0] if len(exc.args) == 1 else str(exc)) from exc
    expected = str(manifest.get("master_key_fingerprint", ""))
    if not any(secrets.compare_digest(found, expected) for found in held_fingerprints(key)):
        raise BackupError(Text("the master key {path} is not this backup's key; if the master key was rotated "
                               "(lgsp masterkey rotate) after the backup, use the old key file kept with the backup",
                               path=source_key))
    install_key = master_key_file is not None and master_key_file.resolve() != key_path.resolve()
    if install_key and key_path.exists():
        try:
            present = master_key_fingerprint(MasterKey.load(key_path, _kek(config)))
        except MasterKeyError as exc:
            raise BackupError(exc.args[0] if len(exc.args) == 1 else str(exc)) from exc
        if not secrets.compare_digest(present, expected):
            raise BackupError(Text("another master key is already at {path}; not overwritten", path=key_path))
        install_key = False
    blobs = manifest.get("blobs")
    if not isinstance(blobs, dict):
        raise BackupError(Text("{file}: the list of blobs is missing", file=folder / MANIFEST))
    objects = config.blob_path / "objects"
    if any(True for _ in _files_under(objects)):
        raise BackupError(Text("the blob folder {folder} is not empty; restore only into an empty place",
                               folder=objects))
    url = config.database_url
    database = str(manifest.get("database"))
    sqlite = _is_sqlite(url)
    if (database == "sqlite") != sqlite:
        raise BackupError(Text("the backup is of {database} but the configuration uses {configured}",
                               database=database, configured="sqlite" if sqlite else "postgresql"))
    db_file = folder / str(manifest.get("database_file"))
    if not db_file.is_file():
        raise BackupError(Text("the database file {file} is missing", file=db_file))
    if sqlite:
        db_path = Path(str(make_url(url).database))
        if db_path.exists() and db_path.stat().st_size > 0:
            raise BackupError(Text("the database {path} already exists; restore only into an empty place",
                                   path=db_path))
    else:
        import asyncio

        if not asyncio.run(_pg_is_empty(url)):
            raise BackupError(Text("the target PostgreSQL database already has tables; restore only into an empty "
                                   "database"))

    # Blobs first, each checked against the manifest, so a damaged backup stops before the store exists.
    staged = config.blob_path / f"restore-{secrets.token_hex(6)}"
    total = 0
    try:
        for rel, meta in sorted(blobs.items()):
            src = folder / BLOBS_DIR / rel
            if not isinstance(meta, dict) or ".." in Path(rel).parts or Path(rel).is_absolute():
                raise BackupError(Text("{file}: invalid blob entry {entry!r}", file=folder / MANIFEST, entry=rel))
            try:
                size, sha = _sha256_copy(src, staged / rel)
            except FileNotFoundError as exc:
                raise BackupError(Text("the blob file {file} is missing", file=src)) from exc
            if size != meta.get("size") or not secrets.compare_digest(sha, str(meta.get("sha256"))):
                raise BackupError(Text("the blob file {file} does not match the hash in the manifest (the backup is "
                                       "damaged)", file=src))
            total += size
        if sqlite:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_copy(db_file, db_path)
        else:
            dsn, env = _libpq(url)
            done = subprocess.run(  # noqa: S603 - fixed program, arguments are not shell-parsed
                [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                 f"--dbname={dsn}", str(db_file)],
                env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BackupError(Text("pg_restore failed: {reason}",
                                       reason=done.stderr.strip().splitlines()[-1:] or done.returncode))
        objects.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            objects.rmdir()  # empty (checked above)
        if staged.exists():
            os.replace(staged, objects)
        else:
            objects.mkdir(parents=True, exist_ok=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if install_key and master_key_file is not None:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(master_key_file.read_bytes())
    return RestoreReport(folder, database, url if sqlite else _libpq(url)[0], len(blobs), total,
                         str(manifest.get("finished_at")))
