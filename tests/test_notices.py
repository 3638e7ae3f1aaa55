"""Maintenance notices: added from the CLI, announced by the running hub on every unit's stream,
carried by /v1/time (and SOAP answers: tests/soap/test_soap_notice.py), listed and withdrawn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.config import Config, load_config
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.core.notices import EVENT

from .conftest import MakeActor, base_env, wait_for
from .test_exchange import next_message


@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    # A short housekeeping round: the hub announces a notice the CLI added on its next round.
    return load_config(None, env=base_env(tmp_path / "var", LGSP_PRESENCE_SWEEP_INTERVAL_SECONDS="0.2"))


def _cli(hub: Hub, tmp_path: Path, *argv: str) -> int:
    from lgsp.cli.main import main

    config = tmp_path / "cli.yaml"
    config.write_text(f"hub:\n  data_dir: {hub.config.data_dir}\n", encoding="utf-8")
    try:
        return main([*argv, "--config", str(config)])
    except SystemExit as exc:  # argparse refuses the arguments
        return int(exc.code or 0)


async def test_a_notice_added_from_the_cli_reaches_every_unit(hub: Hub, make_actor: MakeActor, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")  # never connected: learns of it in its hello
    start = datetime.now(UTC) + timedelta(hours=2)
    async with a.client.events() as stream:
        assert (await next_message(stream))["type"] == "hello"
        assert await asyncio.to_thread(_cli, hub, tmp_path, "notice", "add", "--from", start.isoformat(),
                                       "--to", (start + timedelta(hours=1)).isoformat(),
                                       "Bảo trì trục từ 22 giờ") == 0
        assert "đã thêm thông báo" in capsys.readouterr().out
        live = await next_message(stream, timeout=5.0)
    assert live["type"] == EVENT and live["message"] == "Bảo trì trục từ 22 giờ"
    assert live["from"].startswith(start.strftime("%Y-%m-%dT%H:%M")) and "id" not in live

    async with b.client.events() as stream:
        hello = await next_message(stream)
    assert [c["notice"] for c in hello["changes"] if c["type"] == EVENT] == [live["notice"]]

    time = await a.client.call("GET", "/v1/time")
    assert [n["notice"] for n in time["notices"]] == [live["notice"]]

    assert await asyncio.to_thread(_cli, hub, tmp_path, "notice", "list", "--json") == 0
    import json

    listed = json.loads(capsys.readouterr().out)
    assert [n["notice"] for n in listed] == [live["notice"]] and listed[0]["announced"] is True

    assert await asyncio.to_thread(_cli, hub, tmp_path, "notice", "withdraw", live["notice"]) == 0
    capsys.readouterr()
    await hub.notices.refresh()
    assert (await a.client.call("GET", "/v1/time"))["notices"] == []
    assert await asyncio.to_thread(_cli, hub, tmp_path, "notice", "withdraw", live["notice"]) == 1
    assert "đã được rút" in capsys.readouterr().err  # "was already withdrawn", in the default language


async def test_a_notice_is_announced_once(hub: Hub, make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    now = datetime.now(UTC)
    notice = await hub.notices.add("Nâng cấp máy chủ", now, now + timedelta(minutes=30))
    await asyncio.gather(hub.notices.refresh(), hub.notices.refresh(), hub.notices.refresh())
    await wait_for(lambda: any(n.id == notice.id for n in hub.notices.active()), what="the notice in force")
    async with a.client.events() as stream:
        hello = await next_message(stream)
    assert [c["notice"] for c in hello["changes"] if c["type"] == EVENT] == [notice.id]


@pytest.mark.parametrize(("message", "start", "end", "why"), [
    ("", 0, 60, "message"),
    ("   ", 0, 60, "blank"),
    ("x" * 1001, 0, 60, "1000"),
    ("a\x00b", 0, 60, "message"),
    ("Bảo trì", 60, 0, "after from"),
    ("Bảo trì", -120, -60, "past"),
    ("Bảo trì", 0, 60 * 24 * 40, "31 days"),
])
async def test_bad_notices_are_refused_and_nothing_is_stored(hub: Hub, message: str, start: int, end: int,
                                                             why: str) -> None:
    now = datetime.now(UTC)
    with pytest.raises(Problem, match=why) as caught:
        await hub.notices.add(message, now + timedelta(minutes=start), now + timedelta(minutes=end))
    assert caught.value.code == "request.invalid"
    assert await hub.notices.list(include_past=True) == []


async def test_the_cli_refuses_bad_times_in_one_line(hub: Hub, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(_cli, hub, tmp_path, "notice", "add", "--from", "tomorrow", "--to",
                                   "2030-01-01T00:00", "Bảo trì")
    assert code == 2 and capsys.readouterr().err.count("\n") == 1
    code = await asyncio.to_thread(_cli, hub, tmp_path, "notice", "add", "--from", "2030-01-01T02:00", "--to",
                                   "2030-01-01T01:00", "Bảo trì")
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "request.invalid" in err
    code = await asyncio.to_thread(_cli, hub, tmp_path, "notice", "withdraw", "NOPE")
    assert code == 1 and "not_found" in capsys.readouterr().err
