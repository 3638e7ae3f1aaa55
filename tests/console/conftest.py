"""A real hub with the console, a real headless Chromium (Debian's) driven by Playwright, accounts."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

CHROMIUM = os.environ.get("LGSP_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "mat-khau-van-hanh-2026"
# Screenshots for the docs go here when LGSP_CONSOLE_SCREENSHOTS names a folder (docs/console).
SHOTS = os.environ.get("LGSP_CONSOLE_SCREENSHOTS")


@pytest.fixture
async def accounts(hub: Hub) -> Accounts:
    return Accounts(hub.db, hub.master_key)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the console tests need a real browser)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    p = await context.new_page()
    p.set_default_timeout(15000)
    try:
        yield p
    finally:
        await context.close()


async def sign_in(page: Any, hub: Hub, username: str, password: str = PASSWORD, totp: str | None = None,
                  path: str = "/console/login") -> None:
    await page.goto(hub.url + path)
    await page.fill("#username", username)
    await page.fill("#password", password)
    if totp is not None:
        await page.fill("#totp", totp)
    async with page.expect_navigation():
        await page.click("button[type=submit]")


async def shot(page: Any, name: str, tmp: Path | None = None) -> None:
    """A full-page screenshot: into the docs folder when asked, else next to the test's files."""
    folder = Path(SHOTS) if SHOTS else tmp
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def csrf_of(html: str) -> str:
    """The CSRF token of a console page's form."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no form with a CSRF token on the page"
    return match.group(1)


async def http_sign_in(http: aiohttp.ClientSession, hub: Hub, username: str, password: str = PASSWORD) -> None:
    """Sign in over plain HTTP, no browser: the session cookie lands in `http`'s jar (made with
    `aiohttp.CookieJar(unsafe=True)`, so it keeps cookies of 127.0.0.1)."""
    async with http.get(hub.url + "/console/login") as resp:
        csrf = csrf_of(await resp.text())
    async with http.post(hub.url + "/console/login", allow_redirects=False,
                         data={"csrf": csrf, "username": username, "password": password}) as resp:
        assert resp.status == 302, await resp.text()
