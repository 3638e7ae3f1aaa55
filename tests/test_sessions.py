"""Sessions (POST /v1/sessions) and verification on behalf of a destination (POST /v1/verify)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from lgsp.core.hub import Hub
from lgsp.core.signing import Signer

from .conftest import MakeActor, raw_request
from .test_auth import assert_problem


async def test_session_for_a_reachable_unit(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    session = await a.client.open_session(b.unit)
    assert session["unit"] == a.unit and session["target"] == b.unit
    assert session["token"].startswith("ST")
    expires = datetime.strptime(session["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    untargeted = await a.client.open_session()
    assert untargeted["target"] is None


async def test_session_for_an_unreachable_target_is_forbidden(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    await hub.directory.set_unit_status(b.unit, "suspended")
    for target in (b.unit, "000.00.99.H23", "service-that-does-not-exist"):
        body = json.dumps({"target": target}).encode()
        status, h, problem = await a.raw("POST", "/v1/sessions", body)
        assert_problem(status, h, problem, 403, "forbidden")


async def test_session_token_bound_to_its_key(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    token = (await a.client.open_session(b.unit))["token"]
    # A second key of the same unit cannot use it.
    a2 = await make_actor(a.unit, existing=True)
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=a2.signer, session_token=token)
    assert_problem(status, h, body, 401, "auth.bad_session")
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=a.signer, session_token="STnope")
    assert_problem(status, h, body, 401, "auth.bad_session")
    status, _, _ = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=a.signer, session_token=token)
    assert status == 200


async def test_expired_session(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    token = (await a.client.open_session())["token"]
    real_clock = hub.auth.clock
    hub.auth.clock = lambda: datetime.now(UTC) + timedelta(minutes=16)
    try:
        headers = a.signer.headers("GET", "/v1/inbox", session=token,
                                   date=(datetime.now(UTC) + timedelta(minutes=16)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    finally:
        hub.auth.clock = real_clock
    problem = assert_problem(status, h, body, 401, "auth.bad_session")
    assert "hết hạn" in problem["detail"]


def _source_request(signer: Signer, token: str | None, body: bytes = b'{"q":1}') -> tuple[dict[str, str], str]:
    sha = hashlib.sha256(body).hexdigest()
    return signer.headers("POST", "/api/ho-so", "ma=123&x=%C4%91", sha, session=token), sha


async def test_verify_genuine_request_under_session(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    token = (await a.client.open_session(b.unit))["token"]
    headers, sha = _source_request(a.signer, token)
    answer = await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", headers)
    assert answer == {"valid": True, "unit": a.unit, "application": a.key.application_id, "target": b.unit,
                      "content_sha256": sha}
    # The same request shown twice is a replay.
    again = await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", headers)
    assert again["valid"] is False and again["code"] == "auth.replay"


async def test_verify_tampered_request(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    token = (await a.client.open_session(b.unit))["token"]
    headers, _ = _source_request(a.signer, token)
    answer = await b.client.verify("POST", "/api/ho-so", "ma=124&x=%C4%91", headers)
    assert answer["valid"] is False and answer["code"] == "auth.bad_signature"
    headers2, _ = _source_request(a.signer, token)
    del headers2["X-LGSP-Nonce"]
    answer = await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", headers2)
    assert answer["valid"] is False and answer["code"] == "auth.missing"
    # Header names are case-insensitive, as in HTTP.
    headers3, _ = _source_request(a.signer, token)
    lowered = {k.lower(): v for k, v in headers3.items()}
    assert (await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", lowered))["valid"] is True


async def test_only_the_sessions_target_may_verify(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    c = await make_actor("000.00.02.H23")
    token = (await a.client.open_session(b.unit))["token"]
    headers, _ = _source_request(a.signer, token)
    body = json.dumps({"method": "POST", "path": "/api/ho-so", "query": "ma=123&x=%C4%91",
                       "headers": headers}).encode()
    status, h, problem = await c.raw("POST", "/v1/verify", body)
    assert_problem(status, h, problem, 403, "forbidden")
    # The refused question did not spend the nonce: the real target still can verify.
    assert (await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", headers))["valid"] is True


async def test_verify_request_without_session(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    headers, _ = _source_request(a.signer, None)
    answer = await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", headers)
    assert answer["valid"] is True and answer["target"] is None and answer["unit"] == a.unit


async def test_session_dies_with_revoked_key(make_actor: MakeActor, hub: Hub) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    token = (await a.client.open_session(b.unit))["token"]
    headers, _ = _source_request(a.signer, token)
    await hub.directory.revoke_key(a.key.access_key)
    answer = await b.client.verify("POST", "/api/ho-so", "ma=123&x=%C4%91", headers)
    assert answer["valid"] is False and answer["code"] == "auth.revoked_key"


async def test_verify_rejects_malformed_question(make_actor: MakeActor) -> None:
    b = await make_actor("000.00.01.H23")
    for body in ({"method": "GET"}, {"method": "GET", "path": "x", "headers": {}},
                 {"method": "GET", "path": "/x", "headers": {"X-LGSP-Key": 5}}):
        status, h, problem = await b.raw("POST", "/v1/verify", json.dumps(body).encode())
        assert_problem(status, h, problem, 422, "request.invalid")


async def test_non_target_learns_nothing_about_the_request(make_actor: MakeActor) -> None:
    """A non-target is refused before the signature is looked at: genuine or forged, same answer."""
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    c = await make_actor("000.00.02.H23")
    token = (await a.client.open_session(b.unit))["token"]
    genuine, _ = _source_request(a.signer, token)
    forged = dict(genuine, **{"X-LGSP-Signature": "HMAC-SHA256 " + "A" * 44})
    answers = []
    for headers in (genuine, forged):
        body = json.dumps({"method": "POST", "path": "/api/ho-so", "query": "ma=123&x=%C4%91",
                           "headers": headers}).encode()
        status, h, problem = await c.raw("POST", "/v1/verify", body)
        answers.append((status, assert_problem(status, h, problem, 403, "forbidden")["detail"]))
    assert answers[0] == answers[1]
