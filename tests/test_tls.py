"""TLS: the hub serving HTTPS (TLS 1.2+), certificate reload, per-unit client certificates, and
push targets checked against their own CA or a pinned fingerprint. Real handshakes on loopback,
from the Python client and from curl."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lgsp.client import Credentials, LgspClient, LgspError
from lgsp.client.client import tls_context
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.tls import TlsError, client_ssl, fingerprint_of_pem, normalise_fingerprint, target_problems

from .conftest import base_env, free_port

A, B = "000.00.01.H23", "000.00.02.H23"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
          *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, the hub's server certificate for 127.0.0.1, a second one (for reload), and two client
    certificates signed by the CA."""
    ca_key = _key()
    ca = _cert("lgsp test CA", ca_key, None, ca=True)
    _write(tmp_path / "ca.pem", ca)
    for name in ("server", "server2"):
        k = _key()
        _write(tmp_path / f"{name}.pem", _cert(f"hub {name}", k, ("lgsp test CA", ca_key), server=True), k)
    for name in ("client-a", "client-other"):
        k = _key()
        _write(tmp_path / f"{name}.pem", _cert(name, k, ("lgsp test CA", ca_key)), k)
    return tmp_path


def _config(tmp: Path, pki: Path, *, mtls: bool = True):  # type: ignore[no-untyped-def]
    cfg = load_config(None, env=base_env(tmp / "var"))
    return cfg.replace(tls={"cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key"),
                            "client_ca_file": str(pki / "ca.pem") if mtls else ""})


async def _actor(hub: Hub, unit: str, ssl_ctx: ssl.SSLContext) -> LgspClient:
    if await hub.directory.get_unit(unit) is None:
        await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    app = await hub.directory.add_application(unit, f"app-{len(await hub.directory.list_applications(unit))}")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    return LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret), ssl_context=ssl_ctx)


