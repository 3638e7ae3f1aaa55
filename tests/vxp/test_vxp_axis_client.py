"""The project's own axis client (the one the national axis bridge uses) against the hub's `/vxp`:
the hub answers in the shapes the client reads strictly, so one lgsp can stand where the axis stands."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgsp.adapters.national_axis import AxisClient, AxisError
from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from ..edxml_hub.support import HUB_ID, A, B, add_units, edoc, status


async def test_the_axis_client_round_trip_against_the_hub(hub: Hub, make_actor: MakeActor, tmp_path: Path) -> None:
    await add_units(hub)
    sender_actor, receiver_actor = await make_actor(A, existing=True), await make_actor(B, existing=True)
    url = hub.url + "/vxp"
    assert sender_actor.key.secret and receiver_actor.key.secret
    async with AxisClient(url, sender_actor.key.access_key, sender_actor.key.secret) as sender, \
            AxisClient(url, receiver_actor.key.access_key, receiver_actor.key.secret) as receiver:
        packet = tmp_path / "van-ban.edxml"
        packet.write_bytes(edoc(A, [B], subject="Gửi qua AxisClient"))
        doc_id = await sender.send_edoc(packet, from_=A)  # streamed from disk
        assert await receiver.count_received() == 1
        (item,) = await receiver.received_list()
        assert (item.doc_id, item.from_, item.to) == (doc_id, A, B)
        saved = await receiver.save_edoc(doc_id, tmp_path / "nhan.edxml")
        got = parse_packet(tmp_path / "nhan.edxml")
        assert saved > 0 and [t.organ_id for t in got.trace_headers] == [A, HUB_ID]
        assert await receiver.download_edoc(doc_id, tmp_path / "lai.edxml") == saved
        await receiver.update_status(doc_id, "done")
        assert await receiver.received_list() == []
        (row,) = await sender.sent_list(doc_id)
        assert (row.to_code, row.receive_status, row.title) == (B, "done", "Gửi qua AxisClient")

        reply = status(B, A, got.document_id, "03")
        status_id = await receiver.send_edoc(reply, from_=B, message_type="status")
        assert [i.doc_id for i in await sender.received_list("status")] == [status_id]
        assert parse_packet(await sender.get_edoc(status_id)).status_code == "03"
        await sender.update_status(status_id, "done")

        codes = {a.code for a in await sender.agencies()} & {u.code for u in await sender.synchronize_units()}
        assert {A, B} <= codes
        with pytest.raises(AxisError) as err:  # a document of nobody's: the hub's refusal, read as the axis's
            await receiver.get_edoc("00000000-0000-0000-0000-000000000000")
        assert err.value.code == "404" and not err.value.retryable
