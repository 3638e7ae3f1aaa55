"""The registration workflow: an agency's request (Mẫu 01, 03, 06), its answer (02, 04, 07), the
handover record (05), and what each approval does to the directory.

* 01 → 02: the application is created for the unit, and keys can be issued for it.
* 03 → 04: a unit-admin account is created (its temporary password is returned once), then 05
  records the handover.
* 06 → 07: every key of the application is revoked and the application retired; its history stays.

A request is complete when submitted (the console checks it against the form before it is stored),
so its due date is the configured number of working days after that day (Điều 15.1,
workdays.py). Each state change is one transaction with its audit row and an event for the unit
(`registration.<state>`, history and the unit's live stream); the forms themselves are stored as the
validated fields, so a letter can be printed again at any time (letters.py).

Every moment it writes (submitted, decided, handed over, retired) and the day a due date counts from
is the hub's clock (core/clock.py), as for every other time rule of the hub.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lgsp.core import events as ev
from lgsp.core.accounts import Accounts, Actor, new_password, record_audit
from lgsp.core.clock import SYSTEM_CLOCK
from lgsp.core.directory import Directory
from lgsp.core.errors import Problem
from lgsp.core.events import Event, EventBus, record
from lgsp.core.i18n import N_, Text, gettext
from lgsp.core.registration.forms import FieldError, FormRecord, form_kind, validate
from lgsp.core.registration.workdays import WorkingCalendar, local_date
from lgsp.core.store.database import Database
from lgsp.core.store.tables import access_keys, applications, registration_requests, units

REQUEST_KINDS = ("01", "03", "06")
#: The states as a person reads them, marked for the catalogues (gettext where shown).
STATE_NAMES = {"submitted": N_("Awaiting an answer"), "approved": N_("Approved"), "refused": N_("Refused"),
               "handed_over": N_("Handed over")}
OPEN_STATES = ("submitted",)


class RequestInvalid(Exception):
    """The submitted fields do not make a valid form: every problem, with its field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class RegistrationRequest:
    id: str
    kind: str
    unit_id: str
    state: str
    data: dict[str, Any]
    reply: dict[str, Any] | None
    handover: dict[str, Any] | None
    reason: str | None
    application_id: str | None
    account_id: str | None
    created_by: str | None
    submitted_at: dt.datetime
    due_on: dt.date
    decided_by: str | None
    decided_at: dt.datetime | None
    handed_over_at: dt.datetime | None

    @property
    def reply_kind(self) -> str:
        answered_by = form_kind(self.kind).answered_by
        assert answered_by is not None
        return answered_by

    @property
    def state_name(self) -> str:
        """In the language being spoken (the console renders a page inside `i18n.speaking`)."""
        return gettext(STATE_NAMES[self.state]) if self.state in STATE_NAMES else self.state

    @property
    def due_text(self) -> str:
        return self.due_on.strftime("%d/%m/%Y")

    def overdue(self, today: dt.date) -> bool:
        """Still waiting for an answer after its due date has ended: `today` is the hub's, in Vietnam
        (`Registrations.today`), never the machine's."""
        return self.state in OPEN_STATES and today > self.due_on

    def record(self) -> FormRecord:
        return _record(self.kind, self.data)

    def reply_record(self) -> FormRecord | None:
        return _record(self.reply_kind, self.reply) if self.reply else None

    def handover_record(self) -> FormRecord | None:
        return _record("05", self.handover) if self.handover else None


@dataclass(frozen=True)
class Decision:
    request: RegistrationRequest
    temporary_password: str | None = None   # 03 → 04: the new account's, shown once


def _record(kind: str, data: dict[str, Any]) -> FormRecord:
    parsed = validate(kind, data)
    if isinstance(parsed, list):  # stored data was valid when stored; a schema change would show here
        raise RequestInvalid(parsed)
    return parsed


