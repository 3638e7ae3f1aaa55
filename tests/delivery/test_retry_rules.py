"""The backoff and Retry-After arithmetic on its own: bounded whatever the attempt or the receiver says."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lgsp.core.push import http_failure, parse_retry_after
from lgsp.core.retry import MAX_RETRY_AFTER_SECONDS, backoff_bounds, next_delay

RETRY = SimpleNamespace(base_delay_seconds=5.0, factor=2.0, max_delay_seconds=3600.0, jitter=0.25)


@pytest.mark.parametrize(("attempt", "full"), [(1, 5.0), (2, 10.0), (4, 40.0), (11, 3600.0)])
def test_backoff_grows_then_holds_at_the_cap(attempt: int, full: float) -> None:
    assert backoff_bounds(attempt, RETRY) == (full * 0.75, full)


@pytest.mark.parametrize("attempt", [1025, 5000, 10**6])
def test_backoff_past_float_range_is_the_cap(attempt: int) -> None:
    assert backoff_bounds(attempt, RETRY) == (2700.0, 3600.0)
    assert 2700.0 <= next_delay(attempt, RETRY) <= 3600.0


def test_retry_after_is_a_floor_up_to_its_own_cap() -> None:
    assert next_delay(1, RETRY, retry_after=120.0, rand=lambda: 0.0) == 120.0
    assert next_delay(1, RETRY, retry_after=1.0, rand=lambda: 1.0) == 5.0
    assert next_delay(1, RETRY, retry_after=float("inf")) == MAX_RETRY_AFTER_SECONDS
    assert next_delay(1, RETRY, retry_after=parse_retry_after("9" * 400)) == MAX_RETRY_AFTER_SECONDS


def test_retry_after_forms() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("soon") is None and parse_retry_after("-5") is None and parse_retry_after(None) is None
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") > 7000 * 365 * 86400
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now


@pytest.mark.parametrize(("code", "retried"), [(500, True), (503, True), (408, True), (425, True), (429, True),
                                               (400, False), (401, False), (404, False), (413, False)])
def test_which_answers_are_retried(code: int, retried: bool) -> None:
    failure = http_failure(code, "x", retry_after="3")
    assert failure.retryable is retried
    assert failure.retry_after == (3.0 if retried else None)
