"""The working-day calendar of state agencies, for the regulation's reply periods.

The rule (Điều 15.1: answers within 5 working days of a complete request), made precise the way
the Civil Code counts a period in days (Art. 147: the day of the event is not counted):

* A day is a working day unless it is a Saturday or Sunday or a public holiday; a weekend day
  declared a make-up working day ("ngày làm bù") is a working day.
* The day a request became complete, taken in Vietnam time (UTC+7, no daylight saving), is day 0
  and never counts, whatever the hour and whether or not it is itself a working day.
* The due date is the n-th working day after it: the reply is on time until that day ends
  (`deadline` is the first instant after it).

So a request completed on a Friday evening, a Saturday or a Sunday is due on the Friday after
(Monday counts 1). Holidays and make-up days come from `registration.holidays` and
`registration.make_up_working_days`; a year with none configured uses the Labour Code's holidays
(Art. 112) as the `holidays` package computes them, so the calendar is never weekends-only by
omission.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

import holidays as holiday_tables

if TYPE_CHECKING:
    from lgsp.core.config import RegistrationConfig

VIETNAM_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")

# Far enough for any reply period; a larger count is a caller's mistake (and would loop for long).
MAX_WORKING_DAYS = 3660


def _plain_date(value: object, name: str) -> dt.date:
    # datetime is a subclass of date: a moment passed here would silently lose its time zone.
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise TypeError(f"{name} must be a date (a moment goes through local_date first), got {value!r}")
    return value


def local_date(moment: dt.datetime) -> dt.date:
    """The date in Vietnam of an aware moment (23:30 UTC on a Sunday is Monday in Vietnam)."""
    if not isinstance(moment, dt.datetime):
        raise TypeError(f"expected a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a moment without a time zone is ambiguous; give it one (UTC or Vietnam time)")
    return moment.astimezone(VIETNAM_TZ).date()


class WorkingCalendar:
    """Weekends, configured holidays and make-up days; the Labour Code's holidays for other years."""

    def __init__(self, holidays: Iterable[dt.date | tuple[dt.date, dt.date]] = (),
                 make_up_days: Iterable[dt.date] = (), *, reply_working_days: int = 5) -> None:
        off: set[dt.date] = set()
        for item in holidays:
            if isinstance(item, tuple):
                first, last = (_plain_date(d, "a holiday") for d in item)
                if last < first:
                    raise ValueError(f"holiday range ends before it starts: {first}..{last}")
                off.update(first + dt.timedelta(days=i) for i in range((last - first).days + 1))
            else:
                off.add(_plain_date(item, "a holiday"))
        self._holidays = frozenset(off)
        self._make_up = frozenset(_plain_date(d, "a make-up day") for d in make_up_days)
        clash = sorted(self._make_up & self._holidays)
        if clash:
            raise ValueError(f"days both holiday and make-up working day: {', '.join(map(str, clash))}")
        self.configured_years = frozenset(d.year for d in self._holidays)
        if reply_working_days < 1:
            raise ValueError("reply_working_days must be at least 1")
        self.reply_working_days = reply_working_days
        self._fallback: dict[int, frozenset[dt.date]] = {}

    @classmethod
    def from_config(cls, registration: RegistrationConfig) -> WorkingCalendar:
        return cls(((s.first, s.last) for s in registration.holidays), registration.make_up_working_days,
                   reply_working_days=registration.reply_working_days)

    def is_holiday(self, day: dt.date) -> bool:
        day = _plain_date(day, "day")
        if day.year in self.configured_years:
            return day in self._holidays
        return day in self._labour_code_holidays(day.year)

    def _labour_code_holidays(self, year: int) -> frozenset[dt.date]:
        if year not in self._fallback:
            table = holiday_tables.country_holidays("VN", years=year)
            self._fallback[year] = frozenset(d for d in table if d.year == year)
        return self._fallback[year]

    def is_working_day(self, day: dt.date) -> bool:
        day = _plain_date(day, "day")
        if day in self._make_up:
            return True
        return day.weekday() < 5 and not self.is_holiday(day)

    def add_working_days(self, start: dt.date, n: int) -> dt.date:
        """The n-th working day after `start` (`start` itself never counts); `start` for n = 0."""
        start = _plain_date(start, "start")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_WORKING_DAYS:
            raise ValueError(f"n must be an integer from 0 to {MAX_WORKING_DAYS}, got {n!r}")
        day = start
        while n:
            day += dt.timedelta(days=1)
            if self.is_working_day(day):
                n -= 1
        return day

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        """Working days after `a` up to and including `b`; negative (the same count) when b is before a.

        So `working_days_between(a, add_working_days(a, n)) == n`, and a reply sent on day `b` to a
        request completed on day `a` is on time while this is at most the reply period."""
        a, b = _plain_date(a, "a"), _plain_date(b, "b")
        if b < a:
            return -self.working_days_between(b, a)
        return sum(1 for i in range(1, (b - a).days + 1) if self.is_working_day(a + dt.timedelta(days=i)))

    def due_date(self, completed: dt.datetime | dt.date, working_days: int | None = None) -> dt.date:
        """The last day to answer a request that became complete at `completed` (an aware moment, or
        its date in Vietnam)."""
        day = local_date(completed) if isinstance(completed, dt.datetime) else completed
        return self.add_working_days(day, self.reply_working_days if working_days is None else working_days)

    def deadline(self, completed: dt.datetime | dt.date, working_days: int | None = None) -> dt.datetime:
        """The first moment (Vietnam time) at which the answer is late: midnight after the due date."""
        due = self.due_date(completed, working_days)
        return dt.datetime.combine(due + dt.timedelta(days=1), dt.time(), tzinfo=VIETNAM_TZ)
