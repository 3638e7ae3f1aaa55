"""The communication policy on the SOAP adapter and on destinations an edXML packet names itself:
the same refusal (auth.not_permitted) as over REST, and nothing delivered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zeep

from lgsp.client import LgspError
from lgsp.core.hub import Hub

from ..conftest import MakeActor
from ..edxml_hub.support import A, B, C, add_units, blob_files, edoc, sha
from .soap_support import TNS, envelope, fault, post, send_edoc_op, zeep_client

OP = "operator:test"


def call(client: Any, operation: str, **kwargs: Any) -> Any:
    return asyncio.to_thread(getattr(client.service, operation), **kwargs)


async def test_soap_send_to_a_refused_destination_is_a_fault_with_the_same_code(hub: Hub, make_actor: MakeActor
                                                                                ) -> None:
    await add_units(hub)
    a = await make_actor(A, existing=True)
    b = await make_actor(B, existing=True)
    c = await make_actor(C, existing=True)
    await hub.policy.add("deny", A, B, data_type="edxml", by=OP)
    za = await asyncio.to_thread(zeep_client, a)
    with pytest.raises(zeep.exceptions.Fault) as err:
        await call(za, "sendEdoc", edxml=edoc(A, [B, C]))
    assert err.value.code == "soap:Client"
    assert err.value.detail.find(f"{{{TNS}}}problem/{{{TNS}}}code").text == "auth.not_permitted"
    # SOAP 1.2, by hand: the same code in the fault's detail.
    status, _, body = await post(a, hub.url, envelope(send_edoc_op(edoc(A, [B])), soap12=True),
                                 "application/soap+xml; charset=utf-8")
    problem = fault(body)
    assert status == 400 and problem["faultcode"] == "soap:Sender"
    assert problem["code"] == "auth.not_permitted" and problem["status"] == "403"
    assert await b.client.inbox() == [] and await c.client.inbox() == [] and blob_files(hub) == []
    # What the policy lets through still goes.
    sent = await call(za, "sendEdoc", edxml=edoc(A, [C]))
    assert list(sent.to) == [C]


async def test_destinations_named_by_the_content_are_judged_with_the_creating_application(
        hub: Hub, make_actor: MakeActor) -> None:
    """A REST packet whose edXML names its recipients (no `to` in the request): refused at upload,
    nothing kept, the packet still waiting; an application granted the route gets through."""
    await add_units(hub)
    a = await make_actor(A, existing=True)
    b = await make_actor(B, existing=True)
    granted = await make_actor(A, existing=True)
    app = next(x for x in await hub.directory.list_applications(A) if x.id == granted.key.application_id)
    await hub.policy.add("deny", "*", B, by=OP)
    await hub.policy.add("allow", f"app:{A}/{app.name}", B, by=OP)
    data = edoc(A, [B])
    created = await a.client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                          "sha256": sha(data)})
    with pytest.raises(LgspError) as err:
        await a.client.upload(created["upload"]["url"], data, sha(data))
    assert (err.value.status, err.value.code) == (403, "auth.not_permitted")
    assert err.value.body["refused"] == [B]
    assert await b.client.inbox() == [] and blob_files(hub) == []
    view = await a.client.status(created["id"])
    assert view["state"] == "created" and [e["type"] for e in view["events"]].count("content.rejected") == 1

    created = await granted.client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                                "sha256": sha(data)})
    accepted = await granted.client.upload(created["upload"]["url"], data, sha(data))
    assert accepted["state"] == "accepted"
    assert [i["id"] for i in await b.client.inbox()] == [created["id"]]
