"""A packet's page: deliveries and timeline; an operator cancels and retries a delivery from it."""

from __future__ import annotations

from typing import Any

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, sign_in


async def test_operator_cancels_a_delivery_and_a_retry_without_content_is_refused(
        hub: Hub, accounts: Accounts, make_actor: Any, page: Any) -> None:
    source = await make_actor("000.00.00.H23")
    await make_actor("000.00.01.H23")
    packet_id = await source.client.send(b"noi dung", ["000.00.01.H23"], subject="<i>Tờ trình</i> số 5")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + f"/console/packets/{packet_id}")
    assert await page.inner_text("#packet-subject") == "<i>Tờ trình</i> số 5"
    async with page.expect_navigation():
        await page.click("button[aria-label='Hủy tới 000.00.01.H23']")
    assert "cancelled" in await page.inner_text("table")
    async with page.expect_navigation():
        await page.click("button[aria-label='Gửi lại tới 000.00.01.H23']")
    # Its only delivery ended, so the hub purged the content: a retry is refused and says why.
    assert await page.locator("p.error[role=alert]").count() == 1
    assert "cancelled" in await page.inner_text("table")
    trail = [e.action for e in await accounts.audit_entries(actor="quan.tri")]
    assert trail[0] == "delivery.cancel"
