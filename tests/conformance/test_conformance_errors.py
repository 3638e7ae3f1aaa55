"""Spec §5–6 error codes: each with its HTTP status and an ``application/problem+json`` body."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from conformance_support import (
    DEST1,
    DEST2,
    MAX_PACKET_SIZE,
    SOURCE,
    UNKNOWN,
    Hub,
    assert_problem,
    parse_time,
    ready,
    send,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from spec_client import SIGNED_HEADERS, SpecClient, format_date, new_nonce, sha256_hex

SKEW = 300  # the default window of the spec


# -- auth.missing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", SIGNED_HEADERS)
def test_missing_header(dst1: SpecClient, header: str) -> None:
    """Each required header absent → 401 auth.missing."""
    assert_problem(dst1.request("GET", "/v1/inbox", omit=[header]), 401, "auth.missing")


def _now() -> str:
    return format_date()


MALFORMED: dict[str, tuple[str, Callable[[], str]]] = {
    "date-space": ("date", lambda: _now().replace("T", " ").rstrip("Z")),
    "date-offset": ("date", lambda: _now()[:-1] + "+00:00"),
    "date-empty-fraction": ("date", lambda: _now()[:-1] + ".Z"),
    "date-ten-digit-fraction": ("date", lambda: _now()[:-1] + ".0000000000Z"),
    "date-comma-fraction": ("date", lambda: _now()[:-1] + ",000Z"),
    "date-lowercase": ("date", lambda: _now().lower()),
    "nonce-7": ("nonce", lambda: "a" * 7),
    "nonce-65": ("nonce", lambda: "a" * 65),
    "nonce-space": ("nonce", lambda: "bad nonce!"),
    "nonce-dots": ("nonce", lambda: "dots.are.not.allowed"),
    "sha256-uppercase": ("content_sha256", lambda: sha256_hex(b"").upper()),
    "sha256-short": ("content_sha256", lambda: sha256_hex(b"")[:63]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_signed_header(dst1: SpecClient, case: str) -> None:
    """A malformed date, nonce or content hash (signed as sent) → 401 auth.missing."""
    option, value = MALFORMED[case]
    answer = dst1.request("GET", "/v1/inbox", **{option: value()})
    assert_problem(answer, 401, "auth.missing")


@pytest.mark.parametrize("fraction", [".0", ".000", ".000000", ".000000000"])
def test_date_with_fractional_seconds_is_accepted(dst1: SpecClient, fraction: str) -> None:
    """1 to 9 fractional digits before the ``Z`` (``toISOString()``), signed exactly as sent → 200."""
    assert dst1.request("GET", "/v1/inbox", date=_now()[:-1] + fraction + "Z").status == 200


@pytest.mark.parametrize(
    "signature",
    ["HMAC-SHA256", "HMAC-SHA256:abcd", "HMAC-SHA256 !!not-base64!!", ""],
)
def test_malformed_signature_header(dst1: SpecClient, signature: str) -> None:
    """``X-LGSP-Signature`` not of the form ``<ALG> <base64>`` → 401 auth.missing."""
    answer = dst1.request("GET", "/v1/inbox", replace={"X-LGSP-Signature": signature})
    assert_problem(answer, 401, "auth.missing")


@pytest.mark.parametrize("length", [8, 64])
def test_nonce_length_bounds_are_accepted(dst1: SpecClient, length: int) -> None:
    """8 and 64 characters of ``[A-Za-z0-9_-]`` are valid nonces."""
    alphabet = string.ascii_letters + string.digits + "_-"
    nonce = "".join(secrets.choice(alphabet) for _ in range(length))
    assert dst1.request("GET", "/v1/inbox", nonce=nonce).status == 200


# -- keys -----------------------------------------------------------------------------------------


def test_unknown_key(dst1: SpecClient) -> None:
    """A key the hub never issued → 401 auth.unknown_key."""
    answer = dst1.request("GET", "/v1/inbox", key="AKNOTISSUEDBYTHISHUB0000", material="whatever")
    assert_problem(answer, 401, "auth.unknown_key")


def test_revoked_key_and_its_sessions(lgsp_hub: Hub) -> None:
    """``lgsp key revoke`` → next request 401 auth.revoked_key; its sessions die with it."""
    client = lgsp_hub.client("src-to-revoke")
    assert client.inbox().status == 200
    assert client.open_session(DEST1).status == 201
    captured = client.signed_headers("GET", "/service/documents", "", b"")
    lgsp_hub.cli("key", "revoke", client.credentials.key)
    assert_problem(client.request("GET", "/v1/inbox", session=None), 401, "auth.revoked_key")
    verdict = lgsp_hub.client("dst1").verify("GET", "/service/documents", "", captured)
    assert verdict.status == 200, verdict
    assert verdict.json["valid"] is False
    assert verdict.json["code"] in ("auth.revoked_key", "auth.bad_session")


# -- clock and nonce ------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [1, -1], ids=["ahead", "behind"])
def test_clock_skew(dst1: SpecClient, direction: int) -> None:
    """|hub time − date| > 300 s → 401 auth.clock_skew carrying ``server_time``; 240 s passes."""
    now = datetime.now(UTC)
    far = format_date(now + timedelta(seconds=direction * (SKEW + 90)))
    body = assert_problem(dst1.request("GET", "/v1/inbox", date=far), 401, "auth.clock_skew")
    assert abs(parse_time(body["server_time"]) - now) < timedelta(seconds=30), body
    near = format_date(now + timedelta(seconds=direction * (SKEW - 60)))
    assert dst1.request("GET", "/v1/inbox", date=near).status == 200


def test_replay(lgsp_hub: Hub, dst1: SpecClient) -> None:
    """A nonce used twice by a key → 401 auth.replay, even on another request; other keys may use it."""
    nonce = new_nonce()
    assert dst1.request("GET", "/v1/inbox", nonce=nonce).status == 200
    assert_problem(dst1.request("GET", "/v1/inbox", nonce=nonce), 401, "auth.replay")
    assert_problem(dst1.request("GET", "/v1/units?q=000", nonce=nonce), 401, "auth.replay")
    assert lgsp_hub.client("dst2").request("GET", "/v1/inbox", nonce=nonce).status == 200


# -- signatures -----------------------------------------------------------------------------------


def test_bad_signature_wrong_secret(dst1: SpecClient) -> None:
    """HMAC with another secret → 401 auth.bad_signature."""
    assert_problem(dst1.request("GET", "/v1/inbox", material="not-the-secret"), 401, "auth.bad_signature")


def test_bad_signature_wrong_rsa_key(lgsp_hub: Hub) -> None:
    """RSA-SHA256 with a private key other than the registered one → 401 auth.bad_signature."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answer = lgsp_hub.client("src-rsa").request("GET", "/v1/inbox", material=stranger)
    assert_problem(answer, 401, "auth.bad_signature")


