"""Hook `lgsp_problem_codes`: a plugin declares its own problem codes; the hub collects them when built."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lgsp.core.errors import CATALOGUE, CORE_CODES, ErrorKind, Problem, register_code
from lgsp.core.hub import Hub
from lgsp.core.i18n import gettext
from lgsp.plugins.hookspecs import hookimpl
from lgsp.plugins.manager import PluginError, create_plugin_manager, problem_codes

from ..conftest import raw_request
from .support import config

TEAPOT = (418, "Trục không pha trà", "The hub does not brew tea")


@pytest.fixture(autouse=True)
def catalogue() -> Iterator[None]:
    """The catalogue is process-wide: put it back as it was, so codes declared here do not leak."""
    before = dict(CATALOGUE)
    yield
    CATALOGUE.clear()
    CATALOGUE.update(before)


async def brew(request: web.Request) -> web.Response:
    raise Problem("teapot.refused", "only coffee here", pot="blue")


class Teapot:
    def __init__(self, codes: Any = None) -> None:
        self.codes = {"teapot.refused": TEAPOT} if codes is None else codes

    @hookimpl
    def lgsp_problem_codes(self) -> Any:
        return self.codes

    @hookimpl
    def lgsp_web_routes(self, hub: Hub) -> list[web.RouteDef]:
        return [web.get("/x/brew", brew)]


async def test_a_declared_code_answers_with_its_status_and_titles(tmp_path: Path) -> None:
    assert "teapot.refused" not in CATALOGUE
    async with Hub(config(tmp_path), extra_plugins=(Teapot(),)) as hub:
        assert CATALOGUE["teapot.refused"] == ErrorKind(418, TEAPOT[2], TEAPOT[1])
        status, headers, body = await raw_request(hub.url, "GET", "/x/brew")
        assert headers["Content-Type"].startswith("application/problem+json")
        assert status == 418
        assert body == {"type": "urn:lgsp:problem:teapot.refused", "title": TEAPOT[1], "status": 418,
                        "code": "teapot.refused", "detail": "only coffee here", "pot": "blue"}
        status, _, body = await raw_request(hub.url, "GET", "/x/brew", headers={"Accept-Language": "en"})
        assert (status, body["title"]) == (418, TEAPOT[2])


def test_without_the_plugin_the_code_is_unknown(tmp_path: Path) -> None:
    Hub(config(tmp_path))
    with pytest.raises(ValueError, match=r"unknown problem code 'teapot\.refused'"):
        Problem("teapot.refused")


def test_a_second_hub_with_the_same_plugin_is_accepted(tmp_path: Path) -> None:
    Hub(config(tmp_path), extra_plugins=(Teapot(),))
    Hub(config(tmp_path), extra_plugins=(Teapot(),))
    assert Problem("teapot.refused").status == 418


def test_a_code_defined_differently_by_another_hub_is_refused(tmp_path: Path) -> None:
    Hub(config(tmp_path), extra_plugins=(Teapot(),))
    with pytest.raises(PluginError, match=r"'teapot\.refused' is already registered differently"):
        Hub(config(tmp_path), extra_plugins=(Teapot({"teapot.refused": (409, "khác", "other")}),))
    assert CATALOGUE["teapot.refused"] == ErrorKind(418, TEAPOT[2], TEAPOT[1])


def test_a_code_two_plugins_provide_is_refused_naming_both() -> None:
    one, two = Teapot(), Teapot()
    pm = create_plugin_manager(["rest"], extra=[one, two])
    with pytest.raises(PluginError, match=r"'teapot\.refused' is provided by two plugins"):
        problem_codes(pm)


def test_a_hub_code_cannot_be_redefined(tmp_path: Path) -> None:
    before = CATALOGUE["not_found"]
    with pytest.raises(PluginError, match=r"'not_found' is one of the hub's own codes"):
        Hub(config(tmp_path), extra_plugins=(Teapot({"not_found": (410, "mất", "gone")}),))
    assert CATALOGUE["not_found"] == before


@pytest.mark.parametrize(("codes", "message"), [
    ({"Teapot.Refused": TEAPOT}, "is not lower-case words joined by dots"),
    ({"teapot..refused": TEAPOT}, "is not lower-case words joined by dots"),
    ({"teapot.refused": (200, "ổn", "fine")}, r"needs \(HTTP status 400-599"),
    ({"teapot.refused": ("418", "a", "b")}, r"needs \(HTTP status 400-599"),
    ({"teapot.refused": (True, "a", "b")}, r"needs \(HTTP status 400-599"),
    ({"teapot.refused": (418, "", "empty")}, r"needs \(HTTP status 400-599"),
    ({"teapot.refused": (418, "chỉ một tiêu đề")}, r"needs \(HTTP status 400-599"),  # not a msgid of lgsp's
    ({"teapot.refused": (418, "The hub does not brew tea")}, r"needs \(HTTP status 400-599"),
    ([("teapot.refused", TEAPOT)], "must return a mapping"),
])
def test_a_malformed_declaration_is_refused_naming_the_plugin(tmp_path: Path, codes: Any, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        Hub(config(tmp_path), extra_plugins=(Teapot(codes),))
    assert "teapot.refused" not in CATALOGUE


def test_the_built_in_adapters_declare_their_codes_through_the_hook() -> None:
    codes = problem_codes(create_plugin_manager(["rest", "edxml", "soap_edxml"]))
    assert codes == {
        "service.unavailable": (502, "The service could not be reached", None),
        "service.timeout": (504, "The service did not answer in time", None),
        "soap.unsafe": (400, "SOAP message with a DTD or entities refused", None),
        "soap.must_understand": (400, "SOAP header block marked mustUnderstand is not understood", None),
    }
    # Their titles are msgids of the catalogues: Vietnamese by default, English on request.
    register_code("service.timeout", *codes["service.timeout"])
    assert Problem("service.timeout").title("vi") == "Dịch vụ đích không trả lời kịp"
    assert Problem("service.timeout").title("en") == "The service did not answer in time"


def test_every_title_is_translated_by_the_catalogues() -> None:
    """The hub's own titles and the built-in adapters' are catalogue msgids with a Vietnamese entry (one
    mechanism, gettext), not pairs written in code."""
    codes = problem_codes(create_plugin_manager(["rest", "edxml", "soap_edxml", "peer"]))
    titles = [kind.title for kind in CATALOGUE.values() if kind.title_vi is None]
    titles += [title for _status, title, title_vi in codes.values() if title_vi is None]
    assert len(titles) >= len(CORE_CODES) + 6
    untranslated = [t for t in titles if gettext(t, "vi") == t]
    assert not untranslated, untranslated


def test_importing_an_adapter_changes_no_catalogue() -> None:
    """In a fresh interpreter (this one's catalogue has seen hubs): importing is not registering."""
    script = ("import lgsp.adapters.rest, lgsp.adapters.soap_edxml\n"
              "from lgsp.core.errors import CATALOGUE, CORE_CODES\n"
              "print(sorted(set(CATALOGUE) - CORE_CODES))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
