"""The working-day calendar: the reply period's edges (Friday evening, Tết, holidays, make-up
Saturdays, Vietnam's time zone) with the shipped 2026–2027 holidays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lgsp.core.config import load_config
from lgsp.core.registration.workdays import VIETNAM_TZ, WorkingCalendar, local_date

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "lgsp.yaml"
UTC = dt.UTC
D = dt.date


SHIPPED_CALENDAR = WorkingCalendar.from_config(load_config(SHIPPED, env={}).registration)


@pytest.fixture
def cal() -> WorkingCalendar:
    return SHIPPED_CALENDAR


def vn(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=VIETNAM_TZ)


def test_reply_period_comes_from_the_configuration(cal: WorkingCalendar) -> None:
    assert cal.reply_working_days == 5


def test_a_request_completed_on_a_friday_evening_or_the_weekend_is_due_the_next_friday(cal: WorkingCalendar) -> None:
    # Friday 6 March 2026 is day 0 whatever the hour; Monday 9 counts 1, Friday 13 counts 5.
    assert cal.due_date(vn(2026, 3, 6, 7, 0)) == D(2026, 3, 13)
    assert cal.due_date(vn(2026, 3, 6, 21, 45)) == D(2026, 3, 13)
    assert cal.due_date(vn(2026, 3, 7, 10, 0)) == D(2026, 3, 13)   # Saturday
    assert cal.due_date(vn(2026, 3, 8, 23, 59)) == D(2026, 3, 13)  # Sunday, last minute
    # A Thursday request is due the Thursday after (the weekend does not count).
    assert cal.due_date(vn(2026, 3, 5, 9, 0)) == D(2026, 3, 12)


def test_vietnam_time_decides_the_day(cal: WorkingCalendar) -> None:
    sunday_late_utc = dt.datetime(2026, 3, 8, 23, 30, tzinfo=UTC)  # Monday 06:30 in Vietnam
    assert local_date(sunday_late_utc) == D(2026, 3, 9)
    assert cal.due_date(sunday_late_utc) == D(2026, 3, 16)
    sunday_evening_utc = dt.datetime(2026, 3, 8, 16, 59, tzinfo=UTC)  # Sunday 23:59 in Vietnam
    assert cal.due_date(sunday_evening_utc) == D(2026, 3, 13)
    # Friday 17:00 UTC is already Saturday in Vietnam: the same due date as Friday evening.
    assert cal.due_date(dt.datetime(2026, 3, 6, 17, 0, tzinfo=UTC)) == D(2026, 3, 13)


def test_tet_2026_stops_the_clock(cal: WorkingCalendar) -> None:
    # Off from Saturday 14 to Sunday 22 February 2026 (27 tháng Chạp to mùng 6).
    assert cal.is_working_day(D(2026, 2, 13))
    assert not any(cal.is_working_day(D(2026, 2, day)) for day in range(14, 23))
    assert cal.is_working_day(D(2026, 2, 23))
    # Completed on the last working day before Tết: Monday 23 counts 1.
    assert cal.due_date(vn(2026, 2, 13, 17, 30)) == D(2026, 2, 27)
    # Two working days before Tết, three after.
    assert cal.due_date(vn(2026, 2, 11, 10, 0)) == D(2026, 2, 25)
    assert cal.working_days_between(D(2026, 2, 13), D(2026, 2, 23)) == 1


def test_a_request_completed_on_a_holiday_counts_from_the_next_working_day(cal: WorkingCalendar) -> None:
    assert cal.due_date(vn(2026, 2, 17, 9, 0)) == D(2026, 2, 27)  # mùng 1 Tết
    # 30/4 (Thursday) and 1/5 (Friday) off, then the weekend: Monday 4 May counts 1.
    assert cal.due_date(vn(2026, 4, 30, 9, 0)) == D(2026, 5, 8)
    # Giỗ Tổ on Sunday 26/4 is taken on Monday 27/4.
    assert not cal.is_working_day(D(2026, 4, 27))
    # Completed Friday 24/4: only Tuesday 28, Wednesday 29, then Monday 4 to Wednesday 6 May count.
    assert cal.due_date(vn(2026, 4, 24, 9, 0)) == D(2026, 5, 6)
    assert cal.working_days_between(D(2026, 4, 24), D(2026, 5, 3)) == 2


def test_make_up_saturdays_are_working_days(cal: WorkingCalendar) -> None:
    # New Year 2026: Friday 2/1 off, Saturday 10/1 worked instead.
    assert not cal.is_working_day(D(2026, 1, 2))
    assert cal.is_working_day(D(2026, 1, 10))
    assert not cal.is_working_day(D(2026, 1, 17))  # an ordinary Saturday
    # Completed Friday 9/1: Saturday 10 counts 1, so the answer is due on Thursday 15.
    assert cal.due_date(vn(2026, 1, 9, 16, 0)) == D(2026, 1, 15)
    # Completed on the make-up Saturday itself: it is day 0, Monday counts 1.
    assert cal.due_date(vn(2026, 1, 10, 9, 0)) == D(2026, 1, 16)
    # Completed on New Year's Eve: 1/1 and 2/1 off, then the weekend.
    assert cal.due_date(vn(2025, 12, 31, 9, 0)) == D(2026, 1, 9)
    # Quốc khánh 2026: Monday 31/8 swapped with Saturday 22/8.
    assert cal.due_date(vn(2026, 8, 21, 9, 0)) == D(2026, 8, 27)
    # Completed Friday 28/8: the weekend, then 31/8, 1/9 and 2/9 off; Thursday 3/9 counts 1.
    assert cal.due_date(vn(2026, 8, 28, 9, 0)) == D(2026, 9, 9)


def test_tet_2027_from_the_labour_code(cal: WorkingCalendar) -> None:
    assert cal.is_working_day(D(2027, 2, 4))
    assert not any(cal.is_working_day(D(2027, 2, day)) for day in range(5, 12))
    assert cal.is_working_day(D(2027, 2, 12))
    assert cal.due_date(vn(2027, 2, 4, 9, 0)) == D(2027, 2, 18)


def test_deadline_is_midnight_after_the_due_date(cal: WorkingCalendar) -> None:
    deadline = cal.deadline(vn(2026, 3, 6, 20, 0))
    assert deadline == vn(2026, 3, 14, 0, 0)
    assert dt.datetime(2026, 3, 13, 16, 59, 59, tzinfo=UTC) < deadline   # 23:59:59 on the due day
    assert dt.datetime(2026, 3, 13, 17, 0, tzinfo=UTC) == deadline
    # Another period than the configured one, and a date instead of a moment.
    assert cal.due_date(D(2026, 3, 6), 1) == D(2026, 3, 9)
    assert cal.due_date(D(2026, 3, 6), 0) == D(2026, 3, 6)


def test_shipped_holidays_agree_with_the_labour_code_tables() -> None:
    """Every weekday the `holidays` package has off in 2026–2027 is off here and the reverse, but
    for the days this project knows better: Friday 2/1/2026 (swapped on 25/12/2025) and Tết 2027,
    taken here as the day before and four after (the package takes the Saturday's day on Thursday
    4/2); both are in config/lgsp.yaml's comments."""
    cal = SHIPPED_CALENDAR
    table = {d for d in holidays.country_holidays("VN", years=(2026, 2027)) if d.weekday() < 5}
    ours = {D(2026, 1, 1) + dt.timedelta(days=i) for i in range(730)}
    ours = {d for d in ours if d.weekday() < 5 and not cal.is_working_day(d)}
    assert ours - table == {D(2026, 1, 2), D(2027, 2, 11)}
    assert table - ours == {D(2027, 2, 4)}