@pytest.mark.parametrize(
    ("label", "algorithm", "material"),
    [
        ("dst1", "HMAC-SHA1", None),  # the right secret, the wrong algorithm
        ("dst2", "HMAC-SHA256", None),
        ("dst1", "RSA-SHA256", "rsa"),
        ("src-rsa", "HMAC-SHA256", "some-secret"),
    ],
)
def test_bad_signature_other_algorithm(lgsp_hub: Hub, label: str, algorithm: str, material: str | None) -> None:
    """A valid signature made with an algorithm other than the key's own → 401 auth.bad_signature."""
    client = lgsp_hub.client(label)
    if material == "rsa":
        signer: object = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        signer = material or client.credentials.secret
    answer = client.request("GET", "/v1/inbox", algorithm=algorithm, material=signer)
    assert_problem(answer, 401, "auth.bad_signature")


@pytest.mark.parametrize(
    ("signed_for", "sent_to"),
    [
        ("/v1/inbox", "/v1/units?q=000"),
        ("/v1/units?q=000", "/v1/units?q=001"),
        ("/v1/units?q=000", "/v1/units?q=000&limit=1"),
    ],
)
def test_bad_signature_tampered_request(dst1: SpecClient, signed_for: str, sent_to: str) -> None:
    """Headers signed for one path/query, sent with another → 401 auth.bad_signature."""
    path, _, query = signed_for.partition("?")
    headers = dst1.signed_headers("GET", path, query, b"")
    answer = dst1.request("GET", sent_to, signed=False, extra=headers)
    assert_problem(answer, 401, "auth.bad_signature")


