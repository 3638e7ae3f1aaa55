"""One clock for the whole hub (core/clock.py): every time rule reads it, and tests move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lgsp.core.clock import ManualClock, SystemClock
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .conftest import base_env


def test_a_manual_clock_moves_only_forward_and_only_when_told() -> None:
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock() == clock.now() == start
    assert clock.advance(1.5) == start + timedelta(seconds=1.5)
    with pytest.raises(ValueError, match="go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 1, 2))  # a naive datetime
    assert clock.catch_up() >= datetime.now(UTC) - timedelta(seconds=5)


def test_the_system_clock_is_the_machine_s() -> None:
    assert abs(SystemClock().now() - datetime.now(UTC)) < timedelta(seconds=5)


async def test_every_time_rule_of_the_hub_reads_the_hub_s_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Hub(load_config(None, env=base_env(tmp_path)), clock=clock) as hub:
        readers = {"presence": hub.presence.clock, "auth (sessions, nonces, tickets)": hub.auth.clock,
                   "exchange (expiry, transfer links)": hub.exchange.clock, "content": hub.content.clock,
                   "offline reports": hub.offline.clock, "delivery engine (retries)": hub.engine.clock}
        assert {name: reader is clock for name, reader in readers.items()} == dict.fromkeys(readers, True)
        clock.advance(3600)
        assert hub.presence.clock() == hub.auth.clock() == hub.engine.clock() == clock.now()
    assert isinstance(Hub(load_config(None, env=base_env(tmp_path))).clock, SystemClock)
