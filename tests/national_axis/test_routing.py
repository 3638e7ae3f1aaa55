"""Smart routing: a destination goes where its zone says; an unknown identifier to the zone whose
pattern it matches, else to the national axis, else it is refused; `lgsp route explain` says why."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lgsp.cli.main import main
from lgsp.client import Credentials, LgspClient, LgspError
from lgsp.core.hub import Hub

from ..conftest import wait_for
from ..edxml_hub.support import edoc
from .bridge_support import LOCAL_A, LOCAL_B, MakeBridgeHub, make_bridge_hub, sha
from .conftest import MINISTRY_CODE, AxisSimHandle

__all__ = ["make_bridge_hub"]

MINISTRIES = r"\d{3}\.\d{2}\.\d{2}\.G\d{2}"
ROUTES: dict[str, Any] = {"national": {"patterns": [MINISTRIES]}}


async def test_explain_each_kind_of_destination(make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim, routes=ROUTES)
    await bh.add_local(LOCAL_A, LOCAL_B)
    await bh.add_national()
    await bh.hub.directory.set_unit_status(LOCAL_B, "suspended")
    router = bh.hub.router
    local = await router.explain(LOCAL_A)
    assert (local.known, local.zone, local.route) == (True, "local", "pull")
    known = await router.explain(MINISTRY_CODE)
    assert (known.zone, known.route) == ("national", "national_axis") and "national_axis" in known.reason_vi
    pattern = await router.explain("000.00.00.G09")
    assert (pattern.known, pattern.zone, pattern.route) == (False, "national", "national_axis")
    assert MINISTRIES in pattern.reason_en
    fallback = await router.explain("H41.20")
    assert fallback.route == "national_axis" and "matches no pattern" in fallback.reason_en
    suspended = await router.explain(LOCAL_B)
    assert suspended.route is None and "suspended" in suspended.reason_en
    bad = await router.explain("không hợp lệ")
    assert bad.route is None and "not a valid identifier" in bad.reason_en
    assert await bh.hub.directory.get_unit("000.00.00.G09") is None  # explaining adds nothing


async def test_a_packet_for_an_unknown_ministry_goes_through_the_axis(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim, routes=ROUTES)
    await bh.add_local(LOCAL_A)
    assert await bh.hub.directory.get_unit(MINISTRY_CODE) is None
    app = await bh.hub.directory.add_application(LOCAL_A, "vbql")
    key = await bh.hub.directory.issue_key(app.id, "HMAC-SHA256")
    data = edoc(LOCAL_A, [MINISTRY_CODE])
    async with LgspClient(Credentials(bh.hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as sender:
        created = await sender.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                            "sha256": sha(data)})
        await sender.upload(created["upload"]["url"], data, sha(data))
    await wait_for(lambda: len(axis_sim.simulator.sent()) == 1, what="sendEdoc to the ministry")
    unit = await bh.hub.directory.get_unit(MINISTRY_CODE)
    assert unit is not None and unit.zone == "national"


async def test_without_the_axis_an_unknown_destination_is_refused(hub: Hub) -> None:
    decision = await hub.router.explain("000.00.00.G09")
    assert decision.route is None and "no national axis" in decision.reason_en
    await hub.directory.add_unit(LOCAL_A, "UBND tỉnh")
    app = await hub.directory.add_application(LOCAL_A, "vbql")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as client:
        with pytest.raises(LgspError) as refused:
            await client.call("POST", "/v1/packets", {"to": ["000.00.00.G09"], "subject": "x", "data_type": "pdf",
                                                      "size": 1, "sha256": sha(b"x")})
    assert refused.value.status == 422 and refused.value.code == "route.unknown_destination"
    assert await hub.directory.get_unit("000.00.00.G09") is None


async def test_lgsp_route_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lgsp.yaml").write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\n", encoding="utf-8")
    monkeypatch.setenv("LGSP_LANG", "vi")
    config = str(tmp_path / "lgsp.yaml")
    assert await asyncio.to_thread(main, ["unit", "add", LOCAL_A, "UBND tỉnh", "-c", config]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["route", "explain", LOCAL_A, "-c", config]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{LOCAL_A}: vùng local, tuyến pull") and "tự nhận" in out
    assert await asyncio.to_thread(main, ["route", "explain", LOCAL_A, "-c", config, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["route"] == "pull"
    assert await asyncio.to_thread(main, ["route", "explain", "000.00.00.G09", "-c", config]) != 0
    err = capsys.readouterr().err
    assert "không có tuyến" in err and len(err.strip().splitlines()) <= 2


def test_bad_routes_are_reported_by_key_path(tmp_path: Path) -> None:
    from lgsp.core.config import ConfigError

    from .bridge_support import axis_config

    config = axis_config(tmp_path, "http://127.0.0.1:9", routes={
        "national": {"patterns": ["(unclosed"]}, "local": {"adapter": "rest"}, "peer-hcm": {"patterns": []}})
    with pytest.raises(ConfigError) as caught:
        Hub(config).check_config()
    text = str(caught.value)
    assert "routes.national.patterns[0]" in text and "routes.local" in text and "routes.peer-hcm.adapter" in text


async def test_directory_search_ranks_words_code_prefix_and_parent(hub: Hub) -> None:
    directory = hub.directory
    await directory.add_unit("H39", "UBND tỉnh Đồng Nai")
    await directory.add_unit("H39.05", "Sở Tài chính tỉnh Đồng Nai", parent_id="H39")
    await directory.add_unit("H39.05.01", "Phòng Ngân sách", parent_id="H39.05")
    await directory.add_unit("H23.05", "Sở Tài chính tỉnh Quảng Nam")
    await directory.add_unit("000.00.00.G12", "Bộ Tài chính", zone="national")
    found = [u.id for u in await directory.search_units("so tai chinh dong nai")]
    # Every word, accents ignored: not the other province's department; its own unit found through
    # its parent's name comes after.
    assert found == ["H39.05", "H39.05.01"]
    assert {u.id for u in await directory.search_units("tài chính")} == {"H39.05", "H39.05.01", "H23.05",
                                                                          "000.00.00.G12"}
    assert [u.id for u in await directory.search_units("H39")] == ["H39", "H39.05", "H39.05.01"]  # code prefix first
    # A unit found through its parent's name comes after those whose own name holds the words.
    assert [u.id for u in await directory.search_units("ngan sach dong nai")] == ["H39.05.01"]
    assert [u.id for u in await directory.search_units("bo tai chinh")] == ["000.00.00.G12"]  # name starts so
    assert await directory.search_units("100%_x") == []
