"""The console speaks Vietnamese by default (whatever the browser asks) and English when a person chooses it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, shot, sign_in


async def test_the_language_switch_turns_the_console_english_and_back(hub: Hub, accounts: Accounts, page: Any,
                                                                      tmp_path: Path) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator", display_name="Nguyễn Văn Quản")
    await page.goto(hub.url + "/console/login")
    assert await page.get_attribute("html", "lang") == "vi"
    assert await page.inner_text("h1") == "Đăng nhập"
    async with page.expect_navigation():
        await page.click("#lang-switch")
    assert page.url == hub.url + "/console/login"  # back on the page the switch was used on
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.inner_text("h1") == "Sign in"
    assert await page.inner_text("label[for=username]") == "Username"
    # A wrong password is told in English too (the account layer's message).
    await sign_in(page, hub, "quan.tri", "sai-mat-khau-123")
    assert "Đăng nhập" not in await page.inner_text("main")
    await sign_in(page, hub, "quan.tri")
    assert page.url == hub.url + "/console/"
    assert await page.inner_text("h1") == "Home"
    nav = await page.inner_text("header nav")
    assert "Packets" in nav and "Gói tin" not in nav
    await shot(page, "home-en", tmp_path)
    # The choice holds for the session's next pages, and switches back.
    await page.goto(hub.url + "/console/")
    assert await page.inner_text("h1") == "Home"
    async with page.expect_navigation():
        await page.click("#lang-switch")
    assert page.url == hub.url + "/console/"
    assert await page.inner_text("h1") == "Trang chủ"
    assert await page.get_attribute("html", "lang") == "vi"


async def test_an_english_browser_still_gets_vietnamese_and_the_switch_stays_inside(hub: Hub) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(hub.url + "/console/login", headers={"Accept-Language": "en-GB,en;q=0.9"}) as resp:
            text = await resp.text()
            assert resp.headers["Content-Language"] == "vi" and '<html lang="vi">' in text and "Đăng nhập" in text
        async with http.get(hub.url + "/console/login", cookies={"lgsp_console_lang": "en"}) as resp:
            text = await resp.text()
            assert resp.headers["Content-Language"] == "en" and "Sign in" in text
        # The switch redirects only inside the console, and an unknown language changes nothing.
        async with http.get(hub.url + "/console/lang?to=en&next=https://evil.example/", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/console/"
        async with http.get(hub.url + "/console/lang?to=fr&next=/console/login", allow_redirects=False) as resp:
            assert resp.status == 302 and "lgsp_console_lang" not in resp.cookies


async def test_accounts_unit_and_services_pages_in_english(hub: Hub, accounts: Accounts, page: Any) -> None:
    """The operator's pages speak English when chosen: headings, actions (their aria-labels too), empty states."""
    await hub.directory.add_unit("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    await hub.directory.add_unit("000.00.01.H23", "Sở Tài chính")
    await hub.services.add("ho-tich", "000.00.00.H23", "http://127.0.0.1:9/ho-tich", description="Hộ tịch")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await accounts.add("nhan.vien", PASSWORD, "unit_admin", unit_id="000.00.00.H23")
    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/accounts")
    assert await page.inner_text("h1") == "Accounts"
    assert await page.locator("button[aria-label='Reset password nhan.vien']").count() == 1
    assert "Unit administrator" in await page.inner_text("main table")  # the role names too
    assert "(Hub administrator)" in await page.inner_text("header")
    assert "Create an account" in await page.inner_text("main")
    await page.goto(hub.url + "/console/units/000.00.01.H23")
    main = await page.inner_text("main")
    assert "Identifier 000.00.01.H23" in main and "The unit has no application yet." in main
    assert "Mã định danh" not in main
    await page.goto(hub.url + "/console/services")
    assert await page.inner_text("h1") == "Services and who may call them"
    main = await page.inner_text("main")
    assert "Owning unit" in main and "Granted to no unit yet." in main and "Đơn vị" not in main
    await page.select_option("select[name=unit]", "000.00.01.H23")
    async with page.expect_navigation():
        await page.click("button:has-text('Grant')")
    assert await page.locator("button[aria-label='Revoke the grant of ho-tich to 000.00.01.H23']").count() == 1


async def test_reports_connections_and_audit_pages_in_english(hub: Hub, accounts: Accounts, page: Any) -> None:
    await hub.directory.add_unit("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/reports")
    assert await page.inner_text("h1") == "Statistics and reports"
    await page.goto(hub.url + "/console/reports?unit=000.00.00.H23&period=month&day=2026-12-01")
    main = await page.inner_text("main")
    assert "Report of unit 000.00.00.H23, " in main and "Download the spreadsheet (.xlsx)" in main
    assert await page.inner_text("#f-period option[selected]") == "Month"
    await page.goto(hub.url + "/console/connections?unit=000.00.00.H23")
    assert await page.inner_text("h1") == "Connection history"
    main = await page.inner_text("main")
    assert "Now: offline; last seen " in main and "No changes in this period." in main
    await page.goto(hub.url + "/console/audit")
    assert await page.inner_text("h1") == "Operations log"
    assert "Who did what, when, from which address (newest first)" in await page.inner_text("main")
    assert "Sign-in" in await page.inner_text("main table")  # the audited actions are named in English too


async def test_registration_form_labels_and_field_errors_in_english_and_the_letter_stays_vietnamese(
        hub: Hub, accounts: Accounts, page: Any) -> None:
    """The form pages follow the console's language (title, labels, field errors, the request's page); the
    .docx letter is the regulation's Vietnamese model whatever the reader's language."""
    from docx import Document

    await hub.directory.add_unit("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    await accounts.add("so.khdt", PASSWORD, "unit_admin", unit_id="000.00.00.H23")
    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await sign_in(page, hub, "so.khdt")
    await page.goto(hub.url + "/console/requests/new/01")
    assert await page.inner_text("h1") == (
        "Form 01: Registration of an application or service connected to the provincial integration axis")
    assert await page.inner_text("label[for=f-application_name]") == "Application or service name *"
    assert await page.inner_text("label[for=f-contact-email]") == "Email *"
    main = await page.inner_text("main")
    assert "Contact person" in main and "Signer" in main
    assert "Tên ứng dụng" not in main and "Cán bộ đầu mối" not in main
    async with page.expect_navigation():
        await page.click("button:has-text('Submit the request')")
    assert await page.inner_text("#f-number-err") == "Not filled in (required: the answer cites this letter)."
    await page.fill("#f-number", "12")
    await page.fill("#f-issued_on", "2026-12-01")
    await page.fill("#f-application_name", "Hệ thống quản lý văn bản")
    await page.fill("#f-contact-email", "không phải thư")
    async with page.expect_navigation():
        await page.click("button:has-text('Submit the request')")
    assert await page.inner_text("#f-contact-email-err") == "Not a valid email address."
    assert await page.inner_text("#f-developer-err") == "Not filled in (required)."
    main = await page.inner_text("main")
    assert "The form has errors; see the marked fields." in main
    assert "Chưa nhập" not in main and "không hợp lệ" not in main
    for name, value in {"developer": "Công ty Phần mềm Đồng Nai", "contact.name": "Lê Văn Khải",
                        "contact.email": "khai@skhdt.example.gov.vn", "contact.phone": "0912345678"}.items():
        await page.fill("#f-" + name.replace(".", "-"), value)
    async with page.expect_navigation():
        await page.click("button:has-text('Submit the request')")
    assert "/console/requests/" in page.url
    assert await page.inner_text("h1") == (
        "Form 01: Registration of an application or service connected to the provincial integration axis")
    main = await page.inner_text("main")
    assert "Contact person – Email" in main and "Application or service name" in main
    assert "Cán bộ đầu mối" not in main
    # The letter: Vietnamese, the regulation's wording, although the reader chose English.
    letter = await page.request.get(page.url + "/letter/01.docx")
    assert letter.status == 200
    doc = Document(io.BytesIO(await letter.body()))
    assert doc.core_properties.title == "Đăng ký thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh"
    text = "\n".join(p.text for p in doc.paragraphs)
    assert "Kính gửi" in text and "Registration" not in text


async def test_report_rows_and_exports_follow_the_console_language(hub: Hub, accounts: Accounts, page: Any) -> None:
    """The report's section and row names, on the page and in the .csv/.xlsx exports: Vietnamese by default,
    English when the console is English."""
    import openpyxl

    await hub.directory.add_unit("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    query = "?unit=000.00.00.H23&period=month&day=2026-12-01"
    await page.goto(hub.url + "/console/reports" + query)
    main = await page.inner_text("main")
    assert "Tổng hợp" in main and "Gói tin gửi" in main and "Tỷ lệ trực tuyến" in main
    csv_vi = (await (await page.request.get(hub.url + "/console/reports/export.csv" + query)).body()
              ).decode("utf-8-sig")
    assert csv_vi.splitlines()[0] == "Mục,Chỉ tiêu,Giá trị" and "Tổng hợp,Gói tin gửi,0" in csv_vi

    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await page.goto(hub.url + "/console/reports" + query)
    main = await page.inner_text("main")
    assert "Summary" in main and "Packets sent" in main and "Share of time online" in main
    assert "Tổng hợp" not in main and "Gói tin" not in main
    csv_en = (await (await page.request.get(hub.url + "/console/reports/export.csv" + query)).body()
              ).decode("utf-8-sig")
    assert csv_en.splitlines()[0] == "Section,Item,Value" and "Summary,Packets sent,0" in csv_en
    xlsx = await page.request.get(hub.url + "/console/reports/export.xlsx" + query)
    sheet = openpyxl.load_workbook(io.BytesIO(await xlsx.body())).active
    assert sheet.title == "Report"
    assert sheet["A1"].value == "Usage report of the integration axis — unit 000.00.00.H23"
    assert [c.value for c in sheet[4]] == ["Section", "Item", "Value"]
    assert sheet["A5"].value == "Summary" and sheet["B5"].value == "Packets sent"
