"""The registration workflow in a real browser: Mẫu 01 to a working key, 03 → 04 → 05, refusals,
letters, and a unit admin kept to its own unit whatever the URL."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import openpyxl
from docx import Document
from sqlalchemy import func, select

from lgsp.client import Credentials, LgspClient
from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub
from lgsp.core.store.tables import registration_requests

from .conftest import PASSWORD, shot, sign_in

UNIT = "000.00.00.H23"
OTHER = "000.00.01.H23"


async def _fill_request(page: Any, fields: dict[str, str]) -> None:
    for name, value in fields.items():
        await page.fill("#f-" + name.replace(".", "-"), value)


async def _submit_form_01(page: Any, hub: Hub, number: str) -> str:
    """A valid form 01 submitted by the signed-in unit admin; the new request's page URL."""
    await page.goto(hub.url + "/console/requests/new/01")
    await _fill_request(page, {"number": number, "issued_on": "2026-12-01", "application_name": f"Cổng {number}",
                               "developer": "Công ty B", "contact.name": "Lê Văn Khải",
                               "contact.email": "khai@skhdt.example.gov.vn", "contact.phone": "0912345678"})
    async with page.expect_navigation():
        await page.click("button:has-text('Gửi đề nghị')")
    return str(page.url)


async def _setup(hub: Hub, accounts: Accounts) -> None:
    await hub.directory.add_unit(UNIT, "Sở Kế hoạch và Đầu tư")
    await hub.directory.add_unit(OTHER, "Sở Tài chính")
    await accounts.add("so.khdt", PASSWORD, "unit_admin", unit_id=UNIT, display_name="Lê Văn Khải")
    await accounts.add("so.tc", PASSWORD, "unit_admin", unit_id=OTHER)
    await accounts.add("duyet", PASSWORD, "approver", display_name="Phạm Thị Duyệt")


