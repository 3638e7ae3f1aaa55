"""A message stored as its English text (a delivery's reason and last error, an event's reason) reads in
each reader's language: `render_stored` finds the msgid it was written from (docs/i18n.md); and what an
operator meets elsewhere in the default language (the HTTP layer's own problems)."""

from __future__ import annotations

import pytest

from lgsp.cli.timeline import render_status
from lgsp.core.exchange.values import too_old_reason
from lgsp.core.hub import Hub
from lgsp.core.i18n import _FIELD, Text, _stored_patterns, render_stored, speaking

from .conftest import raw_request


def test_every_catalogue_message_reads_back_from_its_stored_text() -> None:
    """Any msgid with placeholders, filled and stored as text, is found again and rendered as the `Text`
    would be; where two msgids have the same words (only their placeholder names differ) either is right."""
    skeletons: dict[str, int] = {}
    for msgid, *_ in _stored_patterns():
        skeleton = _FIELD.sub("{}", msgid)
        skeletons[skeleton] = skeletons.get(skeleton, 0) + 1
    wrong = []
    for msgid, *_ in _stored_patterns():
        names = sorted({m.group(1) for m in _FIELD.finditer(msgid)})
        try:
            text = Text(msgid, **{n: f"<{i}>" for i, n in enumerate(names)})
        except ValueError:  # a number format ({seconds:.0f})
            text = Text(msgid, **{n: 7 + i for i, n in enumerate(names)})
        if skeletons[_FIELD.sub("{}", msgid)] > 1:
            continue
        for lang in ("vi", "en"):
            if render_stored(str(text), lang) != text.render(lang):
                wrong.append(f"{lang}: {msgid!r} → {render_stored(str(text), lang)!r}")
    assert len(_stored_patterns()) > 300
    assert not wrong, "\n".join(wrong)


def test_a_nested_delivery_reason_reads_vietnamese_by_default_and_english_on_request() -> None:
    inner = Text("{stage}: {where} refused the connection", stage=Text("connect"), where="sftp.so-a.vn:22")
    stored = str(Text("gave up after {attempts} attempts; last error: {reason}", attempts=25, reason=inner))
    assert stored == "gave up after 25 attempts; last error: connect: sftp.so-a.vn:22 refused the connection"
    assert render_stored(stored) == "ngừng sau 25 lần gửi; lỗi cuối: kết nối: sftp.so-a.vn:22 từ chối kết nối"
    with speaking("en"):
        assert render_stored(stored) == stored


def test_words_no_msgid_matches_stay_as_written() -> None:
    """A destination's own answer, an operator's free text, a library's words: never guessed at."""
    assert render_stored("HTTP 503: upstream overloaded", "vi") == "HTTP 503: upstream overloaded"
    assert render_stored("cancelled by an operator: gửi nhầm đơn vị", "vi") == "bị người vận hành hủy: gửi nhầm đơn vị"
    assert render_stored("refused by the destination: {not a field}", "vi") == \
        "đơn vị nhận từ chối: {not a field}"
    assert render_stored(None) == "" and render_stored("", "en") == ""


def test_lgsp_status_shows_stored_reasons_and_names_in_the_cli_language() -> None:
    view = {"id": "p1", "subject": "Công văn", "from": "000.00.00.H23", "state": "accepted",
            "deliveries": [{"unit": "000.00.01.H23", "state": "failed", "mode": "push",
                            "reason": "refused by the destination: HTTP 404", "updated_at": "2026-12-06T08:00:00Z"}],
            "events": [{"at": "2026-12-06T08:00:00Z", "type": "packet.cancelled", "unit": "000.00.02.H23",
                        "reason": "cancelled by the source"}]}
    with speaking("vi"):
        vietnamese = render_status(view)
    assert "đơn vị nhận từ chối: HTTP 404" in vietnamese and "bị đơn vị gửi hủy" in vietnamese
    assert "refused by" not in vietnamese and "cancelled by" not in vietnamese
    with speaking("en"):
        english = render_status(view)
    assert "refused by the destination: HTTP 404" in english and "cancelled by the source" in english


async def test_the_http_layer_s_own_problems_read_vietnamese_by_default(hub: Hub) -> None:
    """A path or method the hub does not serve: the detail is a catalogue message too, not aiohttp's
    English reason or an English sentence (API problem details follow Accept-Language)."""
    status, _, body = await raw_request(hub.url, "GET", "/khong-co")
    assert status == 404 and body["detail"] == "không có đường dẫn GET /khong-co" and body["title"] == "Không tìm thấy"
    status, _, body = await raw_request(hub.url, "GET", "/khong-co", headers={"Accept-Language": "en"})
    assert body["detail"] == "no route for GET /khong-co" and body["title"] == "Not found"
    status, _, body = await raw_request(hub.url, "DELETE", "/healthz")
    assert status == 405 and body["detail"] == "không dùng được DELETE với /healthz"


def test_a_report_names_failures_by_state_and_reason_in_its_language() -> None:
    """The statistics keep `state: stored reason`; the report's rows (console, CSV, spreadsheet) read them."""
    import datetime as dt

    from lgsp.core.reports import Report

    report = Report(unit_id="000.00.00.H23", since=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                    until=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    report.failed("cancelled: cancelled by the source", 2)
    report.failed("failed: refused by the destination: HTTP 404", 1)
    report.failed("expired", 1)
    vietnamese = {item: n for section, item, n in report.rows("vi") if section == "Lỗi theo lý do"}
    assert vietnamese == {"đã hủy: bị đơn vị gửi hủy": 2, "giao không thành công: đơn vị nhận từ chối: HTTP 404": 1,
                          "hết hạn": 1}, vietnamese
    english = {item: n for section, item, n in report.rows("en") if section == "Failures by reason"}
    assert english == {"cancelled: cancelled by the source": 2, "failed: refused by the destination: HTTP 404": 1,
                       "expired": 1}


@pytest.mark.parametrize(("seconds", "vi", "en"), [
    (3 * 86400, "chưa chuyển được trong 3 ngày (thời gian tối đa theo độ ưu tiên)",
     "not delivered within 3 days (maximum age of its priority)"),
    (6 * 3600, "chưa chuyển được trong 6 giờ (thời gian tối đa theo độ ưu tiên)",
     "not delivered within 6 hours (maximum age of its priority)"),
    (90, "chưa chuyển được trong 90 giây (thời gian tối đa theo độ ưu tiên)",
     "not delivered within 90 seconds (maximum age of its priority)"),
])
def test_a_priority_age_reason_reads_its_duration_in_words(seconds: float, vi: str, en: str) -> None:
    """The age is words of the reader's language, also when read back from the stored English."""
    reason = too_old_reason(seconds)
    assert str(reason) == en  # what is stored
    assert render_stored(str(reason), "vi") == vi and render_stored(str(reason), "en") == en
