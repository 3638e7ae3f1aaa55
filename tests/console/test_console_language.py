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
