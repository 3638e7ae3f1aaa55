"""The console speaks Vietnamese by default (whatever the browser asks) and English when a person chooses it."""

from __future__ import annotations

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