async def test_form_01_to_a_working_key(hub: Hub, accounts: Accounts, browser: Any, tmp_path: Path) -> None:
    await _setup(hub, accounts)
    agency = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await sign_in(agency, hub, "so.khdt")
    await agency.goto(hub.url + "/console/requests/new/01")
    assert await agency.input_value("#f-agency") == "Sở Kế hoạch và Đầu tư"
    await _fill_request(agency, {"number": "12", "abbreviation": "SKHĐT-VP", "issued_on": "2026-12-01",
                                 "application_name": "Hệ thống quản lý văn bản <b>điều hành</b>",
                                 "application_abbreviation": "QLVB", "developer": "Công ty Phần mềm Đồng Nai",
                                 "contact.name": "Lê Văn Khải", "contact.email": "khai@skhdt.example.gov.vn",
                                 "contact.phone": "0912345678"})
    await agency.fill("#f-contact-email", "không phải thư")
    async with agency.expect_navigation():
        await agency.click("button:has-text('Gửi đề nghị')")
    assert "Địa chỉ thư điện tử không hợp lệ" in await agency.inner_text("main")
    await agency.fill("#f-contact-email", "khai@skhdt.example.gov.vn")
    await shot(agency, "mau-01", tmp_path)
    async with agency.expect_navigation():
        await agency.click("button:has-text('Gửi đề nghị')")
    request_url = agency.url
    assert "/console/requests/" in request_url
    assert await agency.inner_text("#request-state") == "Chờ trả lời"
    assert "Hệ thống quản lý văn bản <b>điều hành</b>" in await agency.inner_text("main")  # shown as text

    # Another unit's admin cannot see it, by list or by URL.
    other = await (await browser.new_context()).new_page()
    await sign_in(other, hub, "so.tc")
    response = await other.goto(request_url)
    assert response.status == 404
    await other.goto(hub.url + "/console/requests")
    assert "Chưa có đề nghị nào" in await other.inner_text("main")
    assert (await other.goto(request_url + "/letter/01.docx")).status == 404
    assert (await other.goto(hub.url + f"/console/units/{UNIT}")).status == 404

    approver = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await sign_in(approver, hub, "duyet")
    await approver.goto(request_url)
    assert await approver.input_value("#r-request-number") == "12/SKHĐT-VP"
    assert await approver.input_value("#r-request-issued_on") == "2026-12-01"
    await approver.fill("#r-support_contact-name", "Trần Quốc Hưng")
    await approver.fill("#r-support_contact-phone", "0912 345 678")
    await approver.fill("#r-number", "45")
    await approver.fill("#r-issued_on", "2026-12-03")
    await shot(approver, "mau-01-phe-duyet", tmp_path)
    async with approver.expect_navigation():
        await approver.click("button:has-text('Chấp thuận')")
    assert await approver.inner_text("#request-state") == "Đã chấp thuận"
    async with approver.expect_download() as download_info:
        await approver.click("text=Tải Mẫu 02 (.docx)")
    letter = Path(await (await download_info.value).path()).read_bytes()
    text = "\n".join(p.text for p in Document(io.BytesIO(letter)).paragraphs)
    assert "12/SKHĐT-VP" in text and "Trần Quốc Hưng" in text

    # The unit admin issues a key for the new application and sends a packet with it.
    await agency.goto(hub.url + f"/console/units/{UNIT}")
    assert "QLVB" in await agency.inner_text("main")
    async with agency.expect_navigation():
        await agency.click("button:has-text('Cấp khóa')")
    access_key = (await agency.inner_text("#issued-access-key")).strip()
    secret = (await agency.inner_text("#issued-secret")).strip()
    await shot(agency, "ung-dung-khoa", tmp_path)
    await agency.goto(hub.url + f"/console/units/{UNIT}")
    assert await agency.locator("#issued-secret").count() == 0  # shown once
    receiver_app = await hub.directory.add_application(OTHER, "vbql")
    receiver = await hub.directory.issue_key(receiver_app.id, "HMAC-SHA256")
    sender = LgspClient(Credentials(hub.url, access_key, "HMAC-SHA256", secret))
    inbox = LgspClient(Credentials(hub.url, receiver.access_key, "HMAC-SHA256", receiver.secret))
    try:
        body = "Công văn số 1".encode()
        packet_id = await sender.send(body, [OTHER], subject="Công văn số 1")
        assert await inbox.fetch_bytes(packet_id) == body
        await inbox.ack(packet_id, hashlib.sha256(body).hexdigest())
    finally:
        await sender.close()
        await inbox.close()

    # It shows delivered in the unit's traffic and counts in its statistics, exported to .xlsx.
    await agency.goto(hub.url + f"/console/traffic?unit={UNIT}&role=sent")
    table = await agency.inner_text("table")
    assert packet_id[:8] in table and "Công văn số 1" in table and "đã giao" in table and "delivered" not in table
    await shot(agency, "goi-tin", tmp_path)
    # The state filter is chosen by its name (an operator never types an identifier).
    assert await agency.inner_text("#f-state option[value=delivered]") == "đã giao"
    await agency.select_option("#f-state", "delivered")
    async with agency.expect_navigation():
        await agency.click("button:has-text('Lọc')")
    assert "state=delivered" in agency.url and packet_id[:8] in await agency.inner_text("table")
    await agency.goto(hub.url + f"/console/traffic?unit={UNIT}&role=sent&state=failed")
    assert packet_id[:8] not in await agency.inner_text("table")
    assert (await agency.goto(hub.url + f"/console/traffic?unit={UNIT}&state=x%00y")).status == 200  # ignored
    assert (await agency.goto(hub.url + f"/console/traffic?unit={OTHER}")).status == 404
    await agency.goto(hub.url + f"/console/packets/{packet_id}")
    assert await agency.inner_text("#packet-subject") == "Công văn số 1"
    timeline = await agency.inner_text("main")
    assert "bên nhận xác nhận" in timeline and "packet.delivered" not in timeline  # delivery acknowledged
    assert await agency.locator("button:has-text('Gửi lại')").count() == 0  # operators only
    # A unit neither sending nor receiving it gets 404, as for a packet that does not exist.
    await hub.directory.add_unit("000.00.02.H23", "Sở Xây dựng")
    await accounts.add("so.xd", PASSWORD, "unit_admin", unit_id="000.00.02.H23")
    stranger = await (await browser.new_context()).new_page()
    await sign_in(stranger, hub, "so.xd")
    assert (await stranger.goto(hub.url + f"/console/packets/{packet_id}")).status == 404
    assert (await stranger.goto(hub.url + "/console/packets/no-such-packet")).status == 404
    await agency.goto(hub.url + f"/console/reports?unit={UNIT}&period=year")
    await shot(agency, "thong-ke", tmp_path)
    async with agency.expect_download() as download_info:
        await agency.click("#export-xlsx")
    download = await download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    await download.save_as(tmp_path / "bao-cao.xlsx")
    workbook = openpyxl.load_workbook(tmp_path / "bao-cao.xlsx")
    values = {(r[1], r[2]) for r in workbook.active.iter_rows(min_row=5, values_only=True)}
    assert ("Gói tin gửi", 1) in values and ("Dung lượng gửi (byte)", len(body)) in values
    assert (f"{OTHER} — gửi", 1) in values
    await agency.goto(hub.url + f"/console/connections?unit={UNIT}")
    assert "trực tuyến" in await agency.inner_text("main")


