"""Hook `lgsp_push_adapters`: a plugin's protocol carries packets to the units configured for it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.config import ConfigError
from lgsp.core.hub import Hub
from lgsp.core.push import PushFailure, PushJob, PushReceipt
from lgsp.plugins.hookspecs import hookimpl

from ..conftest import wait_for
from ..delivery.helpers import has_state, with_delivery
from .support import DST, OTHER, SRC, client_of, config


class Pigeon:
    """A push protocol that keeps what it is given; `refuse` makes the destination say no."""

    protocol = "pigeon"

    def __init__(self) -> None:
        self.jobs: list[tuple[str, str, bytes, dict[str, Any], str]] = []

    def validate_target(self, unit: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [] if isinstance(target.get("loft"), str) else [("loft", "required: where the pigeon flies")]

    async def push(self, job: PushJob) -> PushReceipt:
        body = b"".join([chunk async for chunk in job.content()])
        self.jobs.append((job.packet.id, job.unit, body, dict(job.target), job.idempotency_key))
        if job.target.get("refuse"):
            raise PushFailure("the loft is closed", retryable=False)
        return PushReceipt(detail="cooed", remote_id=f"loft-{len(self.jobs)}")

    async def probe(self, unit: str, target: Mapping[str, Any]) -> bool:
        return True


class PigeonPlugin:
    def __init__(self) -> None:
        self.adapter = Pigeon()

    @hookimpl
    def lgsp_push_adapters(self, hub: Hub) -> list[Pigeon]:
        return [self.adapter]


async def test_a_plugin_protocol_delivers_and_refuses(tmp_path: Path) -> None:
    plugin = PigeonPlugin()
    cfg = with_delivery(config(tmp_path), probe_interval_seconds=0, targets={
        DST: {"protocol": "pigeon", "loft": "north"},
        OTHER: {"protocol": "pigeon", "loft": "south", "refuse": True, "concurrency": 1}})
    async with Hub(cfg, extra_plugins=(plugin,)) as hub:
        assert hub.engine.protocol_of(DST) == "pigeon"
        src = await client_of(hub, SRC)
        await hub.directory.add_unit(DST, DST)
        await hub.directory.add_unit(OTHER, OTHER)
        async with src:
            packet_id = await src.send(b"hello", [DST, OTHER], subject="s")
            await wait_for(lambda: has_state(hub, packet_id, DST, "delivered"), what="pushed to DST")
            await wait_for(lambda: has_state(hub, packet_id, OTHER, "failed"), what="refused by OTHER")
            view = await src.status(packet_id)
    jobs = {unit: (body, target, key) for _, unit, body, target, key in plugin.adapter.jobs}
    assert jobs[DST] == (b"hello", {"protocol": "pigeon", "loft": "north"}, f"{packet_id}:{DST}")
    assert "concurrency" not in jobs[OTHER][1]  # the engine's own keys are not the adapter's business
    reasons = {d["unit"]: d.get("reason") or "" for d in view["deliveries"]}
    assert "the loft is closed" in reasons[OTHER]


def test_the_adapter_judges_its_targets_and_unknown_protocols_are_refused(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_LANG", "en")  # the wording below is the English one
    cfg = with_delivery(config(tmp_path), targets={DST: {"protocol": "pigeon"}})
    with pytest.raises(ConfigError) as err:
        Hub(cfg, extra_plugins=(PigeonPlugin(),)).check_config()
    assert [i.path for i in err.value.issues] == [f"delivery.targets.{DST}.loft"]
    with pytest.raises(ConfigError, match="no push adapter for protocol 'pigeon'"):
        Hub(cfg).check_config()
