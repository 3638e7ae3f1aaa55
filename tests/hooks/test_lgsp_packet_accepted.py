"""Hook `lgsp_packet_accepted`: once per packet, after its content is stored and its deliveries planned."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgsp.core.hub import Hub

from .lifecycle import Recorder
from .support import DST, OTHER, SRC, client_of, config


@pytest.mark.parametrize("fail", [False, True], ids=["observer", "broken observer"])
async def test_accepted_once_per_packet_after_the_commit(tmp_path: Path, fail: bool) -> None:
    recorder = Recorder(fail=fail)
    async with Hub(config(tmp_path), extra_plugins=(recorder,)) as hub:
        src = await client_of(hub, SRC)
        await client_of(hub, DST)
        await hub.directory.add_unit(OTHER, OTHER)
        async with src:
            packet_id = await src.send(b"x", [DST, OTHER], subject="s")
            await hub.exchange.drain()
            assert (await src.status(packet_id))["state"] != "failed"  # a raising observer changes nothing
        accepted = [s for s in recorder.seen if s[0] == "accepted"]
        assert accepted == [("accepted", packet_id, SRC, (DST, OTHER), "stored")]
