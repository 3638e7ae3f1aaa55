"""A maintenance notice shows as a banner on every console page, signed in or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, sign_in


async def test_the_console_shows_the_notices_in_force(hub: Hub, accounts: Accounts, page: Any) -> None:
    await accounts.add("quan.tri", PASSWORD, "operator")
    await page.goto(hub.url + "/console/login")
    assert await page.locator(".notice[role=status]").count() == 0  # no notice, no banner

    now = datetime.now(UTC)
    await hub.notices.add("Bảo trì trục liên thông từ 22 giờ", now + timedelta(hours=1), now + timedelta(hours=2))
    await hub.notices.refresh()
    await page.goto(hub.url + "/console/login")
    banner = await page.inner_text(".notice[role=status]")
    assert "Thông báo bảo trì" in banner and "Bảo trì trục liên thông từ 22 giờ" in banner
    await sign_in(page, hub, "quan.tri")
    assert "Bảo trì trục liên thông từ 22 giờ" in await page.inner_text(".notice[role=status]")
