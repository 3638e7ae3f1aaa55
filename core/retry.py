"""When to try a failed push again: exponential backoff with jitter and a cap, Retry-After honoured.

The numbers come from `delivery.retry` (YAML); which failures are retried at all is the adapter's
PushFailure.retryable (see core/push.py); per-priority attempt and age limits are applied by the
engine (core/engine.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

#: A receiver's Retry-After is honoured up to 30 days: beyond that the delivery's age limit ends it
#: anyway, and a larger value (or a date in year 9999) would overflow the clock arithmetic.
MAX_RETRY_AFTER_SECONDS = 30 * 86400.0


def backoff_bounds(attempt: int, retry: Any) -> tuple[float, float]:
    """(shortest, longest) wait after the `attempt`-th failed attempt (1-based), before Retry-After."""
    try:
        grown = retry.base_delay_seconds * retry.factor ** max(0, attempt - 1)
    except OverflowError:  # after some hundreds of attempts: long past the cap
        grown = math.inf
    full = min(retry.max_delay_seconds, grown)
    return full * (1.0 - retry.jitter), full


def next_delay(attempt: int, retry: Any, retry_after: float | None = None,
               rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempt`-th failed attempt.

    Jitter takes a random share off the full wait, so destinations that fail together (a network
    cut) are not all retried in the same instant. A receiver's Retry-After is a floor: we never
    come back sooner than it asked.
    """
    low, full = backoff_bounds(attempt, retry)
    delay = low + (full - low) * rand()
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, MAX_RETRY_AFTER_SECONDS)
    return delay
