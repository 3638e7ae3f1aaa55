"""Signing in to the console in a real browser, and the security of sessions and forms."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
from yarl import URL

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, shot, sign_in


async def test_an_operator_signs_in_sees_home_and_signs_out(hub: Hub, accounts: Accounts, page: Any,
                                                              tmp_path: Path) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator", display_name="Nguyễn Văn Quản")
    await page.goto(hub.url + "/console/")
    assert page.url.startswith(hub.url + "/console/login?next=/console/")
    assert await page.get_attribute("html", "lang") == "vi"
    await shot(page, "dang-nhap", tmp_path)
    await sign_in(page, hub, "quan.tri", "sai-mat-khau-123")
    assert "Tên đăng nhập hoặc mật khẩu không đúng" in await page.inner_text("#signin-error")
    await sign_in(page, hub, "quan.tri")
    assert page.url == hub.url + "/console/"
    assert await page.inner_text("h1") == "Trang chủ"
    assert "Nguyễn Văn Quản" in await page.inner_text("header")
    await shot(page, "trang-chu", tmp_path)
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["lgsp_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
    async with page.expect_navigation():
        await page.click("text=Đăng xuất")
    assert page.url.startswith(hub.url + "/console/login")
    # The old cookie is dead on the server, not only forgotten by the browser.
    await page.context.add_cookies([{**session}])
    await page.goto(hub.url + "/console/accounts")
    assert "/console/login" in page.url
    actions = [e.action for e in await accounts.audit_entries(actor="quan.tri")]
    assert actions[:3] == ["signout", "signin.succeeded", "signin.failed"]


async def test_a_reset_password_must_be_changed_at_the_next_sign_in(hub: Hub, accounts: Accounts, page: Any,
                                                                     tmp_path: Path) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/accounts")
    await page.fill("#new-username", "nhan.vien")
    await page.fill("#new-name", "<script>alert(1)</script> Trần Thị B")
    await page.select_option("#new-role", "viewer")
    async with page.expect_navigation():
        await page.click("text=Tạo tài khoản >> nth=-1")
    temporary = (await page.inner_text("#temporary-password")).strip()
    assert len(temporary) >= 12
    # Escaped, never run: the name shows as text.
    assert "<script>alert(1)</script> Trần Thị B" in await page.inner_text("table")
    await shot(page, "tai-khoan", tmp_path)
    await page.goto(hub.url + "/console/accounts")  # shown once: a fresh page does not have it
    assert await page.locator("#temporary-password").count() == 0

    other = await page.context.browser.new_context(locale="vi-VN")  # the console speaks what the browser asks
    p2 = await other.new_page()
    await sign_in(p2, hub, "nhan.vien", temporary)
    assert p2.url == hub.url + "/console/password"
    await p2.goto(hub.url + "/console/audit")
    assert p2.url == hub.url + "/console/password"  # every page waits for the change
    await p2.fill("#old", temporary)
    await p2.fill("#new", "mat-khau-moi-cua-b")
    await p2.fill("#repeat", "mat-khau-moi-cua-b")
    async with p2.expect_navigation():
        await p2.click("button:has-text('Đổi mật khẩu')")
    assert p2.url == hub.url + "/console/?changed=1"
    assert "Đã đổi mật khẩu" in await p2.inner_text("main")
    await other.close()
    assert not (await accounts.find("nhan.vien")).must_change_password


async def test_repeated_wrong_passwords_lock_the_account(hub: Hub, accounts: Accounts, page: Any) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    for _ in range(5):
        await sign_in(page, hub, "quan.tri", "doan-mo-mat-khau")
    await sign_in(page, hub, "quan.tri")
    assert "tạm khóa" in await page.inner_text("#signin-error")
    assert "/console/login" in page.url


async def test_totp_second_factor(hub: Hub, accounts: Accounts, page: Any) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/totp")
    secret = (await page.inner_text("#totp-secret")).strip()
    totp = pyotp.TOTP(secret)
    await page.fill("#code", "000000" if totp.now() != "000000" else "111111")
    async with page.expect_navigation():
        await page.click("button:has-text('Bật xác thực 2 lớp')")
    assert "không đúng" in await page.inner_text("main")
    secret = (await page.inner_text("#totp-secret")).strip()
    totp = pyotp.TOTP(secret)
    await page.fill("#code", totp.now())
    async with page.expect_navigation():
        await page.click("button:has-text('Bật xác thực 2 lớp')")
    assert "Đã bật xác thực 2 lớp" in await page.inner_text("main")
    async with page.expect_navigation():
        await page.click("text=Đăng xuất")
    await sign_in(page, hub, "quan.tri")
    assert "mã xác thực" in (await page.inner_text("#signin-error")).lower()
    await sign_in(page, hub, "quan.tri", totp=totp.at(time.time() + 30))
    assert page.url == hub.url + "/console/"


async def test_open_redirects_after_sign_in_stay_inside_the_console(hub: Hub, accounts: Accounts, page: Any) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    for target in ("//evil.example/", "https://evil.example/", "/console/..//evil.example", "/\\evil.example"):
        await page.context.clear_cookies()
        await sign_in(page, hub, "quan.tri", path="/console/login?next=" + target)
        assert page.url == hub.url + "/console/", target
    await page.context.clear_cookies()
    await sign_in(page, hub, "quan.tri", path="/console/login?next=/console/audit")
    assert page.url == hub.url + "/console/audit"


async def test_forms_without_the_csrf_token_and_fixed_sessions_are_refused(hub: Hub, accounts: Accounts,
                                                                            page: Any) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    await accounts.add("nan.nhan", PASSWORD, "viewer")
    # Session fixation: a cookie planted before sign-in is not the one the session gets.
    planted = await accounts.open_session(await accounts.find("nan.nhan"), address=None, absolute_seconds=600)
    await sign_in(page, hub, "quan.tri")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "lgsp_console")
    assert not cookie["value"].startswith(planted)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        http.cookie_jar.update_cookies({"lgsp_console": cookie["value"]}, response_url=URL(hub.url + "/console/"))
        async with http.post(hub.url + "/console/accounts", data={"username": "ke.gian", "role": "operator"},
                             allow_redirects=False) as resp:
            assert resp.status == 403
            assert "CSRF" in await resp.text()
        async with http.post(hub.url + "/console/accounts", data={"username": "ke.gian", "role": "operator",
                                                                  "csrf": "x" * 43}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.get(hub.url + "/console/", allow_redirects=False) as resp:
            assert resp.status == 200
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
        # A forged cookie (token without the hub's MAC) goes to the sign-in page.
        http.cookie_jar.update_cookies({"lgsp_console": planted + ".AAAA"},
                                       response_url=URL(hub.url + "/console/"))
        async with http.get(hub.url + "/console/", allow_redirects=False) as resp:
            assert resp.status == 302 and "/console/login" in resp.headers["Location"]
    assert await accounts.by_username("ke.gian") is None


async def test_roles_limit_pages(hub: Hub, accounts: Accounts, page: Any) -> None:
    await hub.directory.add_unit("000.00.00.H23", "Sở A")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await accounts.add("so.a", PASSWORD, "unit_admin", unit_id="000.00.00.H23")
    await accounts.add("duyet", PASSWORD, "approver")
    await sign_in(page, hub, "duyet")
    resp = await page.goto(hub.url + "/console/accounts")
    assert resp.status == 403 and "không có quyền" in await page.inner_text("main")
    await page.context.clear_cookies()
    await sign_in(page, hub, "so.a")
    resp = await page.goto(hub.url + "/console/accounts")
    assert resp.status == 200
    table = await page.inner_text("table")
    assert "so.a" in table and "quan.tri" not in table and "duyet" not in table
    assert await page.locator("text=Tạo tài khoản").count() == 0
