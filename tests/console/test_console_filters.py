"""Date filters of the console's pages (packets, connections, reports and their exports, operations
log): a value that is no day is said so, in the reader's language, and nothing else is shown."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import aiohttp
import pytest

from lgsp.core.accounts import Accounts
from lgsp.core.hub import Hub

from .conftest import PASSWORD, http_sign_in

SOURCE, DESTINATION = "000.00.00.H23", "000.00.01.H23"
VN = dt.timezone(dt.timedelta(hours=7))


@pytest.fixture
async def signed_in(hub: Hub, make_actor: Any) -> Any:
    """An operator's HTTP session, and a packet sent today (the hub's day) that a right filter lists."""
    source = await make_actor(SOURCE)
    await make_actor(DESTINATION)
    await source.client.send(b"noi dung", [DESTINATION], subject="Công văn hôm nay")
    await Accounts(hub.db, hub.master_key).add("vanhanh", PASSWORD, "operator")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await http_sign_in(http, hub, "vanhanh")
        yield http


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with http.get(url, **kw) as resp:
        return resp.status, html.unescape(await resp.text())


async def test_a_date_that_is_no_day_is_refused_in_vietnamese_and_filters_nothing(hub: Hub, signed_in: Any) -> None:
    http = signed_in
    today = hub.clock().astimezone(VN).date().isoformat()
    traffic = f"{hub.url}/console/traffic?unit={SOURCE}&role=sent"
    status, page = await _get(http, f"{traffic}&from={today}&to={today}")
    assert status == 200 and "Công văn hôm nay" in page and 'id="filter-error"' not in page
    # The first 10 characters are a day, the rest is not: not read as that day.
    status, page = await _get(http, f"{traffic}&from={today}garbage&to={today}")
    assert status == 422, page
    assert f"Từ ngày: “{today}garbage” không phải là một ngày; hãy viết theo dạng YYYY-MM-DD" in page
    assert "Công văn hôm nay" not in page and "<table" not in page
    status, page = await _get(http, f"{traffic}&from={today}&to=2026-13-01")
    assert status == 422 and "Đến ngày: “2026-13-01” không phải là một ngày" in page
    status, page = await _get(http, f"{traffic}&from=0001-01-01&to={today}")   # a day, outside the calendar kept
    assert status == 422 and "Từ ngày: ngày phải từ 1970-01-01 đến 9000-12-31." in page
    # An empty field is "the default" (what a cleared date field sends).
    status, page = await _get(http, f"{traffic}&from=&to=")
    assert status == 200 and "Công văn hôm nay" in page

    status, page = await _get(http, f"{hub.url}/console/connections?unit={SOURCE}&from={today}x")
    assert status == 422 and f"Từ ngày: “{today}x” không phải là một ngày" in page
    assert "<table" not in page
    status, page = await _get(http, f"{hub.url}/console/connections?unit={SOURCE}&from={today}")
    assert status == 200 and "<table" in page

    reports = f"{hub.url}/console/reports?unit={SOURCE}&period=day"
    status, page = await _get(http, f"{reports}&day={today}")
    assert status == 200 and "export-xlsx" in page
    status, page = await _get(http, f"{reports}&day={today}garbage")
    assert status == 422 and f"Chứa ngày: “{today}garbage” không phải là một ngày" in page
    assert "export-xlsx" not in page and "<table" not in page and "Hãy chọn một đơn vị" not in page
    # The export gives no file of another day: the reason, as a page.
    async with http.get(f"{hub.url}/console/reports/export.xlsx?unit={SOURCE}&period=day&day={today}garbage") as resp:
        assert resp.status == 422 and resp.content_type == "text/html"
        assert "Chứa ngày: “" in html.unescape(await resp.text())

    status, page = await _get(http, f"{hub.url}/console/audit?from=2026-12-01garbage")
    assert status == 422 and "Từ ngày: “2026-12-01garbage” không phải là một ngày" in page
    assert "<table" not in page
    status, page = await _get(http, f"{hub.url}/console/audit?from=2026-12-01")
    assert status == 200 and "<table" in page


async def test_the_message_reads_in_english_and_shows_what_was_typed_as_text(hub: Hub, signed_in: Any) -> None:
    http = signed_in
    http.cookie_jar.update_cookies({"lgsp_console_lang": "en"})
    status, page = await _get(http, f"{hub.url}/console/reports?unit={SOURCE}&day=2026-12-01<b>x</b>")
    assert status == 422
    assert "Containing the day: “2026-12-01<b>x</b>” is not a date; write it as YYYY-MM-DD (for example 2026-12-01)." \
        in page
    async with http.get(f"{hub.url}/console/reports?unit={SOURCE}&day=2026-12-01<b>x</b>") as resp:
        assert "<b>x</b>" not in await resp.text()   # escaped, not markup
