"""The RabbitMQ baseline: what an operations team would otherwise reach for to move messages reliably.

Same payloads, same pairs: each source publishes persistent messages to its destination's durable
queue with publisher confirms, each destination consumes with manual acks and hashes what it got
(as the hub's destination does). Closed loop (one message in flight per pair) for throughput, a
fixed offered rate for latency. Skipped, and said so, when no broker answers on localhost:5672.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import fractional_rate, percentile, wait_until

URL = "amqp://guest:guest@127.0.0.1:5672/"
now = time.perf_counter


def available(host: str = "127.0.0.1", port: int = 5672) -> str | None:
    """None when a broker answers, else why not (for the 'skipped' line)."""
    try:
        import aio_pika  # noqa: F401
    except ImportError:
        return "aio-pika is not installed (pip install -e '.[bench]')"
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return None
    except OSError as exc:
        return f"no RabbitMQ broker on {host}:{port} ({exc.strerror or exc})"


async def server_version() -> str | None:
    import aio_pika

    with contextlib.suppress(Exception):
        conn = await aio_pika.connect(URL, timeout=5)
        try:
            props = conn.transport.connection.server_properties  # type: ignore[union-attr]
            version = props.get("version")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            await conn.close()
    return None


@dataclass
class _Pair:
    queue: str
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _pairs(n: int) -> AsyncIterator[tuple[list[_Pair], list[Any]]]:
    """n producer/consumer connection pairs with a fresh durable queue each; queues deleted after."""
    import aio_pika

    run = uuid.uuid4().hex[:8]
    pairs: list[_Pair] = []
    publishers: list[Any] = []
    conns: list[Any] = []
    queues: list[tuple[Any, str]] = []
    try:
        for i in range(n):
            pair = _Pair(queue=f"lgsp-bench-{run}-{i}")
            producer = await aio_pika.connect(URL, timeout=10)
            consumer = await aio_pika.connect(URL, timeout=10)
            conns += [producer, consumer]
            pch = await producer.channel(publisher_confirms=True)
            cch = await consumer.channel()
            await cch.set_qos(prefetch_count=64)
            queue = await cch.declare_queue(pair.queue, durable=True)

            async def on_message(message: Any, pair: _Pair = pair) -> None:
                got = now()
                mid = str(message.message_id)
                pair.received[mid] = got
                expected = message.headers.get("sha256") if message.headers else None
                if hashlib.sha256(message.body).hexdigest() != expected:
                    pair.errors.append(f"hash mismatch on {mid}")
                await message.ack()
                waiter = pair.waiters.pop(mid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now())

            queues.append((queue, await queue.consume(on_message, no_ack=False)))
            pairs.append(pair)
            publishers.append(pch)
        yield pairs, publishers
    finally:
        for queue, tag in queues:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
                await queue.delete(if_unused=False, if_empty=False)
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()


async def _publish(channel: Any, pair: _Pair, data: bytes, sha: str) -> tuple[str, float, asyncio.Future[float]]:
    import aio_pika

    mid = uuid.uuid4().hex
    waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    pair.waiters[mid] = waiter
    t0 = now()
    await channel.default_exchange.publish(
        aio_pika.Message(data, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=mid,
                         headers={"sha256": sha}),
        routing_key=pair.queue)  # returns once the broker confirmed the message
    return mid, t0, waiter


async def closed_loop(n: int, data: bytes, *, warmup: float, window: float, max_window: float | None = None,
                      min_completions: int = 0, stall_s: float = 60.0) -> dict[str, Any]:
    sha = hashlib.sha256(data).hexdigest()
    done: list[float] = []
    spans: list[tuple[float, float]] = []
    per_pair = [0] * n
    failures: list[str] = []
    stop = asyncio.Event()
    async with _pairs(n) as (pairs, channels):
        async def loop(i: int) -> None:
            while not stop.is_set():
                try:
                    _, start, waiter = await _publish(channels[i], pairs[i], data, sha)
                    end = await asyncio.wait_for(waiter, stall_s)
                    done.append(end)
                    spans.append((start, end))
                    per_pair[i] += 1
                except Exception as exc:
                    failures.append(repr(exc))
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(loop(i)) for i in range(n)]
        started = now()
        await asyncio.sleep(warmup)
        await wait_until(lambda: min(per_pair) > 0, started + stall_s)
        t0 = now()
        await asyncio.sleep(window)
        await wait_until(lambda: sum(1 for t in done if t >= t0) >= min_completions, t0 + (max_window or window))
        t1 = now()
        stop.set()
        await asyncio.wait(tasks, timeout=stall_s)
        errors = failures + [e for p in pairs for e in p.errors]
    count = sum(1 for t in done if t0 <= t < t1)
    return {"value": fractional_rate(spans, t0, t1), "completed": count, "window_s": t1 - t0,
            "whole_completions_rate": count / (t1 - t0), "errors": len(errors),
            "error_sample": errors[:3]}


async def open_loop(n: int, data: bytes, *, rate: float, duration: float, drain_timeout: float = 30.0
                    ) -> dict[str, Any]:
    """Publish at a fixed rate; publish → consumer got it, and publish → consumer acked."""
    sha = hashlib.sha256(data).hexdigest()
    notify: list[float] = []
    delivered: list[float] = []
    failures: list[str] = []
    async with _pairs(n) as (pairs, channels):
        async def one(i: int) -> None:
            try:
                mid, t0, waiter = await _publish(channels[i], pairs[i], data, sha)
                acked = await asyncio.wait_for(waiter, drain_timeout)
                notify.append((pairs[i].received[mid] - t0) * 1000)
                delivered.append((acked - t0) * 1000)
            except Exception as exc:
                failures.append(repr(exc))

        total = max(1, int(rate * duration))
        tasks = []
        start = now()
        for k in range(total):
            delay = start + k / rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k % n)))
        await asyncio.wait(tasks, timeout=drain_timeout)
        end = now()
        errors = failures + [e for p in pairs for e in p.errors]
    return {"offered_rate": rate, "sent": total, "completed": len(delivered),
            "achieved_rate": len(delivered) / (end - start), "errors": len(errors), "error_sample": errors[:3],
            "notify_ms": _pcts(notify), "create_to_delivered_ms": _pcts(delivered)}


def _pcts(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else None}
