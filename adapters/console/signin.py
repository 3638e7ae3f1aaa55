"""Signing in and out, changing one's password (forced after a reset), turning on TOTP.

A sign-in always starts a new session with a new token (an old cookie, even a valid one, is
closed first: no session fixation). The sign-in form carries a CSRF token bound to a random
pre-session cookie; the `next` target is only ever a path inside the console (no open redirect).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from lgsp.adapters.console.base import (
    COOKIE,
    LANG_COOKIE,
    PRE_COOKIE,
    PREFIX,
    SECURITY_HEADERS,
    WHO,
    actor_of,
    client_address,
    console_of,
    language_of,
    new_pre_token,
    page,
    read_form,
    redirect,
    safe_next,
    set_session_cookie,
)
from lgsp.core.api import AccountError, Actor, Text, i18n

routes = web.RouteTableDef()


def _signin_page(request: web.Request, *, error: str | None = None, username: str = "",
                 status: int = 200, totp: bool = False) -> web.Response:
    console = console_of(request)
    pre = request.cookies.get(PRE_COOKIE)
    fresh = not pre or len(pre) > 64
    if fresh:
        pre = new_pre_token()
    assert pre is not None
    response = console.render(request, "signin.html", status=status, error=error, username=username,
                              next=safe_next(request.query.get("next")), csrf=console.csrf_for("pre:" + pre),
                              totp=totp)
    if fresh:
        response.set_cookie(PRE_COOKIE, pre, path=PREFIX, httponly=True, samesite="Strict",
                            secure=console.cookie_secure(request))
    return response


@routes.get(PREFIX)
async def console_root(request: web.Request) -> web.StreamResponse:
    raise redirect(PREFIX + "/")


@routes.get(PREFIX + "/lang")
async def choose_language(request: web.Request) -> web.StreamResponse:
    """The language switch: remember the choice in a cookie, back to the page it was made on."""
    lang = i18n.normalise(request.query.get("to"))
    response = redirect(safe_next(request.query.get("next")))
    if lang is not None:
        response.set_cookie(LANG_COOKIE, lang, path=PREFIX, max_age=365 * 86400, httponly=True, samesite="Lax",
                            secure=console_of(request).cookie_secure(request))
    raise response


@routes.get(PREFIX + "/login")
async def signin_form(request: web.Request) -> web.StreamResponse:
    return _signin_page(request)


@routes.post(PREFIX + "/login")
async def signin(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await read_form(request)
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not console.csrf_ok("pre:" + pre, form.get("csrf")):
        return _signin_page(request, status=403, error=i18n._("The sign-in form has expired. Try again."))
    username = form.get("username", "")[:64]
    try:
        account = await console.accounts.authenticate(username, form.get("password", ""), form.get("totp") or None,
                                                      address=client_address(request))
    except AccountError as exc:
        status = 429 if exc.reason == "locked" else 401
        return _signin_page(request, status=status, error=exc.message(language_of(request)), username=username,
                            totp=exc.reason in ("totp_required", "totp_invalid"))
    old = console.open_cookie(request.cookies.get(COOKIE))
    if old is not None:
        await console.accounts.close_session(old)
    token = await console.accounts.open_session(account, address=client_address(request),
                                                absolute_seconds=console.settings["session_absolute_seconds"])
    target = PREFIX + "/password" if account.must_change_password else safe_next(form.get("next"))
    response = web.HTTPFound(target, headers=SECURITY_HEADERS)
    set_session_cookie(console, request, response, token)
    response.del_cookie(PRE_COOKIE, path=PREFIX)
    raise response


@routes.post(PREFIX + "/logout")
@page(allow_password_change=True)
async def signout(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    await console.accounts.close_session(who.token, actor=actor_of(request))
    response = redirect(PREFIX + "/login")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


@routes.get(PREFIX + "/password")
@page(allow_password_change=True)
async def password_form(request: web.Request) -> web.StreamResponse:
    return console_of(request).render(request, "password.html", error=None)


@routes.post(PREFIX + "/password")
@page(allow_password_change=True)
async def password_change(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    form = await read_form(request)
    new = form.get("new", "")
    if not hmac.compare_digest(new, form.get("repeat", "")):
        return console.render(request, "password.html", status=422,
                              error=Text("The two entries of the new password differ."))
    try:
        await console.accounts.change_password(who.account.id, form.get("old", ""), new, actor=actor_of(request))
    except AccountError as exc:
        return console.render(request, "password.html", status=422, error=exc.message())
    # A new session after a change of credentials; the old token stops working.
    await console.accounts.close_session(who.token)
    account = await console.accounts.get(who.account.id)
    assert account is not None
    token = await console.accounts.open_session(account, address=client_address(request),
                                                absolute_seconds=console.settings["session_absolute_seconds"])
    response = redirect(PREFIX + "/?changed=1")
    set_session_cookie(console, request, response, token)
    raise response


@routes.get(PREFIX + "/totp")
@page()
async def totp_form(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    secret = console.accounts.new_totp_secret()
    return console.render(request, "totp.html", secret=secret, enabled=who.account.totp_enabled,
                          uri=console.accounts.totp_uri(secret, who.account.username), error=None)


@routes.post(PREFIX + "/totp")
@page()
async def totp_enable(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    form = await read_form(request)
    secret = form.get("secret", "")
    try:
        if len(secret) != 32 or not secret.isalnum():
            raise AccountError("totp_invalid")
        await console.accounts.enable_totp(who.account.id, secret, form.get("code", ""),
                                           actor=Actor(who.account.username, client_address(request)))
    except AccountError as exc:
        return console.render(request, "totp.html", status=422, secret=secret, enabled=False,
                              uri=console.accounts.totp_uri(secret, who.account.username), error=exc.message())
    raise redirect(PREFIX + "/?totp=1")
