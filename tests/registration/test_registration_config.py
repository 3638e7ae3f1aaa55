"""The `registration:` settings: dates, ranges, make-up days, approvers and the operator's contact
details are checked on load, each mistake named by key path and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from lgsp.core.config import Config, ConfigError, DateSpan, load_config


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the config messages' English wording (tests/test_i18n.py: Vietnamese by default)."""
    monkeypatch.setenv("LGSP_LANG", "en")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def issues_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env or {})
    return [str(i) for i in err.value.issues]


def test_defaults_name_no_province() -> None:
    reg = Config().registration
    assert (reg.province, reg.place, reg.centre.name, reg.decision.number, reg.decision.issued_on) == \
        ("", "", "", "", None)
    assert reg.reply_working_days == 5
    assert (reg.approvers.form_02, reg.approvers.form_04, reg.approvers.form_05, reg.approvers.form_07) == \
        ("department", "centre", "centre", "department")


def test_dates_and_ranges_are_read(tmp_path: Path) -> None:
    p = write(tmp_path, """
registration:
  province: tỉnh Đồng Nai
  decision:
    number: 12/2025/QĐ-UBND
    issued_on: "2025-03-05"
  holidays:
    - 2030-01-01
    - "2030-02-01..2030-02-08"
    - 2030-09-02..2030-09-03
  make_up_working_days: [2030-01-05]
""")
    reg = load_config(p, env={}).registration
    assert reg.province == "tỉnh Đồng Nai"
    assert reg.decision.issued_on == dt.date(2025, 3, 5)
    assert reg.holidays == [DateSpan(dt.date(2030, 1, 1), dt.date(2030, 1, 1)),
                            DateSpan(dt.date(2030, 2, 1), dt.date(2030, 2, 8)),
                            DateSpan(dt.date(2030, 9, 2), dt.date(2030, 9, 3))]
    assert reg.holidays[1].days()[-1] == dt.date(2030, 2, 8) and len(reg.holidays[1].days()) == 8
    assert reg.make_up_working_days == [dt.date(2030, 1, 5)]


def test_bad_dates_name_the_item_and_its_line(tmp_path: Path) -> None:
    p = write(tmp_path, """registration:
  holidays:
    - 2030-01-01
    - 2030-02-30
    - 2030-02-08..2030-02-01
    - 2030-01-01..2030-03-01
    - Tết
    - 2030-01-01 10:00:00
    - 2030-01-01..
    - 17
  decision:
    issued_on: 2025-13-01
""")
    found = issues_of(p)
    expected = [
        (4, "registration.holidays[1]", "2030-02-30 is not a day of the calendar"),
        (5, "registration.holidays[2]", "the range ends before it starts"),
        (6, "registration.holidays[3]", "more than 31 days"),
        (7, "registration.holidays[4]", "must be a date written YYYY-MM-DD, got 'Tết'"),
        (8, "registration.holidays[5]", "must be a date written YYYY-MM-DD, got '2030-01-01 10:00:00'"),
        (9, "registration.holidays[6]", "must be a date written YYYY-MM-DD, got ''"),
        (10, "registration.holidays[7]", "must be a date (YYYY-MM-DD) or a range"),
        (12, "registration.decision.issued_on", "2025-13-01 is not a day of the calendar"),
    ]
    assert len(found) == len(expected), found
    for line, path, text in expected:
        assert any(f.startswith(f"{p}:{line}: {path}: ") and text in f for f in found), (path, found)


def test_make_up_days_must_be_weekend_days_that_are_not_holidays(tmp_path: Path) -> None:
    p = write(tmp_path, """registration:
  holidays:
    - 2030-02-01..2030-02-10
  make_up_working_days:
    - 2030-01-05
    - 2030-01-07
    - 2030-02-09
""")
    assert issues_of(p) == [
        f"{p}:6: registration.make_up_working_days[1]: 2030-01-07 is a weekday; only a Saturday or Sunday can "
        "be made a working day",
        f"{p}:7: registration.make_up_working_days[2]: 2030-02-09 is also listed in holidays",
    ]


def test_identity_approvers_and_period_are_checked(tmp_path: Path) -> None:
    p = write(tmp_path, """registration:
  reply_working_days: 0
  department:
    abbreviation: SỞ KH
    email: skhcn-at-example
    phone: "12345"
    name: "  "
  centre:
    address: "Số 2\\tđường"
  approvers:
    form_02: sở
    form_09: department
""")
    found = issues_of(p)
    expected = {
        "registration.reply_working_days": (2, "must be between 1 and 60"),
        "registration.department.abbreviation": (4, "letters and digits joined by hyphens"),
        "registration.department.email": (5, "must be empty or an e-mail address"),
        "registration.department.phone": (6, "telephone number"),
        "registration.department.name": (7, "must not be empty"),
        "registration.centre.address": (9, "one line of printable text"),
        "registration.approvers.form_02": (11, "must be one of 'department', 'centre'"),
        "registration.approvers.form_09": (12, "unknown key (did you mean 'form_07'?)"),
    }
    assert len(found) == len(expected), found
    for key, (line, text) in expected.items():
        assert any(f.startswith(f"{p}:{line}: {key}: ") and text in f for f in found), (key, found)


def test_good_contact_details_are_taken(tmp_path: Path) -> None:
    p = write(tmp_path, """registration:
  centre:
    name: Trung tâm Công nghệ thông tin và Truyền thông
    abbreviation: TTCNTT
    phone: (0251) 3822 123
    email: ttcntt@example.gov.vn
  approvers:
    form_04: department
""")
    reg = load_config(p, env={}).registration
    assert reg.centre.phone == "(0251) 3822 123" and reg.centre.abbreviation == "TTCNTT"
    assert reg.approvers.form_04 == "department"


def test_environment_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "{}\n"), env={
        "LGSP_REGISTRATION_HOLIDAYS": "[2030-01-01, 2030-02-01..2030-02-03]",
        "LGSP_REGISTRATION_DECISION_ISSUED_ON": "2025-03-05",
        "LGSP_REGISTRATION_PLACE": "Biên Hòa"})
    assert cfg.registration.holidays == [DateSpan(dt.date(2030, 1, 1), dt.date(2030, 1, 1)),
                                         DateSpan(dt.date(2030, 2, 1), dt.date(2030, 2, 3))]
    assert cfg.registration.decision.issued_on == dt.date(2025, 3, 5)
    assert cfg.registration.place == "Biên Hòa"
    found = issues_of(write(tmp_path, "{}\n"), env={"LGSP_REGISTRATION_MAKE_UP_WORKING_DAYS": "[2030-02-30]"})
    assert found == ["environment variable LGSP_REGISTRATION_MAKE_UP_WORKING_DAYS: "
                     "registration.make_up_working_days[0]: 2030-02-30 is not a day of the calendar"]
