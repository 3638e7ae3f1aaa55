"""E-mail about registration state changes (`adapters.console.smtp`), in Vietnamese.

The event is recorded by the use case as always; the mail is an extra, sent after the state change
committed, on a worker thread (smtplib blocks), and never fatal: a failure is logged and the page
answers as usual. The password is not in the YAML: `password_secret` names a secret in the hub's
store (`lgsp secret set NAME`).

    adapters:
      console:
        smtp:
          host: smtp.tinh.gov.vn
          port: 587                   # default 587 (starttls), 465 (tls), 25 (none)
          security: starttls          # starttls | tls | none
          username: lgsp@tinh.gov.vn
          password_secret: smtp-lgsp  # optional; needs username
          from: lgsp@tinh.gov.vn
          province_to: [phe.duyet@tinh.gov.vn]   # who hears of a new request (the approvers)
          timeout_seconds: 10
          ca_file: /etc/ssl/smtp-ca.pem          # optional: trust this CA instead of the system's

Who is told: a new request (Mẫu 01, 03, 06) goes to `province_to`; an answer (approved, refused)
and a handover record go to the request's contact e-mail (the unit's officer named in the form).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid
from typing import TYPE_CHECKING, Any, cast

from lgsp.core.api import STATE_NAMES, Text, i18n

if TYPE_CHECKING:
    from lgsp.core.api import Hub

log = logging.getLogger("lgsp.console.mail")

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
KEYS = ("host", "port", "security", "username", "password_secret", "from", "province_to", "timeout_seconds",
        "ca_file")
FORM_TITLES = {"01": "đăng ký ứng dụng, dịch vụ (Mẫu 01)", "03": "cấp tài khoản quản trị (Mẫu 03)",
               "06": "hủy ứng dụng (Mẫu 06)"}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str | None
    password_secret: str | None
    sender: str
    province_to: tuple[str, ...]
    timeout: float
    ca_file: str | None


def _is_address(value: Any) -> bool:
    return isinstance(value, str) and value.count("@") == 1 and "\n" not in value and "\r" not in value \
        and all(value.split("@")) and len(value) <= 254 and " " not in value


def check_smtp(raw: Any) -> list[tuple[str, str]]:
    """Problems with `adapters.console.smtp` (key path, message); nothing when it is absent."""
    where = "adapters.console.smtp"
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [(where, Text("must be a mapping (host, port, security, username, password_secret, from, ...)"))]
    out: list[tuple[str, str]] = []
    for key in raw:
        if key not in KEYS:
            out.append((f"{where}.{key}", Text("unknown setting (one of: {values})", values=", ".join(KEYS))))
    if not isinstance(raw.get("host"), str) or not raw.get("host", "").strip():
        out.append((f"{where}.host", Text("required: the SMTP server's name or address")))
    if raw.get("security", "starttls") not in SECURITY:
        out.append((f"{where}.security", Text("must be one of: {values}", values=", ".join(SECURITY))))
    port = raw.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        out.append((f"{where}.port", Text("must be a port number (1-65535)")))
    timeout = raw.get("timeout_seconds")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        out.append((f"{where}.timeout_seconds", Text("must be a positive integer")))
    if not _is_address(raw.get("from")):
        out.append((f"{where}.from", Text("required: the sender's e-mail address")))
    to = raw.get("province_to", [])
    if not isinstance(to, list) or not all(_is_address(a) for a in to):
        out.append((f"{where}.province_to", Text("must be a list of e-mail addresses")))
    for key in ("username", "password_secret", "ca_file"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            out.append((f"{where}.{key}", Text("must be a non-empty text")))
    if raw.get("password_secret") and not raw.get("username"):
        out.append((f"{where}.password_secret", Text("needs username")))
    return out


def settings_of(hub: Hub) -> SmtpSettings | None:
    raw = (hub.config.adapters.get("console") or {}).get("smtp")
    if not isinstance(raw, dict) or check_smtp(raw):
        return None       # lgsp_check_config refuses a bad one before the hub starts
    security = raw.get("security", "starttls")
    return SmtpSettings(raw["host"].strip(), int(raw.get("port") or DEFAULT_PORTS[security]), security,
                        raw.get("username"), raw.get("password_secret"), raw["from"],
                        tuple(raw.get("province_to") or ()), float(raw.get("timeout_seconds", 10)),
                        raw.get("ca_file"))


def _send(settings: SmtpSettings, password: str | None, message: MIMEText) -> None:
    """One message over one connection (blocking: run on a worker thread)."""
    context = ssl.create_default_context(cafile=settings.ca_file) if settings.security != "none" else None
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        smtp.ehlo()
        if settings.security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.username and password is not None:
            smtp.login(settings.username, password)
        smtp.send_message(message)


def compose(settings: SmtpSettings, to: list[str], subject: str, body: str) -> MIMEText:
    """A UTF-8 message. The subject is encoded with email.header.Header: the newer header folding of
    Python 3.11 drops a space that falls between two encoded words of a long Vietnamese subject."""
    message = MIMEText(body, "plain", "utf-8")
    message["From"] = formataddr(("Trục liên thông tỉnh (LGSP)", settings.sender))   # encodes the name
    message["To"] = ", ".join(to)
    message["Subject"] = cast(str, Header(subject, "utf-8", header_name="Subject"))  # compat32 takes a Header
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.sender.split("@")[1])
    return message


def _clean(value: Any, limit: int = 300) -> str:
    """Text from a form, on one line (a subject or a body line never carries a header break)."""
    return " ".join(str(value or "").split())[:limit]


def about(req: Any, unit_name: str, link: str | None) -> tuple[str, str, str]:
    """(kind of recipient, subject, body) for the request's current state."""
    form = FORM_TITLES.get(req.kind, f"Mẫu {req.kind}")
    state = i18n.gettext(STATE_NAMES[req.state], "vi") if req.state in STATE_NAMES else req.state  # mail is Vietnamese
    unit = f"{req.unit_id} — {_clean(unit_name)}"
    lines = [f"Đơn vị: {unit}", f"Đề nghị: {form}", f"Trạng thái: {state}",
             f"Hạn trả lời: {req.due_text} (5 ngày làm việc)"]
    if req.state == "submitted":
        recipient, subject = "province", f"[LGSP] Đề nghị mới: {form} — {req.unit_id}"
        lines.insert(0, "Trục liên thông tỉnh nhận được một đề nghị mới cần trả lời.")
    else:
        recipient, subject = "unit", f"[LGSP] {state}: {form} — {req.unit_id}"
        lines.insert(0, f"Đề nghị {form} của đơn vị đã chuyển sang trạng thái: {state}.")
        if req.state == "refused" and req.reason:
            lines.append(f"Lý do từ chối: {_clean(req.reason, 2000)}")
        if req.state == "approved":
            lines.append(f"Văn bản trả lời: Mẫu {req.reply_kind}, tải trên bảng điều khiển.")
        if req.state == "handed_over":
            lines.append("Biên bản bàn giao (Mẫu 05) đã được ghi nhận.")
    if link:
        lines.append(f"Xem chi tiết: {link}")
    lines += ["", "Thư này do Trục liên thông tỉnh gửi tự động; xin đừng trả lời thư này."]
    return recipient, _clean(subject, 200), "\n".join(lines) + "\n"


