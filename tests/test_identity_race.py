"""Two nodes starting at once make one hub signing key between them, never two (nor none)."""

from __future__ import annotations

import asyncio

import pytest

from lgsp.core.hub import Hub
from lgsp.core.identity import HubIdentity


@pytest.mark.parametrize("nodes", [2, 4])
async def test_nodes_racing_at_first_start_agree_on_one_signing_key(hub: Hub, nodes: int) -> None:
    # The fixture's hub has not signed anything yet: no key exists. Each "node" has its own identity.
    racers = [HubIdentity(hub.directory, hub.secrets, "000.00.99.H23", "Trục thử nghiệm") for _ in range(nodes)]
    keys = await asyncio.gather(*(r.key() for r in racers))
    assert len({k.access_key for k in keys}) == 1, "every node signs with the same key"
    material = await hub.directory.key_material(keys[0].access_key)
    assert material is not None and not material.revoked, "the shared key is not revoked by a loser"
    again = await HubIdentity(hub.directory, hub.secrets, "000.00.99.H23", "Trục thử nghiệm").key()
    assert again.access_key == keys[0].access_key


async def test_a_stored_key_that_was_revoked_is_replaced(hub: Hub) -> None:
    first = await HubIdentity(hub.directory, hub.secrets, "000.00.99.H23", "Trục thử nghiệm").key()
    await hub.directory.revoke_key(first.access_key)
    second = await HubIdentity(hub.directory, hub.secrets, "000.00.99.H23", "Trục thử nghiệm").key()
    assert second.access_key != first.access_key
    material = await hub.directory.key_material(second.access_key)
    assert material is not None and not material.revoked