# -- sessions -------------------------------------------------------------------------------------


def test_bad_session_unknown_token(dst1: SpecClient) -> None:
    """A session token the hub never issued (signed as sent) → 401 auth.bad_session."""
    answer = dst1.request("GET", "/v1/inbox", session="ST" + secrets.token_urlsafe(30))
    assert_problem(answer, 401, "auth.bad_session")


def test_bad_session_other_key(lgsp_hub: Hub) -> None:
    """A token is bound to the key that opened it: another key of the same unit → auth.bad_session."""
    owner = lgsp_hub.client("src")
    opened = owner.open_session(DEST1)
    assert opened.status == 201, opened
    assert owner.inbox().status == 200  # the owner can use it
    other = lgsp_hub.client("src-sha1")
    assert_problem(other.request("GET", "/v1/inbox", session=owner.session), 401, "auth.bad_session")


# -- content --------------------------------------------------------------------------------------


def test_json_body_hash_mismatch(src: SpecClient) -> None:
    """A JSON body whose bytes differ from ``X-LGSP-Content-SHA256`` → 400 content.hash_mismatch."""
    content = b"abc"
    body = {
        "to": [DEST1],
        "subject": "x",
        "priority": 0,
        "data_type": "binary",
        "size": 3,
        "sha256": sha256_hex(content),
    }
    answer = src.request("POST", "/v1/packets", body, content_sha256=sha256_hex(b"another body"))
    assert_problem(answer, 400, "content.hash_mismatch")


def test_upload_hash_mismatch_keeps_nothing_then_second_upload_conflicts(
    lgsp_hub: Hub, src: SpecClient, dst2: SpecClient
) -> None:
    """A bad upload → 400, no packet visible to the destination; after a good one a second → 409."""
    content = secrets.token_bytes(4096)
    created = src.create_packet([DEST2], content)
    assert created.status == 201, created
    packet_id, url = created.json["id"], created.json["upload"]["url"]
    corrupted = content[:-1] + bytes([content[-1] ^ 1])
    # the body does not match the header (which is the packet's declared hash)
    assert_problem(src.upload(url, corrupted, content_sha256=sha256_hex(content)), 400, "content.hash_mismatch")
    # the header matches the body, but not the hash declared when the packet was created
    assert_problem(src.upload(url, corrupted), 400, "content.hash_mismatch")
    assert not lgsp_hub.stored_files_containing(corrupted[:1024]), "a rejected upload left bytes behind"
    assert packet_id not in [item["id"] for item in dst2.inbox().json["items"]]
    assert_problem(dst2.packet(packet_id), 404, "not_found")
    uploaded = src.upload(url, content)
    assert 200 <= uploaded.status < 300, uploaded
    assert packet_id in [item["id"] for item in dst2.inbox().json["items"]]
    assert_problem(src.upload(url, content), 409, "conflict")
    assert dst2.fail(packet_id, "cleanup").status < 300


def test_interrupted_upload_leaves_no_packet_visible(src: SpecClient, dst2: SpecClient) -> None:
    """An upload cut short: the destination sees nothing; a complete upload afterwards is accepted."""
    content = secrets.token_bytes(8192)
    created = src.create_packet([DEST2], content)
    assert created.status == 201, created
    packet_id, url = created.json["id"], created.json["upload"]["url"]
    src.interrupted("PUT", url, content, sent=3000)
    time.sleep(0.3)  # let the hub notice the closed connection
    assert packet_id not in [item["id"] for item in dst2.inbox().json["items"]]
    assert_problem(dst2.packet(packet_id), 404, "not_found")
    assert_problem(dst2.ready(packet_id), 404, "not_found")
    uploaded = src.upload(url, content)
    assert 200 <= uploaded.status < 300, uploaded
    assert packet_id in [item["id"] for item in dst2.inbox().json["items"]]
    assert dst2.fail(packet_id, "cleanup").status < 300


