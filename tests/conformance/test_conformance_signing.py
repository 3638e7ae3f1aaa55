"""Spec §5 worked examples and canonical-query rules, reproduced by the independent client."""

from __future__ import annotations

import pytest
from conformance_support import SOURCE, Hub
from spec_client import EMPTY_SHA256, SpecClient, canonical_query, sha256_hex, sign, string_to_sign

KEY = "AK_TEST_0001"
SECRET = "s3cr3t-EXAMPLE-key"
DATE = "2026-11-27T08:00:00Z"
BODY = (
    '{"to":["000.00.00.H23"],"subject":"Thử nghiệm","priority":1,"data_type":"edxml","size":5,'
    '"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}'
).encode()
BODY_SHA256 = "7d71b86157ec66347c5c9ba327d520de63999181d4d8c62a15677dd099285163"
UNITS_QUERY = "q=S%E1%BB%9F%20KH&limit=5"


def test_worked_example_content_hash() -> None:
    """The body of the example hashes to the published value."""
    assert sha256_hex(BODY) == BODY_SHA256
    assert sha256_hex(b"hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("HMAC-SHA256", "oZkUaBwuAglT+bN9rHJ09HE6+Vm+XdwS3+eaqismWM8="),
        ("HMAC-SHA1", "hfSkO6mYUc3AZMWOxJ8UxQeUywg="),
    ],
)
def test_worked_example_post_signature(algorithm: str, expected: str) -> None:
    """``POST /v1/packets`` of the example signs to the published HMAC values."""
    text = string_to_sign(algorithm, "POST", "/v1/packets", "", KEY, DATE, "n0nce-0001", None, BODY_SHA256)
    assert text.split("\n")[0] == f"LGSP1-{algorithm}"
    assert len(text.split("\n")) == 9
    assert not text.endswith("\n")
    assert sign(algorithm, SECRET, text) == expected


def test_worked_example_canonical_query_and_get_signature() -> None:
    """``GET /v1/units?q=S%E1%BB%9F%20KH&limit=5``: canonical query and HMAC-SHA256 signature."""
    assert canonical_query(UNITS_QUERY) == "limit=5&q=S%E1%BB%9F%20KH"
    text = string_to_sign("HMAC-SHA256", "GET", "/v1/units", UNITS_QUERY, KEY, DATE, "n0nce-0002", None, EMPTY_SHA256)
    assert sign("HMAC-SHA256", SECRET, text) == "BNrPz/GSCL1oMV9LEWQyKQj/qqMTrgBEBmNXAbTHi7s="


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("q", "q="),  # a part without '=' has an empty value
        ("q=a+b", "q=a%2Bb"),  # '+' stays '+' when decoding, then is encoded
        ("q=s%e1%bb%9f", "q=s%E1%BB%9F"),  # hex is re-encoded uppercase
        ("q=%41%7e-._", "q=A~-._"),  # unreserved characters are not encoded
        ("q=a=b", "q=a%3Db"),  # split at the first '='
        ("b=2&a=2&a=1", "a=1&a=2&b=2"),  # sorted by name then value
        ("q=Sở KH", "q=S%E1%BB%9F%20KH"),  # raw UTF-8 bytes are encoded
    ],
)
def test_canonical_query_rules(raw: str, canonical: str) -> None:
    """Each rule of line 4 of the string to sign, on the independent implementation."""
    assert canonical_query(raw) == canonical


@pytest.mark.parametrize(
    "target",
    [
        "/v1/units?" + UNITS_QUERY,
        "/v1/units?limit=5&q=s%e1%bb%9f",
        "/v1/units?q=a+b",
        "/v1/units?q",
        "/v1/units?q=%41%7e&limit=3",
        "/v1/units?q=Conformance&q=%C3%A9",  # sorted on the encoded form: "%C3%A9" < "Conformance"
        "/v1/units?q=000&a-b=1&a=z",  # by name, then value: "a" < "a-b" (a joined sort would differ)
    ],
)
def test_hub_accepts_canonical_queries(lgsp_hub: Hub, target: str) -> None:
    """The hub computes the same canonical query as the spec client for awkward raw queries."""
    answer = lgsp_hub.client("outsider").request("GET", target)
    assert answer.status == 200, answer


def test_worked_example_units_search_finds_the_unit(src: SpecClient) -> None:
    """The example's search (``q=Sở KH``) finds the source unit, named ``Sở KH&ĐT …``."""
    answer = src.request("GET", "/v1/units?" + UNITS_QUERY)
    assert answer.status == 200, answer
    assert SOURCE in [item["id"] for item in answer.json["items"]]


@pytest.mark.parametrize("label", ["src", "src-sha1", "src-rsa", "dst1", "dst2", "outsider"])
def test_every_algorithm_is_accepted(lgsp_hub: Hub, label: str) -> None:
    """A request signed with the key's own algorithm passes."""
    answer = lgsp_hub.client(label).inbox()
    assert answer.status == 200, answer
    assert isinstance(answer.json["items"], list)


def test_time_and_openapi_are_unsigned(src: SpecClient) -> None:
    """``GET /v1/time`` and ``GET /v1/openapi.yaml`` need no signature."""
    now = src.time()
    assert now.status == 200, now
    assert now.json["now"].endswith("Z")
    openapi = src.request("GET", "/v1/openapi.yaml", signed=False)
    assert openapi.status == 200, openapi
    assert b"openapi: 3.1" in openapi.body
