"""The registration workflow pages: requests Mẫu 01, 03, 06 from units; answers 02, 04, 07 and the
handover record 05 from the province; every form downloadable as its official letter (.docx).

Forms are drawn from the records of core/registration/forms.py (labels, kinds, required fields), so
the page, the validation and the letter always agree. A unit admin reaches only its units'
requests: any other id answers 404, the same as one that does not exist (one check for every page
and action on a request, `_visible_request`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lgsp.adapters.console.base import (
    PREFIX,
    SECURITY_HEADERS,
    WHO,
    Console,
    actor_of,
    console_of,
    csrf_field_ok,
    forbidden,
    page,
    read_form,
    redirect,
    show_once,
    take_once,
)
from lgsp.adapters.console.mail import Mailer
from lgsp.adapters.console.mail import settings_of as smtp_settings
from lgsp.core.api import (
    FORM_KINDS,
    MAX_SCAN_BYTES,
    N_,
    REQUEST_KINDS,
    STATE_NAMES,
    FieldError,
    FieldSpec,
    FormRecord,
    Problem,
    RegistrationRequest,
    Registrations,
    RequestInvalid,
    Scans,
    Text,
    WorkingCalendar,
    base_url,
    content_response,
    form_kind,
    render_letter,
    validate_form,
)

routes = web.RouteTableDef()

DECIDERS = ("operator", "approver")
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_REGISTRATIONS: weakref.WeakKeyDictionary[Console, Registrations] = weakref.WeakKeyDictionary()


def registrations_of(console: Console) -> Registrations:
    found = _REGISTRATIONS.get(console)
    if found is None:
        hub = console.hub
        found = _REGISTRATIONS[console] = Registrations(
            hub.db, hub.directory, console.accounts, WorkingCalendar.from_config(hub.config.registration), hub.bus,
            clock=hub.clock)
    return found


_SCANS: weakref.WeakKeyDictionary[Console, Scans] = weakref.WeakKeyDictionary()


def scans_of(console: Console) -> Scans:
    found = _SCANS.get(console)
    if found is None:
        found = _SCANS[console] = Scans.of(console.hub)
    return found


_MAILERS: weakref.WeakKeyDictionary[Console, Mailer | None] = weakref.WeakKeyDictionary()


def mailer_of(console: Console) -> Mailer | None:
    """The console's mailer when `adapters.console.smtp` is configured."""
    if console not in _MAILERS:
        settings = smtp_settings(console.hub)
        _MAILERS[console] = Mailer(console.hub, settings) if settings else None
    return _MAILERS[console]


async def _mail(request: web.Request, req: Any) -> None:
    """Tell the other party of a state change (after it committed; in the background)."""
    console = console_of(request)
    mailer = mailer_of(console)
    if mailer is None:
        return
    unit = await console.hub.directory.get_unit(req.unit_id)
    mailer.state_changed(req, unit.name if unit else "", f"{base_url(request)}{PREFIX}/requests/{req.id}")


@dataclass(frozen=True)
class FieldView:
    """One input of a form page: its dotted name, label and kind; a group has its children."""

    name: str
    label: str
    kind: str
    required: bool
    children: tuple[FieldView, ...] = ()


