"""The services and grants page: operators grant and revoke (audited, effective through the core
registry the proxy reads); a unit admin sees only services its unit owns or may call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, shot, sign_in

OWNER, CALLER, OTHER = "000.00.00.H23", "000.00.01.H23", "000.00.02.H23"


async def _setup(hub: Hub, accounts: Accounts) -> None:
    for unit, name in ((OWNER, "Sở Tư pháp"), (CALLER, "Sở Nội vụ"), (OTHER, "Sở Tài chính")):
        await hub.directory.add_unit(unit, name)
    await hub.services.add("ho-tich", OWNER, "http://127.0.0.1:9/ho-tich",
                           description="Tra cứu hộ tịch <script>alert(1)</script>")
    await hub.services.add("ngan-sach", OTHER, "http://127.0.0.1:9/ngan-sach", description="Ngân sách")
    await hub.services.grant("ngan-sach", OWNER)
    await accounts.add("quan.tri", PASSWORD, "operator")
    await accounts.add("so.tp", PASSWORD, "unit_admin", unit_id=OWNER)
    await accounts.add("so.nv", PASSWORD, "unit_admin", unit_id=CALLER)


async def _may_call(hub: Hub, unit: str, service_id: str) -> bool:
    service = await hub.services.get(service_id)
    assert service is not None
    return await hub.services.may_call(unit, service)


async def test_operator_grants_and_revokes_a_service(hub: Hub, accounts: Accounts, page: Any, tmp_path: Path) -> None:
    await _setup(hub, accounts)
    await sign_in(page, hub, "quan.tri")
    await page.goto(hub.url + "/console/services")
    assert "<script>alert(1)</script>" in await page.inner_text("#service-ho-tich")   # shown as text
    assert not await _may_call(hub, CALLER, "ho-tich")
    await page.select_option("#service-ho-tich select[name=unit]", CALLER)
    async with page.expect_navigation():
        await page.click("#service-ho-tich button:has-text('Cấp quyền')")
    assert await _may_call(hub, CALLER, "ho-tich")
    assert CALLER in await page.inner_text("#service-ho-tich table")
    await shot(page, "dich-vu", tmp_path)
    async with page.expect_navigation():
        await page.click(f"button[aria-label='Thu hồi quyền gọi ho-tich của {CALLER}']")
    assert not await _may_call(hub, CALLER, "ho-tich")
    assert "Chưa cấp cho đơn vị nào" in await page.inner_text("#service-ho-tich table")
    trail = [(e.action, e.target, e.unit_id) for e in await accounts.audit_entries(actor="quan.tri")][:2]
    assert trail == [("service.revoke", "ho-tich", CALLER), ("service.grant", "ho-tich", CALLER)]
    # A unit that does not exist is refused with the reason; a service that does not exist is 404.
    csrf = await page.evaluate("document.querySelector('input[name=csrf]').value")
    post = """async ([url, body]) => (await fetch(url, {method: 'POST', body: new URLSearchParams(body)})).status"""
    assert await page.evaluate(post, [hub.url + "/console/services/ho-tich/grant",
                                      {"csrf": csrf, "unit": "000.00.99.H23"}]) == 422
    assert await page.evaluate(post, [hub.url + "/console/services/khong-co/grant",
                                      {"csrf": csrf, "unit": CALLER}]) == 404
    assert await page.evaluate(post, [hub.url + "/console/services/ho-tich/grant",
                                      {"csrf": "sai", "unit": CALLER}]) == 403
    assert not await _may_call(hub, CALLER, "ho-tich")


async def test_a_unit_admin_sees_its_own_services_and_cannot_grant(hub: Hub, accounts: Accounts, page: Any) -> None:
    await _setup(hub, accounts)
    await hub.services.grant("ngan-sach", CALLER)
    await sign_in(page, hub, "so.tp")
    await page.goto(hub.url + "/console/services")
    # Its own service, and the one it may call (without the other callers of that one).
    assert await page.locator("#service-ho-tich").count() == 1
    assert await page.locator("#service-ngan-sach").count() == 1
    assert CALLER not in await page.inner_text("#service-ngan-sach")
    assert await page.locator("form[action*='/grant'], form[action*='/revoke']").count() == 0
    await page.context.clear_cookies()
    await sign_in(page, hub, "so.nv")
    await page.goto(hub.url + "/console/services")
    assert await page.locator("#service-ho-tich").count() == 0
    assert await page.locator("#service-ngan-sach").count() == 1
    csrf = await page.evaluate("document.querySelector('input[name=csrf]').value")
    status = await page.evaluate(
        """async ([url, body]) => (await fetch(url, {method: 'POST', body: new URLSearchParams(body)})).status""",
        [hub.url + "/console/services/ho-tich/grant", {"csrf": csrf, "unit": CALLER}])
    assert status == 403
    assert not await _may_call(hub, CALLER, "ho-tich")