def to_json(record: FormRecord) -> dict[str, Any]:
    """A record as JSON that `validate` reads back into the same record (dates in ISO form)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v not in (None, [], {})}
        return value

    out = plain(dataclasses.asdict(record))
    assert isinstance(out, dict)
    return out


def _row(r: Any) -> RegistrationRequest:
    return RegistrationRequest(r.id, r.kind, r.unit_id, r.state, r.data, r.reply, r.handover, r.reason,
                               r.application_id, r.account_id, r.created_by, r.submitted_at,
                               dt.date.fromisoformat(r.due_on), r.decided_by, r.decided_at, r.handed_over_at)


def is_request_id(text: str) -> bool:
    """Whether `text` has the shape of a request id (a UUID as `submit` writes it): anything else is
    not looked up, so no text a store refuses (a NUL on PostgreSQL) reaches it from a URL."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _check(kind: str, data: object) -> FormRecord:
    parsed = validate(kind, data)
    if isinstance(parsed, list):
        raise RequestInvalid(parsed)
    return parsed


class Registrations:
    def __init__(self, db: Database, directory: Directory, accounts: Accounts, calendar: WorkingCalendar,
                 bus: EventBus | None = None, *, clock: Callable[[], dt.datetime] = SYSTEM_CLOCK) -> None:
        self.db = db
        self.directory = directory
        self.accounts = accounts
        self.calendar = calendar
        self.bus = bus
        self.clock = clock

    def today(self) -> dt.date:
        """The hub's today in Vietnam: what a due date is compared with."""
        return local_date(self.clock())

    async def _event(self, conn: AsyncConnection, req_id: str, unit_id: str, type_: str,
                     detail: dict[str, Any]) -> Event:
        return await record(conn, None, type_, self.clock(), unit=unit_id, audience=unit_id,
                            detail={"request": req_id, **detail})

    def _publish(self, events: list[Event]) -> None:
        if self.bus is not None:
            self.bus.publish(events)

    # -- reading --------------------------------------------------------------------------------
    async def get(self, request_id: str) -> RegistrationRequest | None:
        if not is_request_id(request_id):
            return None
        async with self.db.read() as conn:
            row = (await conn.execute(select(registration_requests)
                                      .where(registration_requests.c.id == request_id))).first()
        return _row(row) if row else None

    async def list_requests(self, *, unit_ids: Sequence[str] | None = None, state: str | None = None,
                            kind: str | None = None, limit: int = 500) -> list[RegistrationRequest]:
        stmt = select(registration_requests).order_by(registration_requests.c.submitted_at.desc()).limit(limit)
        if unit_ids is not None:
            stmt = stmt.where(registration_requests.c.unit_id.in_(list(unit_ids)))
        if state:
            stmt = stmt.where(registration_requests.c.state == state)
        if kind:
            stmt = stmt.where(registration_requests.c.kind == kind)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_row(r) for r in rows]

    async def overdue(self, *, unit_ids: Sequence[str] | None = None,
                      today: dt.date | None = None) -> list[RegistrationRequest]:
        today = today or self.today()
        stmt = (select(registration_requests)
                .where(registration_requests.c.state.in_(OPEN_STATES),
                       registration_requests.c.due_on < today.isoformat())
                .order_by(registration_requests.c.due_on))
        if unit_ids is not None:
            stmt = stmt.where(registration_requests.c.unit_id.in_(list(unit_ids)))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_row(r) for r in rows]

    # -- the agency's request -------------------------------------------------------------------
    async def submit(self, kind: str, unit_id: str, data: object, *, actor: Actor,
                     application_id: str | None = None, now: dt.datetime | None = None) -> RegistrationRequest:
        if kind not in REQUEST_KINDS:
            raise Problem("request.invalid", Text("an agency's request is form 01, 03 or 06, not {kind!r}",
                                                  kind=kind), field="kind")
        record_ = _check(kind, data)
        moment = now or self.clock()
        due = self.calendar.due_date(local_date(moment))
        request_id = str(uuid.uuid4())
        async with self.db.write() as conn:
            if await conn.scalar(select(units.c.id).where(units.c.id == unit_id)) is None:
                raise Problem("not_found", Text("unit {unit_id} does not exist", unit_id=unit_id))
            if kind == "06":
                app = (await conn.execute(select(applications).where(
                    applications.c.id == (application_id or ""), applications.c.unit_id == unit_id))).first()
                if app is None:
                    raise Problem("request.invalid", Text("choose one of the unit's applications to cancel"),
                                  field="application_id")
                if app.retired_at is not None:
                    raise Problem("conflict", Text("application {name} is already retired", name=app.name))
            await conn.execute(registration_requests.insert().values(
                id=request_id, kind=kind, unit_id=unit_id, state="submitted", data=to_json(record_),
                application_id=application_id if kind == "06" else None, created_by=actor.username,
                submitted_at=moment, due_on=due.isoformat(), updated_at=moment))
            await record_audit(conn, actor, f"registration.{kind}.submitted", target=request_id, unit_id=unit_id,
                               detail={"due_on": due.isoformat()})
            event = await self._event(conn, request_id, unit_id, ev.REGISTRATION_SUBMITTED,
                                      {"form": kind, "due_on": due.isoformat()})
        self._publish([event])
        found = await self.get(request_id)
        assert found is not None
        return found

    def reply_defaults(self, req: RegistrationRequest, unit_name: str) -> dict[str, Any]:
        """The answer's fields the request already gives: the agency and its letter's number and date."""
        data = req.data
        out: dict[str, Any] = {"agency": data.get("agency") or unit_name}
        if data.get("number"):
            abbreviation = data.get("abbreviation")
            out["request.number"] = f"{data['number']}/{abbreviation}" if abbreviation else None
        if data.get("issued_on"):
            out["request.issued_on"] = data["issued_on"]
        return {k: v for k, v in out.items() if v}

    # -- the answer -----------------------------------------------------------------------------
    async def refuse(self, request_id: str, reason: str, *, actor: Actor) -> RegistrationRequest:
        reason = " ".join((reason or "").split())
        if not reason or len(reason) > 2000:
            raise Problem("request.invalid", Text("a refusal needs a reason (at most 2000 characters)"), field="reason")
        now = self.clock()
        async with self.db.write() as conn:
            req = await self._take(conn, request_id, "submitted")
            await conn.execute(update(registration_requests).where(registration_requests.c.id == request_id).values(
                state="refused", reason=reason, decided_by=actor.username, decided_at=now, updated_at=now))
            await record_audit(conn, actor, f"registration.{req.kind}.refused", target=request_id,
                               unit_id=req.unit_id, detail={"reason": reason})
            event = await self._event(conn, request_id, req.unit_id, ev.REGISTRATION_REFUSED,
                                      {"form": req.kind, "reason": reason})
        self._publish([event])
        return await self._get(request_id)

    async def approve(self, request_id: str, reply: object, *, actor: Actor,
                      username: str | None = None) -> Decision:
        """Approve with the answer's fields (02, 04 or 07) and apply its effect. For 03, `username` names
        the unit-admin account to create."""
        req = await self._get(request_id)
        if req.state != "submitted":
            raise Problem("conflict", Text("the request is {state}, not submitted", state=req.state))
        reply_record = _check(req.reply_kind, reply)
        temporary = None
        account_id = None
        if req.kind == "03":
            temporary = new_password()
            if not username:
                raise Problem("request.invalid", Text("name the unit administrator's account"), field="username")
            account = await self.accounts.add(username, temporary, "unit_admin", actor=actor, unit_id=req.unit_id,
                                              display_name=str(req.data.get("contact", {}).get("name") or ""),
                                              must_change_password=True)
            account_id = account.id
        now = self.clock()
        application_id = req.application_id
        async with self.db.write() as conn:
            req = await self._take(conn, request_id, "submitted")
            detail: dict[str, Any] = {"form": req.reply_kind}
            if req.kind == "01":
                application_id = await self._create_application(conn, req)
                detail["application"] = application_id
            elif req.kind == "06":
                assert application_id is not None
                revoked = await self._retire_application(conn, application_id, now)
                detail.update(application=application_id, revoked_keys=revoked)
            elif account_id is not None:
                detail["account"] = username
            await conn.execute(update(registration_requests).where(registration_requests.c.id == request_id).values(
                state="approved", reply=to_json(reply_record), decided_by=actor.username, decided_at=now,
                updated_at=now, application_id=application_id, account_id=account_id))
            await record_audit(conn, actor, f"registration.{req.kind}.approved", target=request_id,
                               unit_id=req.unit_id, detail=detail)
            event = await self._event(conn, request_id, req.unit_id, ev.REGISTRATION_APPROVED, detail)
        self._publish([event])
        return Decision(await self._get(request_id), temporary)

    async def hand_over(self, request_id: str, handover: object, *, actor: Actor) -> RegistrationRequest:
        """Mẫu 05: the approved account (03 → 04) was handed over."""
        record_ = _check("05", handover)
        now = self.clock()
        async with self.db.write() as conn:
            req = await self._take(conn, request_id, "approved")
            if req.kind != "03":
                raise Problem("conflict", Text("only an account request (Mẫu 03) is handed over"))
            await conn.execute(update(registration_requests).where(registration_requests.c.id == request_id).values(
                state="handed_over", handover=to_json(record_), handed_over_at=now, updated_at=now))
            await record_audit(conn, actor, "registration.03.handed_over", target=request_id, unit_id=req.unit_id)
            event = await self._event(conn, request_id, req.unit_id, ev.REGISTRATION_HANDED_OVER, {"form": "05"})
        self._publish([event])
        return await self._get(request_id)

    # -- helpers --------------------------------------------------------------------------------
    async def _get(self, request_id: str) -> RegistrationRequest:
        req = await self.get(request_id)
        if req is None:
            raise Problem("not_found", Text("registration request {request_id} does not exist", request_id=request_id))
        return req

    async def _take(self, conn: AsyncConnection, request_id: str, state: str) -> RegistrationRequest:
        """The request, in `state`, inside this write transaction (so two approvers cannot both act)."""
        row = (await conn.execute(select(registration_requests)
                                  .where(registration_requests.c.id == request_id))).first() \
            if is_request_id(request_id) else None
        if row is None:
            raise Problem("not_found", Text("registration request {request_id} does not exist", request_id=request_id))
        if row.state != state:
            raise Problem("conflict", Text("the request is {state}, not {state2}", state=row.state, state2=state))
        return _row(row)

    async def _create_application(self, conn: AsyncConnection, req: RegistrationRequest) -> str:
        name = str(req.data.get("application_abbreviation") or req.data.get("application_name"))[:128]
        existing = await conn.scalar(select(applications.c.id).where(
            applications.c.unit_id == req.unit_id, applications.c.name == name))
        if existing is not None:
            raise Problem("conflict", Text("unit {unit_id} already has an application named {name!r}",
                                           unit_id=req.unit_id, name=name))
        app_id = str(uuid.uuid4())
        await conn.execute(applications.insert().values(id=app_id, unit_id=req.unit_id, name=name,
                                                        created_at=self.clock()))
        return app_id

    async def _retire_application(self, conn: AsyncConnection, application_id: str, now: dt.datetime) -> int:
        result = await conn.execute(update(access_keys).where(
            access_keys.c.application_id == application_id, access_keys.c.revoked_at.is_(None)).values(revoked_at=now))
        await conn.execute(update(applications).where(applications.c.id == application_id).values(retired_at=now))
        return int(result.rowcount or 0)
