"""The communication policy on the hub's `/vxp` routes: a sendEdoc to a destination the policy
denies is refused in the axis protocol's own answer shape (HTTP 200, status FAIL, ErrorCode 403),
carrying the same code every other adapter gives (auth.not_permitted), and nothing is delivered."""

from __future__ import annotations

from lgsp.core.hub import Hub

from ..conftest import MakeActor
from ..edxml_hub.support import A, B, C, edoc
from ..national_axis.sdk_requests import parse_like_sdk, send_raw
from .test_vxp_served import ok, refused, sdk, units

OP = "operator:test"


async def test_send_edoc_to_a_denied_destination_is_refused_in_the_sdk_shape(hub: Hub, make_actor: MakeActor) -> None:
    who = await units(hub, make_actor)
    await hub.policy.add("deny", A, B, by=OP)
    session = sdk(who[A])
    answers = await send_raw(hub.url, session.send_edoc(edoc(A, [B]), from_=A),
                             session.send_edoc(edoc(A, [B, C]), from_=A),  # one denied destination refuses all
                             session.send_edoc(edoc(A, [C], number="2"), from_=A))
    for answer in answers[:2]:
        data = refused("sendEdoc", answer, "403")
        assert "auth.not_permitted" in data["ErrorDesc"] and B in data["ErrorDesc"]
        assert data["DocId"] == ""
    assert ok("sendEdoc", answers[2])["DocId"]  # what the policy lets through still goes
    assert await who[B].client.inbox() == []
    assert len(await who[C].client.inbox()) == 1


async def test_an_application_rule_decides_for_the_sdk_system_using_its_key(hub: Hub, make_actor: MakeActor) -> None:
    """The SDK signs with an application's key, so a rule naming that application applies."""
    who = await units(hub, make_actor)
    app = next(a for a in await hub.directory.list_applications(A) if a.id == who[A].key.application_id)
    await hub.policy.add("deny", "*", f"{B}", by=OP)
    await hub.policy.add("allow", f"app:{A}/{app.name}", B, by=OP)
    other = await make_actor(A, existing=True)  # another application of the same unit: not granted
    answers = await send_raw(hub.url, sdk(who[A]).send_edoc(edoc(A, [B]), from_=A),
                             sdk(other).send_edoc(edoc(A, [B], number="2"), from_=A))
    assert ok("sendEdoc", answers[0])["DocId"]
    assert "auth.not_permitted" in refused("sendEdoc", answers[1], "403")["ErrorDesc"]
    assert parse_like_sdk("sendEdoc", answers[1])["DocId"] == ""
    assert len(await who[B].client.inbox()) == 1
