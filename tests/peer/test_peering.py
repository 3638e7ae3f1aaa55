"""Hub-to-hub peering: an agency of province X reaches an agency of province Y in one send, the
status comes back the same way, and each hub follows the other's deliveries. Two real hubs on
loopback, two stores, real HTTP; bad paths: the peer down, the peer refusing, a unit that is not a
peer hub (or a peer speaking for a source outside its zone)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from lgsp.client import LgspClient
from lgsp.core.api import documents as docs
from lgsp.core.api import states as dv
from lgsp.core.config import ConfigError, load_config
from lgsp.core.hub import Hub

from ..conftest import base_env, raw_request, wait_for
from ..edxml_hub.support import document_id_of, edoc, status
from .conftest import X_A, X_B, X_ZONE, Y_A, Y_B, Y_ZONE, Pair, Side, sha


async def _receive(side: Side, client: LgspClient, *, ack: bool = True) -> tuple[dict[str, object], bytes]:
    items: list[dict[str, object]] = []

    async def arrived() -> bool:
        items[:] = await client.inbox()
        return bool(items)

    await wait_for(arrived, timeout=20, what=f"a packet on {side.name}")
    item = items[0]
    data = await client.fetch_bytes(str(item["id"]))
    if ack:
        await client.ack(str(item["id"]), sha(data))
    return item, data


async def _state(side: Side, packet_id: str, unit: str, want: str) -> None:
    async def reached() -> bool:
        return (await side.delivery(packet_id, unit)).get("state") == want

    await wait_for(reached, timeout=20, what=f"{unit}'s delivery of {packet_id} on {side.name} {want}")


async def test_a_document_and_its_status_cross_between_two_hubs(pair: Pair) -> None:
    x, y = pair.x, pair.y
    sender = await x.unit(X_A)
    receiver = await y.unit(Y_A)
    await y.unit(Y_B)
    doc = edoc(X_A, [Y_A])
    sent = await x.send(sender, doc)
    await _state(x, sent, Y_A, dv.FORWARDED)
    forwarded = await x.delivery(sent, Y_A)
    assert forwarded["protocol"] == "peer" and forwarded["remote_id"]
    assert (await x.hub.directory.get_unit(Y_A)).zone == Y_ZONE  # type: ignore[union-attr]

    item, data = await _receive(y, receiver)
    assert item["from"] == X_A  # the original source, not the peer hub
    assert item["id"] == forwarded["remote_id"]
    on_y = await y.hub.exchange.packet(str(item["id"]))
    assert on_y is not None and on_y.source == X_A and on_y.meta["peer"]["packet"] == sent
    assert (await y.hub.directory.get_unit(X_A)).zone == X_ZONE  # type: ignore[union-attr]
    await _state(x, sent, Y_A, dv.DELIVERED)  # X follows Y: delivered once Y_A acknowledged

    # Y_A answers with status 03 (received); it travels back through the same peering.
    reply = status(Y_A, X_A, document_id_of(data), "03")
    status_id = await y.send(receiver, reply)
    item, got = await _receive(x, sender)
    assert item["from"] == Y_A and document_id_of(got) == document_id_of(doc)
    await _state(y, status_id, X_A, dv.DELIVERED)
    async with x.hub.db.read() as conn:  # X's document index has Y_A's status for X_A's document
        recorded = await docs.statuses(conn, document_id_of(doc), X_A)
    assert [(r["unit"], r["status_code"]) for r in recorded] == [(Y_A, "03")]


async def test_one_packet_on_the_peer_for_two_of_its_units(pair: Pair) -> None:
    x, y = pair.x, pair.y
    sender = await x.unit(X_A)
    first, second = await y.unit(Y_A), await y.unit(Y_B)
    sent = await x.send(sender, edoc(X_A, [Y_A, Y_B]))
    await _state(x, sent, Y_A, dv.FORWARDED)
    await _state(x, sent, Y_B, dv.FORWARDED)
    assert (await x.delivery(sent, Y_A))["remote_id"] == (await x.delivery(sent, Y_B))["remote_id"]
    (a, _), (b, _) = await _receive(y, first), await _receive(y, second, ack=False)
    assert a["id"] == b["id"]
    await _state(x, sent, Y_A, dv.DELIVERED)
    await second.fail(str(b["id"]), "không đúng thẩm quyền")
    await _state(x, sent, Y_B, dv.FAILED)
    reason = (await x.delivery(sent, Y_B))["reason"]
    assert "không đúng thẩm quyền" in reason and Y_ZONE in reason


async def test_the_peer_down_is_retried_until_it_answers(pair: Pair) -> None:
    x, y = pair.x, pair.y
    sender = await x.unit(X_A)
    await y.unit(Y_A)
    adapter = x.hub.push_adapters["peer"]
    zone = {"protocol": "peer", "zone": Y_ZONE}
    assert await adapter.probe(f"zone:{Y_ZONE}", zone)  # the presence probe: a signed hello
    await y.hub.stop()
    assert not await adapter.probe(f"zone:{Y_ZONE}", zone)
    sent = await x.send(sender, edoc(X_A, [Y_A]))
    await _state(x, sent, Y_A, dv.RETRYING)
    assert "connection" in (await x.delivery(sent, Y_A))["last_error"]
    await pair.restart(y)
    await _state(x, sent, Y_A, dv.FORWARDED)
    assert await adapter.probe(f"zone:{Y_ZONE}", zone)


async def test_a_peer_that_does_not_know_this_hub_fails_the_probe(pair: Pair) -> None:
    x, y = pair.x, pair.y
    adapter = x.hub.push_adapters["peer"]
    zone = {"protocol": "peer", "zone": Y_ZONE}
    y.config.routes[X_ZONE]["peer_unit"] = "000.00.98.H45"  # Y no longer takes X's hub as its peer
    assert not await adapter.probe(f"zone:{Y_ZONE}", zone)


async def test_a_refusal_by_the_peer_fails_the_delivery_with_its_code(pair: Pair) -> None:
    x = pair.x
    sender = await x.unit(X_A)
    unknown_there = "000.09.09.H29"  # matches Y's pattern on X, but Y has no such unit
    sent = await x.send(sender, edoc(X_A, [unknown_there]))
    await _state(x, sent, unknown_there, dv.FAILED)
    assert "route.unknown_destination" in (await x.delivery(sent, unknown_there))["reason"]


def _envelope(source: str, to: list[str], packet: str = "p-1") -> str:
    body = {"packet": packet, "source": source, "to": to, "subject": "thử", "priority": 0, "data_type": "pdf"}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


async def _push_as(side: Side, client: LgspClient, source: str, to: list[str]) -> tuple[int, object]:
    from lgsp.adapters.peer.wire import H_ENVELOPE, PACKETS, envelope_query

    encoded = _envelope(source, to)
    status_, _, body = await raw_request(side.url, "POST", f"{PACKETS}?{envelope_query(encoded)}", b"%PDF-1.4 x",
                                         signer=client.signer, headers={H_ENVELOPE: encoded})
    return status_, body


async def test_only_a_peer_hub_speaks_for_another_source_and_only_for_its_zone(pair: Pair) -> None:
    x, y = pair.x, pair.y
    await y.unit(Y_A)
    local = await y.unit(Y_B)
    refused, body = await _push_as(y, local, X_A, [Y_A])  # a local unit of Y claiming to send for X_A
    assert refused == 403 and body["code"] == "peer.not_a_peer", body  # type: ignore[index]
    # X's hub is Y's peer, but only for X's zone: not for a unit of Y, nor for another province.
    peer = await y.unit(x.hub_id, zone=X_ZONE)
    for source in (Y_B, "000.00.00.H41"):
        refused, body = await _push_as(y, peer, source, [Y_A])
        assert refused == 403 and body["code"] == "peer.source_not_in_zone", body  # type: ignore[index]
    ok, body = await _push_as(y, peer, X_B, [Y_A])  # a unit of X's zone, unknown to Y yet: taken
    assert ok == 201, body
    again, body2 = await _push_as(y, peer, X_B, [Y_A])  # the same push again: the same packet
    assert again == 200 and body2["id"] == body["id"]  # type: ignore[index]
    status_, _, seen = await raw_request(y.url, "GET", f"/v1/peer/packets/{body['id']}",  # type: ignore[index]
                                         signer=local.signer)
    assert status_ == 403 and seen["code"] == "peer.not_a_peer"


@pytest.mark.parametrize("field", ["url", "unit", "key_id", "secret", "peer_unit"])
def test_route_settings_name_the_missing_key(field: str) -> None:
    from lgsp.adapters.peer.settings import parse_route

    raw = {"url": "http://127.0.0.1:1", "unit": X_A, "key_id": "AK1", "secret": "peer-y", "peer_unit": Y_A}
    del raw[field]
    route, problems = parse_route("hcm", raw)
    assert route is None and [k for k, _ in problems] == [field]


def test_config_check_names_each_bad_key_of_a_peer_route_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.yaml"
    path.write_text("routes:\n  hcm:\n    adapter: peer\n    url: ftp://x\n    unit: 000.00.99.H45\n"
                    "    key_id: AK1\n    secret: 'not a name!'\n    peer_unit: 000.00.99.H29\n    colour: blue\n",
                    encoding="utf-8")
    config = load_config(path, env=base_env(tmp_path / "var", LGSP_PLUGINS_ENABLED="[rest, peer]"))
    with pytest.raises(ConfigError) as caught:
        Hub(config).check_config()
    found = {issue.path: issue.where for issue in caught.value.issues}
    assert {"routes.hcm.url", "routes.hcm.secret", "routes.hcm.colour"} <= set(found), found
    assert found["routes.hcm.url"].endswith(":4") and found["routes.hcm.colour"].endswith(":9"), found


def test_route_tls_settings_are_checked_like_a_push_target(tmp_path: Path) -> None:
    from lgsp.adapters.peer.settings import parse_route

    raw = {"url": "https://lgsp.example:8443", "unit": X_A, "key_id": "AK1", "secret": "peer-y", "peer_unit": Y_A}
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    route, problems = parse_route("hcm", {**raw, "tls_ca_file": str(ca), "verify_tls": True})
    assert route is not None and dict(route.tls) == {"tls_ca_file": str(ca), "verify_tls": True}, problems
    _, problems = parse_route("hcm", {**raw, "tls_ca_file": str(tmp_path / "missing.pem"), "verify_tls": "yes"})
    assert {k for k, _ in problems} == {"tls_ca_file", "verify_tls"}
