"""The wire protocol's pure functions: timestamps, signing and verification, hash-file, sendEdoc bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lgsp.adapters.national_axis.protocol import (
    CRLF,
    HASH_HEADER,
    SIGN_HEADER,
    SIGN_HEADER_KEY,
    AxisCode,
    ProtocolError,
    RawSendBody,
    SignatureError,
    format_timestamp,
    hash_file,
    hash_file_matches,
    parse_timestamp,
    parse_to,
    read_send_body,
    sdk_hex,
    sign_headers,
    verify_request,
)

from .sdk_requests import JavaHashMap, SdkSession, sdk_hash_file

SECRETS = {"vxp.saas.01": "s3cret", "vxp.saas.02": "khác"}


def secret_for(system_id: str) -> str | None:
    return SECRETS.get(system_id)


def signed(params: dict[str, str] | None = None, *, system: str = "vxp.saas.01",
           timestamp: str = "05012024T090703+0045") -> list[tuple[str, str]]:
    return sign_headers(system, SECRETS[system], params or {"servicetype": "eDoc", "messagetype": "edoc"},
                        content_type="application/json", timestamp=timestamp)


def by_name(headers: list[tuple[str, str]], name: str) -> str:
    return next(v for k, v in headers if k == name)


def replaced(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == name else v) for k, v in headers]


def resigned(headers: list[tuple[str, str]], sign_header: str, secret: str = "s3cret") -> list[tuple[str, str]]:
    """Headers with a hand-made sign-header and its correct HMAC."""
    digest = hmac.new(secret.encode(), sign_header.encode(), hashlib.sha256).hexdigest()
    return replaced(replaced(headers, SIGN_HEADER, sign_header), HASH_HEADER, digest)


def refused(headers: list[tuple[str, str]]) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        verify_request(headers, secret_for)
    return info.value


# -- timestamps ----------------------------------------------------------------------------------

def test_timestamp_is_the_sdk_format_with_a_literal_plus_and_four_digit_milliseconds() -> None:
    assert format_timestamp(datetime(2024, 1, 5, 9, 7, 3, 45_000)) == "05012024T090703+0045"
    assert format_timestamp(datetime(2024, 12, 31, 23, 59, 59, 999_999)) == "31122024T235959+0999"


@pytest.mark.parametrize(("text", "expected"), [
    ("05012024T090703+0045", datetime(2024, 1, 5, 9, 7, 3, 45_000)),
    ("05012024T090703+45", datetime(2024, 1, 5, 9, 7, 3, 45_000)),
    ("05012024T090703", datetime(2024, 1, 5, 9, 7, 3)),
    (" 05012024t090703.0999 ", datetime(2024, 1, 5, 9, 7, 3, 999_000)),
])
def test_timestamps_are_read_leniently(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "2024-01-05T09:07:03", "05012024T090703+1000", "32012024T090703+0000",
                                  "05012024T090703+00450"])
def test_non_timestamps_are_refused_by_the_parser(text: str) -> None:
    with pytest.raises(ValueError, match=r"timestamp|range|day|month"):
        parse_timestamp(text)


# -- signing ---------------------------------------------------------------------------------

def test_signed_header_set_has_every_key_prefixed_signed_and_hmac_over_the_exact_json() -> None:
    headers = signed({"servicetype": "eDoc", "messagetype": "edoc"})
    names = [k for k, _ in headers]
    assert names[:5] == ["XroadVnpt-systemid", "XroadVnpt-servicetype", "XroadVnpt-messagetype",
                         "XroadVnpt-timestamp", "XroadVnpt-Content-Type"]
    sign_header = by_name(headers, SIGN_HEADER)
    assert sign_header == ('{"XroadVnpt-systemid":"vxp.saas.01","XroadVnpt-servicetype":"eDoc",'
                           '"XroadVnpt-messagetype":"edoc","XroadVnpt-timestamp":"05012024T090703+0045",'
                           '"XroadVnpt-Content-Type":"application/json"}')
    assert by_name(headers, SIGN_HEADER_KEY) == "systemid;servicetype;messagetype;timestamp;Content-Type"
    expected = hmac.new(b"s3cret", sign_header.encode(), hashlib.sha256).hexdigest()
    assert by_name(headers, HASH_HEADER) == expected and len(expected) == 64
    assert by_name(headers, "Content-Type") == "application/json"
    assert by_name(headers, "User-Agent") == "JAVASDKAgent/1.0.0 XRoad/VPCP"
    assert by_name(headers, "XroadVnpt-version") == "3.0.201608"


@pytest.mark.parametrize(("params", "match"), [
    ({"docId": "a\nb"}, "printable ASCII"),
    ({"docId": "văn bản"}, "printable ASCII"),
    ({"bad name": "x"}, "header token"),
    ({"systemid": "x"}, "reserved"),
    ({"hash-header": "x"}, "reserved"),
    ({"docId": "x" * 5000}, "longer"),
])
def test_signing_refuses_what_cannot_travel_as_a_header(params: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        signed(params)


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        sign_headers("vxp.saas.01", "s3cret", [("docId", "a"), ("docId", "b")], content_type="application/json",
                     timestamp="05012024T090703+0045")


# -- verification ------------------------------------------------------------------------------

def test_a_signed_request_verifies_and_exposes_only_signed_parameters() -> None:
    headers = signed({"docId": "5bebcfeff858e3e0cc154762", "status": "done"})
    headers.append(("XroadVnpt-unsigned", "ignored"))  # extra headers are ignored, not trusted
    request = verify_request(headers, secret_for)
    assert request.system_id == "vxp.saas.01"
    assert request.get("DOCID") == "5bebcfeff858e3e0cc154762" and request.get("status") == "done"
    assert request.get("unsigned") is None
    assert request.timestamp == datetime(2024, 1, 5, 9, 7, 3, 45_000)


def test_raw_byte_headers_verify_too() -> None:
    headers = [(k.encode(), v.encode()) for k, v in signed()]
    assert verify_request(headers, secret_for).get("messagetype") == "edoc"


def test_hex_case_of_the_hash_header_is_ignored() -> None:
    headers = signed()
    upper = replaced(headers, HASH_HEADER, by_name(headers, HASH_HEADER).upper())
    assert verify_request(upper, secret_for).system_id == "vxp.saas.01"


def test_header_names_match_case_insensitively() -> None:
    headers = [(k.lower(), v) for k, v in signed({"docId": "abc"})]
    assert verify_request(headers, secret_for).get("docId") == "abc"


def test_key_order_in_the_sign_header_does_not_matter() -> None:
    headers = signed({"docId": "abc"})
    members = list(json.loads(by_name(headers, SIGN_HEADER)).items())[::-1]
    request = verify_request(resigned(headers, json.dumps(dict(members), separators=(",", ":"))), secret_for)
    assert request.get("docId") == "abc"


def test_an_old_timestamp_and_a_repeated_hash_header_are_accepted() -> None:
    headers = signed(timestamp="01012016T000000+0000")
    assert verify_request(headers, secret_for).timestamp == datetime(2016, 1, 1)
    assert verify_request(headers, secret_for).system_id == "vxp.saas.01"  # the same request again


def test_an_unreadable_timestamp_is_no_reason_to_refuse() -> None:
    request = verify_request(signed(timestamp="yesterday"), secret_for)
    assert request.timestamp is None and request.get("timestamp") == "yesterday"


def test_wrong_secret_is_refused() -> None:
    headers = sign_headers("vxp.saas.01", "not-the-secret", {}, content_type="application/json",
                           timestamp="05012024T090703+0045")
    error = refused(headers)
    assert error.code == AxisCode.BAD_SIGNATURE and "hash-header" in error.desc


def test_unknown_system_is_refused_with_its_own_code() -> None:
    headers = sign_headers("vxp.saas.99", "x", {}, content_type="application/json", timestamp="05012024T090703+0045")
    assert refused(headers).code == AxisCode.UNKNOWN_SYSTEM


def test_a_tampered_sign_header_is_refused() -> None:
    headers = signed({"docId": "mine"})
    tampered = by_name(headers, SIGN_HEADER).replace('"mine"', '"theirs"')
    error = refused(replaced(replaced(headers, SIGN_HEADER, tampered), "XroadVnpt-docId", "theirs"))
    assert error.code == AxisCode.BAD_SIGNATURE


def test_a_header_differing_from_its_signed_value_is_refused() -> None:
    error = refused(replaced(signed({"docId": "mine"}), "XroadVnpt-docId", "theirs"))
    assert error.code == AxisCode.BAD_SIGNATURE and "XroadVnpt-docId" in error.desc


def test_a_second_header_with_another_value_is_refused() -> None:
    headers = [*signed({"docId": "mine"}), ("xroadvnpt-DOCID", "theirs")]
    assert "khác giá trị" in refused(headers).desc


def test_a_signed_key_without_its_header_is_refused() -> None:
    headers = [(k, v) for k, v in signed({"docId": "mine"}) if k != "XroadVnpt-docId"]
    assert "không có header" in refused(headers).desc


@pytest.mark.parametrize("missing", ["XroadVnpt-systemid", SIGN_HEADER, HASH_HEADER])
def test_missing_signing_headers_are_refused(missing: str) -> None:
    error = refused([(k, v) for k, v in signed() if k != missing])
    assert error.code == AxisCode.BAD_SIGNATURE and missing in error.desc


def test_docid_and_docId_signed_are_each_checked_against_their_own_header() -> None:
    both = sign_headers("vxp.saas.01", "s3cret", {"docId": "d1", "docid": "d1"}, content_type="application/json",
                        timestamp="05012024T090703+0045")
    assert verify_request(both, secret_for).get("docid") == "d1"
    # The SDK's header map keeps a stale `docid` from an earlier getEdoc beside the `docId` of this
    # call: a genuine request, signed; the parameter is the spelling the operation names (`docId`).
    for params in ({"docid": "old", "docId": "new"}, {"docId": "new", "docid": "old"}):
        stale = sign_headers("vxp.saas.01", "s3cret", params, content_type="application/json",
                             timestamp="05012024T090703+0045")
        assert verify_request(stale, secret_for).get("docid") == "new"
        # A header whose value is not the one signed under its exact name is still refused.
        forged = [(k, "other" if k == "XroadVnpt-docId" else v) for k, v in stale]
        assert "khác giá trị" in refused(forged).desc


@pytest.mark.parametrize(("sign_header", "match"), [
    ('{"XroadVnpt-systemid":"vxp.saas.01","XroadVnpt-systemid":"vxp.saas.01"}', "lặp lại"),
    ('{"XroadVnpt-systemid":"vxp.saas.01","XroadVnpt-n":1}', "chuỗi"),
    ('{"XroadVnpt-systemid":"vxp.saas.01","XroadVnpt-n":{"a":"b"}}', "chuỗi"),
    ('[["XroadVnpt-systemid","vxp.saas.01"]]', "đối tượng"),
    ('{"XroadVnpt-systemid":"vxp.saas.01"', "JSON"),
    ("[" * 5000, "JSON"),
    ('{"XroadVnpt-servicetype":"eDoc"}', "systemid"),
    ('{"XroadVnpt-systemid":"vxp.saas.01","XroadVnpt-hash-header":"x"}', "không được nằm"),
])
def test_malformed_sign_headers_are_refused_even_with_a_valid_hmac(sign_header: str, match: str) -> None:
    headers = [*signed(), ("XroadVnpt-n", "1"), ("XroadVnpt-hash-header-copy", "x")]
    assert match in refused(resigned(headers, sign_header)).desc


def test_an_oversized_sign_header_is_refused_before_any_hmac() -> None:
    big = '{"XroadVnpt-systemid":"vxp.saas.01","XroadVnpt-x":"' + "a" * 9000 + '"}'
    assert "8192" in refused(resigned(signed(), big)).desc


def test_too_many_headers_are_refused() -> None:
    headers = signed() + [(f"X-Filler-{i}", "x") for i in range(300)]
    assert "header" in refused(headers).desc


@given(st.dictionaries(st.from_regex(r"[a-z][a-zA-Z0-9_.\-]{0,20}", fullmatch=True).filter(
    lambda k: k.lower() not in {"systemid", "timestamp", "content-type", "sign-header", "sign-header-key",
                                "hash-header", "version"}),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60), max_size=8))
def test_whatever_the_client_signs_the_verifier_accepts_unchanged(params: dict[str, str]) -> None:
    lowered = {k.lower() for k in params}
    if len(lowered) != len(params):
        return  # case-twins with different values are refused by design (tested above)
    request = verify_request(signed(params), secret_for)
    assert {k: request.get(k) for k in params} == params


# -- the SDK's own header sets -----------------------------------------------------------------------

@pytest.mark.parametrize(("params", "order"), [
    ({"servicetype": "eDoc", "messagetype": "edoc", "hash-file": "x", "from": "y"},
     "systemid;servicetype;messagetype;hash-file;from;timestamp;Content-Type"),
    ({"servicetype": "eDoc", "messagetype": "edoc", "hash-file": "x", "from": "y", "to": "z"},
     "systemid;servicetype;messagetype;hash-file;from;to;timestamp;Content-Type"),
    ({"docId": "x", "filePath": "y"}, "systemid;docId;filePath;timestamp;Content-Type"),
    ({"docId": "x", "status": "done"}, "systemid;docId;timestamp;Content-Type;status"),
    ({"servicetype": "eDoc", "messagetype": "edoc"}, "systemid;servicetype;messagetype;timestamp;Content-Type"),
])
def test_the_hashmap_emulation_reproduces_the_key_orders_the_reference_gives(params: dict[str, str],
                                                                              order: str) -> None:
    table = JavaHashMap()
    for key in ("timestamp", "systemid", "Content-Type", *params):
        table.put(key, "v")
    assert ";".join(table.keys()) == order


def test_sdk_built_headers_verify() -> None:
    session = SdkSession("vxp.saas.01", "s3cret")
    for request in (session.received_list(), session.get_edoc("d1"), session.update_status("d1", "done")):
        verified = verify_request(request.headers, secret_for)
        assert verified.get("timestamp") == "05012024T090703+0045"
    assert verified.get("filePath") == "C:\\vxp\\received"  # re-sent from the getEdoc call


# -- hash-file -----------------------------------------------------------------------------------

def test_hash_file_is_not_zero_padded_like_the_sdk() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert hash_file(b"abc") == "ba7816bf8f1cfea414140de5dae2223b0361a396177a9cb410ff61f2015ad"
    assert len(hash_file(b"abc")) == 61 and hash_file(b"abc") == sdk_hash_file(b"abc") == sdk_hex(digest)
    assert hash_file_matches(hash_file(b"abc").upper(), digest)
    assert not hash_file_matches(digest.hex(), digest)  # the padded form is not the SDK's
    assert not hash_file_matches(hash_file(b"abd"), digest)
    assert not hash_file_matches("é" * 10, digest) and not hash_file_matches("a" * 65, digest)


# -- sendEdoc bodies ------------------------------------------------------------------------------

EDXML = b"<edXML>noi dung</edXML>\n"


def test_raw_body_with_the_sdk_crlf_is_the_file() -> None:
    assert read_send_body("application/octet-stream", EDXML + CRLF, hash_file(EDXML), max_bytes=100) == EDXML


def test_raw_body_without_crlf_is_taken_whole() -> None:
    assert read_send_body("application/octet-stream", EDXML, hash_file(EDXML), max_bytes=100) == EDXML


def test_a_file_ending_in_crlf_sent_without_the_extra_crlf_is_kept_whole() -> None:
    data = b"<edXML/>\r\n"
    assert read_send_body(None, data, hash_file(data), max_bytes=100) == data
    assert read_send_body(None, data + CRLF, hash_file(data), max_bytes=100) == data


def test_a_multipart_content_type_over_a_raw_body_is_the_sdk_and_read_raw() -> None:
    ct = "multipart/form-data; boundary====1704420423045==="
    assert read_send_body(ct, EDXML + CRLF, hash_file(EDXML), max_bytes=100) == EDXML


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[str, bytes]:
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in parts)
    return f'multipart/form-data; boundary="{boundary}"', body + f"--{boundary}--\r\n".encode()


def test_a_real_multipart_body_gives_its_file_doc_part() -> None:
    ct, body = multipart([("note", b"ignored"), ("file_doc", EDXML)])
    assert read_send_body(ct, body, hash_file(EDXML), max_bytes=100) == EDXML


@pytest.mark.parametrize(("parts", "match"), [
    ([("other", EDXML)], "file_doc"),
    ([("x", b"")] * 20, "file_doc"),
])
def test_multipart_without_file_doc_is_refused(parts: list[tuple[str, bytes]], match: str) -> None:
    ct, body = multipart(parts)
    with pytest.raises(ProtocolError, match=match) as info:
        read_send_body(ct, body, hash_file(EDXML), max_bytes=100)
    assert info.value.code == AxisCode.INVALID_REQUEST


def test_unterminated_multipart_is_refused() -> None:
    with pytest.raises(ProtocolError, match="kết thúc"):
        read_send_body("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="file_doc"'
                       b"\r\n\r\n" + EDXML, hash_file(EDXML), max_bytes=100)


def test_a_body_whose_digest_differs_from_hash_file_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        read_send_body(None, EDXML + CRLF, hash_file(b"something else"), max_bytes=100)
    assert info.value.code == AxisCode.HASH_MISMATCH
    padded = hashlib.sha256(b"abc").hexdigest()  # a digest with a byte < 0x10, written padded
    with pytest.raises(ProtocolError) as info:
        read_send_body(None, b"abc\r\n", padded, max_bytes=100)
    assert info.value.code == AxisCode.HASH_MISMATCH


def test_a_body_over_the_limit_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        read_send_body(None, EDXML + CRLF, hash_file(EDXML), max_bytes=len(EDXML) - 1)
    assert info.value.code == AxisCode.TOO_LARGE
    assert read_send_body(None, EDXML + CRLF, hash_file(EDXML), max_bytes=len(EDXML)) == EDXML


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("body", [EDXML + CRLF, EDXML, b"<a/>\r\n", b"x"])
def test_streamed_raw_bodies_give_what_the_whole_body_gives(chunk: int, body: bytes) -> None:
    expected = body[:-2] if body.endswith(CRLF) and body != b"<a/>\r\n" else body
    reader = RawSendBody(max_bytes=100)
    out = b"".join(reader.feed(body[i:i + chunk]) for i in range(0, len(body), chunk))
    assert out + reader.finish(hash_file(expected)) == expected
    assert read_send_body(None, body, hash_file(expected), max_bytes=100) == expected


def test_streamed_body_mismatch_and_size_are_refused() -> None:
    reader = RawSendBody(max_bytes=100)
    reader.feed(EDXML + CRLF)
    with pytest.raises(ProtocolError) as info:
        reader.finish(hash_file(b"other"))
    assert info.value.code == AxisCode.HASH_MISMATCH
    small = RawSendBody(max_bytes=4)
    with pytest.raises(ProtocolError) as info:
        small.feed(b"1234567")
    assert info.value.code == AxisCode.TOO_LARGE


# -- recipients ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "codes"), [
    ('["000.00.00.H41","28.22.H17"]', ["000.00.00.H41", "28.22.H17"]),
    ('[{"code":"000.00.00.H41"},{"organId":"28.22.H17"}]', ["000.00.00.H41", "28.22.H17"]),
    ('"000.00.00.H41"', ["000.00.00.H41"]),
    ("000.00.00.H41; 28.22.H17,000.00.00.H41", ["000.00.00.H41", "28.22.H17"]),
])
def test_to_is_read_in_every_shape_seen(text: str, codes: list[str]) -> None:
    assert parse_to(text) == codes


@pytest.mark.parametrize("text", ["[1]", '[{"name":"x"}]', "[" * 5000, "{", json.dumps([f"c{i}" for i in range(1001)])])
def test_unreadable_to_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case fails for its own reason
        parse_to(text)
