"""What the HTTP layer's per-request pieces cost, each timed on its own in this process:

    python -m bench.request_costs
    PYTHONPATH=/path/with/lgsp-of-another-commit python -m bench.request_costs   # the same pieces, before

Each figure is the best of several repetitions of a tight loop (µs per call), which a shared
machine disturbs far less than a whole exchange's CPU: read it as a before/after comparison of
the same piece on the same machine, not as an absolute. The pieces are those every signed request
pays in core/signing.py, core/logs.py, core/web.py and core/metrics.py (docs/performance.md,
saving 6); how many times per request each runs is counted there with cProfile.
"""

from __future__ import annotations

import asyncio
import io
import logging
import timeit
from collections.abc import Callable

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry, Counter, Histogram

from lgsp.core import logs
from lgsp.core import web as hub_web
from lgsp.core.signing import parse_date


def best(fn: Callable[[], object], number: int = 20_000, repeat: int = 9) -> float:
    """µs per call, the best of `repeat` loops of `number` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def access_line() -> float:
    """One access line through AccessLogger, the JSON formatter and the context filter (into memory)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("lgsp.bench.access")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    request = make_mocked_request("GET", "/v1/packets/0f8e/content")
    response = web.Response(body=b"x" * 100)
    access = hub_web.AccessLogger(logger, "")

    def one() -> None:
        access.log(request, response, 0.0031)
        stream.seek(0)
        stream.truncate()

    try:
        return best(one, 5_000)
    finally:
        logger.removeHandler(handler)


def request_series() -> tuple[float, float]:
    """A request's two series through `labels()`, and through series looked up in a dict."""
    registry = CollectorRegistry()
    requests = Counter("r", "r", ["route", "method", "status"], registry=registry)
    seconds = Histogram("s", "s", ["route"], registry=registry)
    route = "/v1/packets/{id}/content"

    def labels() -> None:
        requests.labels(route, "GET", "200").inc()
        seconds.labels(route).observe(0.01)

    series = {(route, "GET", 200): (requests.labels(route, "GET", "200"), seconds.labels(route))}

    def cached() -> None:
        counter, histogram = series[(route, "GET", 200)]
        counter.inc()
        histogram.observe(0.01)

    return best(labels), best(cached)


async def two_timers() -> float:
    """Two timers scheduled and cancelled: what the connection guard did per request before saving 6."""
    loop = asyncio.get_running_loop()

    def two() -> None:
        loop.call_later(10, print).cancel()
        loop.call_later(60, print).cancel()

    return best(two, 5_000)


def main() -> None:
    print(f"parse_date (X-LGSP-Date)        {best(lambda: parse_date('2026-12-06T08:58:03Z')):7.2f} µs")
    print(f"new_request_id                  {best(logs.new_request_id):7.2f} µs")
    print(f"access line (JSON)              {access_line():7.2f} µs")
    labels, cached = request_series()
    print(f"request series via labels()     {labels:7.2f} µs")
    print(f"request series kept in a dict   {cached:7.2f} µs")
    print(f"two timers scheduled, cancelled {asyncio.run(two_timers()):7.2f} µs")


if __name__ == "__main__":
    main()
