"""The hub's one notion of "now", injectable so tests move time instead of waiting for it.

Every time-based rule of the hub reads the same clock: presence windows and sweeps, offline
reports, packet expiry and transfer-link lifetimes, push retries and their deadlines, sessions,
nonces (the replay window) and stream tickets, and the default periods of `GET /v1/presence`,
`GET /v1/stats` and the console's connection and report pages. `Hub(config, clock=...)` hands it to each of them;
the default is `SystemClock`. A test passes a `ManualClock` and calls `advance(seconds)`: the next
housekeeping round, queue poll or request then sees the later time, with no sleep.

Only rules are driven by the clock. How often background loops run (`_idle`, poll intervals) and
how long network I/O may take (timeouts, stalled uploads) stay in real time: they are about the
machine, not about the calendar.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """What the hub asks of a clock: the current moment, aware and in UTC."""

    def now(self) -> datetime:
        raise NotImplementedError

    def __call__(self) -> datetime:
        """A clock is also the `Callable[[], datetime]` the services take as their `clock`."""
        return self.now()


class SystemClock(Clock):
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock(Clock):
    """A clock that moves only when told to (tests): starts at the real time, or at `start`."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by `seconds` (never back: the hub's rules assume time does not reverse)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        return self._now

    def catch_up(self) -> datetime:
        """Move forward by the real time elapsed since this clock was made, if it is behind it.

        Rows written with the machine's time (e.g. a unit's `created_at`) can then never lie in
        this clock's future.
        """
        real = datetime.now(UTC)
        if real > self._now:
            self._now = real
        return self._now


#: The default of services built outside a hub (tests of one service, tools).
SYSTEM_CLOCK = SystemClock()
