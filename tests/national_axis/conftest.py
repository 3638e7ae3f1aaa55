"""The ``axis_sim`` fixture: a national axis simulator on a loopback port, with two provincial systems
and a small agency directory, plus helpers to build clients and SDK-shaped sessions for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lgsp.adapters.national_axis.faults import FaultPlan
from lgsp.adapters.national_axis.sim_state import SimSystem
from lgsp.adapters.national_axis.simulator import AxisSimulator

from .sdk_requests import SdkSession

if TYPE_CHECKING:
    from lgsp.adapters.national_axis.client import AxisClient

FIXTURES = Path(__file__).resolve().parents[1] / "edxml" / "fixtures"

# The project's edXML fixtures are sent by 000.00.00.H45 to 000.02.31.H45, 28.22.H17 and 000.00.00.H41.
PROVINCE = SimSystem("vxp.saas.45", "bí-mật-tỉnh-H45", "000.00.00.H45")
DEPARTMENT = SimSystem("vxp.saas.4531", "department-secret-31", "000.02.31.H45")
MINISTRY_CODE = "000.00.00.G22"
DIRECTORY = [("28.22.H17", "UBND xã cũ"), ("000.00.00.H41", "UBND tỉnh Nghệ An"),
             (MINISTRY_CODE, "Văn phòng Chính phủ")]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Clock:
    """A settable clock for the idempotency window (no sleeping in tests)."""

    def __init__(self, now: float = 1_704_420_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class AxisSimHandle:
    url: str
    simulator: AxisSimulator
    systems: dict[str, SimSystem]
    clock: Clock

    @property
    def faults(self) -> FaultPlan:
        return self.simulator.faults

    async def inject(self, to: str | list[str], content: bytes, **kw: Any) -> list[str]:
        """A document "from a ministry" on pending lists; the receiver docIds."""
        return await self.simulator.inject(to, content, **kw)

    def client(self, system: SimSystem = PROVINCE, **kw: Any) -> AxisClient:
        from lgsp.adapters.national_axis.client import AxisClient

        return AxisClient(self.url, system.system_id, system.secret, **kw)

    def sdk(self, system: SimSystem = PROVINCE, **kw: Any) -> SdkSession:
        return SdkSession(system.system_id, system.secret, **kw)


async def start_simulator(**kw: Any) -> tuple[AxisSimulator, Clock]:
    clock = kw.pop("clock", None) or Clock()
    sim = AxisSimulator([PROVINCE, DEPARTMENT], clock=clock, **kw)
    for code, name in DIRECTORY:
        if code not in sim.state.agencies:
            sim.add_agency(code, name)
    await sim.start("127.0.0.1", 0)
    return sim, clock


@pytest.fixture
async def axis_sim() -> AsyncIterator[AxisSimHandle]:
    sim, clock = await start_simulator()
    try:
        yield AxisSimHandle(sim.url, sim, {"province": PROVINCE, "department": DEPARTMENT}, clock)
    finally:
        await sim.stop()


@pytest.fixture
async def make_axis_sim() -> AsyncIterator[Callable[..., Awaitable[AxisSimHandle]]]:
    """Start simulators with other settings (state file, small limits); all stopped at the end."""
    started: list[AxisSimulator] = []

    async def make(**kw: Any) -> AxisSimHandle:
        sim, clock = await start_simulator(**kw)
        started.append(sim)
        return AxisSimHandle(sim.url, sim, {"province": PROVINCE, "department": DEPARTMENT}, clock)

    yield make
    for sim in started:
        await sim.stop()
