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
    # The state, the way it is received and the stored reason read Vietnamese, not as the store keeps them.
    table = await page.inner_text("table")
    assert "đã hủy" in table and "bị người vận hành hủy" in table and "trục đẩy tới" not in table
    assert "cancelled" not in table and "pull" not in table
    async with page.expect_navigation():
        await page.click("button[aria-label='Gửi lại tới 000.00.01.H23']")
    # Its only delivery ended, so the hub purged the content: a retry is refused and says why.
    assert await page.locator("p.error[role=alert]").count() == 1
    assert "đã hủy" in await page.inner_text("table")
    trail = [e.action for e in await accounts.audit_entries(actor="quan.tri")]
    assert trail[0] == "delivery.cancel"


async def test_operator_reroutes_a_delivery_through_the_policy_checked_use_case(
        hub: Hub, accounts: Accounts, make_actor: Any, page: Any) -> None:
    source = await make_actor("000.00.00.H23")
    await make_actor("000.00.01.H23")
    other = await make_actor("000.00.02.H23")
    await make_actor("000.00.03.H23")
    await hub.policy.add("deny", "000.00.00.H23", "000.00.03.H23", by="test")
    packet_id = await source.client.send(b"noi dung", ["000.00.01.H23"], subject="Công văn chuyển nhầm")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + f"/console/packets/{packet_id}")
    reroute = "form[action$='/reroute/000.00.01.H23']"
    # A unit the source may not reach (communication policy): refused, nothing moves.
    await page.fill(f"{reroute} input[name=to]", "000.00.03.H23")
    async with page.expect_navigation():
        await page.click(f"{reroute} button")
    assert "chính sách liên thông" in await page.inner_text("p.error[role=alert]")  # communication policy
    # A unit that does not exist: refused too.
    await page.fill(f"{reroute} input[name=to]", "000.00.99.H23")
    async with page.expect_navigation():
        await page.click(f"{reroute} button")
    assert await page.locator("p.error[role=alert]").count() == 1
    rows = await page.inner_text("table")
    assert "000.00.03.H23" not in rows and "000.00.99.H23" not in rows
    # A unit it may reach: the old delivery is cancelled, the new one waits for its destination.
    await page.fill(f"{reroute} input[name=to]", "000.00.02.H23")
    async with page.expect_navigation():
        await page.click(f"{reroute} button")
    assert await page.locator("p.error").count() == 0
    table = await page.inner_text("table")
    assert "000.00.02.H23" in table and "đã hủy" in table and "đơn vị tự lấy về" in table
    timeline = await page.inner_text("table >> nth=1")
    assert "chuyển hướng" in timeline and "packet.rerouted" not in timeline  # event types by their names
    inbox = await other.client.inbox()
    assert [p["id"] for p in inbox] == [packet_id]
    trail = await accounts.audit_entries(actor="quan.tri")
    assert trail[0].action == "delivery.reroute" and trail[0].detail == {"to": "000.00.02.H23"}


async def test_only_an_operator_may_reroute(hub: Hub, accounts: Accounts, make_actor: Any, page: Any) -> None:
    source = await make_actor("000.00.00.H23")
    await make_actor("000.00.01.H23")
    await make_actor("000.00.02.H23")
    packet_id = await source.client.send(b"noi dung", ["000.00.01.H23"], subject="Công văn")
    await accounts.add("don.vi", PASSWORD, "unit_admin", unit_id="000.00.00.H23")
    await sign_in(page, hub, "don.vi")
    await page.goto(hub.url + f"/console/packets/{packet_id}")
    assert await page.locator("form[action*='/reroute/']").count() == 0
    # Even a hand-made POST with the person's own valid CSRF token is refused by role.
    csrf = await page.evaluate("document.querySelector('input[name=csrf]')?.value || ''")
    status = await page.evaluate(
        """async ([url, csrf]) => (await fetch(url, {method: 'POST',
                                   body: new URLSearchParams({csrf, to: '000.00.02.H23'})})).status""",
        [hub.url + f"/console/packets/{packet_id}/reroute/000.00.01.H23", csrf])
    assert status == 403
    seen = await hub.exchange.operator_view(packet_id)
    assert seen is not None
    states = {d.unit: d.state for d in seen.deliveries}
    assert set(states) == {"000.00.01.H23"} and states["000.00.01.H23"] != "cancelled"


async def test_the_packet_page_in_english_and_its_actions_named_in_english(
        hub: Hub, accounts: Accounts, make_actor: Any, page: Any) -> None:
    source = await make_actor("000.00.00.H23")
    await make_actor("000.00.01.H23")
    packet_id = await source.client.send(b"noi dung", ["000.00.01.H23"], subject="Tờ trình")
    await accounts.add("quan.tri", PASSWORD, "operator")
    await page.context.add_cookies([{"name": "lgsp_console_lang", "value": "en", "url": hub.url}])
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + f"/console/packets/{packet_id}")
    assert await page.inner_text("h1") == f"Packet {packet_id}"
    main = await page.inner_text("main")
    assert "Sending unit" in main and "Deliveries" in main and "Packet timeline" in main
    assert "Đơn vị" not in main and "Gửi lại" not in main
    assert await page.locator("button[aria-label='Reroute the delivery to 000.00.01.H23']").inner_text() == "Reroute"
    # The console's own messages follow the choice too (here: a reroute without a destination).
    reroute = "form[action$='/reroute/000.00.01.H23']"
    await page.evaluate(f"document.querySelector(\"{reroute} input[name=to]\").removeAttribute('required')")
    async with page.expect_navigation():
        await page.click(f"{reroute} button")
    assert await page.inner_text("p.error[role=alert]") == "Enter the code of the new receiving unit."
    async with page.expect_navigation():
        await page.click("button[aria-label='Cancel for 000.00.01.H23']")
    table = await page.inner_text("table")
    assert "cancelled by an operator" in table and "hủy" not in table
