"""Every injected fault reaches the client as the right AxisError, retryable or not, and retries of
operations whose answer was lost are safe (sendEdoc idempotent, updateStatus idempotent)."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from lgsp.adapters.national_axis import AxisError, TransportCode
from lgsp.adapters.national_axis.faults import FaultKind, FaultPlan
from lgsp.adapters.national_axis.protocol import AxisCode, Operation

from .conftest import DEPARTMENT, MINISTRY_CODE, PROVINCE, AxisSimHandle, fixture_bytes
from .sdk_requests import parse_like_sdk, send_raw

EDOC = fixture_bytes("edoc_new.edxml")


async def fails(coro: Awaitable[object], code: str, *, retryable: bool) -> AxisError:
    with pytest.raises(AxisError) as info:
        await coro
    assert (info.value.code, info.value.retryable) == (code, retryable), info.value
    return info.value


@pytest.mark.parametrize("status", [500, 503])
async def test_http_errors_are_retryable(axis_sim: AxisSimHandle, status: int) -> None:
    axis_sim.faults.inject(Operation.GET_RECEIVED_EDOC_LIST, FaultKind.HTTP_ERROR, status=status)
    async with axis_sim.client() as axis:
        error = await fails(axis.received_list(), TransportCode.HTTP_STATUS, retryable=True)
        assert error.http_status == status
        assert await axis.received_list() == []  # one call only


async def test_a_delay_beyond_the_timeout_is_a_retryable_timeout_and_nothing_happened(
        axis_sim: AxisSimHandle) -> None:
    axis_sim.faults.inject(Operation.SEND_EDOC, FaultKind.DELAY)
    async with axis_sim.client(timeout=0.3) as axis:
        await fails(axis.send_edoc(EDOC, PROVINCE.agency_code), TransportCode.TIMEOUT, retryable=True)
        assert axis_sim.simulator.sent() == []
        doc_id = await axis.send_edoc(EDOC, PROVINCE.agency_code)
    assert [d.doc_id for d in axis_sim.simulator.sent()] == [doc_id]


async def test_bad_signature_answers_are_not_retryable(axis_sim: AxisSimHandle) -> None:
    axis_sim.faults.inject(Operation.UPDATE_STATUS, FaultKind.BAD_SIGNATURE)
    [doc_id] = await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE)
    async with axis_sim.client() as axis:
        await fails(axis.update_status(doc_id, "done"), AxisCode.BAD_SIGNATURE, retryable=False)
    assert axis_sim.simulator.pending(PROVINCE.agency_code) == [doc_id]


@pytest.mark.parametrize(("code", "retryable"), [(AxisCode.NOT_FOUND, False), (AxisCode.UNAVAILABLE, True)])
async def test_a_document_that_cannot_be_fetched(axis_sim: AxisSimHandle, tmp_path: object, code: str,
                                                 retryable: bool) -> None:
    [doc_id] = await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE)
    axis_sim.faults.inject(Operation.GET_EDOC, FaultKind.FETCH_FAIL, code=code)
    axis_sim.faults.inject(Operation.DOWNLOAD_EDOC, FaultKind.FETCH_FAIL, code=code)
    async with axis_sim.client() as axis:
        await fails(axis.get_edoc(doc_id), code, retryable=retryable)
        await fails(axis.download_edoc(doc_id, f"{tmp_path}/doc.edxml"), code, retryable=retryable)
        # The receive loop then reports fail, which takes the item off the list.
        await axis.update_status(doc_id, "fail")
        assert await axis.received_list() == []


async def test_duplicates_in_the_received_list_reach_the_caller_once(axis_sim: AxisSimHandle) -> None:
    ids = [*await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE),
           *await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE)]
    axis_sim.faults.inject(Operation.GET_RECEIVED_EDOC_LIST, FaultKind.DUPLICATES, times=2)
    [raw] = await send_raw(axis_sim.url, axis_sim.sdk(PROVINCE).received_list())
    assert [row["docId"] for row in parse_like_sdk("getReceivedEdocList", raw)["data"]] == [
        ids[0], ids[0], ids[1], ids[1]]
    async with axis_sim.client() as axis:
        assert [item.doc_id for item in await axis.received_list()] == ids


async def test_an_unparsable_answer_is_retryable(axis_sim: AxisSimHandle) -> None:
    axis_sim.faults.inject(Operation.GET_AGENCIES_LIST, FaultKind.UNPARSABLE)
    async with axis_sim.client() as axis:
        await fails(axis.agencies(), TransportCode.UNPARSABLE, retryable=True)
        assert {a.code for a in await axis.agencies()} >= {MINISTRY_CODE}


async def test_a_lost_send_answer_is_retried_without_a_second_document(axis_sim: AxisSimHandle) -> None:
    axis_sim.faults.inject(Operation.SEND_EDOC, FaultKind.HTTP_ERROR, after=True)
    async with axis_sim.client() as axis:
        await fails(axis.send_edoc(EDOC, PROVINCE.agency_code), TransportCode.HTTP_STATUS, retryable=True)
        [stored] = axis_sim.simulator.sent()  # it did happen
        assert await axis.send_edoc(EDOC, PROVINCE.agency_code) == stored.doc_id
    assert len(axis_sim.simulator.sent()) == 1
    assert len(axis_sim.simulator.pending(DEPARTMENT.agency_code)) == 1


async def test_a_status_update_whose_answer_timed_out_can_be_repeated(axis_sim: AxisSimHandle) -> None:
    [doc_id] = await axis_sim.inject(PROVINCE.agency_code, EDOC, from_code=MINISTRY_CODE)
    axis_sim.faults.inject(Operation.UPDATE_STATUS, FaultKind.DELAY, after=True)
    async with axis_sim.client(timeout=0.3) as axis:
        await fails(axis.update_status(doc_id, "done"), TransportCode.TIMEOUT, retryable=True)
        assert axis_sim.simulator.pending(PROVINCE.agency_code) == []
        await axis.update_status(doc_id, "done")


async def test_faults_count_down_and_clear(axis_sim: AxisSimHandle) -> None:
    axis_sim.faults.inject(Operation.COUNT_RECEIVE_EDOC, FaultKind.UNPARSABLE, times=2)
    axis_sim.faults.inject(Operation.GET_SYNCHRONIZE_UNIT, FaultKind.HTTP_ERROR, times=None)
    async with axis_sim.client() as axis:
        for _ in range(2):
            await fails(axis.count_received(), TransportCode.UNPARSABLE, retryable=True)
        assert await axis.count_received() == 0
        for _ in range(3):
            await fails(axis.synchronize_units(), TransportCode.HTTP_STATUS, retryable=True)
        axis_sim.faults.clear(Operation.GET_SYNCHRONIZE_UNIT)
        assert len(await axis.synchronize_units()) == 3
    assert axis_sim.faults.fired.count((Operation.GET_SYNCHRONIZE_UNIT, FaultKind.HTTP_ERROR)) == 3


def test_fault_plans_refuse_nonsense() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="5xx"):
        plan.inject(Operation.GET_EDOC, FaultKind.HTTP_ERROR, status=404)
    with pytest.raises(ValueError, match="times"):
        plan.inject(Operation.GET_EDOC, FaultKind.DELAY, times=0)
    with pytest.raises(ValueError, match="getEverything"):
        plan.inject("getEverything", FaultKind.DELAY)
    with pytest.raises(ValueError, match="explode"):
        plan.inject(Operation.GET_EDOC, "explode")
    plan.inject(Operation.GET_EDOC, FaultKind.DELAY)
    plan.clear()
    assert plan.take(Operation.GET_EDOC) is None


async def test_stopping_cuts_a_pending_delay_short(axis_sim: AxisSimHandle) -> None:
    axis_sim.faults.inject(Operation.GET_AGENCIES_LIST, FaultKind.DELAY, seconds=3600)
    async with axis_sim.client(timeout=0.3) as axis:
        await fails(axis.agencies(), TransportCode.TIMEOUT, retryable=True)
    axis_sim.faults.inject(Operation.SEND_EDOC, FaultKind.DELAY, seconds=3600)
    async with axis_sim.client(timeout=0.3) as axis:
        await fails(axis.send_edoc(EDOC, PROVINCE.agency_code), TransportCode.TIMEOUT, retryable=True)
    await axis_sim.simulator.stop()  # returns although handlers still wait on their delays
    assert axis_sim.simulator.sent() == []  # the delayed upload was not processed during shutdown
    async with axis_sim.client() as axis:
        await fails(axis.agencies(), TransportCode.CONNECT, retryable=True)
