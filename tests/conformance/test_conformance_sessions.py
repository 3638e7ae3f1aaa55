"""Spec §5 sessions (``POST /v1/sessions``) and service verification (``POST /v1/verify``)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conformance_support import APP_NAME, DEST1, SOURCE, UNKNOWN, Hub, assert_problem, parse_time
from spec_client import SpecClient, format_date, sha256_hex

SERVICE_PATH = "/services/documents"
SERVICE_QUERY = "b=2&a=%C3%A9"
SERVICE_BODY = '{"tiêu đề": "Công văn"}'.encode()


def test_open_session(src: SpecClient) -> None:
    """201 with token, expires_at (default 15 min), unit and target; the token is then usable."""
    answer = src.open_session(DEST1)
    assert answer.status == 201, answer
    body = answer.json
    assert body["unit"] == SOURCE
    assert body["target"] == DEST1
    assert isinstance(body["token"], str)
    assert body["token"]
    lifetime = parse_time(body["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=14) < lifetime <= timedelta(minutes=15, seconds=5), lifetime
    assert src.inbox().status == 200  # signed with X-LGSP-Session


def test_open_session_without_target(src: SpecClient) -> None:
    """The target is optional."""
    answer = src.open_session()
    assert answer.status == 201, answer
    assert answer.json["unit"] == SOURCE
    assert "target" in answer.json
    assert answer.json["target"] is None
    assert src.inbox().status == 200


@pytest.mark.parametrize("target", [UNKNOWN, "no-such-service"])
def test_session_unreachable_target(src: SpecClient, target: str) -> None:
    """A target the caller may not reach → 403 forbidden."""
    assert_problem(src.open_session(target), 403, "forbidden")
    assert src.session is None


def _captured(source: SpecClient, **options: Any) -> dict[str, str]:
    """The ``X-LGSP-*`` headers of a request the source sends to the destination's service."""
    return source.signed_headers("POST", SERVICE_PATH, SERVICE_QUERY, SERVICE_BODY, **options)


@pytest.mark.parametrize("label", ["src", "src-sha1", "src-rsa"])
def test_verify_genuine_request(lgsp_hub: Hub, dst1: SpecClient, label: str) -> None:
    """The session's target verifies a genuine request: valid, with unit, application, target."""
    source = lgsp_hub.client(label)
    assert source.open_session(DEST1).status == 201
    headers = _captured(source)
    answer = dst1.verify("POST", SERVICE_PATH, SERVICE_QUERY, headers)
    assert answer.status == 200, answer
    body = answer.json
    assert body["valid"] is True, body
    assert body["unit"] == SOURCE
    assert body["application"] in (lgsp_hub.app_ids[SOURCE], APP_NAME), body
    assert body["target"] == DEST1
    assert headers["X-LGSP-Content-SHA256"] == sha256_hex(SERVICE_BODY)


@pytest.mark.parametrize(
    ("method", "path", "query", "header", "value"),
    [
        ("GET", SERVICE_PATH, SERVICE_QUERY, None, None),
        ("POST", SERVICE_PATH + "/other", SERVICE_QUERY, None, None),
        ("POST", SERVICE_PATH, "b=2&a=3", None, None),
        ("POST", SERVICE_PATH, SERVICE_QUERY, "X-LGSP-Content-SHA256", sha256_hex(b"another body")),
        ("POST", SERVICE_PATH, SERVICE_QUERY, "X-LGSP-Nonce", "another-nonce-123"),
    ],
    ids=["method", "path", "query", "content-hash", "nonce"],
)
def test_verify_tampered_request(
    src: SpecClient, dst1: SpecClient, method: str, path: str, query: str, header: str | None, value: str | None
) -> None:
    """Any part of the request changed after signing → ``{"valid": false, "code": ...}``."""
    assert src.open_session(DEST1).status == 201
    headers = _captured(src)
    if header and value:
        headers[header] = value
    answer = dst1.verify(method, path, query, headers)
    assert answer.status == 200, answer
    assert answer.json["valid"] is False, answer
    assert answer.json["code"] == "auth.bad_signature", answer


def test_verify_reports_the_auth_codes(src: SpecClient, dst1: SpecClient) -> None:
    """Verification applies the §5 checks: replay, clock skew, unknown key, unknown session."""
    assert src.open_session(DEST1).status == 201
    genuine = _captured(src)
    assert dst1.verify("POST", SERVICE_PATH, SERVICE_QUERY, genuine).json["valid"] is True
    cases = {
        "auth.replay": genuine,
        "auth.clock_skew": _captured(src, date=format_date(datetime.now(UTC) - timedelta(minutes=10))),
        "auth.unknown_key": _captured(src, key="AKNOTISSUEDBYTHISHUB0000"),
        "auth.bad_session": _captured(src, session="ST" + secrets.token_urlsafe(30)),
    }
    for code, headers in cases.items():
        answer = dst1.verify("POST", SERVICE_PATH, SERVICE_QUERY, headers)
        assert answer.status == 200, answer
        assert (answer.json["valid"], answer.json["code"]) == (False, code), answer


def test_only_the_target_may_verify(lgsp_hub: Hub, src: SpecClient) -> None:
    """Another unit asking about the session's request is refused and learns nothing."""
    assert src.open_session(DEST1).status == 201
    headers = _captured(src)
    answer = lgsp_hub.client("dst2").verify("POST", SERVICE_PATH, SERVICE_QUERY, headers)
    assert 400 <= answer.status < 500, answer
    assert answer.content_type == "application/problem+json", answer
    assert "unit" not in answer.json
    assert answer.json.get("valid") is not True


def test_non_target_is_refused_whatever_the_signature(lgsp_hub: Hub, src: SpecClient) -> None:
    """A non-target gets the same refusal for a genuine and a tampered request of the session."""
    assert src.open_session(DEST1).status == 201
    genuine = _captured(src)
    tampered = _captured(src)
    other = lgsp_hub.client("dst2")
    refused_genuine = other.verify("POST", SERVICE_PATH, SERVICE_QUERY, genuine)
    refused_tampered = other.verify("POST", SERVICE_PATH + "/other", SERVICE_QUERY, tampered)
    assert 400 <= refused_genuine.status < 500, refused_genuine
    assert (refused_tampered.status, refused_tampered.code) == (refused_genuine.status, refused_genuine.code)
