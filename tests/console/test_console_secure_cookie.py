"""The `Secure` flag of the console cookies follows adapters.console.secure_cookie (auto|always|never)."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest

from lgsp.core.accounts import Accounts
from lgsp.core.config import ConfigError, load_config
from lgsp.core.hub import Hub

from ..conftest import base_env
from .conftest import PASSWORD


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the config messages' English wording (tests/test_i18n.py: Vietnamese by default)."""
    monkeypatch.setenv("LGSP_LANG", "en")


def _hub(tmp_path: Path, console: str) -> Hub:
    path = tmp_path / "lgsp.yaml"
    path.write_text("adapters:\n  console:\n" + console, encoding="utf-8")
    return Hub(load_config(path, env=base_env(tmp_path / "var")))


def _secure(resp: aiohttp.ClientResponse, name: str) -> bool:
    for header in resp.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            return bool(jar[name]["secure"])
    raise AssertionError(f"no {name} cookie set")


async def _flags(hub: Hub, headers: dict[str, str] | None = None) -> tuple[bool, bool]:
    """(pre-sign-in cookie secure, session cookie secure) over plain HTTP on loopback."""
    await Accounts(hub.db, hub.master_key).add("quan.tri", PASSWORD, "operator")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers) as http:
        async with http.get(hub.url + "/console/login") as resp:
            pre = _secure(resp, "lgsp_console_pre")
            match = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
            assert match
        pre_value = next(c.value for c in http.cookie_jar if c.key == "lgsp_console_pre")
        async with http.post(hub.url + "/console/login", allow_redirects=False,
                             headers={"Cookie": f"lgsp_console_pre={pre_value}"},
                             data={"csrf": match.group(1), "username": "quan.tri", "password": PASSWORD}) as resp:
            assert resp.status == 302, await resp.text()
            return pre, _secure(resp, "lgsp_console")


@pytest.mark.parametrize(("setting", "headers", "expected"), [
    ("", None, False),                                                         # auto, plain HTTP
    ("", {"X-Forwarded-Proto": "https"}, False),                               # nobody trusted: header ignored
    ("    trusted_fronts: [10.0.0.0/8]\n", {"X-Forwarded-Proto": "https"}, False),  # not from that front
    ("    trusted_fronts: [127.0.0.1]\n", {"X-Forwarded-Proto": "https"}, True),    # the trusted front says so
    ("    trusted_fronts: [127.0.0.1]\n", {"X-Forwarded-Proto": "http"}, False),
    ("    secure_cookie: always\n", None, True),
    ("    secure_cookie: never\n    trusted_fronts: [127.0.0.1]\n", {"X-Forwarded-Proto": "https"}, False),
])
async def test_secure_cookie_setting(tmp_path: Path, setting: str, headers: dict[str, str] | None,
                                     expected: bool) -> None:
    async with _hub(tmp_path, setting or "    secure_cookie: auto\n") as hub:
        assert await _flags(hub, headers) == (expected, expected)


@pytest.mark.parametrize(("setting", "problem"), [
    ("    secure_cookie: sometimes\n", "adapters.console.secure_cookie: must be one of: auto, always, never"),
    ("    trusted_fronts: 10.0.0.5\n", "adapters.console.trusted_fronts: must be a list"),
    ("    trusted_fronts: [proxy.example]\n", "adapters.console.trusted_fronts[0]: not an IP address"),
    ("    secure_cookies: always\n", "adapters.console.secure_cookies: unknown key"),
])
def test_bad_secure_cookie_settings_name_the_key(tmp_path: Path, setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        _hub(tmp_path, setting).check_config()
    assert any(problem in str(i) for i in err.value.issues), err.value.issues