def field_views(cls: type, prefix: str = "", require: tuple[str, ...] | None = None) -> tuple[FieldView, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec: FieldSpec = f.metadata["form"]
        name = prefix + f.name
        required = spec.required if require is None else f.name in require
        if spec.kind == "group":
            out.append(FieldView(name, spec.label, "group", required, field_views(hints[f.name], name + ".",
                                                                                   spec.require)))
        else:
            out.append(FieldView(name, spec.label, spec.kind, required))
    return tuple(out)


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Stored JSON (nested) as the dotted names and text values of a form page."""
    out: dict[str, str] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            out[name] = "\n".join(str(v) for v in value)
        elif value is not None:
            text = str(value)
            out[name] = text[:16] if len(text) > 16 and "T" in text[:11] and text[4] == "-" else text
    return out


def field_errors(errors: Sequence[FieldError]) -> dict[str, str]:
    """The first error of each field, by the dotted name of its input."""
    out: dict[str, str] = {}
    for e in errors:
        name = e.field.split("[")[0]
        out.setdefault(name, e.message)
    return out


#: What a request's history shows for each audited action (`registration.<form>.<verb>`).
_REQUEST_VERBS = {"submitted": N_("Form {kind} submitted"), "refused": N_("Form {kind} refused"),
                  "approved": N_("Form {kind} approved"), "handed_over": N_("Form {kind} handed over")}
_OTHER_ACTIONS = {"registration.scan_uploaded": N_("Signed scan uploaded")}


def _history_names(actions: Sequence[str]) -> dict[str, Text]:
    """The audited actions of a request's history as a person reads them (the page renders each in
    its language); an action not named here shows as recorded."""
    names: dict[str, Text] = {}
    for action in actions:
        parts = action.split(".")
        if action in _OTHER_ACTIONS:
            names[action] = Text(_OTHER_ACTIONS[action])
        elif len(parts) == 3 and parts[0] == "registration" and parts[2] in _REQUEST_VERBS:
            names[action] = Text(_REQUEST_VERBS[parts[2]], kind=parts[1])
    return names


def _titles() -> dict[str, str]:
    """The forms' titles as `Text` (the page renders them in its language)."""
    return {k: Text(fk.title) for k, fk in FORM_KINDS.items()}


async def overdue_for(request: web.Request) -> list[Any]:
    """Overdue requests the signed-in person may see (the home page lists them)."""
    console = console_of(request)
    who = request[WHO]
    return list(await registrations_of(console).overdue(unit_ids=who.scope))


async def _visible_request(request: web.Request, req_id: str) -> RegistrationRequest | None:
    """The request `req_id` when the signed-in person may see it, else None: every page and action on
    one request answers the same 404 for another unit's request as for one that does not exist."""
    req = await registrations_of(console_of(request)).get(req_id)
    return req if req is not None and request[WHO].can_see(req.unit_id) else None


async def _units_for(request: web.Request) -> list[Any]:
    console = console_of(request)
    who = request[WHO]
    everyone = await console.hub.directory.search_units("", limit=5000)
    return [u for u in everyone if who.can_see(u.id)]


