"""Two hub nodes sharing PostgreSQL serve `/vxp`: copies of one sendEdoc arriving on both at the
same instant create one packet (the claim row of core/claims.py), not one per node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from ..conftest import base_env
from ..edxml_hub.support import HUB_ID, A, B, add_units, edoc
from ..national_axis.sdk_requests import SdkSession, parse_like_sdk, send_raw
from .conftest import PLUGINS

pytestmark = pytest.mark.postgres


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, Hub]]:
    env = base_env(tmp_path / "shared", LGSP_DATABASE_URL=pg_url, LGSP_DATABASE_POOL_SIZE="6",
                   LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID)
    first, second = Hub(load_config(None, env=env)), Hub(load_config(None, env=env))
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await second.stop()
        await first.stop()


async def test_copies_racing_on_two_nodes_create_one_packet(nodes: tuple[Hub, Hub]) -> None:
    first, second = nodes
    await add_units(first)
    key_a = await first.directory.issue_key((await first.directory.add_application(A, "vbql")).id, "HMAC-SHA256")
    key_b = await first.directory.issue_key((await first.directory.add_application(B, "vbql")).id, "HMAC-SHA256")
    assert key_a.secret is not None and key_b.secret is not None
    # The first node is slow to finish its packet, so the copy on the second node arrives while
    # the first is still being received: the moment a per-process lock cannot cover.
    submit = first.exchange.submit
    received = asyncio.Event()

    async def slow_submit(*args: Any, **kwargs: Any) -> Any:
        received.set()
        await asyncio.sleep(0.8)
        return await submit(*args, **kwargs)

    first.exchange.submit = slow_submit  # type: ignore[method-assign]
    request = SdkSession(key_a.access_key, key_a.secret, base_path="/vxp").send_edoc(edoc(A, [B]), from_=A)
    on_first = asyncio.create_task(send_raw(first.url, request))
    await asyncio.wait_for(received.wait(), 10)
    on_second = await asyncio.gather(*(send_raw(second.url, request) for _ in range(2)))
    ids = set()
    for (answer,) in [await on_first, *on_second]:
        data = parse_like_sdk("sendEdoc", answer)
        assert data["ErrorCode"] == "0", data
        ids.add(data["DocId"])
    assert len(ids) == 1, f"{len(ids)} packets for one document"
    async with LgspClient(Credentials(second.url, key_b.access_key, secret=key_b.secret)) as client:
        assert len(await client.inbox()) == 1
