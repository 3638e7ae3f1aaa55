"""Hook `lgsp_packet_failed`: a delivery ended without success (refused, expired or cancelled)."""

from __future__ import annotations

from pathlib import Path

from lgsp.core.hub import Hub

from .lifecycle import Recorder
from .support import DST, OTHER, SRC, client_of, config


async def test_failed_and_cancelled_deliveries_are_told_with_state_and_reason(tmp_path: Path) -> None:
    recorder = Recorder(fail=True)
    async with Hub(config(tmp_path), extra_plugins=(recorder,)) as hub:
        src, dst = await client_of(hub, SRC), await client_of(hub, DST)
        await hub.directory.add_unit(OTHER, OTHER)
        async with src, dst:
            packet_id = await src.send(b"x", [DST, OTHER], subject="s")
            assert await dst.fail(packet_id, "không đúng thẩm quyền") == "failed"
            assert (await src.cancel(packet_id))["cancelled"] == [OTHER]
            await hub.exchange.drain()
            assert (await src.status(packet_id))["deliveries"]  # the observer's exception hurt nothing
    failed = sorted((s[2], s[3]) for s in recorder.seen if s[0] == "failed" and s[1] == packet_id)
    assert failed == [(DST, "failed"), (OTHER, "cancelled")]
    reasons = {s[2]: s[4] for s in recorder.seen if s[0] == "failed"}
    assert "không đúng thẩm quyền" in reasons[DST]