def test_upload_of_another_size_is_refused(src: SpecClient, dst1: SpecClient) -> None:
    """Content whose hash matches but whose size is not the declared one is refused (code unspecified)."""
    content = secrets.token_bytes(64)
    created = src.create_packet([DEST1], content, size=32)
    assert created.status == 201, created
    answer = src.upload(created.json["upload"]["url"], content)
    assert 400 <= answer.status < 500, answer
    assert_problem(answer, answer.status)
    assert_problem(dst1.packet(created.json["id"]), 404, "not_found")


def test_too_large(src: SpecClient) -> None:
    """A declared size above ``limits.max_packet_size`` → 413 content.too_large; the limit itself passes."""
    answer = src.request(
        "POST",
        "/v1/packets",
        {
            "to": [DEST1],
            "subject": "big",
            "priority": 0,
            "data_type": "binary",
            "size": MAX_PACKET_SIZE + 1,
            "sha256": sha256_hex(b""),
        },
    )
    assert_problem(answer, 413, "content.too_large")
    at_limit = src.request(
        "POST",
        "/v1/packets",
        {
            "to": [DEST1],
            "subject": "at the limit",
            "priority": 0,
            "data_type": "binary",
            "size": MAX_PACKET_SIZE,
            "sha256": sha256_hex(b""),
        },
    )
    assert at_limit.status == 201, at_limit


def test_unknown_destination(src: SpecClient) -> None:
    """An unknown destination → 422 route.unknown_destination naming it."""
    body = assert_problem(src.create_packet([DEST1, UNKNOWN], b"x"), 422, "route.unknown_destination")
    assert UNKNOWN in body["detail"], body
    assert DEST1 not in body["detail"], body


# -- not_found --------------------------------------------------------------------------------------


def test_third_unit_gets_not_found(src: SpecClient, dst1: SpecClient, outsider: SpecClient) -> None:
    """Neither source nor destination → 404 not_found everywhere, indistinguishable from no packet."""
    content = secrets.token_bytes(128)
    packet_id = send(src, [DEST1], content)
    url = ready(dst1, packet_id)
    calls = {
        "packet": lambda pid: outsider.packet(pid),
        "ready": lambda pid: outsider.ready(pid),
        "ack": lambda pid: outsider.ack(pid, sha256_hex(content)),
        "fail": lambda pid: outsider.fail(pid, "not mine"),
        "cancel": lambda pid: outsider.cancel(pid),
    }
    nobody = "00000000-0000-4000-8000-000000000000"
    for name, call in calls.items():
        real = assert_problem(call(packet_id), 404, "not_found")
        absent = assert_problem(call(nobody), 404, "not_found")
        assert (real["title"], real["detail"]) == (absent["title"], absent["detail"]), name
    assert_problem(outsider.download(url), 404, "not_found")
    assert dst1.download(url).body == content  # nothing above disturbed the delivery
    assert dst1.ack(packet_id, sha256_hex(content)).status == 200
    assert src.packet(packet_id).json["from"] == SOURCE


def test_unsatisfiable_range_is_a_problem(src: SpecClient, dst1: SpecClient) -> None:
    """Every error is ``application/problem+json`` — including a range past the end."""
    content = secrets.token_bytes(100)
    packet_id = send(src, [DEST1], content)
    try:
        answer = dst1.download(ready(dst1, packet_id), start=1000)
        assert 400 <= answer.status < 500, answer
        assert_problem(answer, answer.status)
    finally:
        dst1.fail(packet_id, "cleanup")
