"""One-time secrets after a POST (post/redirect/get): a reload never issues again nor shows the secret."""

from __future__ import annotations

from typing import Any

from lgsp.adapters.console.once import OneTimeSecrets
from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, sign_in

UNIT = "000.00.00.H23"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_one_time_secret_is_taken_once_by_its_session_and_page_only() -> None:
    clock = _Clock()
    once = OneTimeSecrets(ttl=300, clock=clock)
    ident = once.put("session-a", "/console/units/X", "bi-mat")
    assert once.take("session-b", "/console/units/X", ident) is None           # another session: nothing
    assert once.take("session-a", "/console/units/Y", ident) is None           # another page: nothing
    assert once.take("session-a", "/console/units/X", "made-up") is None
    assert once.take("session-a", "/console/units/X", None) is None
    assert once.take("session-a", "/console/units/X", ident) == "bi-mat"       # neither of those consumed it
    assert once.take("session-a", "/console/units/X", ident) is None           # single use
    assert len(once) == 0


def test_a_one_time_secret_expires_and_memory_stays_bounded() -> None:
    clock = _Clock()
    once = OneTimeSecrets(ttl=300, clock=clock, max_entries=3)
    late = once.put("s", "/p", "late")
    clock.now += 300
    assert once.take("s", "/p", late) is None
    idents = [once.put("s", "/p", str(i)) for i in range(5)]
    assert len(once) == 3
    assert once.take("s", "/p", idents[0]) is None                               # the oldest were dropped
    assert once.take("s", "/p", idents[4]) == "4"
    clock.now += 301
    once.put("s", "/p", "new")                                                   # expired ones go on the next put
    assert len(once) == 1


async def _key_count(hub: Hub, unit_id: str) -> int:
    return len(await hub.directory.list_keys(unit_id=unit_id))


async def test_reloading_after_issuing_a_key_neither_issues_another_nor_shows_the_secret(
        hub: Hub, accounts: Accounts, page: Any) -> None:
    await hub.directory.add_unit(UNIT, "Sở Kế hoạch và Đầu tư")
    await hub.directory.add_application(UNIT, "qlvb")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + f"/console/units/{UNIT}")
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.request.method == "POST" else None)
    async with page.expect_navigation():
        await page.click("button:has-text('Cấp khóa')")
    assert answers == [303]                                  # the POST answers with a redirect, not the page
    assert "/keys" not in page.url and "once=" in page.url
    secret = (await page.inner_text("#issued-secret")).strip()
    access_key = (await page.inner_text("#issued-access-key")).strip()
    assert secret and access_key
    assert await _key_count(hub, UNIT) == 1

    await page.reload()
    assert await _key_count(hub, UNIT) == 1                  # no second key
    assert await page.locator("#issued-secret").count() == 0
    assert secret not in await page.content()
    assert "đã hiển thị" in await page.inner_text("#secret-gone")
    assert answers == [303]                                  # the reload was a GET

    # Another signed-in session given the same address sees nothing either.
    other = await page.context.browser.new_context()
    p2 = await other.new_page()
    await sign_in(p2, hub, "quan.tri")
    await p2.goto(page.url)
    assert await p2.locator("#issued-secret").count() == 0
    await other.close()


async def test_reloading_after_an_account_is_made_or_reset_never_shows_the_password_again(
        hub: Hub, accounts: Accounts, page: Any) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/accounts")
    await page.fill("#new-username", "nhan.vien")
    await page.select_option("#new-role", "viewer")
    async with page.expect_navigation():
        await page.click("text=Tạo tài khoản >> nth=-1")
    temporary = (await page.inner_text("#temporary-password")).strip()
    await page.reload()
    assert await page.locator("#temporary-password").count() == 0
    assert temporary not in await page.content()
    assert "đã hiển thị" in await page.inner_text("#secret-gone")
    assert await page.locator(".error").count() == 0         # no "name taken" from a repeated POST
    assert (await accounts.authenticate("nhan.vien", temporary, None, address=None)).username == "nhan.vien"

    async with page.expect_navigation():
        await page.click("button[aria-label='Đặt lại mật khẩu nhan.vien']")
    reset = (await page.inner_text("#temporary-password")).strip()
    assert reset != temporary
    await page.reload()
    assert await page.locator("#temporary-password").count() == 0
    assert reset not in await page.content()
    # The reload did not reset again: the password shown once still works.
    assert (await accounts.authenticate("nhan.vien", reset, None, address=None)).username == "nhan.vien"
