"""End to end against the simulator: an edoc from a ministry reaches two local units, one over REST
and one over SOAP (zeep); each acknowledges; the axis sees `done`; the SOAP unit's status reply
goes back to the ministry through the axis as a status message."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from lgsp.client import Credentials, LgspClient
from lgsp.core.edxml import parse_packet

from ..conftest import Actor, wait_for
from ..edxml_hub.support import edoc, status
from ..soap.soap_support import zeep_client
from .bridge_support import LOCAL_A, LOCAL_B, BridgeHub, MakeBridgeHub, make_bridge_hub
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle

__all__ = ["make_bridge_hub"]

LOCAL_C = "000.03.32.H45"


async def actor(bh: BridgeHub, unit: str) -> Actor:
    app = await bh.hub.directory.add_application(unit, "vbql")
    key = await bh.hub.directory.issue_key(app.id, "HMAC-SHA256")
    client = LgspClient(Credentials(bh.hub.url, key.access_key, "HMAC-SHA256", secret=key.secret))
    return Actor(unit, key, client, bh.hub)


def call(client: Any, operation: str, **kwargs: Any) -> Any:
    return asyncio.to_thread(getattr(client.service, operation), **kwargs)


async def test_a_ministry_edoc_over_rest_and_soap_and_a_status_back_through_the_axis(
        make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle) -> None:
    bh = await make_bridge_hub(axis_sim)
    await bh.add_local(LOCAL_A, LOCAL_B, LOCAL_C)
    data = edoc(MINISTRY_CODE, [LOCAL_B, LOCAL_C], subject="V/v triển khai Nghị định")
    document_id = parse_packet(data).document_id
    (doc_id,) = await axis_sim.inject(PROVINCE.agency_code, data)
    assert (await bh.run_round("poll")).submitted == 1
    assert axis_sim.simulator.state.receivers[doc_id][1].status == "done"

    rest = await actor(bh, LOCAL_B)
    soap = await actor(bh, LOCAL_C)
    async with rest.client, soap.client:
        (item,) = await rest.client.inbox()
        body = await rest.client.fetch_bytes(item["id"])
        assert await rest.client.ack(item["id"], hashlib.sha256(body).hexdigest()) == "delivered"

        z = await asyncio.to_thread(zeep_client, soap)
        (listed,) = await call(z, "getReceivedEdocList", messageType="edoc")
        assert listed["from"] == MINISTRY_CODE and listed.documentId == document_id
        got = await call(z, "getEdoc", packetId=listed.packetId)
        assert parse_packet(got.edxml).subject == "V/v triển khai Nghị định"
        assert (await call(z, "updateStatus", packetId=listed.packetId, status="done")).state == "delivered"
        view = await rest.client.status(item["id"])
        assert view["state"] in ("accepted", "completed")

        # The SOAP unit answers 03: a status packet to the ministry, sent through the axis as `status`.
        reply = await call(z, "sendEdoc", edxml=status(LOCAL_C, MINISTRY_CODE, document_id, "03", "Đã tiếp nhận"))
        assert reply.messageType == "status" and list(reply.to) == [MINISTRY_CODE]
        await wait_for(lambda: len(axis_sim.simulator.sent()) == 1, what="the status to reach the axis")
        sent = axis_sim.simulator.sent()[0]
        assert sent.message_type == "status" and [d.agency_code for d in sent.deliveries] == [MINISTRY_CODE]
        assert parse_packet(sent.content).status_code == "03"
