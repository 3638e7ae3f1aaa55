"""The bridge on PostgreSQL: the zone's lane claims with FOR UPDATE SKIP LOCKED, tracking and the
inbound poller under the advisory lock (skips when no server answers)."""

from __future__ import annotations

import hashlib

from lgsp.client import Credentials, LgspClient

from ..conftest import wait_for
from ..edxml_hub.support import edoc
from .bridge_support import LOCAL_A, LOCAL_B, BridgeHub, MakeBridgeHub, make_bridge_hub
from .conftest import MINISTRY_CODE, PROVINCE, AxisSimHandle

__all__ = ["make_bridge_hub"]


async def test_out_tracked_and_in_on_postgresql(make_bridge_hub: MakeBridgeHub, axis_sim: AxisSimHandle,
                                               pg_url: str) -> None:
    bh = await make_bridge_hub(axis_sim, env={"LGSP_DATABASE_URL": pg_url, "LGSP_DATABASE_POOL_SIZE": "4"})
    await bh.add_local(LOCAL_A, LOCAL_B)
    await bh.add_national()
    app = await bh.hub.directory.add_application(LOCAL_A, "vbql")
    key = await bh.hub.directory.issue_key(app.id, "HMAC-SHA256")
    data = edoc(LOCAL_A, [MINISTRY_CODE])
    digest = hashlib.sha256(data).hexdigest()
    async with LgspClient(Credentials(bh.hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as sender:
        created = await sender.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data), "sha256": digest})
        await sender.upload(created["upload"]["url"], data, digest)
        await wait_for(lambda: len(axis_sim.simulator.sent()) == 1, what="sendEdoc")
        axis_sim.simulator.state.set_status(axis_sim.simulator.sent()[0].deliveries[0], "done")
        await wait_for(lambda: _forwarded_then_track(bh), what="tracking to deliver it")
        assert (await sender.status(created["id"]))["state"] == "completed"
    (doc_id,) = await axis_sim.inject(PROVINCE.agency_code, edoc(MINISTRY_CODE, [LOCAL_B], number="7"))
    assert (await bh.run_round("poll")).submitted == 1
    assert axis_sim.simulator.state.receivers[doc_id][1].status == "done"


async def _forwarded_then_track(bh: BridgeHub) -> bool:
    report = await bh.run_round("track")
    return bool(report.delivered)