class Mailer:
    """Sends the state-change mail of one hub's console in the background."""

    def __init__(self, hub: Hub, settings: SmtpSettings) -> None:
        self.hub = hub
        self.settings = settings
        self._tasks: set[asyncio.Task[None]] = set()

    def state_changed(self, req: Any, unit_name: str, link: str | None) -> None:
        """Called after the change committed: schedules the mail and returns at once."""
        recipient, subject, body = about(req, unit_name, link)
        if recipient == "province":
            to = list(self.settings.province_to)
        else:
            contact = (req.data.get("contact") or {}).get("email")
            to = [str(contact)] if _is_address(contact) else []
        if not to:
            log.info("no recipient for the %s mail of registration request %s", req.state, req.id)
            return
        task = asyncio.get_running_loop().create_task(self._deliver(to, subject, body, req.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, to: list[str], subject: str, body: str, request_id: str) -> None:
        try:
            password = await self.hub.secrets.reveal(self.settings.password_secret) \
                if self.settings.password_secret else None
            message = compose(self.settings, to, subject, body)
            await asyncio.to_thread(_send, self.settings, password, message)
            log.info("mailed %d recipient(s) about registration request %s", len(to), request_id)
        except Exception as exc:  # a mail server's trouble never undoes nor blocks the state change
            log.warning("could not mail about registration request %s via %s:%d: %s", request_id,
                        self.settings.host, self.settings.port, exc.__class__.__name__ + ": " + str(exc)[:300])

    async def drain(self) -> None:
        """Wait for the mail in flight (tests; a stopping hub)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
