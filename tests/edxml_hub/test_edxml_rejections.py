"""Every way an edXML upload is refused over REST: the code, the path, nothing kept, hub healthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lgsp.client import Credentials, LgspClient, LgspError
from lgsp.core.config import ConfigError, load_config
from lgsp.core.hub import Hub

from ..conftest import MakeActor, base_env
from .support import HUB_ID, PLUGINS, A, B, add_units, blob_files, edoc, fixture, sha
from .test_edxml_exchange import send

MH = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"
XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&xxe;</edXML>')
LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10))
          + b']>\n<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&lol9;</edXML>')


def schema_violation() -> bytes:
    data = edoc(A, [B])
    return data.replace(b"<BussinessDocType>0</BussinessDocType>", b"<BussinessDocType>7</BussinessDocType>", 1)


CASES = [
    ("malformed", lambda: edoc(A, [B])[:-40], 400, "edxml.malformed", None),
    ("template of the public repo", lambda: fixture("malformed_template"), 400, "edxml.malformed", None),
    ("schema violation", schema_violation, 422, "edxml.invalid",
     "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType"),
    ("missing subject", lambda: edoc(A, [B]).replace(b"<Subject>", b"<Subjekt>", 1).replace(
        b"</Subject>", b"</Subjekt>", 1), 422, "edxml.invalid", MH),
    ("external entity", lambda: XXE, 400, "edxml.unsafe", None),
    ("billion laughs", lambda: LAUGHS, 400, "edxml.unsafe", None),
    ("not edXML at all", lambda: b"\x89PNG\r\n\x1a\n" + bytes(100), 400, "edxml.malformed", None),
]


@pytest.mark.parametrize(("case", "make", "status", "code", "path"), CASES, ids=[c[0] for c in CASES])
async def test_refused_upload(hub: Hub, make_actor: MakeActor, case: str, make: Any, status: int, code: str,
                              path: str | None) -> None:
    await add_units(hub)
    a, b = await make_actor(A, existing=True), await make_actor(B, existing=True)
    data = make()
    created = await a.client.call("POST", "/v1/packets", {"data_type": "edxml", "to": [B], "size": len(data),
                                                          "sha256": sha(data)})
    with pytest.raises(LgspError) as err:
        await a.client.upload(created["upload"]["url"], data, sha(data))
    assert (err.value.status, err.value.code) == (status, code), err.value.body
    assert err.value.body["type"] == f"urn:lgsp:problem:{code}" and err.value.detail
    if path is not None:
        assert err.value.body["path"].startswith(path) and path in err.value.detail
        assert err.value.body["rule"]
    # Nothing is kept; the packet is still waiting for a good upload; B hears nothing.
    assert blob_files(hub) == [] and list(hub.blobs.tmp.iterdir()) == []
    view = await a.client.status(created["id"])
    assert view["state"] == "created" and view["content"] == "none"
    assert view["events"][-1]["type"] == "content.rejected"
    assert await b.client.inbox() == []
    # The hub is healthy: a good packet goes through at once.
    good = edoc(A, [B])
    packet_id = await send(a.client, good)
    assert [i["id"] for i in await b.client.inbox()] == [packet_id]


async def test_to_naming_the_hub_itself_is_refused(hub: Hub, make_actor: MakeActor) -> None:
    """The hub's own unit signs pushes; like a create request, an edXML To cannot address it."""
    await add_units(hub)
    await hub.identity.key()  # the hub's unit now exists in the directory
    assert (await hub.directory.existing_units([HUB_ID])).get(HUB_ID) == "active"
    a = await make_actor(A, existing=True)
    with pytest.raises(LgspError) as err:
        await send(a.client, edoc(A, [B, HUB_ID]))
    assert err.value.code == "route.unknown_destination" and err.value.body["unknown"] == [HUB_ID]
    assert err.value.body["path"].endswith("/MessageHeader/To")


async def test_oversized_packet_is_refused_before_upload(tmp_path: Path, make_actor: MakeActor) -> None:
    env = base_env(tmp_path / "v", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_LIMITS_MAX_PACKET_SIZE="2KiB")
    async with Hub(load_config(None, env=env)) as hub:
        await add_units(hub)
        app = await hub.directory.add_application(A, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        async with LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)) as client:
            data = edoc(A, [B])
            assert len(data) > 2048
            with pytest.raises(LgspError) as err:
                await send(client, data)
            assert (err.value.status, err.value.code) == (413, "content.too_large")


async def test_attachment_over_the_edxml_limit(tmp_path: Path) -> None:
    env = base_env(tmp_path / "v", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID,
                   LGSP_ADAPTERS="{edxml: {max_attachment_bytes: 1000}}")
    async with Hub(load_config(None, env=env)) as hub:
        await add_units(hub)
        app = await hub.directory.add_application(A, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        async with LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)) as client:
            with pytest.raises(LgspError) as err:
                await send(client, edoc(A, [B], files={"cid:1": bytes(5000)}))
            assert (err.value.status, err.value.code) == (413, "edxml.too_large")
            assert "max_attachment_bytes" in err.value.detail
            assert blob_files(hub) == []
            assert await send(client, edoc(A, [B], files={"cid:1": bytes(900)}))


def test_edxml_settings_are_checked_with_their_path(tmp_path: Path) -> None:
    config = tmp_path / "lgsp.yaml"
    config.write_text("plugins:\n  enabled: [rest, edxml]\nadapters:\n  edxml:\n    max_attachment_bytes: -1\n"
                      "    max_atachments: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(config, env={})).check_config()
    issues = {i.path: (i.where, i.message) for i in err.value.issues}
    assert issues["adapters.edxml.max_attachment_bytes"] == (f"{config}:5", "must be a positive integer")
    assert issues["adapters.edxml.max_atachments"][0] == f"{config}:6"
    assert "unknown key" in issues["adapters.edxml.max_atachments"][1]