async def test_https_tls12_or_newer_and_reload(tmp_path: Path, pki: Path) -> None:
    async with Hub(_config(tmp_path, pki, mtls=False)) as hub:
        assert hub.url.startswith("https://")
        client = await _actor(hub, A, tls_context(str(pki / "ca.pem")))
        async with client:
            assert (await client.inbox()) == []
        # TLS 1.1 is refused.
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(pki / "ca.pem")
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.port, ssl=old)
        # Plain HTTP on the HTTPS port gets no answer of the exchange.
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(b"GET /v1/time HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert b"\"now\"" not in await reader.read(4096)
        writer.close()

        def served_fingerprint() -> str:
            der = ssl.get_server_certificate(("127.0.0.1", hub.port))
            return fingerprint_of_pem(der)

        before = await asyncio.to_thread(served_fingerprint)
        assert before == fingerprint_of_pem((pki / "server.pem").read_text())
        shutil.copy(pki / "server2.pem", pki / "server.pem")
        shutil.copy(pki / "server2.key", pki / "server.key")
        assert hub.reload_tls()
        assert await asyncio.to_thread(served_fingerprint) == fingerprint_of_pem((pki / "server2.pem").read_text())
        (pki / "server.key").write_text("not a key")
        assert not hub.reload_tls()  # the current certificate stays
        assert await asyncio.to_thread(served_fingerprint) == fingerprint_of_pem((pki / "server2.pem").read_text())


async def test_a_pinned_unit_needs_its_own_client_certificate(tmp_path: Path, pki: Path) -> None:
    async with Hub(_config(tmp_path, pki)) as hub:
        ca = str(pki / "ca.pem")
        await hub.directory.add_unit(A, "A")
        await hub.directory.pin_certificates(A, [fingerprint_of_pem((pki / "client-a.pem").read_text())])
        cases = {"none": tls_context(ca),
                 "other": tls_context(ca, str(pki / "client-other.pem"), str(pki / "client-other.key")),
                 "own": tls_context(ca, str(pki / "client-a.pem"), str(pki / "client-a.key"))}
        for name in ("none", "other"):
            client = await _actor(hub, A, cases[name])
            async with client:
                with pytest.raises(LgspError) as err:
                    await client.inbox()
            assert (err.value.status, err.value.code) == (401, "auth.bad_certificate"), name
        client = await _actor(hub, A, cases["own"])
        async with client:
            assert await client.inbox() == []
        # A unit with no pinned certificate connects with or without one.
        other = await _actor(hub, B, cases["none"])
        async with other:
            assert await other.inbox() == []
        # Refused before the signature is looked at: a wrong signature still says bad_certificate.
        bad = LgspClient(Credentials(hub.url, client.credentials.access_key, "HMAC-SHA256", secret="x" * 43),
                         ssl_context=cases["other"])
        async with bad:
            with pytest.raises(LgspError) as err:
                await bad.inbox()
        assert err.value.code == "auth.bad_certificate"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_over_https_and_mutual_tls(tmp_path: Path, pki: Path) -> None:
    async with Hub(_config(tmp_path, pki)) as hub:
        def curl(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["curl", "-sS", "--cacert", str(pki / "ca.pem"), *extra, f"{hub.url}/v1/time"],
                                  capture_output=True, text=True, timeout=60, check=False)

        plain, with_cert = await asyncio.gather(asyncio.to_thread(curl), asyncio.to_thread(
            curl, "--cert", str(pki / "client-a.pem"), "--key", str(pki / "client-a.key")))
        assert plain.returncode == 0 and "\"now\"" in plain.stdout, plain.stderr
        assert with_cert.returncode == 0, with_cert.stderr
        wrong_ca = await asyncio.to_thread(subprocess.run, ["curl", "-sS", f"{hub.url}/v1/time"],
                                           capture_output=True, text=True, timeout=60, check=False)
        assert wrong_ca.returncode != 0  # the test CA is not a system CA


def test_push_target_tls_settings() -> None:
    fp = "AB:" * 31 + "AB"
    assert normalise_fingerprint(fp) == "ab" * 32
    with pytest.raises(TlsError):
        normalise_fingerprint("abc")
    assert target_problems({"tls_fingerprint": "nope"})[0][0] == "tls_fingerprint"
    assert target_problems({"tls_ca_file": "/no/such/file"})[0][0] == "tls_ca_file"
    assert target_problems({"verify_tls": "no"})[0][0] == "verify_tls"
    assert target_problems({"verify_tls": False, "tls_fingerprint": fp})[0][0] == "verify_tls"
    assert client_ssl({}) is True
    assert client_ssl({"verify_tls": False}) is False
    assert client_ssl({"tls_fingerprint": fp}).fingerprint == bytes.fromhex("ab" * 32)


async def test_unchecked_push_tls_is_recorded_at_every_start(tmp_path: Path) -> None:
    """`verify_tls: false` is never silent: each start writes a warning and an audit entry."""
    from sqlalchemy import select

    from lgsp.core.store.tables import audit_log

    cfg = load_config(None, env=base_env(tmp_path / "var"))
    cfg = cfg.replace(delivery={"targets": {
        A: {"protocol": "rest", "url": "https://127.0.0.1:9/nhan", "verify_tls": False},
        B: {"protocol": "rest", "url": "https://127.0.0.1:9/nhan"}}})
    for _ in range(2):
        async with Hub(cfg) as hub:
            await hub.audit.chain()
    async with Hub(cfg) as hub, hub.db.read() as conn:
        found = (await conn.execute(select(audit_log).where(audit_log.c.action == "delivery.tls_unverified")
                                    .order_by(audit_log.c.id))).all()
    assert [(r.unit_id, r.actor) for r in found] == [(A, "hub")] * 3
    assert found[0].detail == {"setting": f"delivery.targets.{A}.verify_tls: false"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_sends_a_signed_request_over_mutual_tls(tmp_path: Path, pki: Path) -> None:
    """curl with the unit's client certificate and LGSP1 headers computed by the project's own
    signer: accepted; the same signed request with another certificate (even one the hub's CA
    signed), or none, is refused before the signature is looked at; a certificate of an unknown CA
    does not get through the handshake."""
    stranger_key = _key()
    _write(pki / "stranger.pem", _cert("stranger", stranger_key, None), stranger_key)
    async with Hub(_config(tmp_path, pki)) as hub:
        await hub.directory.add_unit(A, "A")
        await hub.directory.pin_certificates(A, [fingerprint_of_pem((pki / "client-a.pem").read_text())])
        client = await _actor(hub, A, tls_context(str(pki / "ca.pem")))
        await client.close()

        def curl(cert: str | None, path: str = "/v1/inbox", query: str = "limit=5",
                 tamper: bool = False) -> subprocess.CompletedProcess[str]:
            headers = client.signer.headers("GET", path, query)
            if tamper:
                headers["X-LGSP-Signature"] = headers["X-LGSP-Signature"][:-6] + "AAAAA="
            args = ["curl", "-sS", "--cacert", str(pki / "ca.pem"), "-w", "\n%{http_code}"]
            if cert:
                args += ["--cert", str(pki / f"{cert}.pem"), "--key", str(pki / f"{cert}.key")]
            for name, value in headers.items():
                args += ["-H", f"{name}: {value}"]
            return subprocess.run([*args, f"{hub.url}{path}?{query}"], capture_output=True, text=True, timeout=60,
                                  check=False)

        def answer(result: subprocess.CompletedProcess[str]) -> tuple[int, dict[str, Any]]:
            assert result.returncode == 0, result.stderr
            body, _, status = result.stdout.rpartition("\n")
            return int(status), json.loads(body)

        own, other, none, forged, stranger = await asyncio.gather(*(asyncio.to_thread(curl, *a) for a in (
            ("client-a",), ("client-other",), (None,), ("client-a", "/v1/inbox", "limit=5", True), ("stranger",))))
        status, body = answer(own)
        assert status == 200 and body["items"] == []
        for refused in (other, none):
            status, body = answer(refused)
            assert (status, body["code"]) == (401, "auth.bad_certificate")
        status, body = answer(forged)  # the right certificate does not excuse a bad signature
        assert status == 401 and body["code"] != "auth.bad_certificate" and body["code"].startswith("auth.")
        assert stranger.returncode != 0 and stranger.stdout.rpartition("\n")[2] in ("", "000")


def test_sighup_reloads_the_certificate_of_a_running_lgsp_run(tmp_path: Path, pki: Path) -> None:
    """The real `lgsp run` process: swap the certificate files, send SIGHUP, and new connections get
    the new certificate while a connection opened before keeps working on the old one."""
    port = free_port()
    (pki / "live.pem").write_bytes((pki / "server.pem").read_bytes())
    (pki / "live.key").write_bytes((pki / "server.key").read_bytes())
    env = {**os.environ, **base_env(tmp_path / "var", LGSP_SERVER_PORT=str(port), LGSP_SERVER_HOST="127.0.0.1",
                                    LGSP_TLS_CERT_FILE=str(pki / "live.pem"), LGSP_TLS_KEY_FILE=str(pki / "live.key"))}
    proc = subprocess.Popen([sys.executable, "-m", "lgsp.cli.main", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ca = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def served() -> str:
        return fingerprint_of_pem(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))

    def get(conn: ssl.SSLSocket) -> bytes:
        conn.sendall(b"GET /v1/time HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            assert chunk, data
            data += chunk
        return data

    old_fp = fingerprint_of_pem((pki / "server.pem").read_text())
    new_fp = fingerprint_of_pem((pki / "server2.pem").read_text())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert served() == old_fp
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        old_conn = ca.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                  server_hostname="127.0.0.1")
        assert b" 200 " in get(old_conn).split(b"\r\n", 1)[0] + b" "
        # Renewal: new files in place, then SIGHUP.
        (pki / "live.pem").write_bytes((pki / "server2.pem").read_bytes())
        (pki / "live.key").write_bytes((pki / "server2.key").read_bytes())
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while served() != new_fp:
            assert proc.poll() is None and time.monotonic() < deadline, "the new certificate was not served"
            time.sleep(0.1)
        # The connection opened before the reload is not cut and still speaks under the old one.
        assert b"200" in get(old_conn).split(b"\r\n", 1)[0]
        der = old_conn.getpeercert(binary_form=True)
        assert der is not None and fingerprint_of_pem(ssl.DER_cert_to_PEM_cert(der)) == old_fp
        old_conn.close()
        # A broken file at the next SIGHUP: the process keeps serving the current certificate.
        (pki / "live.key").write_text("not a key")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None and served() == new_fp
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
