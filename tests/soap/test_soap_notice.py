"""A maintenance notice rides in the header of every SOAP answer, and zeep still reads the answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from lxml import etree

from lgsp.core.hub import Hub

from ..conftest import MakeActor
from .soap_support import TNS, answer, envelope, post, zeep_client


async def test_soap_answers_carry_the_notices_in_force(hub: Hub, make_actor: MakeActor) -> None:
    a = await make_actor("000.00.01.H45")
    op = f'<t:getAgenciesList xmlns:t="{TNS}"><t:query>H45</t:query></t:getAgenciesList>'
    status, _, body = await post(a, hub.url, envelope(op), "text/xml; charset=utf-8")
    assert status == 200 and b"HubNotice" not in body  # no notice: no header at all

    now = datetime.now(UTC)
    notice = await hub.notices.add("Bảo trì 22:00–23:00", now + timedelta(hours=1), now + timedelta(hours=2))
    await hub.notices.refresh()
    for soap12 in (False, True):
        media = "application/soap+xml" if soap12 else "text/xml"
        status, _, body = await post(a, hub.url, envelope(op, soap12), f"{media}; charset=utf-8")
        assert status == 200
        root = etree.fromstring(body)
        ns = etree.QName(root).namespace
        found = root.findall(f"{{{ns}}}Header/{{{TNS}}}HubNotice")
        assert [(n.get("id"), n.text) for n in found] == [(notice.id, "Bảo trì 22:00–23:00")]
        assert found[0].get("start", "").startswith((now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
        assert answer(body, "getAgenciesListResponse") is not None

    agencies = await asyncio.to_thread(lambda: zeep_client(a).service.getAgenciesList(query="H45"))
    assert [x.code for x in agencies] == [a.unit]
