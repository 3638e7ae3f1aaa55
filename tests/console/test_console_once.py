"""One-time secrets after a POST (post/redirect/get): a reload never issues again nor shows the secret."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from lgsp.core.accounts import Accounts
from lgsp.core.config import Config
from lgsp.core.hub import Hub
from lgsp.core.masterkey import MasterKeyError
from lgsp.core.onetime import MAX_PER_SESSION, OneTimeSecrets
from lgsp.core.store.tables import one_time_secrets

from .conftest import PASSWORD, sign_in

UNIT = "000.00.00.H23"


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 6, 3, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def test_a_one_time_secret_is_taken_once_by_its_session_and_page_only(hub: Hub) -> None:
    once = OneTimeSecrets(hub.db, hub.master_key, ttl=300, clock=_Clock())
    ident = await once.put("session-a", "/console/units/X", {"secret": "bi-mat"})
    assert await once.take("session-b", "/console/units/X", ident) is None       # another session: nothing
    assert await once.take("session-a", "/console/units/Y", ident) is None       # another page: nothing
    assert await once.take("session-a", "/console/units/X", "made-up") is None
    assert await once.take("session-a", "/console/units/X", None) is None
    assert await once.take("session-a", "/console/units/X", ident) == {"secret": "bi-mat"}  # none consumed it
    assert await once.take("session-a", "/console/units/X", ident) is None       # single use
    assert await once.waiting() == 0


async def test_a_one_time_secret_is_sealed_at_rest_under_hashes_only(hub: Hub) -> None:
    once = OneTimeSecrets(hub.db, hub.master_key)
    ident = await once.put("session-token-a", "/console/accounts", ["nhan.vien", "mat-khau-tam-XYZ"])
    async with hub.db.read() as conn:
        row = (await conn.execute(one_time_secrets.select())).one()
    stored = repr(tuple(row)).encode()
    for clear in (b"mat-khau-tam-XYZ", b"nhan.vien", ident.encode(), b"session-token-a"):
        assert clear not in stored and clear not in bytes(row.sealed)
    # The sealed value is bound to its row: moved to another page's row it does not open.
    other = await once.put("session-token-a", "/console/units/X", "khac")
    async with hub.db.write() as conn:
        await conn.execute(one_time_secrets.update().where(one_time_secrets.c.page == "/console/units/X")
                           .values(sealed=row.sealed))
    with pytest.raises(MasterKeyError):
        await once.take("session-token-a", "/console/units/X", other)


async def test_a_one_time_secret_expires_and_a_session_cannot_pile_them_up(hub: Hub) -> None:
    clock = _Clock()
    once = OneTimeSecrets(hub.db, hub.master_key, ttl=300, clock=clock)
    late = await once.put("s", "/p", "late")
    clock.now += dt.timedelta(seconds=300)
    assert await once.take("s", "/p", late) is None
    idents = [await once.put("s", "/p", str(i)) for i in range(MAX_PER_SESSION + 2)]
    assert await once.waiting() == MAX_PER_SESSION
    assert await once.take("s", "/p", idents[0]) is None                         # the oldest were dropped
    assert await once.take("s", "/p", idents[-1]) == str(MAX_PER_SESSION + 1)
    await once.put("t", "/p", "other session")                                   # not bounded by s's count
    clock.now += dt.timedelta(seconds=301)
    await once.put("s", "/p", "new")                                             # expired ones go on the next put
    assert await once.waiting() == 1


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


async def test_a_secret_waiting_to_be_shown_survives_a_hub_restart(hub_config: Config, page: Any) -> None:
    """The POST's node stops before the browser follows the 303: the next hub (same store) shows the
    secret once, because it was kept sealed in the store, not in the first process's memory."""
    async with Hub(hub_config) as first:
        await first.directory.add_unit(UNIT, "Sở Kế hoạch và Đầu tư")
        await first.directory.add_application(UNIT, "qlvb")
        await Accounts(first.db, first.master_key).add("quan.tri", PASSWORD, "operator")
        await sign_in(page, first, "quan.tri")
        await page.goto(first.url + f"/console/units/{UNIT}")
        held: list[str] = []

        async def hold(route: Any) -> None:
            """The POST goes to the hub; its 303 is not followed (the browser gets a blank page)."""
            answer = await route.fetch(max_redirects=0)
            held.append(answer.headers["location"])
            await route.fulfill(status=200, body="", content_type="text/html")

        await page.route(re.compile(r".*/console/units/[^/?]+/keys$"), hold)
        async with page.expect_navigation():
            await page.click("button:has-text('Cấp khóa')")
        await page.unroute(re.compile(r".*/console/units/[^/?]+/keys$"))
        assert len(held) == 1
    async with Hub(hub_config) as second:
        assert held[0].startswith(f"/console/units/{UNIT}?once=")
        target = second.url + held[0]
        await page.goto(target)
        secret = (await page.inner_text("#issued-secret")).strip()
        keys = await second.directory.list_keys(unit_id=UNIT)
        assert len(keys) == 1 and secret
        assert await OneTimeSecrets(second.db, second.master_key).waiting() == 0   # deleted when shown
        await page.goto(target)
        assert await page.locator("#issued-secret").count() == 0
        assert "đã hiển thị" in await page.inner_text("#secret-gone")