async def test_account_request_approval_and_handover(hub: Hub, accounts: Accounts, browser: Any) -> None:
    await _setup(hub, accounts)
    await accounts.add("quan.tri", PASSWORD, "operator")
    page = await (await browser.new_context()).new_page()
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/requests/new/03")
    await page.select_option("#f-unit", OTHER)
    await _fill_request(page, {"agency": "Sở Tài chính", "number": "7", "abbreviation": "STC",
                               "issued_on": "2026-12-01",
                               "contact.name": "Đỗ Thị Hoa", "contact.email": "hoa@stc.example.gov.vn",
                               "contact.phone": "0251 3822 456"})
    async with page.expect_navigation():
        await page.click("button:has-text('Gửi đề nghị')")
    await page.fill("#f-username", "qt.stc")
    await page.fill("#r-support_contact-name", "Trần Quốc Hưng")
    await page.fill("#r-support_contact-phone", "0912345678")
    await page.fill("#r-number", "46")
    await page.fill("#r-issued_on", "2026-12-02")
    async with page.expect_navigation():
        await page.click("button:has-text('Chấp thuận')")
    temporary = (await page.inner_text("#temporary-password")).strip()
    assert (await accounts.authenticate("qt.stc", temporary, None, address=None)).unit_id == OTHER
    state = await page.inner_text("#request-state")
    await page.reload()  # a reload neither approves again nor shows the password again
    assert await page.locator("#temporary-password").count() == 0 and temporary not in await page.content()
    assert "đã hiển thị" in await page.inner_text("#secret-gone")
    assert await page.locator(".error").count() == 0 and await page.inner_text("#request-state") == state
    assert await page.input_value("#h-form_04-number") == "46"
    await page.fill("#h-form_04-number", "46/TTCNTT")
    await page.fill("#h-handover_at", "2026-12-03T09:30")
    await page.fill("#h-handover_place", "Phòng họp tầng 3")
    await page.fill("#h-party_a-name", "Trần Quốc Hưng")
    await page.fill("#h-party_a-position", "Trưởng phòng")
    await page.fill("#h-party_b-name", "Đỗ Thị Hoa")
    await page.fill("#h-party_b-position", "Chuyên viên")
    async with page.expect_navigation():
        await page.click("button:has-text('Ghi nhận bàn giao')")
    assert await page.inner_text("#request-state") == "Đã bàn giao"
    history = await page.inner_text("#history")  # the audited actions as a person reads them
    for said in ("Đã gửi đề nghị theo Mẫu 03", "Đã chấp thuận đề nghị theo Mẫu 03", "Đã bàn giao theo Mẫu 03"):
        assert said in history, history
    assert "registration." not in history, history
    for kind in ("03", "04", "05"):
        assert await page.locator(f"text=Tải Mẫu {kind} (.docx)").count() == 1


async def test_refusal_shows_its_reason_escaped(hub: Hub, accounts: Accounts, browser: Any) -> None:
    await _setup(hub, accounts)
    page = await (await browser.new_context()).new_page()
    await sign_in(page, hub, "so.khdt")
    url = await _submit_form_01(page, hub, "13")
    approver = await (await browser.new_context()).new_page()
    await sign_in(approver, hub, "duyet")
    await approver.goto(url)
    await approver.fill("#f-reason", "<img src=x onerror=alert(1)> Thiếu căn cứ")
    async with approver.expect_navigation():
        await approver.click("button:has-text('Từ chối')")
    assert await approver.inner_text("#refusal-reason") == "<img src=x onerror=alert(1)> Thiếu căn cứ"
    await page.goto(url)
    assert await page.inner_text("#request-state") == "Từ chối"
    assert await page.locator("text=Chấp thuận").count() == 0  # a unit admin cannot decide
    # Nor by posting directly (its CSRF token is valid, its role is not).
    csrf = await page.get_attribute("input[name=csrf]", "value")
    response = await page.request.post(url + "/approve", form={"csrf": csrf or ""})
    assert response.status == 403