def test_years_not_configured_use_the_labour_code() -> None:
    cal = WorkingCalendar(holidays=[D(2026, 1, 1)])
    assert cal.configured_years == {2026}
    assert not cal.is_working_day(D(2028, 1, 26))  # Tết Mậu Thân
    assert not cal.is_working_day(D(2028, 9, 4))   # Quốc khánh on Saturday 2/9, taken on Monday
    assert cal.is_working_day(D(2028, 2, 7))
    # A configured year is taken as complete: nothing is added from the tables.
    assert cal.is_working_day(D(2026, 2, 17))


@given(start=st.dates(D(2025, 12, 1), D(2028, 12, 31)), n=st.integers(0, 40))
def test_counting_forward_and_back_agree(start: dt.date, n: int) -> None:
    cal = SHIPPED_CALENDAR
    end = cal.add_working_days(start, n)
    assert cal.working_days_between(start, end) == n
    assert cal.working_days_between(end, start) == -n
    if n:
        assert cal.is_working_day(end) and end > start
        # The day before the due date is one working day short.
        assert cal.working_days_between(start, end - dt.timedelta(days=1)) == n - 1
    else:
        assert end == start


def test_bad_arguments_are_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="time zone"):
        cal.due_date(dt.datetime(2026, 3, 6, 20, 0))
    with pytest.raises(TypeError, match="must be a date"):
        cal.add_working_days(vn(2026, 3, 6, 20, 0), 5)
    with pytest.raises(TypeError, match="must be a date"):
        cal.is_working_day("2026-03-06")  # type: ignore[arg-type]
    for n in (-1, True, 1.5, 10**6):
        with pytest.raises(ValueError, match="n must be an integer"):
            cal.add_working_days(D(2026, 3, 6), n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both holiday and make-up"):
        WorkingCalendar(holidays=[(D(2026, 1, 1), D(2026, 1, 11))], make_up_days=[D(2026, 1, 10)])
    with pytest.raises(ValueError, match="ends before it starts"):
        WorkingCalendar(holidays=[(D(2026, 1, 5), D(2026, 1, 1))])
    with pytest.raises(ValueError, match="at least 1"):
        WorkingCalendar(reply_working_days=0)
