"""Inbound SFTP: a real hub polls a unit's outbox on a real SFTP server and submits what it finds."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from lgsp.adapters.sftp import pollers
from lgsp.adapters.sftp.inbound import Poller
from lgsp.adapters.sftp.manifest import claim_name, new_claim
from lgsp.client import LgspClient
from lgsp.core.config import Config, ConfigError
from lgsp.core.hub import Hub

from .conftest import (
    DEST,
    OTHER,
    PASSWORD,
    SOURCE,
    USERNAME,
    ServerFactory,
    SftpServer,
    client_for,
    eventually,
    listing,
    prepare_store,
    write_hub_config,
    write_submission,
)

CONTENT = os.urandom(2 * (1 << 20) + 777)


def inbound(server: SftpServer, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "username": USERNAME,
                                "password_secret": "sftp-source", "host_key": server.pin(), "outbox": "/outbox",
                                "poll_interval_seconds": 0.1, "connect_timeout_seconds": 5, "timeout_seconds": 10}
    settings.update(overrides)
    return settings


async def configured(tmp_path: Path, sources: dict[str, dict[str, Any]]) -> Config:
    cfg = write_hub_config(tmp_path, adapters={"sftp": {"inbound": sources}})
    await prepare_store(cfg, secrets={"sftp-source": PASSWORD})
    return cfg


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[tuple[Hub, LgspClient]]:
    """The hub, and a client of the destination unit."""
    async with Hub(cfg) as hub, await client_for(hub, DEST) as dest:
        yield hub, dest


@pytest.fixture
async def server(sftp_server_factory: ServerFactory) -> SftpServer:
    return await sftp_server_factory(folders=("outbox",))


def poller(hub: Hub, unit: str = SOURCE) -> Poller:
    return pollers(hub)[unit]


async def rounds_pass(hub: Hub, count: int, unit: str = SOURCE) -> None:
    """Wait for `count` complete poll rounds that start after now."""
    start = poller(hub, unit).rounds
    await eventually(lambda: poller(hub, unit).rounds >= start + count + 1, what=f"{count} poll rounds")


async def inbox_of(client: LgspClient) -> list[dict[str, Any]]:
    return await client.inbox()


def error_report(server: SftpServer, name: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((server.root / "outbox" / "failed" / f"{name}.error.json").read_text("utf-8"))
    return report


# -- the good path --------------------------------------------------------------------------------

async def test_file_with_manifest_reaches_the_destination(tmp_path: Path, server: SftpServer) -> None:
    outbox = server.root / "outbox"
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        write_submission(outbox, "cong-van-123.pdf", CONTENT, manifest={
            "to": [DEST], "subject": "Công văn số 123/UBND", "sha256": hashlib.sha256(CONTENT).hexdigest().upper(),
            "size": len(CONTENT), "priority": 2, "data_type": "pdf", "file": "cong-van-123.pdf"})

        async def arrived() -> bool:
            return len(await inbox_of(dest)) == 1

        await eventually(arrived, what="the packet in the destination's inbox")
        [item] = await inbox_of(dest)
        assert item["from"] == SOURCE
        assert item["subject"] == "Công văn số 123/UBND"
        assert (item["priority"], item["data_type"], item["size"]) == (2, "pdf", len(CONTENT))
        assert await dest.fetch_bytes(item["id"]) == CONTENT  # the hub checked the hash on the way in
        status = await dest.status(item["id"])
        assert status["metadata"]["sftp_file"] == "cong-van-123.pdf"

        done = outbox / "done"
        # The claim file is removed last: once it is gone the move is complete and nothing is left behind.
        await eventually(lambda: listing(outbox) == ["done", "failed"], what="the move to done/")
        assert (done / "cong-van-123.pdf").read_bytes() == CONTENT
        record = json.loads((done / "cong-van-123.pdf.manifest.json").read_text("utf-8"))
        assert record["lgsp"]["packet_id"] == item["id"]
        assert record["subject"] == "Công văn số 123/UBND"
        assert listing(outbox / "failed") == []
        assert poller(hub).submitted == 1


async def test_partial_upload_is_not_picked_up(tmp_path: Path, server: SftpServer) -> None:
    outbox = server.root / "outbox"
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        (outbox / "bao-cao.xlsx").write_bytes(CONTENT[:1000])  # still uploading: no manifest yet
        manifest = json.dumps({"to": [DEST], "subject": "Báo cáo", "sha256": hashlib.sha256(CONTENT).hexdigest()})
        (outbox / ".bao-cao.xlsx.manifest.json.tmp").write_text(manifest)  # the manifest being written
        (outbox / "bao-cao.xlsx.part").write_bytes(b"temporary name")
        (outbox / "bao-cao.xlsx.part.manifest.json").write_text(manifest)  # describes a temporary file: ignored
        await rounds_pass(hub, 3)
        assert await inbox_of(dest) == []
        assert sorted(listing(outbox)) == sorted([".bao-cao.xlsx.manifest.json.tmp", "bao-cao.xlsx",
                                                  "bao-cao.xlsx.part", "bao-cao.xlsx.part.manifest.json"])
        assert poller(hub).last_error is None

        (outbox / "bao-cao.xlsx").write_bytes(CONTENT)  # the upload finishes, then the manifest appears
        (outbox / ".bao-cao.xlsx.manifest.json.tmp").rename(outbox / "bao-cao.xlsx.manifest.json")

        async def arrived() -> bool:
            return len(await inbox_of(dest)) == 1

        await eventually(arrived, what="the packet once its manifest is complete")
        await eventually(lambda: (outbox / "done" / "bao-cao.xlsx.manifest.json").exists(), what="done/")


# -- files that go to failed/ ---------------------------------------------------------------------

async def test_wrong_hash_goes_to_failed_with_the_reason(tmp_path: Path, server: SftpServer) -> None:
    outbox = server.root / "outbox"
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        manifest = {"to": [DEST], "subject": "Sai mã băm", "sha256": hashlib.sha256(b"other bytes").hexdigest()}
        write_submission(outbox, "sai.bin", CONTENT, manifest=manifest)
        failed = outbox / "failed"
        await eventually(lambda: (failed / "sai.bin.manifest.json").exists(), what="the move to failed/")
        assert sorted(listing(failed)) == ["sai.bin", "sai.bin.error.json", "sai.bin.manifest.json"]
        assert (failed / "sai.bin").read_bytes() == CONTENT
        assert json.loads((failed / "sai.bin.manifest.json").read_text()) == manifest  # the unit's bytes, untouched
        report = error_report(server, "sai.bin")
        assert report["code"] == "content.hash_mismatch"
        assert "SHA-256 differs" in report["reason_en"] and report["reason"] != report["reason_en"]
        assert report["title"] == "Mã băm nội dung không khớp"
        assert report["unit"] == SOURCE
        assert listing(outbox) == ["done", "failed"]
        await rounds_pass(hub, 1)
        assert await inbox_of(dest) == []  # nothing was delivered
        assert poller(hub).failed == 1


@pytest.mark.parametrize(("name", "manifest", "code", "reason"), [
    ("not-json.txt", b"{\"to\": [", "request.malformed", "not valid JSON"),
    ("no-subject.txt", {"to": [DEST], "sha256": "0" * 64}, "request.invalid", "the manifest lacks: subject"),
    ("typo.txt", {"recipients": [DEST], "to": [DEST], "subject": "s", "sha256": "0" * 64}, "request.invalid",
     "unknown field(s) in the manifest: recipients"),
    ("unknown-unit.txt", {"to": ["000.00.99.H23"], "subject": "s", "sha256": None}, "route.unknown_destination",
     "000.00.99.H23"),
    ("size.txt", {"to": [DEST], "subject": "s", "sha256": None, "size": 5}, "content.size_mismatch",
     "the manifest says 5 bytes"),
    ("other-file.txt", {"to": [DEST], "subject": "s", "sha256": None, "file": "x.txt"}, "request.invalid",
     "describes 'x.txt'"),
    ("bad-priority.txt", {"to": [DEST], "subject": "s", "sha256": None, "priority": 9}, "request.invalid",
     "priority: must be 0"),
    ("array.txt", b"[1, 2]", "request.invalid", "must be a JSON object"),
    ("huge.txt", b"{" + b" " * 70000 + b"}", "request.invalid", "the manifest is larger than 65536 bytes"),
    # Read like a JSON request body (core/text.py): bounded depth and numbers, no NUL or lone surrogate.
    ("deep.txt", b"[" * 20000 + b"]" * 20000, "request.malformed", "nested deeper than 64 levels"),
    ("big-number.txt", b'{"to": [], "subject": "s", "sha256": "", "size": 1' + b"0" * 5000 + b"}",
     "request.malformed", "a number has more than"),
    ("nul-subject.txt", f'{{"to": ["{DEST}"], "subject": "a\\u0000b", "sha256": "{"0" * 64}"}}'.encode(),
     "request.invalid", "subject: must not contain NUL"),
    ("surrogate-to.txt", f'{{"to": ["\\ud800"], "subject": "s", "sha256": "{"0" * 64}"}}'.encode(),
     "request.invalid", "to[0]: must be valid Unicode"),
    ("control-to.txt", {"to": [DEST + "\n"], "subject": "s", "sha256": None}, "request.invalid",
     "to: must not contain control characters"),
    ("deadline-edge.txt", {"to": [DEST], "subject": "s", "sha256": None, "deadline": "0001-01-01T00:00:00+01:00"},
     "request.invalid", "deadline: must be before 9000"),
])
async def test_bad_manifest_goes_to_failed_with_the_reason(tmp_path: Path, server: SftpServer, name: str,
                                                           manifest: Any, code: str, reason: str) -> None:
    outbox = server.root / "outbox"
    content = f"content of {name}".encode()
    if isinstance(manifest, dict) and "sha256" in manifest and manifest["sha256"] is None:
        manifest["sha256"] = hashlib.sha256(content).hexdigest()
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (_hub, dest):
        if isinstance(manifest, bytes):
            write_submission(outbox, name, content, raw_manifest=manifest)
        else:
            write_submission(outbox, name, content, manifest=manifest)
        await eventually(lambda: (outbox / "failed" / f"{name}.manifest.json").exists(), what="the move to failed/")
        report = error_report(server, name)
        assert report["code"] == code
        assert reason in report["reason_en"]  # "reason" is the Vietnamese one
        assert (outbox / "failed" / name).read_bytes() == content
        assert listing(outbox) == ["done", "failed"]
        assert await inbox_of(dest) == []


# -- never twice ------------------------------------------------------------------------------------

async def test_no_second_submission_when_the_move_fails_even_across_a_restart(
        tmp_path: Path, server: SftpServer) -> None:
    """The crash window: the packet is accepted but the file is still in the outbox."""
    outbox = server.root / "outbox"
    server.state.deny_rename_into = {"/outbox/done"}
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        write_submission(outbox, "mot-lan.doc", CONTENT)

        async def arrived() -> bool:
            return len(await inbox_of(dest)) == 1

        await eventually(arrived, what="the submitted packet")
        await rounds_pass(hub, 3)  # each round finds the claim, sees the accepted packet, fails to move
        assert len(await inbox_of(dest)) == 1
        assert "permission denied" in (poller(hub).last_error or "")
        assert "mot-lan.doc" in listing(outbox)
        assert poller(hub).submitted == 1
        [packet_id] = [i["id"] for i in await inbox_of(dest)]

    server.state.deny_rename_into = set()  # the operator fixes the folder rights; the hub restarts
    async with running(cfg) as (hub, dest):
        await eventually(lambda: listing(outbox) == ["done", "failed"], what="the move to done/")
        record = json.loads((outbox / "done" / "mot-lan.doc.manifest.json").read_text())
        assert record["lgsp"]["packet_id"] == packet_id
        assert [i["id"] for i in await inbox_of(dest)] == [packet_id]
        assert poller(hub).submitted == 0  # the restarted hub only finished the move


async def test_claimed_but_never_submitted_file_is_submitted_once(tmp_path: Path, server: SftpServer) -> None:
    """The other crash window: the manifest was claimed, then the hub died before submitting."""
    outbox = server.root / "outbox"
    write_submission(outbox, "da-nhan.txt", CONTENT)
    claim = new_claim(datetime.now(UTC))
    (outbox / "da-nhan.txt.manifest.json").rename(outbox / claim_name("da-nhan.txt", claim))
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        await eventually(lambda: listing(outbox) == ["done", "failed"], what="the move to done/")
        await rounds_pass(hub, 2)
        [item] = await inbox_of(dest)
        record = json.loads((outbox / "done" / "da-nhan.txt.manifest.json").read_text())
        assert record["lgsp"]["packet_id"] == item["id"]
        assert record["lgsp"]["claim"] == claim
        assert listing(outbox) == ["done", "failed"]


async def test_same_name_twice_keeps_both_records(tmp_path: Path, server: SftpServer) -> None:
    outbox = server.root / "outbox"
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (_hub, dest):
        write_submission(outbox, "bao-cao.txt", b"first week")
        await eventually(lambda: listing(outbox) == ["done", "failed"], what="first done/")
        write_submission(outbox, "bao-cao.txt", b"second week")

        async def two() -> bool:
            return len(await inbox_of(dest)) == 2

        await eventually(two, what="the second packet")
        await eventually(lambda: listing(outbox) == ["done", "failed"], what="second done/")
        assert len(listing(outbox / "done")) == 4
        done = outbox / "done"
        names = listing(done)
        second = next(n for n in names if n.startswith("bao-cao.") and n != "bao-cao.txt"
                      and not n.endswith(".manifest.json"))
        assert (done / "bao-cao.txt").read_bytes() == b"first week"
        assert (done / second).read_bytes() == b"second week"
        ids = {json.loads((done / f"{n}.manifest.json").read_text())["lgsp"]["packet_id"]
               for n in ("bao-cao.txt", second)}
        assert ids == {i["id"] for i in await inbox_of(dest)}


# -- isolation and trust ------------------------------------------------------------------------

async def test_a_file_the_hub_cannot_read_does_not_hold_up_the_others(tmp_path: Path, server: SftpServer) -> None:
    outbox = server.root / "outbox"
    server.state.deny_read_under = {"/outbox/khoa.bin"}
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        write_submission(outbox, "khoa.bin", b"locked by the server")
        write_submission(outbox, "mo.bin", b"readable")

        async def subjects() -> list[str]:
            return sorted(i["subject"] for i in await inbox_of(dest))

        async def readable_arrived() -> bool:
            return await subjects() == ["Gửi mo.bin"]

        await eventually(readable_arrived, what="the readable file")
        await rounds_pass(hub, 2)  # the locked file is retried each round, not failed, not submitted
        assert await subjects() == ["Gửi mo.bin"]
        assert "permission denied" in (poller(hub).last_error or "")
        assert "khoa.bin" in listing(outbox)
        assert listing(outbox / "failed") == []

        server.state.deny_read_under = set()  # the unit fixes the file's rights

        async def both() -> bool:
            return await subjects() == ["Gửi khoa.bin", "Gửi mo.bin"]

        await eventually(both, what="the formerly locked file")
        await rounds_pass(hub, 1)
        assert await subjects() == ["Gửi khoa.bin", "Gửi mo.bin"]
        assert poller(hub).last_error is None

async def test_a_file_name_that_is_not_utf8_does_not_stop_the_outbox(tmp_path: Path, server: SftpServer) -> None:
    """A name that is not UTF-8 failed every listing of the outbox; now it is left where it is and
    the other files are sent."""
    outbox = server.root / "outbox"
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        os.makedirs(bytes(outbox), exist_ok=True)
        with open(bytes(outbox) + b"/t\xeai.bin", "wb") as fh:
            fh.write(b"latin-1 name")
        write_submission(outbox, "mo.bin", b"readable")

        async def arrived() -> bool:
            return sorted(i["subject"] for i in await inbox_of(dest)) == ["Gửi mo.bin"]

        await eventually(arrived, what="the file with a UTF-8 name")
        await rounds_pass(hub, 1)
        assert poller(hub).last_error is None
        assert os.path.exists(bytes(outbox) + b"/t\xeai.bin")


async def test_a_silent_server_does_not_stall_other_units(tmp_path: Path, server: SftpServer) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = black_hole.sockets[0].getsockname()[1]
    try:
        cfg = await configured(tmp_path, {
            OTHER: inbound(server, port=port, connect_timeout_seconds=30, outbox="/elsewhere"),
            SOURCE: inbound(server),
        })
        async with running(cfg) as (hub, dest):
            write_submission(server.root / "outbox", "nhanh.txt", b"not held up")

            async def arrived() -> bool:
                return len(await inbox_of(dest)) == 1

            await eventually(arrived, timeout=10, what="the healthy unit's packet")
            await rounds_pass(hub, 2, unit=SOURCE)  # and it keeps polling...
            assert poller(hub, OTHER).rounds == 0  # ...while the other is still stuck in its first connect
    finally:
        black_hole.close()


async def test_changed_host_key_inbound_never_logs_in(tmp_path: Path, sftp_server_factory: ServerFactory,
                                                      host_key: asyncssh.SSHKey) -> None:
    impostor = await sftp_server_factory("impostor", key=asyncssh.generate_private_key("ssh-ed25519"),
                                         folders=("outbox",))
    cfg = await configured(tmp_path, {SOURCE: inbound(impostor, host_key=host_key.get_fingerprint("sha256"))})
    write_submission(impostor.root / "outbox", "bi-mat.txt", b"must not leave")
    async with running(cfg) as (hub, dest):
        await rounds_pass(hub, 2)
        assert "not the pinned one" in (poller(hub).last_error or "")
        assert impostor.state.connections >= 2
        assert impostor.state.auth_attempts == 0
        assert sorted(listing(impostor.root / "outbox")) == ["bi-mat.txt", "bi-mat.txt.manifest.json"]
        assert await inbox_of(dest) == []


async def test_unregistered_unit_leaves_its_outbox_alone(tmp_path: Path, server: SftpServer) -> None:
    cfg = await configured(tmp_path, {"000.00.77.H23": inbound(server)})
    write_submission(server.root / "outbox", "x.txt", b"x")
    async with Hub(cfg) as hub:
        await rounds_pass(hub, 1, unit="000.00.77.H23")
        assert "not registered" in (poller(hub, "000.00.77.H23").last_error or "")
        assert server.state.connections == 0
        assert sorted(listing(server.root / "outbox")) == ["x.txt", "x.txt.manifest.json"]


async def test_disabled_unit_is_not_polled(tmp_path: Path, server: SftpServer) -> None:
    cfg = await configured(tmp_path, {SOURCE: inbound(server, enabled=False)})
    async with Hub(cfg) as hub:
        assert pollers(hub) == {}
    assert server.state.connections == 0


# -- settings -------------------------------------------------------------------------------------

def test_inbound_settings_errors_name_key_and_line(tmp_path: Path) -> None:
    good_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    cfg = write_hub_config(tmp_path, adapters={"sftp": {
        "inbound": {
            SOURCE: {"host": "sftp.example", "username": "u", "password_secret": "s", "host_key": good_key,
                     "poll_interval_seconds": 0, "max_files_per_poll": "many", "outbx": "/x"},
            DEST: {"host": "sftp.example", "username": "u", "client_key_secret": "k", "host_key": "*",
                   "outbox": "/out", "done": "/out"},
            "not a unit": {},
        },
        "polling": True,
    }})
    with pytest.raises(ConfigError) as caught:
        Hub(cfg).check_config()
    found = {(i.path, i.message.split(" (")[0]): i.where for i in caught.value.issues}
    base = "adapters.sftp.inbound"
    expected = {
        (f"{base}.{SOURCE}", "missing required key 'outbox': a folder on the SFTP server, e.g. /lgsp/outbox"),
        (f"{base}.{SOURCE}.poll_interval_seconds", "must be a number of seconds greater than 0"),
        (f"{base}.{SOURCE}.max_files_per_poll", "must be an integer of 1 or more"),
        (f"{base}.{SOURCE}.outbx", "unknown key"),
        (f"{base}.{DEST}.host_key", "blind trust is not allowed: the server's public key as an OpenSSH line"),
        (f"{base}.{DEST}.done", "outbox, done and failed must be three different folders"),
        ("adapters.sftp.polling", "unknown key"),
    }
    assert expected <= set(found), sorted(found)
    assert any(path == f"{base}.not a unit" for path, _ in found)
    for key, where in found.items():
        assert where.startswith(str(tmp_path / "lgsp.yaml") + ":"), (key, where)  # every issue has its line
