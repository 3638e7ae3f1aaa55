"""Accounts and the audit trail: operators manage every account; a unit admin sees its units' accounts.

A new account or a password reset shows the temporary password once: the POST keeps it sealed for this
session only (core/onetime.py) and answers 303 to the accounts page, which shows it once; a
reload says it was already shown. It is never stored in clear. Every change is recorded by core/accounts.py with the
operator's name and address.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from aiohttp import web

from lgsp.adapters.console.base import (
    PREFIX,
    WHO,
    BadFilter,
    actor_of,
    console_of,
    filter_day,
    page,
    read_form,
    redirect,
    show_once,
    take_once,
)
from lgsp.core.api import N_, ROLE_NAMES, ROLES, VIETNAM_TZ, AccountError, new_password

routes = web.RouteTableDef()

#: The audited actions as a person reads them (translated where shown).
AUDIT_NAMES = {
    "account.created": N_("Create an account"), "account.role_changed": N_("Change of role"),
    "account.enabled": N_("Enable"), "account.disabled": N_("Disable"), "account.unlocked": N_("Unlock"),
    "account.password_reset": N_("Reset password"), "account.password_changed": N_("Change of password"),
    "account.totp_enabled": N_("Turn two-factor sign-in on"),
    "account.totp_disabled": N_("Turn two-factor sign-in off"),
    "signin.succeeded": N_("Sign-in"), "signin.failed": N_("Failed sign-in"), "signout": N_("Sign-out"),
}


async def _accounts_page(request: web.Request, *, error: str | None = None, shown_password: str | None = None,
                         shown_for: str | None = None, password_gone: bool = False,
                         status: int = 200) -> web.Response:
    console = console_of(request)
    who = request[WHO]
    rows = await console.accounts.list_accounts(unit_ids=who.scope)
    units = await console.hub.directory.search_units("", limit=1000) if who.account.is_operator else []
    return console.render(request, "accounts.html", status=status, accounts=rows, roles=ROLES,
                          role_names=ROLE_NAMES, units=units, error=error, shown_password=shown_password,
                          shown_for=shown_for, password_gone=password_gone)


@routes.get(PREFIX + "/accounts")
@page("operator", "unit_admin")
async def accounts_list(request: web.Request) -> web.StreamResponse:
    shown, gone = await take_once(request)
    username, temporary = shown if shown else (None, None)
    return await _accounts_page(request, shown_password=temporary, shown_for=username, password_gone=gone)


@routes.post(PREFIX + "/accounts")
@page("operator")
async def account_create(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await read_form(request)
    temporary = new_password()
    try:
        account = await console.accounts.add(
            form.get("username", ""), temporary, form.get("role", ""), actor=actor_of(request),
            unit_id=form.get("unit") or None, include_children=form.get("include_children") == "1",
            display_name=form.get("display_name", ""), must_change_password=True)
    except AccountError as exc:
        return await _accounts_page(request, error=exc.message(), status=422)
    raise await show_once(request, PREFIX + "/accounts", (account.username, temporary))


@routes.post(PREFIX + "/accounts/{username}/{action:reset|unlock|disable|enable|totp-off}")
@page("operator")
async def account_action(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    username, action = request.match_info["username"], request.match_info["action"]
    actor = actor_of(request)
    try:
        if action == "reset":
            temporary = await console.accounts.reset_password(username, actor=actor)
            raise await show_once(request, PREFIX + "/accounts", (username, temporary))
        if action == "unlock":
            await console.accounts.unlock(username, actor=actor)
        elif action == "disable":
            await console.accounts.set_status(username, "disabled", actor=actor)
        elif action == "enable":
            await console.accounts.set_status(username, "active", actor=actor)
        else:
            await console.accounts.disable_totp(username, actor=actor)
    except AccountError as exc:
        return await _accounts_page(request, error=exc.message(), status=422)
    raise redirect(PREFIX + "/accounts")


@routes.get(PREFIX + "/audit")
@page("operator", "unit_admin", "viewer")
async def audit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    actor = request.query.get("actor", "").strip()[:64] or None
    shown: dict[str, Any] = {"names": AUDIT_NAMES, "actor": actor or "", "since": request.query.get("from", ""),
                             "until": request.query.get("to", "")}
    try:
        since = _day(request.query.get("from"), N_("From date"))
        until = _day(request.query.get("to"), N_("To date"))
    except BadFilter as exc:   # no entries rather than those of a day nobody asked for
        return console.render(request, "audit.html", status=422, error=exc.message, entries=[], **shown)
    entries = await console.accounts.audit_entries(actor=actor, unit_ids=who.scope, since=since,
                                                   until=until + timedelta(days=1) if until else None, limit=500)
    return console.render(request, "audit.html", error=None, entries=entries, **shown)


def _day(text: str | None, label: str) -> datetime | None:
    """The filter's day (exactly YYYY-MM-DD) as the start of that day in Vietnam; None when empty,
    `BadFilter` when it is no day (`filter_day`)."""
    day = filter_day(text, label)
    return None if day is None else datetime.combine(day, time(), tzinfo=VIETNAM_TZ)
