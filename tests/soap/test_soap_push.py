"""Push adapter `soap`: packets pushed with zeep to a unit's own SOAP receive operation.

The delivery engine that calls push adapters lives on another branch; these tests call
`push(PushJob(...))` directly, as the engine will, against a VBQL test double speaking real SOAP.
The last test runs the whole path through the engine when `Hub.engine` exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.config import ConfigError, load_config
from lgsp.core.edxml import parse_packet
from lgsp.core.hub import Hub
from lgsp.core.push import PushFailure, PushJob, idempotency_key

from ..conftest import MakeActor, base_env
from ..edxml_hub.support import HUB_ID, PLUGINS, A, B, add_units, edoc, sha
from ..edxml_hub.test_edxml_exchange import send
from .vbql_double import VbqlReceiver, target

HUB_KEY, HUB_SECRET = "AKHUBPUSH0001", "bí-mật-của-trục-0001"


@pytest.fixture
async def receiver() -> AsyncIterator[VbqlReceiver]:
    double = await VbqlReceiver(access_key=HUB_KEY, secret=HUB_SECRET).start()
    yield double
    await double.stop()


async def job_for(hub: Hub, make_actor: MakeActor, tgt: dict[str, Any], data: bytes | None = None) -> PushJob:
    """A packet from A to B over REST, and the PushJob the engine would build for B."""
    await add_units(hub)
    a = await make_actor(A, existing=True)
    packet_id = await send(a.client, data or edoc(A, [B]))
    info = await hub.exchange.packet(packet_id)
    assert info is not None
    seen, path = await hub.content.for_delivery(info, B)
    return PushJob(packet=seen, unit=B, target=tgt, idempotency_key=idempotency_key(packet_id, B), attempt=1,
                   content_path=path, opener=await hub.content.opener(path))


async def test_push_delivers_the_destinations_variant_signed(hub: Hub, make_actor: MakeActor,
                                                             receiver: VbqlReceiver) -> None:
    await hub.secrets.set("vbql-b", HUB_SECRET)
    tgt = target(receiver, access_key=HUB_KEY, secret="vbql-b")
    adapter = hub.push_adapters["soap"]
    assert adapter.validate_target(B, tgt) == []
    job = await job_for(hub, make_actor, tgt, edoc(A, [B], files={"cid:1": os.urandom(3_000_000)}))
    receipt = await adapter.push(job)
    assert receipt.remote_id == "VB-1" and "nhanVanBan" in receipt.detail
    (got,) = receiver.received
    with job.open() as fh:
        stored = fh.read()
    assert got.content == stored and sha(got.content) == job.packet.sha256
    assert [t.organ_id for t in parse_packet(got.content).trace_headers] == [A, HUB_ID]
    assert (got.sender, got.packet) == (A, job.packet.id)
    assert got.headers["Idempotency-Key"] == job.idempotency_key and got.headers["SOAPAction"] == '"nhanVanBan"'
    rid = {k.lower(): v for k, v in got.headers.items()}["x-request-id"]  # carried, as on REST pushes
    assert re.fullmatch(r"[0-9a-f]{32}|[!-~]{1,128}", rid)
    assert receiver.refused == []
    # A second attempt is a second POST (the receiver deduplicates by Idempotency-Key / maGoiTin).
    assert (await adapter.push(job)).remote_id == "VB-2"


async def test_wsdl_and_service_behind_basic_auth(hub: Hub, make_actor: MakeActor, receiver: VbqlReceiver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lgsp.adapters.soap_edxml import push as soap_push

    receiver.basic = ("lgsp", "mật-khẩu")
    await hub.secrets.set("vbql-basic", "mật-khẩu")
    await hub.secrets.set("vbql-b", HUB_SECRET)
    tgt = target(receiver, username="lgsp", password_secret="vbql-basic", access_key=HUB_KEY, secret="vbql-b")
    adapter = hub.push_adapters["soap"]
    job = await job_for(hub, make_actor, tgt, edoc(A, [B]))
    assert (await adapter.push(job)).remote_id == "VB-1"
    assert (await adapter.push(job)).remote_id == "VB-2" and receiver.wsdl_reads == 1  # read once, kept
    monkeypatch.setattr(soap_push, "WSDL_TTL_SECONDS", 0.0)
    assert (await adapter.push(job)).remote_id == "VB-3" and receiver.wsdl_reads == 2  # stale: read again
    assert await adapter.probe(B, tgt) is True  # the presence probe reads the WSDL with the same auth
    # The wrong password: the WSDL itself is refused, and the push says so.
    await hub.secrets.set("vbql-basic", "sai")
    assert await adapter.probe(B, tgt) is False
    with pytest.raises(PushFailure) as err:
        await adapter.push(job)
    assert "401" in str(err.value.reason)


@pytest.mark.parametrize(("mode", "retryable", "retry_after", "words"), [
    ("client-fault", False, None, "Client"),
    ("server-fault", True, None, "Server"),
    ("busy", True, 7.0, "503"),
    ("garbage", False, None, "HTTP 200"),
])
async def test_push_failures_say_whether_to_retry(hub: Hub, make_actor: MakeActor, receiver: VbqlReceiver,
                                                  mode: str, retryable: bool, retry_after: float | None,
                                                  words: str) -> None:
    await hub.secrets.set("vbql-b", HUB_SECRET)
    job = await job_for(hub, make_actor, target(receiver, access_key=HUB_KEY, secret="vbql-b"))
    receiver.mode = mode
    with pytest.raises(PushFailure) as err:
        await hub.push_adapters["soap"].push(job)
    assert err.value.retryable is retryable and err.value.retry_after == retry_after
    assert words in err.value.reason
    assert receiver.received == []


async def test_push_refused_signature_unreachable_and_wrong_operation(hub: Hub, make_actor: MakeActor,
                                                                      receiver: VbqlReceiver) -> None:
    adapter = hub.push_adapters["soap"]
    await hub.secrets.set("wrong", "not-the-secret")
    job = await job_for(hub, make_actor, target(receiver, access_key=HUB_KEY, secret="wrong"))
    with pytest.raises(PushFailure) as err:
        await adapter.push(job)
    assert not err.value.retryable and receiver.refused == ["bad signature"]

    bad_op = PushJob(job.packet, B, target(receiver, operation="guiVanBan"), job.idempotency_key, 1,
                     job.content_path, job.opener)
    with pytest.raises(PushFailure) as err:
        await adapter.push(bad_op)
    assert not err.value.retryable and "guiVanBan" in err.value.reason and "nhanVanBan" in err.value.reason

    url = receiver.url
    await receiver.stop()  # the endpoint is cached from the WSDL; now nobody answers
    with pytest.raises(PushFailure) as err:
        await adapter.push(PushJob(job.packet, B, target(receiver), job.idempotency_key, 2, job.content_path,
                                   job.opener))
    assert err.value.retryable and "POST" in err.value.reason
    assert not await adapter.probe(B, {"wsdl": url + "?wsdl"})


async def test_probe(hub: Hub, receiver: VbqlReceiver) -> None:
    assert await hub.push_adapters["soap"].probe(B, target(receiver))


def test_validate_target_names_each_problem(hub_config: Any) -> None:
    adapter = Hub(hub_config).push_adapters["soap"]
    problems = dict(adapter.validate_target(B, {
        "protocol": "soap", "wsdl": "ftp://x", "operaton": "nhanVanBan", "timeout_seconds": 0,
        "parameters": {"a": "{nope}", "b": ["list"]}, "access_key": "AK"}))
    assert problems["wsdl"].startswith("required")
    assert problems["operation"].startswith("required")
    assert "unknown key" in problems["operaton"]
    assert problems["timeout_seconds"].startswith("must be a number")
    assert "nope" in problems["parameters.a"] and problems["parameters.b"].startswith("must be")
    assert problems["secret"] == "access_key and secret go together"
    assert adapter.validate_target(B, {"protocol": "soap", "wsdl": "https://vbql.example/ws?wsdl",
                                       "operation": "nhanVanBan", "concurrency": 2}) == []


def test_push_targets_are_checked_at_start(tmp_path: Path) -> None:
    config = tmp_path / "lgsp.yaml"
    config.write_text("plugins:\n  enabled: [rest, edxml, soap_edxml]\ndelivery:\n  targets:\n"
                      f"    \"{B}\":\n      protocol: soap\n      wsdl: not-a-url\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(config, env={})).check_config()
    paths = {i.path for i in err.value.issues}
    assert {f"delivery.targets.{B}.wsdl", f"delivery.targets.{B}.operation"} <= paths


async def test_end_to_end_through_the_delivery_engine(tmp_path: Path, receiver: VbqlReceiver) -> None:
    """A packet for a SOAP unit goes through the delivery engine, signed, with the hub's TraceHeader."""
    env = base_env(tmp_path / "v", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID)
    cfg = load_config(None, env=env)
    cfg = cfg.replace(delivery={"targets": {B: target(receiver, access_key=HUB_KEY, secret="vbql-b")}})
    async with Hub(cfg) as hub:
        await hub.secrets.set("vbql-b", HUB_SECRET)
        await add_units(hub)
        app = await hub.directory.add_application(A, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.client import Credentials, LgspClient

        async with LgspClient(Credentials(hub.url, key.access_key, secret=key.secret)) as client:
            packet_id = await send(client, edoc(A, [B]))
            for _ in range(100):
                if receiver.received:
                    break
                await asyncio.sleep(0.1)
            (got,) = receiver.received
            assert got.packet == packet_id and parse_packet(got.content).trace_headers[-1].organ_id == HUB_ID
            for _ in range(50):
                view = await client.status(packet_id)
                if view["deliveries"][0]["state"] == "delivered":
                    break
                await asyncio.sleep(0.1)
            assert view["deliveries"][0]["state"] == "delivered"
            assert hashlib.sha256(got.content).hexdigest() == view["variants"][0]["sha256"]
