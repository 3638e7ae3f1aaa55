"""The registration workflow in the store: due dates in working days, states, and what approvals do."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from docx import Document

from lgsp.core.accounts import Accounts, Actor
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.core.registration.letters import render_letter
from lgsp.core.registration.workdays import VIETNAM_TZ, WorkingCalendar
from lgsp.core.registration.workflow import Registrations, RequestInvalid
from tests.registration.samples import SAMPLES

UNIT = "000.00.00.H23"
AGENCY = Actor("so.yte", "10.1.1.1")
APPROVER = Actor("duyet", "10.2.2.2")


@pytest.fixture
async def flow(hub: Hub) -> Registrations:
    await hub.directory.add_unit(UNIT, "Sở Y tế")
    accounts = Accounts(hub.db, hub.master_key)
    return Registrations(hub.db, hub.directory, accounts, WorkingCalendar.from_config(hub.config.registration),
                         hub.bus)


async def test_due_date_counts_working_days_and_skips_tet(flow: Registrations) -> None:
    # Friday 13 February 2026, 17:00 in Vietnam: Tết holidays run 14–22 February (config default).
    friday = dt.datetime(2026, 2, 13, 17, 0, tzinfo=VIETNAM_TZ)
    req = await flow.submit("01", UNIT, SAMPLES["01"], actor=AGENCY, now=friday)
    assert req.due_on == dt.date(2026, 2, 27)  # 23, 24, 25, 26, 27 February
    assert req.state == "submitted" and req.overdue(dt.date(2026, 2, 28)) and not req.overdue(dt.date(2026, 2, 27))
    assert [r.id for r in await flow.overdue(today=dt.date(2026, 3, 2))] == [req.id]
    assert await flow.overdue(today=dt.date(2026, 2, 27)) == []


async def test_form_01_approved_creates_the_application_and_keys_can_be_issued(flow: Registrations,
                                                                                 hub: Hub) -> None:
    req = await flow.submit("01", UNIT, SAMPLES["01"], actor=AGENCY)
    with pytest.raises(RequestInvalid) as bad:
        await flow.approve(req.id, {"agency": "Sở Y tế"}, actor=APPROVER)
    assert {e.field for e in bad.value.errors} >= {"request.number", "support_contact.name"}
    decision = await flow.approve(req.id, SAMPLES["02"], actor=APPROVER)
    assert decision.request.state == "approved" and decision.temporary_password is None
    apps = await hub.directory.list_applications(UNIT)
    assert [a.name for a in apps] == ["QLVBĐH"] and decision.request.application_id == apps[0].id
    key = await hub.directory.issue_key(apps[0].id, "HMAC-SHA256")
    assert key.unit_id == UNIT
    with pytest.raises(Problem) as twice:
        await flow.approve(req.id, SAMPLES["02"], actor=APPROVER)
    assert twice.value.code == "conflict"
    # The letters of both steps print from what was stored.
    for record in (decision.request.record(), decision.request.reply_record()):
        assert record is not None
        text = "\n".join(p.text for p in Document(io.BytesIO(render_letter(record, hub.config.registration)))
                         .paragraphs)
        assert "Trục liên thông tỉnh" in text
    events = await _events(hub)
    assert [e for e in events if e.startswith("registration.")] == ["registration.submitted", "registration.approved"]


async def test_form_03_creates_a_unit_admin_then_the_handover_is_recorded(flow: Registrations) -> None:
    req = await flow.submit("03", UNIT, SAMPLES["03"], actor=AGENCY)
    decision = await flow.approve(req.id, SAMPLES["04"], actor=APPROVER, username="qt.syt")
    assert decision.temporary_password
    account = await flow.accounts.authenticate("qt.syt", decision.temporary_password, None, address=None)
    assert (account.role, account.unit_id, account.must_change_password) == ("unit_admin", UNIT, True)
    with pytest.raises(RequestInvalid):
        await flow.hand_over(req.id, {"handover_place": "Phòng họp"}, actor=APPROVER)
    done = await flow.hand_over(req.id, SAMPLES["05"], actor=APPROVER)
    assert done.state == "handed_over" and done.handover_record() is not None


async def test_form_06_revokes_every_key_and_retires_the_application(flow: Registrations, hub: Hub) -> None:
    app = await hub.directory.add_application(UNIT, "CDV")
    keys = [await hub.directory.issue_key(app.id, "HMAC-SHA256") for _ in range(2)]
    with pytest.raises(Problem):
        await flow.submit("06", UNIT, SAMPLES["06"], actor=AGENCY)  # which application: required
    req = await flow.submit("06", UNIT, SAMPLES["06"], actor=AGENCY, application_id=app.id)
    await flow.approve(req.id, SAMPLES["07"], actor=APPROVER)
    listed = await hub.directory.list_keys(application_id=app.id)
    assert {k.id for k in listed} == {k.access_key for k in keys} and all(k.revoked_at for k in listed)
    assert (await hub.directory.find_application(app.id)).id == app.id  # history kept
    with pytest.raises(Problem) as retired:
        await hub.directory.issue_key(app.id, "HMAC-SHA256")
    assert retired.value.code == "conflict"
    with pytest.raises(Problem):
        await flow.submit("06", UNIT, SAMPLES["06"], actor=AGENCY, application_id=app.id)


async def test_refusal_needs_a_reason_and_closes_the_request(flow: Registrations) -> None:
    req = await flow.submit("01", UNIT, SAMPLES["01"], actor=AGENCY)
    with pytest.raises(Problem):
        await flow.refuse(req.id, "   ", actor=APPROVER)
    refused = await flow.refuse(req.id, "Thiếu căn cứ pháp lý", actor=APPROVER)
    assert (refused.state, refused.reason, refused.decided_by) == ("refused", "Thiếu căn cứ pháp lý", "duyet")
    assert not refused.overdue(dt.date(2099, 1, 1))
    with pytest.raises(Problem):
        await flow.approve(req.id, SAMPLES["02"], actor=APPROVER)


async def test_bad_forms_and_kinds_are_refused(flow: Registrations) -> None:
    with pytest.raises(RequestInvalid) as bad:
        await flow.submit("01", UNIT, {**SAMPLES["01"], "contact": {"email": "không-phải-email"}}, actor=AGENCY)
    assert "contact.email" in {e.field for e in bad.value.errors}
    with pytest.raises(Problem):
        await flow.submit("02", UNIT, SAMPLES["02"], actor=AGENCY)
    with pytest.raises(Problem):
        await flow.submit("01", "000.00.99.H23", SAMPLES["01"], actor=AGENCY)


async def _events(hub: Hub) -> list[str]:
    from sqlalchemy import select

    from lgsp.core.store.tables import packet_events

    async with hub.db.read() as conn:
        return list((await conn.execute(select(packet_events.c.type).order_by(packet_events.c.id))).scalars())
