"""The edge text rules (core/text.py) on their own: what each refuses, with which code and field.

The HTTP, SOAP and SFTP paths through them are in tests/hostile/, tests/soap/ and tests/sftp/.
"""

from __future__ import annotations

from typing import Any

import pytest

from lgsp.core.errors import Problem
from lgsp.core.i18n import Text
from lgsp.core.text import (
    MAX_JSON_DEPTH,
    ascii_header_problem,
    check_text,
    json_depth,
    load_json,
    printable,
    text_problem,
    url_text,
)


@pytest.mark.parametrize(("raw", "depth"), [
    (b"{}", 1),
    (b'{"a": [1, {"b": []}]}', 3),
    (b"[" * 200 + b"]" * 200, 200),
    # Brackets inside strings never nest, escaped quotes do not end a string, an escaped backslash does.
    (b'[' * 70 + b'"]]]] \\" [[[[ \\\\"' + b']' * 70, 70),
    (b'["' + b"[" * 100 + b'"' + b", []]", 2),
    (b'["\\\\\\"' + b"[" * 100 + b'"]', 1),
])
def test_depth_counts_only_structure(raw: bytes, depth: int) -> None:
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        assert json_depth(raw) == depth
    else:
        assert json_depth(raw) >= depth  # few brackets: the bound is their count, never less


@pytest.mark.parametrize(("raw", "field", "detail"), [
    (b'{"subject": "a\\u0000b"}', "subject", "subject: must not contain NUL characters"),
    (b'{"to": ["x", "\\ud800"]}', "to", "to[1]: must be valid Unicode text (it holds a lone surrogate)"),
    (b'{"policy": {"k": {"\\udc00": 1}}}', "policy", "policy.k.<key>: must be valid Unicode text"),
    (b'{"\\u0000": 1}', "body", "<key>: must not contain NUL characters"),
    (b'["\\ud800"]', "body", "[0]: must be valid Unicode text"),
])
def test_strings_no_store_can_hold_name_their_field(raw: bytes, field: str, detail: str) -> None:
    with pytest.raises(Problem) as err:
        load_json(raw)
    assert (err.value.code, err.value.extra["field"]) == ("request.invalid", field)
    assert err.value.detail.startswith(detail)


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf{}", b'{"a": "\xed\xa0\x80"}', b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    b'{"a": -Infinity}', b'{"a": ' + b"1" * 41 + b"}", b'{"a": 0.' + b"1" * 40 + b"}", b"",
])
def test_unreadable_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(Problem) as err:
        load_json(raw)
    assert err.value.code == "request.malformed"


def test_acceptable_json_comes_back_as_sent() -> None:
    doc = load_json('{"a": "Sở \\ud83d\\ude00 \\\\u0000", "n": -12.5e3, "deep": ' + "[" * 63 + "]" * 63 + "}")
    assert doc["a"] == "Sở 😀 \\u0000" and doc["n"] == -12500.0


@pytest.mark.parametrize(("value", "multiline", "why"), [
    ("Công văn số 12", False, None),
    ("a\tb\nc\r", True, None),
    ("a\tb", False, "must not contain control characters (U+0009)"),
    ("a\x7fb", True, "must not contain control characters (U+007F)"),
    ("a\x00b", True, "must not contain NUL characters"),
    ("a\udfffb", True, "must be valid Unicode text (it holds a lone surrogate)"),
])
def test_text_rules(value: str, multiline: bool, why: str | None) -> None:
    assert text_problem(value, multiline=multiline) == why


@pytest.mark.parametrize(("value", "detail"), [
    (None, "target: must be a string"), (7, "target: must be a string"), ("", "target: must be 1 to 8"),
    ("x" * 9, "target: must be 1 to 8"), ("a\nb", "target: must not contain control characters"),
])
def test_check_text_names_the_field(value: Any, detail: str) -> None:
    with pytest.raises(Problem) as err:
        check_text(value, "target", max_length=8)
    assert err.value.code == "request.invalid" and err.value.extra == {"field": "target"}
    assert err.value.detail.startswith(detail)


def test_headers_urls_and_echoes() -> None:
    assert ascii_header_problem("AKQ3-_=+/ ok") is None
    assert ascii_header_problem("AK\udcff") == "must be printable ASCII"
    assert ascii_header_problem("A" * 65, max_length=64) == "is longer than 64 characters"
    assert url_text("S%E1%BB%9F%20KH") == "Sở KH"
    assert url_text("%FF") is None and url_text("%ED%A0%80") is None
    assert printable("a\x00b\udc80c\nd") == "a\ufffdb\ufffdc\nd"


def test_text_problems_read_in_the_readers_language() -> None:
    """A refused string's reason is part of the problem's detail, so it follows the reader's
    language like the rest of the sentence (it was English inside a Vietnamese detail)."""
    with pytest.raises(Problem) as caught:
        check_text("a\x00b", "subject", max_length=10)
    assert caught.value.to_dict("vi")["detail"] == "subject: không được chứa ký tự NUL"
    assert caught.value.to_dict("en")["detail"] == "subject: must not contain NUL characters"
    with pytest.raises(Problem) as caught:
        load_json(b'{"to": ["x", "\\ud800"]}')
    assert caught.value.to_dict("vi")["detail"] == (
        "to[1]: phải là văn bản Unicode hợp lệ (có một nửa cặp thay thế đứng riêng)")
    why = text_problem("a\tb")
    assert isinstance(why, Text) and why.render("vi") == "không được chứa ký tự điều khiển (U+0009)"
