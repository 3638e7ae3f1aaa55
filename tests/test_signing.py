"""The signed-request protocol: the worked examples of the spec, and canonical-query properties."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lgsp.core.signing import (
    EMPTY_SHA256,
    Signer,
    canonical_query,
    parse_signature_header,
    string_to_sign,
)
from lgsp.plugins.signatures import HMAC_SHA1, HMAC_SHA256, RSA_SHA256

KEY = "AK_TEST_0001"
SECRET = "s3cr3t-EXAMPLE-key"
DATE = "2026-11-27T08:00:00Z"
BODY = ('{"to":["000.00.00.H23"],"subject":"Thử nghiệm","priority":1,"data_type":"edxml","size":5,'
        '"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}').encode()


def test_worked_example_post_content_hash() -> None:
    assert hashlib.sha256(BODY).hexdigest() == "7d71b86157ec66347c5c9ba327d520de63999181d4d8c62a15677dd099285163"


@pytest.mark.parametrize(("alg", "expected"), [
    (HMAC_SHA256, "oZkUaBwuAglT+bN9rHJ09HE6+Vm+XdwS3+eaqismWM8="),
    (HMAC_SHA1, "hfSkO6mYUc3AZMWOxJ8UxQeUywg="),
])
def test_worked_example_post_signatures(alg: object, expected: str) -> None:
    signer = Signer(KEY, alg, SECRET)  # type: ignore[arg-type]
    headers = signer.headers("POST", "/v1/packets", "", hashlib.sha256(BODY).hexdigest(), date=DATE,
                             nonce="n0nce-0001")
    assert headers["X-LGSP-Signature"] == f"{alg.name} {expected}"  # type: ignore[attr-defined]
    assert "X-LGSP-Session" not in headers


def test_worked_example_string_to_sign_layout() -> None:
    message = string_to_sign("HMAC-SHA256", "post", "/v1/packets", "", KEY, DATE, "n0nce-0001", "",
                             hashlib.sha256(BODY).hexdigest())
    lines = message.decode().split("\n")
    assert lines == ["LGSP1-HMAC-SHA256", "POST", "/v1/packets", "", KEY, DATE, "n0nce-0001", "",
                     "7d71b86157ec66347c5c9ba327d520de63999181d4d8c62a15677dd099285163"]
    assert not message.endswith(b"\n")


def test_worked_example_get_with_query() -> None:
    raw = "q=S%E1%BB%9F%20KH&limit=5"
    assert canonical_query(raw) == "limit=5&q=S%E1%BB%9F%20KH"
    headers = Signer(KEY, HMAC_SHA256, SECRET).headers("GET", "/v1/units", raw, EMPTY_SHA256, date=DATE,
                                                       nonce="n0nce-0002")
    assert headers["X-LGSP-Signature"] == "HMAC-SHA256 BNrPz/GSCL1oMV9LEWQyKQj/qqMTrgBEBmNXAbTHi7s="
    assert headers["X-LGSP-Content-SHA256"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(("date", "expected"), [
    ("2026-12-05T09:01:02.345Z", "QJWgkROL0aktfksIi2x4eDKaMzhibi1Fu7ICAi2JEME="),
    ("2026-12-05T09:01:02Z", "9mc3XtsfEpOsXXLvayjLcZEogOa57jDvQ4jktNVGiFs="),
])
def test_worked_example_fractional_date_is_signed_as_sent(date: str, expected: str) -> None:
    headers = Signer(KEY, HMAC_SHA256, SECRET).headers("GET", "/v1/inbox", "limit=10", EMPTY_SHA256, date=date,
                                                       nonce="n0nce-0003")
    assert headers["X-LGSP-Date"] == date
    assert headers["X-LGSP-Signature"] == f"HMAC-SHA256 {expected}"


def test_session_changes_the_signature() -> None:
    signer = Signer(KEY, HMAC_SHA256, SECRET)
    plain = signer.headers("GET", "/v1/inbox", date=DATE, nonce="n0nce-0003")
    with_session = signer.headers("GET", "/v1/inbox", date=DATE, nonce="n0nce-0003", session="ST-abc")
    assert with_session["X-LGSP-Session"] == "ST-abc"
    assert plain["X-LGSP-Signature"] != with_session["X-LGSP-Signature"]


@pytest.mark.parametrize(("raw", "canonical"), [
    ("", ""),
    ("a", "a="),
    ("b=2&a=1", "a=1&b=2"),
    ("a=2&a=1", "a=1&a=2"),
    ("a=x+y", "a=x%2By"),           # + stays +, then is encoded like any reserved byte
    ("a=x%20y", "a=x%20y"),
    ("a=%7e%41", "a=~A"),           # unreserved bytes are decoded, hex case does not matter
    ("k=v=w", "k=v%3Dw"),           # split at the first =
    ("a=%zz", "a=%25zz"),           # a stray % is data
    ("&", "=&="),                   # empty parts still count
    ("q=Sở", "q=S%E1%BB%9F"),       # raw UTF-8 in the request line
])
def test_canonical_query_cases(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
pairs = st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=6)


def _enc(b: bytes, style: str) -> str:
    """Some valid way a client might percent-encode the same bytes."""
    out = []
    for byte in b:
        if byte in UNRESERVED and style != "all":
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02x}" if style == "lower" else f"%{byte:02X}")
    return "".join(out)


@given(pairs, st.sampled_from(["min", "all", "lower"]), st.randoms())
def test_canonical_query_is_independent_of_encoding_and_order(items: list[tuple[bytes, bytes]], style: str,
                                                              rnd: object) -> None:
    raw_a = "&".join(f"{_enc(n, 'min')}={_enc(v, 'min')}" for n, v in items)
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    raw_b = "&".join(f"{_enc(n, style)}={_enc(v, style)}" for n, v in shuffled)
    assert canonical_query(raw_a) == canonical_query(raw_b)


@given(pairs)
def test_canonical_query_round_trips_the_bytes(items: list[tuple[bytes, bytes]]) -> None:
    canonical = canonical_query("&".join(f"{_enc(n, 'all')}={_enc(v, 'all')}" for n, v in items))
    if not items:
        assert canonical == ""
        return
    decoded = sorted((unquote_to_bytes(n), unquote_to_bytes(v))
                     for n, v in (p.split("=", 1) for p in canonical.split("&")))
    assert decoded == sorted(items)
    # Only unreserved characters and uppercase %XX escapes remain.
    for part in canonical.replace("&", "").replace("=", "").split("%")[1:]:
        assert part[:2] == part[:2].upper()
    assert all(c in "%" or ord(c) in UNRESERVED for c in canonical.replace("&", "").replace("=", ""))


@given(st.text(max_size=20), st.text(max_size=20))
def test_canonical_query_matches_rfc3986_quote(name: str, value: str) -> None:
    raw = f"{quote(name, safe='')}={quote(value, safe='')}"
    assert canonical_query(raw) == f"{quote(name.encode(), safe='-._~')}={quote(value.encode(), safe='-._~')}"


def test_rsa_sign_and_verify_and_tamper() -> None:
    private, public = RSA_SHA256.generate_keypair(2048)
    message = b"LGSP1-RSA-SHA256\nGET\n/v1/inbox"
    signature = RSA_SHA256.sign(private, message)
    assert RSA_SHA256.verify(public, message, signature)
    assert not RSA_SHA256.verify(public, message + b"x", signature)
    assert not RSA_SHA256.verify(public, message, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert RSA_SHA256.check_public_key(public).startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError, match="PEM"):
        RSA_SHA256.check_public_key("not a key")


def test_hmac_verify_rejects_other_secret() -> None:
    sig = HMAC_SHA256.sign(SECRET, b"m")
    assert HMAC_SHA256.verify(SECRET, b"m", sig)
    assert not HMAC_SHA256.verify(SECRET + "x", b"m", sig)


@pytest.mark.parametrize("value", ["HMAC-SHA256", "HMAC-SHA256 ", "hmac-sha256 AAAA", "HMAC-SHA256 !!!!",
                                   "HMAC-SHA256 " + base64.b64encode(b"").decode()])
def test_parse_signature_header_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError, match="signature"):
        parse_signature_header(value)
