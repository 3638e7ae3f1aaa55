"""Outbound SFTP: the push adapter against a real asyncssh SFTP server, with real stored packets."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from lgsp.adapters.sftp.connection import SftpError, open_session
from lgsp.adapters.sftp.push import SftpPushAdapter
from lgsp.adapters.sftp.settings import parse_target
from lgsp.core import logs
from lgsp.core.config import ConfigError
from lgsp.core.exchange import PacketInfo
from lgsp.core.hub import Hub
from lgsp.core.i18n import Text, render_stored
from lgsp.core.push import PushFailure, PushJob, PushReceipt, idempotency_key
from tests.blob_support import kept_inline, lose_stored, replace_stored

from .conftest import (
    DEST,
    PASSWORD,
    SOURCE,
    USERNAME,
    ServerFactory,
    SftpServer,
    client_for,
    eventually,
    free_port,
    listing,
    prepare_store,
    stored_packet,
    target,
    write_hub_config,
)

CONTENT = os.urandom(3 * (1 << 20) + 12345)  # several chunks, not a multiple of any block size


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    # Push targets are handed to the adapter directly, not put in delivery.targets, so a delivery
    # engine (once merged) cannot push the same packets concurrently with these tests.
    cfg = write_hub_config(tmp_path)
    await prepare_store(cfg, secrets={"sftp-dest": PASSWORD, "sftp-wrong": "not-the-password"})
    async with Hub(cfg) as running:
        yield running


def adapter(hub: Hub) -> SftpPushAdapter:
    found = hub.push_adapters["sftp"]
    assert isinstance(found, SftpPushAdapter)
    return found


async def job(hub: Hub, packet: PacketInfo, settings: dict[str, Any], attempt: int = 1) -> PushJob:
    path = hub.blobs.path(packet.blob_key)
    return PushJob(packet=packet, unit=DEST, target=settings, idempotency_key=idempotency_key(packet.id, DEST),
                   attempt=attempt, content_path=path, opener=await hub.content.opener(path),
                   holder=functools.partial(hub.content.holds, path))


async def push(hub: Hub, packet: PacketInfo, settings: dict[str, Any]) -> PushReceipt:
    return await adapter(hub).push(await job(hub, packet, settings))


async def refused(hub: Hub, packet: PacketInfo, settings: dict[str, Any]) -> PushFailure:
    with pytest.raises(PushFailure) as caught:
        await push(hub, packet, settings)
    return caught.value


def check_delivered(server: SftpServer, packet: PacketInfo, content: bytes) -> dict[str, Any]:
    name = f"{packet.id}.{packet.data_type}"
    inbox = server.root / "inbox"
    assert listing(inbox) == sorted([name, f"{name}.manifest.json"])  # no temporary file left behind
    assert (inbox / name).read_bytes() == content
    manifest: dict[str, Any] = json.loads((inbox / f"{name}.manifest.json").read_text(encoding="utf-8"))
    return manifest


# -- good paths -----------------------------------------------------------------------------------

async def test_push_with_password_uploads_file_then_manifest(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, CONTENT)
    receipt = await push(hub, packet, target(sftp_server))
    name = f"{packet.id}.edxml"
    assert receipt.remote_id == name
    assert receipt.detail == f"uploaded to sftp://{USERNAME}@127.0.0.1:{sftp_server.port}/inbox/{name}"
    manifest = check_delivered(sftp_server, packet, CONTENT)
    assert re.fullmatch(r"[0-9a-f]{32}", manifest.pop("request_id"))  # no request accepted it: a new id
    assert manifest == {
        "lgsp_manifest": 1, "id": packet.id, "idempotency_key": f"{packet.id}:{DEST}", "from": SOURCE, "to": DEST,
        "subject": "Công văn 12", "priority": 1, "data_type": "edxml", "file": name, "size": len(CONTENT),
        "sha256": hashlib.sha256(CONTENT).hexdigest(), "created_at": manifest["created_at"], "deadline": None,
    }
    assert manifest["created_at"].endswith("Z")
    assert sftp_server.state.logins == 1


async def test_manifest_carries_the_file_name_a_unit_sent(hub: Hub, sftp_server: SftpServer) -> None:
    """A packet that came in over SFTP keeps its original file name when it goes out over SFTP."""
    packet = await stored_packet(hub, b"%PDF-1.7", data_type="pdf", meta={"sftp_file": "QD-15.pdf"})
    await push(hub, packet, target(sftp_server))
    manifest = check_delivered(sftp_server, packet, b"%PDF-1.7")
    assert manifest["source_file"] == "QD-15.pdf"
    assert manifest["file"] == f"{packet.id}.pdf"


@pytest.mark.parametrize(("key_format", "passphrase"), [("openssh", None), ("pkcs8-pem", "cụm-mật-khẩu")])
async def test_push_with_client_key(hub: Hub, sftp_server_factory: ServerFactory, client_key: asyncssh.SSHKey,
                                    key_format: str, passphrase: str | None) -> None:
    server = await sftp_server_factory(password=None, client_key=client_key)
    await hub.secrets.set("sftp-key", client_key.export_private_key(key_format, passphrase).decode())
    settings = target(server, password_secret=None, client_key_secret="sftp-key")
    if passphrase:
        await hub.secrets.set("sftp-key-pass", passphrase)
        settings["client_key_passphrase_secret"] = "sftp-key-pass"
    packet = await stored_packet(hub, b"<edXML/>")
    await push(hub, packet, settings)
    check_delivered(server, packet, b"<edXML/>")
    assert server.state.logins == 1


async def test_retried_push_converges_on_the_same_files(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, CONTENT)
    settings = target(sftp_server)
    await push(hub, packet, settings)
    inbox = sftp_server.root / "inbox"
    name = f"{packet.id}.edxml"
    first_manifest = (inbox / f"{name}.manifest.json").read_bytes()
    first_stat = (inbox / name).stat()

    again = await adapter(hub).push(await job(hub, packet, settings, attempt=2))
    assert again.detail.startswith("already present at ")
    assert (inbox / name).stat().st_mtime_ns == first_stat.st_mtime_ns  # not uploaded a second time
    assert (inbox / f"{name}.manifest.json").read_bytes() == first_manifest

    # An attempt that died after the rename and before the manifest, with a stale partial upload:
    (inbox / f"{name}.manifest.json").unlink()
    (inbox / name).write_bytes(b"half")
    (inbox / f".{name}.part").write_bytes(b"stale partial upload")
    await adapter(hub).push(await job(hub, packet, settings, attempt=3))
    check_delivered(sftp_server, packet, CONTENT)
    rewritten = json.loads((inbox / f"{name}.manifest.json").read_bytes())
    first = json.loads(first_manifest)
    assert rewritten.pop("request_id") and first.pop("request_id")
    assert rewritten == first  # the same on every attempt but for the attempt's request id


async def test_push_carries_the_request_id_that_accepted_the_packet(hub: Hub, sftp_server: SftpServer) -> None:
    """Like REST and SOAP pushes (`X-Request-Id`), so the receiver's log and the hub's can be matched."""
    packet = await stored_packet(hub, b"<edXML/>")
    with logs.bound(request_id="trace-upload-7"):
        logs.remember_packet(packet.id)
    capture, logger = _Capture(), logging.getLogger("lgsp.adapters.sftp")
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        await push(hub, packet, target(sftp_server))
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
    assert check_delivered(sftp_server, packet, b"<edXML/>")["request_id"] == "trace-upload-7"
    pushed = [r for r in capture.records if "pushed to" in r.getMessage()]
    assert pushed and all(getattr(r, "request_id", None) == "trace-upload-7" for r in pushed)

    # An earlier attempt's manifest with another request id is still this delivery's: not uploaded again.
    again = await adapter(hub).push(await job(hub, packet, target(sftp_server), attempt=2))
    assert again.detail.startswith("already present at ")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(logs.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_push_into_a_write_only_drop_folder(hub: Hub, sftp_server: SftpServer) -> None:
    sftp_server.state.deny_read_under = {"/inbox"}  # the hub may write and list there, not read back
    packet = await stored_packet(hub, CONTENT)
    await push(hub, packet, target(sftp_server))
    await adapter(hub).push(await job(hub, packet, target(sftp_server), attempt=2))  # cannot tell: uploads again
    check_delivered(sftp_server, packet, CONTENT)


@pytest.mark.parametrize("form", ["fingerprint", "keyscan", "rotation-list"])
async def test_host_key_pin_forms(hub: Hub, sftp_server: SftpServer, form: str) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    pin: str | list[str] = {
        "fingerprint": sftp_server.host_key.get_fingerprint("sha256"),
        "keyscan": f"[127.0.0.1]:{sftp_server.port} {sftp_server.pin()}",
        "rotation-list": [other, sftp_server.pin()],
    }[form]
    packet = await stored_packet(hub, b"pinned")
    await push(hub, packet, target(sftp_server, host_key=pin))
    check_delivered(sftp_server, packet, b"pinned")


async def test_probe(hub: Hub, sftp_server: SftpServer) -> None:
    probe = adapter(hub).probe
    assert await probe(DEST, target(sftp_server)) is True
    assert await probe(DEST, target(sftp_server, directory="/missing")) is False
    assert await probe(DEST, target(sftp_server, port=free_port())) is False
    assert await probe(DEST, target(sftp_server, host_key=None)) is False  # invalid settings never connect
    assert await probe(DEST, target(sftp_server, password_secret="sftp-wrong")) is False


# -- refusals and failures ------------------------------------------------------------------------

@pytest.mark.parametrize("pin_form", ["public-key", "fingerprint"])
async def test_changed_host_key_is_refused_before_any_credential(
        hub: Hub, sftp_server_factory: ServerFactory, host_key: asyncssh.SSHKey, pin_form: str,
        caplog: pytest.LogCaptureFixture) -> None:
    impostor_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await sftp_server_factory(key=impostor_key)  # same address, another host key
    pinned = (host_key.export_public_key().decode().strip() if pin_form == "public-key"
              else host_key.get_fingerprint("sha256"))
    packet = await stored_packet(hub, b"secret document")
    with caplog.at_level(logging.ERROR, logger="lgsp.adapters.sftp"):
        failure = await refused(hub, packet, target(server, host_key=pinned))
    assert failure.retryable is False
    assert "not the pinned one" in failure.reason
    assert impostor_key.get_fingerprint("sha256") in failure.reason  # what the server showed, for the operator
    assert "no credentials were sent" in failure.reason
    assert server.state.connections == 1
    assert server.state.auth_attempts == 0  # the password never left the hub
    assert listing(server.root / "inbox") == []
    assert any("not the pinned one" in r.getMessage() for r in caplog.records)
    vietnamese = read_as_stored(failure)
    assert "không phải khóa đã ghim" in vietnamese and "chưa gửi thông tin xác thực nào" in vietnamese
    assert impostor_key.get_fingerprint("sha256") in vietnamese
    assert await adapter(hub).probe(DEST, target(server, host_key=pinned)) is False
    assert server.state.auth_attempts == 0


def read_as_stored(failure: PushFailure) -> str:
    """The failure as a delivery stores it (its English text) and as an operator reads it by default: the
    same Vietnamese as the message itself (the reason is a catalogue message), and English with `en`."""
    assert isinstance(failure.reason, Text)
    stored = str(failure.reason)
    vietnamese = render_stored(stored, "vi")
    assert vietnamese == failure.reason.render("vi") != stored
    assert render_stored(stored, "en") == stored
    return vietnamese


async def test_sftp_errors_carry_a_stable_code(hub: Hub, sftp_server: SftpServer) -> None:
    """The kind of failure as a code (logs, code that branches on it), whatever the language."""
    parsed = parse_target(DEST, target(sftp_server, port=free_port()))[0]
    assert parsed is not None
    with pytest.raises(SftpError) as refused_error:
        async with open_session(hub, parsed.connection):
            pass
    assert refused_error.value.code == "sftp.refused" and refused_error.value.retryable
    parsed = parse_target(DEST, target(sftp_server, password_secret="sftp-never-stored"))[0]
    assert parsed is not None
    with pytest.raises(SftpError) as missing:
        async with open_session(hub, parsed.connection):
            pass
    assert missing.value.code == "sftp.secret_missing" and not missing.value.retryable


async def test_connection_refused_is_retryable(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, b"x")
    failure = await refused(hub, packet, target(sftp_server, port=free_port()))
    assert failure.retryable is True
    assert "refused the connection" in failure.reason
    assert read_as_stored(failure).startswith("kết nối: ")
    assert "từ chối kết nối" in read_as_stored(failure)


async def test_silent_server_times_out_retryable(hub: Hub, sftp_server: SftpServer) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the TCP connection, never speaks SSH
        writer.close()

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = black_hole.sockets[0].getsockname()[1]
    try:
        packet = await stored_packet(hub, b"x")
        failure = await refused(hub, packet, target(sftp_server, port=port, connect_timeout_seconds=0.5))
    finally:
        black_hole.close()
    assert failure.retryable is True
    assert "did not answer in time" in failure.reason
    assert "không trả lời kịp thời hạn" in read_as_stored(failure)


async def test_wrong_password_is_not_retried_and_never_logged(hub: Hub, sftp_server: SftpServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    packet = await stored_packet(hub, b"x")
    with caplog.at_level(logging.DEBUG):
        failure = await refused(hub, packet, target(sftp_server, password_secret="sftp-wrong"))
    assert failure.retryable is False
    assert "rejected the credentials" in failure.reason
    assert "từ chối thông tin xác thực của đơn vị" in read_as_stored(failure)
    assert sftp_server.state.auth_attempts == 1
    assert sftp_server.state.logins == 0
    assert "not-the-password" not in caplog.text
    assert "not-the-password" not in failure.reason


async def test_missing_secret_is_not_retried_and_does_not_connect(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, b"x")
    failure = await refused(hub, packet, target(sftp_server, password_secret="sftp-never-stored"))
    assert failure.retryable is False
    assert "lgsp secret set sftp-never-stored" in failure.reason
    assert "bí mật mật khẩu 'sftp-never-stored'" in read_as_stored(failure)
    assert sftp_server.state.connections == 0


async def test_permission_denied_is_not_retried(hub: Hub, sftp_server: SftpServer) -> None:
    sftp_server.state.deny_write_under = {"/inbox"}
    packet = await stored_packet(hub, b"x")
    failure = await refused(hub, packet, target(sftp_server))
    assert failure.retryable is False
    assert "permission denied" in failure.reason
    assert "không có quyền trên" in read_as_stored(failure)
    assert listing(sftp_server.root / "inbox") == []


async def test_missing_remote_folder_is_not_retried(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, b"x")
    failure = await refused(hub, packet, target(sftp_server, directory="/does/not/exist"))
    assert failure.retryable is False
    assert "'/does/not/exist' does not exist" in failure.reason


async def test_short_remote_file_is_caught_before_the_rename(hub: Hub, sftp_server: SftpServer) -> None:
    sftp_server.state.truncate_writes_at = 1000  # a server whose disk keeps less than it acknowledged
    packet = await stored_packet(hub, CONTENT)
    failure = await refused(hub, packet, target(sftp_server))
    assert failure.retryable is True
    assert f"holds 1000 bytes after {len(CONTENT)} bytes were sent" in failure.reason
    assert listing(sftp_server.root / "inbox") == []  # nothing under the final name, no temp left

    sftp_server.state.truncate_writes_at = None  # the disk recovers: the retry delivers
    await adapter(hub).push(await job(hub, packet, target(sftp_server), attempt=2))
    check_delivered(sftp_server, packet, CONTENT)


async def test_corrupt_stored_copy_is_never_delivered(hub: Hub, sftp_server: SftpServer) -> None:
    original = b"original content" * 5000  # larger than blobs.inline_bytes: a file
    packet = await stored_packet(hub, original)
    assert await kept_inline(hub, packet.blob_key) is None
    await replace_stored(hub, packet.blob_key, b"damaged content!" * 5000)  # same length, plain, different bytes
    failure = await refused(hub, packet, target(sftp_server))
    assert failure.retryable is False
    assert "does not match its SHA-256" in failure.reason
    assert listing(sftp_server.root / "inbox") == []


async def test_a_tampered_copy_kept_in_the_store_is_never_delivered(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, b"original content")
    sealed = await kept_inline(hub, packet.blob_key)
    assert sealed is not None  # a small upload: kept in the store, no file
    await replace_stored(hub, packet.blob_key, sealed[:-1] + bytes([sealed[-1] ^ 1]))  # its last tag byte
    failure = await refused(hub, packet, target(sftp_server))
    assert failure.retryable is False
    assert "does not match its SHA-256" in failure.reason
    assert listing(sftp_server.root / "inbox") == []  # nor its temporary file


async def test_purged_content_fails_without_connecting(hub: Hub, sftp_server: SftpServer) -> None:
    packet = await stored_packet(hub, b"x")
    await lose_stored(hub, packet.blob_key)
    failure = await refused(hub, packet, target(sftp_server))
    assert failure.retryable is False
    assert sftp_server.state.connections == 0


# -- settings -------------------------------------------------------------------------------------

def _valid() -> dict[str, Any]:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    return {"protocol": "sftp", "host": "sftp.h23.example.gov.vn", "username": "lgsp", "password_secret": "sftp-h23",
            "host_key": key, "directory": "/lgsp/inbox"}


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"host_key": None}, "host_key", "required"),
    ({"host_key": "*"}, "host_key", "blind trust is not allowed"),
    ({"host_key": "none"}, "host_key", "blind trust is not allowed"),
    ({"host_key": ["ssh-ed25519 AAAAnotbase64!!"]}, "host_key[0]", "not a public key line"),
    ({"host_key": "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"}, "host_key", "too weak"),
    ({"host_key": "SHA256:abc"}, "host_key", "32 bytes"),
    ({"password_secret": None}, "password_secret", "give password_secret or client_key_secret"),
    ({"password_secret": "Mật khẩu thật!"}, "password_secret", "never the secret itself"),
    ({"client_key_passphrase_secret": "p"}, "client_key_passphrase_secret", "only meaningful"),
    ({"port": 70000}, "port", "between 1 and 65535"),
    ({"port": "22"}, "port", "between 1 and 65535"),
    ({"host": None}, "host", "required"),
    ({"username": ""}, "username", "must be the account"),
    ({"directory": None}, "directory", "required"),
    ({"timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
    ({"pasword_secret": "x"}, "pasword_secret", "unknown key (did you mean 'password_secret'?)"),
])
def test_validate_target_names_the_key(change: dict[str, Any], key: str, message: str) -> None:
    settings = {**_valid(), **change}
    settings = {k: v for k, v in settings.items() if v is not None}
    issues = parse_target(DEST, settings)[1]
    assert any(k == key and message in m for k, m in issues), issues


def test_valid_target_has_no_issues_and_takes_defaults() -> None:
    parsed, issues = parse_target(DEST, _valid())
    assert issues == []
    assert parsed is not None
    assert (parsed.connection.port, parsed.connection.connect_timeout, parsed.connection.timeout) == (22, 15.0, 60.0)
    assert parsed.directory == "/lgsp/inbox"
    assert parsed.connection.address == "sftp://lgsp@sftp.h23.example.gov.vn:22"


def test_hub_refuses_a_target_without_pinned_key_with_its_line(tmp_path: Path) -> None:
    settings = _valid()
    del settings["host_key"]
    settings["port"] = 0
    cfg = write_hub_config(tmp_path, targets={DEST: settings})
    with pytest.raises(ConfigError) as caught:
        Hub(cfg).check_config()
    found = {issue.path: issue for issue in caught.value.issues}
    base = f"delivery.targets.{DEST}"
    assert found[f"{base}.host_key"].where == cfg.where(base)  # a missing key points at its block's line
    assert found[f"{base}.port"].where == cfg.where(f"{base}.port")
    assert found[f"{base}.port"].where.endswith(".yaml:" + found[f"{base}.port"].where.rsplit(":", 1)[1])
    assert "never trusts" in found[f"{base}.host_key"].message


# -- through the hub's delivery engine ------------------------------------------------------------------


async def test_push_through_the_hub_delivery_engine(tmp_path: Path, sftp_server: SftpServer) -> None:
    cfg = write_hub_config(tmp_path, targets={DEST: target(sftp_server)})
    await prepare_store(cfg, secrets={"sftp-dest": PASSWORD})
    async with Hub(cfg) as hub:
        sender = await client_for(hub, SOURCE)
        async with sender:
            packet_id = await sender.send(CONTENT, [DEST], subject="Qua động cơ chuyển phát")
            name = f"{packet_id}.binary"
            inbox = sftp_server.root / "inbox"
            await eventually(lambda: (inbox / f"{name}.manifest.json").exists(), what="the pushed manifest")
            assert (inbox / name).read_bytes() == CONTENT

            async def delivered() -> bool:
                status = await sender.status(packet_id)
                return [d["state"] for d in status["deliveries"]] == ["delivered"]

            await eventually(delivered, what="the delivery to be recorded as delivered")
