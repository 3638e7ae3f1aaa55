"""E-mail on registration state changes, against a real SMTP server (aiosmtpd) on loopback: STARTTLS
with the password taken by name from the secret store, Vietnamese text, and a dead server never
failing the state change."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from lgsp.adapters.console.requests import flatten
from lgsp.core.accounts import Accounts
from lgsp.core.config import ConfigError, load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import packet_events

from ..conftest import base_env, free_port
from ..registration.samples import SAMPLES
from .conftest import PASSWORD, sign_in

UNIT = "000.00.00.H23"
SMTP_PASSWORD = "mat-khau-smtp-2026"


def _pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and the SMTP server's certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = folder / "ca.pem", folder / "smtp.pem", folder / "smtp.key"
    paths[0].write_bytes(cert("smtp test CA", ca_key, "smtp test CA", ca_key, ca=True)
                         .public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert("smtp", key, "smtp test CA", ca_key, ca=False).public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _Inbox:
    """What the SMTP server received: envelopes, and the logins it accepted."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if password == SMTP_PASSWORD:
                self.logins.append((login, password))
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def wait_for(self, n: int) -> None:
        for _ in range(100):
            if len(self.messages) >= n:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(self.messages)} message(s) arrived, {n} expected")


def _hub(tmp_path: Path, smtp: str) -> Hub:
    path = tmp_path / "lgsp.yaml"
    path.write_text("adapters:\n  console:\n    smtp:\n" + smtp, encoding="utf-8")
    return Hub(load_config(path, env=base_env(tmp_path / "var")))


async def _post(page: Any, url: str, fields: dict[str, str]) -> int:
    """A form POST from the signed-in page, with its own CSRF token (as the console's forms send it)."""
    csrf = await page.evaluate("document.querySelector('input[name=csrf]').value")
    return int(await page.evaluate(
        """async ([url, fields]) => (await fetch(url, {method: 'POST', body: new URLSearchParams(fields)})).status""",
        [url, {**fields, "csrf": csrf}]))


async def _request_01(page: Any, hub: Hub) -> str:
    await page.goto(hub.url + "/console/requests/new/01")
    fields = {**flatten(SAMPLES["01"]), "unit": UNIT}
    assert await _post(page, hub.url + "/console/requests/new/01", fields) == 200   # after the redirect
    await page.goto(hub.url + "/console/requests")
    link = await page.get_attribute("a[href^='/console/requests/']:not([href*='new'])", "href")
    assert link
    return str(link).rsplit("/", 1)[1]


async def test_state_changes_are_mailed_over_starttls_with_the_password_from_the_secret_store(
        tmp_path: Path, page: Any) -> None:
    ca, cert, key = _pki(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox = _Inbox()
    port = free_port()
    server = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                        authenticator=inbox.authenticate, auth_require_tls=True)
    server.start()
    try:
        async with _hub(tmp_path, f"""      host: 127.0.0.1
      port: {port}
      security: starttls
      username: lgsp@tinh.example.gov.vn
      password_secret: smtp-lgsp
      from: lgsp@tinh.example.gov.vn
      province_to: [phe.duyet@tinh.example.gov.vn]
      ca_file: {ca}
""") as hub:
            await hub.secrets.set("smtp-lgsp", SMTP_PASSWORD)
            await hub.directory.add_unit(UNIT, "Sở Y tế")
            accounts = Accounts(hub.db, hub.master_key)
            await accounts.add("so.yte", PASSWORD, "unit_admin", unit_id=UNIT)
            await accounts.add("duyet", PASSWORD, "approver")
            await sign_in(page, hub, "so.yte")
            request_id = await _request_01(page, hub)

            await inbox.wait_for(1)
            to, message = inbox.messages[0]
            assert to == ["phe.duyet@tinh.example.gov.vn"]
            assert inbox.logins == [("lgsp@tinh.example.gov.vn", SMTP_PASSWORD)]
            assert message["Subject"] == f"[LGSP] Đề nghị mới: đăng ký ứng dụng, dịch vụ (Mẫu 01) — {UNIT}"
            body = message.get_content()
            assert "Sở Y tế" in body and "Chờ trả lời" in body
            assert f"/console/requests/{request_id}" in body

            await page.context.clear_cookies()
            await sign_in(page, hub, "duyet")
            await page.goto(hub.url + f"/console/requests/{request_id}")
            assert await _post(page, hub.url + f"/console/requests/{request_id}/refuse",
                               {"reason": "Thiếu căn cứ pháp lý <b>số 2</b>"}) == 200
            await inbox.wait_for(2)
            to, message = inbox.messages[1]
            assert to == [SAMPLES["01"]["contact"]["email"]]          # the officer named in the form
            assert message["Subject"].startswith("[LGSP] Từ chối: ")
            assert "Lý do từ chối: Thiếu căn cứ pháp lý <b>số 2</b>" in message.get_content()
            # The events are recorded as they are without mail.
            async with hub.db.read() as conn:
                types = (await conn.execute(select(packet_events.c.type).where(packet_events.c.unit == UNIT)
                                            .order_by(packet_events.c.id))).scalars().all()
            assert types == ["registration.submitted", "registration.refused"]
    finally:
        server.stop()


async def test_a_dead_mail_server_is_logged_and_never_fails_the_change(tmp_path: Path, page: Any) -> None:
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("lgsp.console.mail")
    logger.addHandler(handler)
    try:
        async with _hub(tmp_path, f"""      host: 127.0.0.1
      port: {free_port()}
      security: none
      from: lgsp@tinh.example.gov.vn
      province_to: [phe.duyet@tinh.example.gov.vn]
      timeout_seconds: 2
""") as hub:
            await hub.directory.add_unit(UNIT, "Sở Y tế")
            await Accounts(hub.db, hub.master_key).add("so.yte", PASSWORD, "unit_admin", unit_id=UNIT)
            await sign_in(page, hub, "so.yte")
            request_id = await _request_01(page, hub)
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.1)
            assert seen and seen[0].levelno == logging.WARNING and request_id in seen[0].getMessage()
            await page.goto(hub.url + f"/console/requests/{request_id}")
            assert await page.inner_text("#request-state") == "Chờ trả lời"
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(("smtp", "path"), [
    ("      port: 25\n      from: a@b.vn\n", "adapters.console.smtp.host"),
    ("      host: x\n      from: a@b.vn\n      security: ssl\n", "adapters.console.smtp.security"),
    ("      host: x\n      from: not-an-address\n", "adapters.console.smtp.from"),
    ("      host: x\n      from: a@b.vn\n      password_secret: s\n", "adapters.console.smtp.password_secret"),
    ("      host: x\n      from: a@b.vn\n      province_to: a@b.vn\n", "adapters.console.smtp.province_to"),
    ("      host: x\n      from: a@b.vn\n      password: hunter2\n", "adapters.console.smtp.password"),
])
async def test_bad_smtp_settings_are_refused_naming_the_key(tmp_path: Path, smtp: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        async with _hub(tmp_path, smtp):
            pass
    assert path in str(caught.value)
