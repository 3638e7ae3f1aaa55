"""Hook `lgsp_packet_delivered`: a destination acknowledged with the right hash, state committed first."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lgsp.client import LgspError
from lgsp.core.hub import Hub

from .lifecycle import Recorder
from .support import DST, OTHER, SRC, client_of, config


async def test_delivered_once_per_destination_that_acknowledged(tmp_path: Path) -> None:
    recorder = Recorder(fail=True)  # raising in the hook must not undo the acknowledgement
    async with Hub(config(tmp_path), extra_plugins=(recorder,)) as hub:
        src, dst = await client_of(hub, SRC), await client_of(hub, DST)
        await hub.directory.add_unit(OTHER, OTHER)
        async with src, dst:
            packet_id = await src.send(b"x", [DST, OTHER], subject="s")
            with pytest.raises(LgspError):
                await dst.ack(packet_id, hashlib.sha256(b"wrong").hexdigest())
            await hub.exchange.drain()
            assert [s for s in recorder.seen if s[0] == "delivered"] == []
            assert await dst.ack(packet_id, hashlib.sha256(b"x").hexdigest()) == "delivered"
            await hub.exchange.drain()
    assert [s for s in recorder.seen if s[0] == "delivered"] == [("delivered", packet_id, DST, "delivered")]