async def test_the_registration_pages_in_english(hub: Hub, accounts: Accounts, page: Any) -> None:
    """The list, a new request and its page speak English when the person chose it; the data stays as written."""
    await _setup(hub, accounts)
    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await sign_in(page, hub, "so.khdt")
    await page.goto(hub.url + "/console/requests")
    assert await page.inner_text("h1") == "Registration requests (forms 01–07)"
    assert "No requests yet." in await page.inner_text("main")
    async with page.expect_navigation():
        await page.click("a:has-text('Form 01: register an application or service')")
    assert (await page.inner_text("h1")).startswith("Form 01: ")
    assert await page.inner_text("label[for=f-unit]") == "Requesting unit *"
    await _fill_request(page, {"number": "12", "abbreviation": "SKHĐT-VP", "issued_on": "2026-12-01",
                               "application_name": "Quản lý văn bản", "application_abbreviation": "QLVB",
                               "developer": "Công ty Phần mềm", "contact.name": "Lê Văn Khải",
                               "contact.email": "khai@skhdt.example.gov.vn", "contact.phone": "0912345678"})
    async with page.expect_navigation():
        await page.click("button:has-text('Submit the request')")
    assert await page.inner_text("#request-state") == "Awaiting an answer"
    main = await page.inner_text("main")
    assert "Answer due" in main and "(5 working days)" in main and "Download form 01 (.docx)" in main
    assert "Scans of the signed documents" in main and "Quản lý văn bản" in main
    assert "Hạn trả lời" not in main and "Bản quét" not in main
    assert (await page.inner_text("#history")).count("Form 01 submitted") == 1


async def test_every_request_page_answers_404_alike(tmp_path: Path, pg_url: str, browser: Any) -> None:
    """Every page and action on one request (its page, letters, scans, the decisions) answers the same
    404 for another unit's request, an id that does not exist and one that could not be an id (a NUL,
    which PostgreSQL refuses as text): one check, never a 500. On PostgreSQL."""
    from lgsp.core.config import load_config

    from ..conftest import base_env

    cfg = load_config(None, env=base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url, LGSP_DATABASE_POOL_SIZE="2"))
    async with Hub(cfg) as hub:
        accounts = Accounts(hub.db, hub.master_key)
        await _setup(hub, accounts)
        agency = await (await browser.new_context()).new_page()
        await sign_in(agency, hub, "so.khdt")
        mine = (await _submit_form_01(agency, hub, "14")).rsplit("/", 1)[1]
        other = await (await browser.new_context()).new_page()
        await sign_in(other, hub, "so.tc")
        approver = await (await browser.new_context()).new_page()
        await sign_in(approver, hub, "duyet")
        missing, bad = "00000000-0000-4000-8000-000000000000", "%00"
        for who, ids in ((other, (mine, missing, bad)), (approver, (missing, bad))):
            await who.goto(hub.url + "/console/requests")
            csrf = await who.get_attribute("input[name=csrf]", "value") or ""
            for req_id in ids:
                base = f"{hub.url}/console/requests/{req_id}"
                for path in ("", "/letter/01.docx", "/scan/01"):
                    response = await who.request.get(base + path)
                    assert response.status == 404, (req_id, path, response.status)
                response = await who.request.post(base + "/scan/01", multipart={"csrf": csrf})
                assert response.status == 404, (req_id, "scan upload", response.status)
                if who is approver:
                    for action in ("approve", "refuse", "handover"):
                        response = await who.request.post(f"{base}/{action}", form={"csrf": csrf, "reason": "x"})
                        assert response.status == 404, (req_id, action, response.status)
                        assert "Không tìm thấy" in await response.text()
        await agency.goto(f"{hub.url}/console/requests/{mine}")
        assert await agency.inner_text("#request-state") == "Chờ trả lời"   # and nothing was decided


