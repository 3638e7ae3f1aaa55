"""The registration workflow in the store: due dates in working days, states, and what approvals do."""

from __future__ import annotations

import datetime as dt
import io

import aiohttp
import pytest
from docx import Document
from sqlalchemy import select

from lgsp.adapters.console.requests import flatten
from lgsp.core.accounts import Accounts, Actor
from lgsp.core.clock import ManualClock
from lgsp.core.config import Config
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.core.registration.letters import render_letter
from lgsp.core.registration.scans import Scans
from lgsp.core.registration.workdays import VIETNAM_TZ, WorkingCalendar
from lgsp.core.registration.workflow import Registrations, RequestInvalid
from lgsp.core.store.tables import applications, packet_events
from tests.registration.samples import SAMPLES

from .conftest import PASSWORD, csrf_of, http_sign_in

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


async def test_the_console_s_workflow_reads_the_hub_s_clock(hub_config: Config) -> None:
    """A hub whose clock is not the machine's (here: Friday before Tết 2026, 17:00 in Vietnam) stamps a
    request submitted and approved in the console by its own clock, counts the due date from its own
    today, dates a scan's upload and calls a request overdue by it, as every other time rule of the hub does."""
    clock = ManualClock(dt.datetime(2026, 2, 13, 17, 0, tzinfo=VIETNAM_TZ))
    async with Hub(hub_config, clock=clock) as hub, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as agency, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as approver:
        await hub.directory.add_unit(UNIT, "Sở Y tế")
        accounts = Accounts(hub.db, hub.master_key)
        await accounts.add("so.yte", PASSWORD, "unit_admin", unit_id=UNIT)
        await accounts.add("duyet", PASSWORD, "approver")
        await http_sign_in(agency, hub, "so.yte")
        await http_sign_in(approver, hub, "duyet")
        submitted = clock.now()
        async with agency.get(hub.url + "/console/requests/new/01") as resp:
            csrf = csrf_of(await resp.text())
        async with agency.post(hub.url + "/console/requests/new/01", allow_redirects=False,
                               data={"csrf": csrf, "unit": UNIT, **flatten(SAMPLES["01"])}) as resp:
            assert resp.status == 302, await resp.text()
            request_id = resp.headers["Location"].rsplit("/", 1)[1]
        flow = Registrations(hub.db, hub.directory, accounts, WorkingCalendar.from_config(hub.config.registration))
        req = await flow.get(request_id)
        assert req is not None
        assert (req.submitted_at, req.due_on) == (submitted, dt.date(2026, 2, 27))  # Tết skipped
        late = {"/console/requests": '<tr class="overdue">', f"/console/requests/{request_id}": '<dd class="bad">',
                "/console/": '<ul class="overdue">'}
        for page, marked in late.items():   # not late by the hub's today (the machine's is months later)
            async with agency.get(hub.url + page) as resp:
                assert resp.status == 200 and marked not in await resp.text(), page
        async with agency.get(hub.url + f"/console/requests/{request_id}") as resp:
            csrf = csrf_of(await resp.text())
        clock.advance(60)
        upload = aiohttp.FormData()
        upload.add_field("csrf", csrf)
        upload.add_field("scan", b"%PDF-1.7\nmau 01 da ky\n%%EOF\n", filename="mau-01.pdf",
                         content_type="application/pdf")
        async with agency.post(hub.url + f"/console/requests/{request_id}/scan/01", data=upload,
                               allow_redirects=False) as resp:
            assert resp.status in (302, 303), await resp.text()
        scan = await Scans.of(hub).get(request_id, "01")
        assert scan is not None and scan.uploaded_at == clock.now()
        clock.advance(17 * 86400)   # Monday 2 March 2026: the answer is late
        for page, marked in late.items():
            async with agency.get(hub.url + page) as resp:
                assert resp.status == 200 and marked in await resp.text(), page

        decided = clock.now()
        async with approver.get(hub.url + f"/console/requests/{request_id}") as resp:
            csrf = csrf_of(await resp.text())
        async with approver.post(hub.url + f"/console/requests/{request_id}/approve", allow_redirects=False,
                                 data={"csrf": csrf, **flatten(SAMPLES["02"])}) as resp:
            assert resp.status in (302, 303), await resp.text()
        req = await flow.get(request_id)
        assert req is not None and (req.state, req.decided_at) == ("approved", decided)
        async with hub.db.read() as conn:
            created = await conn.scalar(select(applications.c.created_at)
                                        .where(applications.c.id == req.application_id))
            stamped = list((await conn.execute(select(packet_events.c.at)
                                               .where(packet_events.c.type.like("registration.%"))
                                               .order_by(packet_events.c.id))).scalars())
        assert created == decided and stamped == [submitted, decided]


async def _events(hub: Hub) -> list[str]:
    async with hub.db.read() as conn:
        return list((await conn.execute(select(packet_events.c.type).order_by(packet_events.c.id))).scalars())
