"""What every console page shares: the per-hub console state, templates, signed session cookies,
CSRF tokens, the sign-in guard with roles and unit scope, safe redirects and security headers.

Sessions live in the store (core/accounts.py keeps the SHA-256 of a random token); the cookie holds
the token and an HMAC of it under a key derived from the master key, so a tampered or made-up
cookie is refused before any lookup. CSRF tokens are an HMAC of the session token (the sign-in form,
which has no session yet, uses a random pre-session cookie), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from lgsp.core.api import (
    FIRST_REPORT_DAY,
    LAST_REPORT_DAY,
    VIETNAM_TZ,
    Account,
    Accounts,
    Actor,
    OneTimeSecrets,
    Text,
    hub_of,
    i18n,
    names,
    parse_report_day,
)

if TYPE_CHECKING:
    from lgsp.core.api import Hub

PREFIX = "/console"
COOKIE = "lgsp_console"
PRE_COOKIE = "lgsp_console_pre"
LANG_COOKIE = "lgsp_console_lang"  # the language a person chose with the switch (vi or en)
MAX_FORM = 256 * 1024

DEFAULTS: dict[str, int] = {
    "session_idle_seconds": 1800,        # signed out after 30 minutes without a page
    "session_absolute_seconds": 43200,   # and after 12 hours whatever happens
    "max_failed_signins": 5,             # wrong passwords in a row before a lockout
    "lockout_seconds": 900,              # how long a lockout lasts
}

# Non-integer settings: when the cookies carry `Secure`, and which fronts (reverse proxies) may say
# with X-Forwarded-Proto that the browser spoke HTTPS to them.
SECURE_COOKIE_MODES = ("auto", "always", "never")
TEXT_SETTINGS = ("secure_cookie", "trusted_fronts", "smtp")   # smtp: mail.py checks it

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def settings_of(hub: Hub) -> dict[str, int]:
    raw = hub.config.adapters.get("console") or {}
    return {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}


def secure_cookie_mode(hub: Hub) -> str:
    raw = hub.config.adapters.get("console") or {}
    mode = raw.get("secure_cookie", "auto")
    return mode if mode in SECURE_COOKIE_MODES else "auto"


def trusted_fronts(hub: Hub) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = (hub.config.adapters.get("console") or {}).get("trusted_fronts") or []
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            continue        # lgsp_check_config refuses such a value before the hub starts
    return tuple(out)


def check_text_settings(raw: Any) -> list[tuple[str, str]]:
    """Problems with `adapters.console.secure_cookie` and `trusted_fronts` (key path, message)."""
    if not isinstance(raw, dict):
        return []
    out: list[tuple[str, str]] = []
    if "secure_cookie" in raw and raw["secure_cookie"] not in SECURE_COOKIE_MODES:
        out.append(("adapters.console.secure_cookie",
                    Text("must be one of: {values}", values=", ".join(SECURE_COOKIE_MODES))))
    fronts = raw.get("trusted_fronts")
    if fronts is not None:
        if not isinstance(fronts, list):
            out.append(("adapters.console.trusted_fronts", Text("must be a list of IP addresses or networks")))
        else:
            for i, item in enumerate(fronts):
                try:
                    ipaddress.ip_network(str(item), strict=False)
                except ValueError:
                    out.append((f"adapters.console.trusted_fronts[{i}]",
                                Text("not an IP address or network: {item!r}", item=item)))
    return out


def vn_time(moment: datetime | None, with_time: bool = True) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(VIETNAM_TZ)
    return local.strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")


def vn_size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}".replace(".", ",")
        value /= 1024
    return str(n)


class Console:
    """The console of one hub: its account store, templates and keys."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = settings_of(hub)
        self.accounts = Accounts(hub.db, hub.master_key, max_failures=self.settings["max_failed_signins"],
                                 lockout_seconds=self.settings["lockout_seconds"])
        self._cookie_key = hub.master_key.derive("console-cookie")
        self._csrf_key = hub.master_key.derive("console-csrf")
        self.once = OneTimeSecrets(hub.db, hub.master_key)  # shown once after a POST (post/redirect/get)
        self.secure_cookie = secure_cookie_mode(hub)
        self.trusted_fronts = trusted_fronts(hub)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("lgsp.adapters.console", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"])
        # The same catalogues as the CLI and the problem details, in the language `render` speaks.
        self.templates.policies["ext.i18n.trimmed"] = True
        self.templates.install_gettext_callables(  # type: ignore[attr-defined]
            gettext=lambda text: i18n.gettext(text), ngettext=lambda s, p, n: i18n.ngettext(s, p, n), newstyle=True)
        self.templates.filters["vn_time"] = vn_time
        self.templates.filters["vn_date"] = lambda m: vn_time(m, False)
        self.templates.filters["vn_size"] = vn_size
        # States, modes and event types by their names; a stored reason in the page's language.
        self.templates.filters["state_name"] = names.state_name
        self.templates.filters["mode_name"] = names.mode_name
        self.templates.filters["event_name"] = names.event_name
        self.templates.filters["stored"] = i18n.render_stored

    # -- cookies ------------------------------------------------------------------------------
    def cookie_secure(self, request: web.Request) -> bool:
        """`Secure` on the console's cookies: always, never, or (auto) when the hub serves HTTPS itself
        or a trusted front (reverse proxy) says with X-Forwarded-Proto that the browser used HTTPS."""
        if self.secure_cookie != "auto":
            return self.secure_cookie == "always"
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto != "https" or not self.trusted_fronts:
            return False
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(peer in net for net in self.trusted_fronts)

    def _mac(self, key: bytes, value: str) -> str:
        digest = hmac.new(key, value.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def seal_cookie(self, token: str) -> str:
        return f"{token}.{self._mac(self._cookie_key, token)}"

    def open_cookie(self, value: str | None) -> str | None:
        if not value or value.count(".") != 1 or len(value) > 200:
            return None
        token, mac = value.split(".")
        try:
            token.encode("ascii")
        except UnicodeEncodeError:
            return None
        return token if hmac.compare_digest(mac, self._mac(self._cookie_key, token)) else None

    def csrf_for(self, token: str) -> str:
        return self._mac(self._csrf_key, "csrf:" + token)

    def csrf_ok(self, token: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_for(token))

    # -- rendering ----------------------------------------------------------------------------
    def render(self, request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
        lang = language_of(request)
        who: Who | None = request.get(WHO)
        context.setdefault("who", who)
        context.setdefault("csrf", self.csrf_for(who.token) if who else "")
        context.setdefault("path", request.path)
        context.setdefault("here", request.path_qs)
        context.setdefault("lang", lang)
        context.setdefault("flash", None)
        context.setdefault("notices", hub_of(request).notices.active())  # maintenance banner
        # A problem's detail (a Text) reads in the page's language, not in the English it was raised in.
        # So does a `Text` in a dict passed to it (field errors, labels and titles by name).
        context = {k: _rendered(v, lang) for k, v in context.items()}
        with i18n.speaking(lang):
            body = self.templates.get_template(name).render(**context)
        response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Language"] = lang
        response.headers["Vary"] = "Cookie"
        return response


def _rendered(value: Any, lang: str) -> Any:
    if isinstance(value, i18n.Text):
        return value.render(lang)
    if isinstance(value, dict) and any(isinstance(v, i18n.Text) for v in value.values()):
        return {k: v.render(lang) if isinstance(v, i18n.Text) else v for k, v in value.items()}
    return value


_CONSOLES: weakref.WeakKeyDictionary[Any, Console] = weakref.WeakKeyDictionary()


def console_of(request: web.Request) -> Console:
    hub = hub_of(request)
    console = _CONSOLES.get(hub)
    if console is None:
        console = _CONSOLES[hub] = Console(hub)
    return console


@dataclass(frozen=True)
class Who:
    """The signed-in person of this request."""

    account: Account
    token: str
    scope: list[str] | None     # units a unit admin may see; None: every unit

    @property
    def actor(self) -> Actor:
        return Actor(self.account.username, None)

    def can_see(self, unit_id: str | None) -> bool:
        return self.scope is None or (unit_id is not None and unit_id in self.scope)


WHO: web.RequestKey[Who] = web.RequestKey("lgsp_console_who")


def client_address(request: web.Request) -> str:
    return (request.remote or "")[:64]


def actor_of(request: web.Request) -> Actor:
    who = request[WHO]
    return Actor(who.account.username, client_address(request))


def language_of(request: web.Request) -> str:
    """The console's language for this request: the switch's cookie, else Vietnamese.

    Not the browser's Accept-Language: a province's workstations often run an English browser,
    and the console is Vietnamese unless the person chooses otherwise.
    """
    return i18n.normalise(request.cookies.get(LANG_COOKIE)) or i18n.DEFAULT


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path inside the console (no scheme, host or `//`)."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 33 for c in target) or "/../" in target or len(target) > 500:
        return PREFIX + "/"
    return target


def redirect(location: str) -> web.HTTPFound:
    return web.HTTPFound(location, headers=SECURITY_HEADERS)


ONCE_PARAM = "once"


async def show_once(request: web.Request, location: str, value: Any) -> web.HTTPSeeOther:
    """Keep a one-time secret (JSON) sealed in the store for this session and answer 303 to the page
    that shows it, so that reloading that page never repeats the POST."""
    ident = await console_of(request).once.put(request[WHO].token, location.split("?")[0], value)
    separator = "&" if "?" in location else "?"
    return web.HTTPSeeOther(f"{location}{separator}{ONCE_PARAM}={ident}", headers=SECURITY_HEADERS)


async def take_once(request: web.Request) -> tuple[Any, bool]:
    """(the secret, False) the first time the page is shown; (None, True) when the page asks for one
    that was already shown, expired or belongs to another session."""
    ident = request.query.get(ONCE_PARAM)
    if ident is None:
        return None, False
    value = await console_of(request).once.take(request[WHO].token, request.path, ident)
    return value, value is None


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted text fields (aiohttp caches the parse, so a handler may call this again)."""
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length)
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def set_session_cookie(console: Console, request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(COOKIE, console.seal_cookie(token), path=PREFIX, httponly=True, samesite="Strict",
                        secure=console.cookie_secure(request), max_age=console.settings["session_absolute_seconds"])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(*roles: str, allow_password_change: bool = False, stream_body: bool = False) -> Callable[[Handler], Handler]:
    """A console page: signed in (else to the sign-in page), the right role (else 403), the password
    changed when a reset asks for it, and a valid CSRF token on every POST. With `stream_body` (a
    file upload) the body is left unread for the handler, which must check the CSRF field itself
    (`csrf_field_ok`) before it reads anything else."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            console = console_of(request)
            token = console.open_cookie(request.cookies.get(COOKIE))
            found = await console.accounts.session(token, idle_seconds=console.settings["session_idle_seconds"]) \
                if token else None
            if token is None or found is None:
                target = request.path_qs if request.method == "GET" else PREFIX + "/"
                to_signin = redirect(f"{PREFIX}/login?next={_quote(safe_next(target))}")
                if request.cookies.get(COOKIE):
                    to_signin.del_cookie(COOKIE, path=PREFIX)
                raise to_signin
            account, _created = found
            who = Who(account, token, await console.accounts.unit_scope(account))
            request[WHO] = who
            if request.method == "POST" and not stream_body:
                form = await read_form(request)
                if not console.csrf_ok(token, form.get("csrf")):
                    return console.render(request, "error.html", status=403,
                                          message=Text("The form session is not valid or has expired (CSRF). "
                                                       "Reload the page and try again."))
            if account.must_change_password and not allow_password_change:
                raise redirect(f"{PREFIX}/password")
            if roles and account.role not in roles:
                return console.render(request, "error.html", status=403,
                                      message=Text("Your account may not see this page."))
            response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap


def csrf_field_ok(request: web.Request, value: str | None) -> bool:
    """The CSRF check of a streamed (multipart) POST, given its `csrf` field."""
    return console_of(request).csrf_ok(request[WHO].token, value)


def forbidden(request: web.Request, message: str = Text("Not found, or you may not see it.")) -> web.Response:
    """A unit admin asking for another unit's record gets the same answer as for one that does not exist."""
    return console_of(request).render(request, "error.html", status=404, message=message)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def new_pre_token() -> str:
    return secrets.token_urlsafe(24)


class BadFilter(Exception):
    """A filter of a page the console cannot read: the page says so instead of showing something else."""

    def __init__(self, message: Text) -> None:
        super().__init__(message)
        self.message = message


def filter_day(text: str | None, label: str) -> date | None:
    """The day a date filter names, exactly YYYY-MM-DD (what a date field sends), from FIRST_REPORT_DAY
    to LAST_REPORT_DAY; None when empty. Anything else raises `BadFilter` naming the field by its
    `label` (a msgid): `2026-12-01garbage` is not read as 2026-12-01, nor an absurd day as no filter."""
    if not text:
        return None
    try:
        day = parse_report_day(text)
    except ValueError:
        raise BadFilter(Text("{field}: “{value}” is not a date; write it as YYYY-MM-DD (for example 2026-12-01).",
                             field=Text(label), value=text[:40])) from None
    if not FIRST_REPORT_DAY <= day <= LAST_REPORT_DAY:
        raise BadFilter(Text("{field}: the date must be between {first} and {last}.", field=Text(label),
                             first=FIRST_REPORT_DAY.isoformat(), last=LAST_REPORT_DAY.isoformat()))
    return day


def first(values: Iterable[str], default: str = "") -> str:
    for v in values:
        return v
    return default


def now() -> datetime:
    return datetime.now(UTC)


def form_dict(form: Mapping[str, str], skip: Iterable[str] = ("csrf",)) -> dict[str, str]:
    skipped = set(skip)
    return {k: v for k, v in form.items() if k not in skipped}