async def test_a_new_request_shows_every_error_at_once(hub: Hub, accounts: Accounts, page: Any) -> None:
    """A form with several errors (the cited letter's number and date missing, a required field empty,
    a bad email, phone and abbreviation) comes back once with all of them, each at its field, and with
    what was entered; in English when the person chose it. Posted with a unit not theirs, the unit's
    error is there too, beside the fields' own."""
    await _setup(hub, accounts)
    await sign_in(page, hub, "so.khdt")
    entered = {"abbreviation": "SKHĐT VP!", "application_name": "", "developer": "Công ty Phần mềm",
               "contact.name": "Lê Văn Khải", "contact.email": "không phải thư", "contact.phone": "gọi tôi"}
    expected = {"number": "Chưa nhập (bắt buộc để văn bản trả lời dẫn chiếu).",
                "issued_on": "Chưa nhập (bắt buộc để văn bản trả lời dẫn chiếu).",
                "application_name": "Chưa nhập (bắt buộc).",
                "abbreviation": "Chữ viết tắt chỉ gồm chữ, số và dấu gạch nối (ví dụ SYT-VP).",
                "contact-email": "Địa chỉ thư điện tử không hợp lệ.", "contact-phone": "Số điện thoại không hợp lệ."}
    await page.goto(hub.url + "/console/requests/new/01")
    await _fill_request(page, entered)
    async with page.expect_navigation() as navigation:
        await page.click("button:has-text('Gửi đề nghị')")
    assert (await navigation.value).status == 422
    assert await page.inner_text("p.error") == "Biểu mẫu còn lỗi; xem các trường đánh dấu."
    shown = {e.removeprefix("f-").removesuffix("-err"): await page.inner_text("#" + e)
             for e in await page.eval_on_selector_all("span.error[id]", "els => els.map(e => e.id)")}
    assert shown == expected
    for name, value in entered.items():
        assert await page.input_value("#f-" + name.replace(".", "-")) == value
    assert await page.input_value("#f-agency") == "Sở Kế hoạch và Đầu tư"   # the page's own default, kept
    # Another unit (only by posting: the page offers only the person's): its error joins the fields'.
    csrf = await page.get_attribute("input[name=csrf]", "value") or ""
    response = await page.request.post(hub.url + "/console/requests/new/01",
                                       form={"csrf": csrf, "unit": OTHER, "agency": "Sở Tài chính",
                                             "contact.email": "sai"})
    body = await response.text()
    assert response.status == 422
    for message in ("Hãy chọn một đơn vị của bạn.", "Chưa nhập (bắt buộc để văn bản trả lời dẫn chiếu).",
                    "Địa chỉ thư điện tử không hợp lệ.", "Chưa nhập (bắt buộc)."):
        assert message in body, message
    assert 'value="sai"' in body and 'id="f-unit-err"' in body
    # Form 06 naming no application of the unit: that error too, with the fields'.
    response = await page.request.post(hub.url + "/console/requests/new/06",
                                       form={"csrf": csrf, "unit": UNIT, "application_id": "no-such-application",
                                             "agency": "Sở Kế hoạch và Đầu tư"})
    body = await response.text()
    assert response.status == 422 and 'id="f-app-err"' in body
    for message in ("Hãy chọn một ứng dụng của đơn vị.", "Chưa nhập (bắt buộc để văn bản trả lời dẫn chiếu)."):
        assert message in body, message
    # In English: the same errors in the person's language.
    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await page.goto(hub.url + "/console/requests/new/01")
    await _fill_request(page, entered)
    async with page.expect_navigation():
        await page.click("button:has-text('Submit the request')")
    main = await page.inner_text("main")
    for message in ("The form has errors; see the marked fields.",
                    "Not filled in (required: the answer cites this letter).", "Not filled in (required).",
                    "Not a valid email address.", "Not a valid phone number.",
                    "An abbreviation is letters, digits and hyphens only (for example SYT-VP)."):
        assert message in main, message
    assert "Chưa nhập" not in main
    assert await page.input_value("#f-contact-email") == "không phải thư"
    async with hub.db.read() as conn:   # nothing was submitted along the way
        assert await conn.scalar(select(func.count()).select_from(registration_requests)) == 0