@routes.get(PREFIX + "/requests")
@page()
async def request_list(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    who = request[WHO]
    state = request.query.get("state") if request.query.get("state") in STATE_NAMES else None
    kind = request.query.get("kind") if request.query.get("kind") in REQUEST_KINDS else None
    registrations = registrations_of(console)
    rows = await registrations.list_requests(unit_ids=who.scope, state=state, kind=kind)
    return console.render(request, "requests.html", requests=rows, today=registrations.today(),
                          titles=_titles(), states=STATE_NAMES,
                          state=state or "", kind=kind or "", kinds=REQUEST_KINDS,
                          can_submit=who.account.role in ("operator", "unit_admin"))


async def _new_page(request: web.Request, kind: str, *, values: dict[str, str] | None = None,
                    errors: dict[str, str] | None = None, status: int = 200, error: str | None = None) -> web.Response:
    console = console_of(request)
    units = await _units_for(request)
    apps: list[Any] = []
    if kind == "06":
        for u in units:
            apps.extend(a for a in await console.hub.directory.list_applications(u.id) if a.retired_at is None)
    return console.render(request, "request_new.html", status=status, kind=kind, title=Text(form_kind(kind).title),
                          fields=field_views(form_kind(kind).record), values=values or {}, errors=errors or {},
                          units=units, apps=apps, error=error)


@routes.get(PREFIX + r"/requests/new/{kind:0[136]}")
@page("operator", "unit_admin")
async def request_new(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    units = await _units_for(request)
    values = {"agency": units[0].name} if len(units) == 1 else {}
    return await _new_page(request, kind, values=values)


#: The answer cites the agency's letter by number and date, so the console asks for both.
CITED = ("number", "issued_on")


async def _submission_errors(request: web.Request, kind: str, unit_id: str, application_id: str | None,
                             data: dict[str, str]) -> dict[str, str]:
    """Every error of a new request's form at once, by input name (the unit, the application to
    retire, the cited letter's number and date, the form's own fields), so one submission shows them all."""
    errors: dict[str, str] = {}
    if not request[WHO].can_see(unit_id):
        errors["unit"] = Text("Choose one of your units.")
    elif kind == "06":
        apps = await console_of(request).hub.directory.list_applications(unit_id)
        if application_id not in {a.id for a in apps if a.retired_at is None}:
            errors["application_id"] = Text("Choose one of the unit's applications.")
    errors.update({k: Text("Not filled in (required: the answer cites this letter).") for k in CITED
                   if k not in data})
    parsed = validate_form(kind, data)
    if isinstance(parsed, list):
        for name, message in field_errors(parsed).items():
            errors.setdefault(name, message)
    return errors


@routes.post(PREFIX + r"/requests/new/{kind:0[136]}")
@page("operator", "unit_admin")
async def request_submit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    kind = request.match_info["kind"]
    form = await read_form(request)
    form.pop("csrf", None)
    unit_id = form.pop("unit", "")
    application_id = form.pop("application_id", "") or None
    values = {**form, "unit": unit_id, "application_id": application_id or ""}   # kept as entered
    data = {k: v for k, v in form.items() if v.strip()}
    errors = await _submission_errors(request, kind, unit_id, application_id, data)
    try:
        if errors:
            raise RequestInvalid([])
        req = await registrations_of(console).submit(kind, unit_id, data, actor=actor_of(request),
                                                     application_id=application_id)
    except RequestInvalid as exc:
        return await _new_page(request, kind, values=values, errors={**errors, **field_errors(exc.errors)},
                               status=422, error=Text("The form has errors; see the marked fields."))
    except Problem as exc:   # what only the store knows (the unit or application gone meanwhile)
        return await _new_page(request, kind, values=values, status=422, error=exc.detail)
    await _mail(request, req)
    raise redirect(f"{PREFIX}/requests/{req.id}")


async def _detail(request: web.Request, req_id: str, *, reply_values: dict[str, str] | None = None,
                  reply_errors: dict[str, str] | None = None, handover_values: dict[str, str] | None = None,
                  handover_errors: dict[str, str] | None = None, error: str | None = None,
                  temporary: str | None = None, temporary_gone: bool = False, status: int = 200) -> web.Response:
    console = console_of(request)
    who = request[WHO]
    registrations = registrations_of(console)
    req = await _visible_request(request, req_id)
    if req is None:
        return forbidden(request)
    unit = await console.hub.directory.get_unit(req.unit_id)
    defaults = registrations.reply_defaults(req, unit.name if unit else req.unit_id)
    history = await console.accounts.audit_entries(unit_ids=None, limit=100)
    history = [e for e in history if e.target == req.id][::-1]
    application = None
    if req.application_id:
        application = next((a for a in await console.hub.directory.list_applications(req.unit_id)
                            if a.id == req.application_id), None)
    scans = await scans_of(console).of_request(req.id)
    handover_defaults = {"handover_place": "", "party_b.representing": unit.name if unit else ""}
    if req.reply:
        handover_defaults.update({"form_04.number": str(req.reply.get("number") or ""),
                                  "form_04.issued_on": str(req.reply.get("issued_on") or ""),
                                  "form_03.number": defaults.get("request.number", ""),
                                  "form_03.issued_on": defaults.get("request.issued_on", "")})
    return console.render(
        request, "request_detail.html", status=status, req=req, unit=unit, titles=_titles(),
        fields=flatten(req.data), labels=_labels(req.kind), reply_fields=field_views(form_kind(req.reply_kind).record),
        reply_values=reply_values if reply_values is not None else defaults, reply_errors=reply_errors or {},
        handover_fields=field_views(form_kind("05").record),
        handover_values=handover_values if handover_values is not None else handover_defaults,
        handover_errors=handover_errors or {}, can_decide=who.account.role in DECIDERS, history=history,
        history_names=_history_names([e.action for e in history]),
        application=application, error=error, temporary=temporary, temporary_gone=temporary_gone,
        overdue=req.overdue(registrations.today()), scans=scans, scan_forms=_forms_of(req),
        max_scan_mb=MAX_SCAN_BYTES // (1024 * 1024),
        can_upload=[f for f in _forms_of(req) if _may_upload(who.account.role, req, f)])


def _forms_of(req: Any) -> list[str]:
    """The letters this request has so far: its own, the answer once approved, the handover record."""
    out = [req.kind]
    if req.reply:
        out.append(req.reply_kind)
    if req.handover:
        out.append("05")
    return out


def _may_upload(role: str, req: Any, form: str) -> bool:
    """The province signs the answers and the handover; the unit signs its own request."""
    return role in DECIDERS or (role == "unit_admin" and form == req.kind)


def _labels(kind: str) -> dict[str, str]:
    """Each field's label, under its group's, as `Text` (the page renders them in its language)."""
    out: dict[str, str] = {}

    def walk(views: tuple[FieldView, ...], parent: Text | None = None) -> None:
        for v in views:
            label = Text("{group} – {field}", group=parent, field=Text(v.label)) if parent else Text(v.label)
            if v.children:
                walk(v.children, label)
            else:
                out[v.name] = label

    walk(field_views(form_kind(kind).record))
    return out


@routes.get(PREFIX + "/requests/{id}")
@page()
async def request_detail(request: web.Request) -> web.StreamResponse:
    temporary, gone = await take_once(request)
    return await _detail(request, request.match_info["id"], temporary=temporary, temporary_gone=gone)


def _fields_of(form: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in ("csrf", "username", "reason") and v.strip()}


@routes.post(PREFIX + "/requests/{id}/approve")
@page(*DECIDERS)
async def request_approve(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    req_id = request.match_info["id"]
    form = await read_form(request)
    if await _visible_request(request, req_id) is None:
        return forbidden(request)
    try:
        decision = await registrations_of(console).approve(req_id, _fields_of(form), actor=actor_of(request),
                                                           username=form.get("username") or None)
    except RequestInvalid as exc:
        return await _detail(request, req_id, reply_values=form, reply_errors=field_errors(exc.errors), status=422,
                             error=Text("The reply letter has errors; see the marked fields."))
    except Problem as exc:
        return await _detail(request, req_id, reply_values=form, error=exc.detail, status=422)
    except Exception as exc:  # an account that cannot be created (name taken, bad name)
        from lgsp.core.api import AccountError

        if not isinstance(exc, AccountError):
            raise
        return await _detail(request, req_id, reply_values=form, error=exc.message(), status=422)
    await _mail(request, decision.request)
    if decision.temporary_password:
        # The new unit admin's password is shown once after a 303, so a reload never approves again.
        raise await show_once(request, f"{PREFIX}/requests/{req_id}", decision.temporary_password)
    raise redirect(f"{PREFIX}/requests/{req_id}")


@routes.post(PREFIX + "/requests/{id}/refuse")
@page(*DECIDERS)
async def request_refuse(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    req_id = request.match_info["id"]
    form = await read_form(request)
    if await _visible_request(request, req_id) is None:
        return forbidden(request)
    try:
        refused = await registrations_of(console).refuse(req_id, form.get("reason", ""), actor=actor_of(request))
    except Problem as exc:
        return await _detail(request, req_id, error=exc.detail, status=422)
    await _mail(request, refused)
    raise redirect(f"{PREFIX}/requests/{req_id}")


@routes.post(PREFIX + "/requests/{id}/handover")
@page(*DECIDERS)
async def request_handover(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    req_id = request.match_info["id"]
    form = await read_form(request)
    if await _visible_request(request, req_id) is None:
        return forbidden(request)
    try:
        handed = await registrations_of(console).hand_over(req_id, _fields_of(form), actor=actor_of(request))
    except RequestInvalid as exc:
        return await _detail(request, req_id, handover_values=form, handover_errors=field_errors(exc.errors),
                             status=422, error=Text("The handover record has errors; see the marked fields."))
    except Problem as exc:
        return await _detail(request, req_id, handover_values=form, error=exc.detail, status=422)
    await _mail(request, handed)
    raise redirect(f"{PREFIX}/requests/{req_id}")


@routes.get(PREFIX + r"/requests/{id}/letter/{form:0[1-7]}.docx")
@page()
async def request_letter(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    req = await _visible_request(request, request.match_info["id"])
    if req is None:
        return forbidden(request)
    kind = request.match_info["form"]
    record: FormRecord | None
    if kind == req.kind:
        record = req.record()
    elif kind == req.reply_kind:
        record = req.reply_record()
    elif kind == "05" and req.kind == "03":
        record = req.handover_record()
    else:
        record = None
    if record is None:
        return forbidden(request, Text("This document does not exist yet."))
    body = await asyncio.to_thread(render_letter, record, console.hub.config.registration)
    return web.Response(body=body, content_type=DOCX, headers={
        "Content-Disposition": f'attachment; filename="mau-{kind}-{req.id[:8]}.docx"'})


async def _drain(request: web.Request, limit: int) -> None:
    """Read (and drop) what is left of a refused upload, so the browser gets the answer, not a reset."""
    left = limit
    while left > 0:
        chunk = await request.content.read(min(left, 1 << 16))
        if not chunk:
            return
        left -= len(chunk)


@routes.post(PREFIX + r"/requests/{id}/scan/{form:0[1-7]}")
@page(*DECIDERS, "unit_admin", stream_body=True)
async def request_scan_upload(request: web.Request) -> web.StreamResponse:
    """The signed scan of one of the request's letters: multipart, the CSRF field first, then `scan`."""
    console = console_of(request)
    who = request[WHO]
    req = await _visible_request(request, request.match_info["id"])
    form_id = request.match_info["form"]
    if req is None or form_id not in _forms_of(req):
        await _drain(request, 2 * MAX_SCAN_BYTES)
        return forbidden(request)
    if not request.content_type.startswith("multipart/form-data"):
        return await _detail(request, req.id, error=Text("Choose the scan file to upload."), status=422)
    reader = await request.multipart()
    part = await reader.next()
    token = None
    if part is not None and getattr(part, "name", None) == "csrf":
        token = (await part.read_chunk(256)).decode("ascii", "replace")  # type: ignore[union-attr]
    if not csrf_field_ok(request, token):
        await _drain(request, 2 * MAX_SCAN_BYTES)
        return console.render(request, "error.html", status=403,
                              message=Text("The form session is not valid or has expired (CSRF). "
                                           "Reload the page and try again."))
    if not _may_upload(who.account.role, req, form_id):
        await _drain(request, 2 * MAX_SCAN_BYTES)
        return console.render(request, "error.html", status=403,
                              message=Text("Your account may not upload a scan of this document."))
    part = await reader.next()
    if part is None or getattr(part, "name", None) != "scan":
        return await _detail(request, req.id, error=Text("Choose the scan file to upload."), status=422)
    upload = part

    async def chunks() -> Any:
        while True:
            chunk = await upload.read_chunk(1 << 16)  # type: ignore[union-attr]
            if not chunk:
                return
            yield chunk

    try:
        scan = await scans_of(console).store(req.id, form_id, chunks(), uploaded_by=who.account.username)
    except Problem as exc:
        await _drain(request, 2 * MAX_SCAN_BYTES)
        message = Text("A scan must be a PDF, PNG or JPEG file of at most {mb} MB ({detail}).",
                       mb=MAX_SCAN_BYTES // (1024 * 1024), detail=exc.detail)
        return await _detail(request, req.id, error=message, status=422)
    await console.accounts.audit(actor_of(request), "registration.scan_uploaded", target=req.id, unit_id=req.unit_id,
                                 detail={"form": form_id, "content_type": scan.content_type, "size": scan.size,
                                         "sha256": scan.sha256})
    raise redirect(f"{PREFIX}/requests/{req.id}")


@routes.get(PREFIX + r"/requests/{id}/scan/{form:0[1-7]}")
@page()
async def request_scan_download(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    req = await _visible_request(request, request.match_info["id"])
    if req is None:
        return forbidden(request)
    scans = scans_of(console)
    scan = await scans.get(req.id, request.match_info["form"])
    if scan is None:
        return forbidden(request, Text("This document has no scan yet."))
    headers = {**SECURITY_HEADERS, "Content-Type": scan.content_type,
               "Content-Disposition": f'attachment; filename="mau-{scan.form}-{req.id[:8]}-ban-quet.{scan.extension}"'}
    return await content_response(request, scans.path(scan), scan.size, headers)
