"""Every authentication failure over real HTTP, with its status, problem body and stable code."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from lgsp.core.hub import Hub
from lgsp.core.signing import Signer, format_date
from lgsp.plugins.signatures import HMAC_SHA1, HMAC_SHA256

from .conftest import MakeActor, raw_request

PROBLEM = "application/problem+json"


def assert_problem(status: int, headers: dict[str, str], body: object, want_status: int, code: str) -> dict:
    assert status == want_status, body
    assert headers["Content-Type"].startswith(PROBLEM)
    assert isinstance(body, dict)
    assert body["code"] == code
    assert body["status"] == want_status
    assert body["type"] == f"urn:lgsp:problem:{code}"
    assert body["title"] and isinstance(body["detail"], str)
    return body


async def test_time_and_openapi_need_no_signature(hub: object) -> None:
    status, _, body = await raw_request(hub.url, "GET", "/v1/time")  # type: ignore[attr-defined]
    assert status == 200
    now = datetime.strptime(body["now"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5
    status, _, text = await raw_request(hub.url, "GET", "/v1/openapi.yaml")  # type: ignore[attr-defined]
    assert status == 200 and b"openapi: 3.1" in text


@pytest.mark.parametrize("header", ["X-LGSP-Key", "X-LGSP-Date", "X-LGSP-Nonce", "X-LGSP-Content-SHA256",
                                    "X-LGSP-Signature"])
async def test_each_missing_header_is_auth_missing(make_actor: MakeActor, header: str) -> None:
    a = await make_actor("000.00.00.H23")
    headers = a.signer.headers("GET", "/v1/inbox")
    del headers[header]
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    problem = assert_problem(status, h, body, 401, "auth.missing")
    assert header in problem["detail"]


@pytest.mark.parametrize(("header", "value"), [
    ("X-LGSP-Date", "2026-11-27 08:00:00"),
    ("X-LGSP-Date", "2026-11-27T08:00:00+00:00"),
    ("X-LGSP-Nonce", "short"),
    ("X-LGSP-Nonce", "has space in it"),
    ("X-LGSP-Nonce", "x" * 65),
    ("X-LGSP-Content-SHA256", "ABCDEF" + "0" * 58),
    ("X-LGSP-Signature", "HMAC-SHA256"),
    ("X-LGSP-Signature", "HMAC-SHA256 not*base64"),
])
async def test_malformed_header_is_auth_missing(make_actor: MakeActor, header: str, value: str) -> None:
    a = await make_actor("000.00.00.H23")
    headers = a.signer.headers("GET", "/v1/inbox")
    headers[header] = value
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    assert_problem(status, h, body, 401, "auth.missing")


async def test_unknown_key(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    stranger = Signer("AKNOSUCHKEY", HMAC_SHA256, "whatever")
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=stranger)
    assert_problem(status, h, body, 401, "auth.unknown_key")


async def test_bad_signature_wrong_secret(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    forged = Signer(a.key.access_key, HMAC_SHA256, a.key.secret + "x")  # type: ignore[operator]
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=forged)
    assert_problem(status, h, body, 401, "auth.bad_signature")


async def test_bad_signature_other_algorithm_than_the_keys(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")  # an HMAC-SHA256 key
    wrong_alg = Signer(a.key.access_key, HMAC_SHA1, a.key.secret)  # type: ignore[arg-type]
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=wrong_alg)
    problem = assert_problem(status, h, body, 401, "auth.bad_signature")
    assert "HMAC-SHA1" in problem["detail"]


async def test_tampered_path_or_query_breaks_the_signature(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    headers = a.signer.headers("GET", "/v1/units", "q=a&limit=5")
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/units?q=a&limit=6", headers=headers)
    assert_problem(status, h, body, 401, "auth.bad_signature")
    headers = a.signer.headers("GET", "/v1/units", "limit=5&q=a")  # same query, other order: fine
    status, _, body = await raw_request(a.hub.url, "GET", "/v1/units?q=a&limit=5", headers=headers)
    assert status == 200, body


@pytest.mark.parametrize("shift", [-400, +400])
async def test_clock_skew_both_ways(make_actor: MakeActor, shift: int) -> None:
    a = await make_actor("000.00.00.H23")
    headers = a.signer.headers("GET", "/v1/inbox", date=format_date(datetime.now(UTC) + timedelta(seconds=shift)))
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    problem = assert_problem(status, h, body, 401, "auth.clock_skew")
    server_time = datetime.strptime(problem["server_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((server_time - datetime.now(UTC)).total_seconds()) < 5
    assert ("sớm hơn" in problem["detail"]) == (shift > 0)  # Vietnamese unless the request asks for English


async def test_small_skew_is_accepted_and_recorded(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    headers = a.signer.headers("GET", "/v1/inbox", date=format_date(datetime.now(UTC) + timedelta(seconds=120)))
    status, _, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    assert status == 200, body
    await a.hub.presence.flush()
    unit = await a.hub.directory.get_unit(a.unit)
    assert unit is not None and unit.clock_offset_seconds is not None
    assert 110 <= unit.clock_offset_seconds <= 125
    assert unit.online


async def test_replay_is_rejected(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    headers = a.signer.headers("GET", "/v1/inbox")
    first = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    assert first[0] == 200
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    assert_problem(status, h, body, 401, "auth.replay")


async def test_same_nonce_other_key_is_not_a_replay(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    status_a, _, _ = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=a.signer.headers(
        "GET", "/v1/inbox", nonce="shared-nonce-1"))
    status_b, _, _ = await raw_request(b.hub.url, "GET", "/v1/inbox", headers=b.signer.headers(
        "GET", "/v1/inbox", nonce="shared-nonce-1"))
    assert (status_a, status_b) == (200, 200)


async def test_bad_signature_does_not_burn_the_nonce(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    forged = Signer(a.key.access_key, HMAC_SHA256, "wrong").headers("GET", "/v1/inbox", nonce="nonce-kept-1")
    assert (await raw_request(a.hub.url, "GET", "/v1/inbox", headers=forged))[0] == 401
    good = a.signer.headers("GET", "/v1/inbox", nonce="nonce-kept-1")
    assert (await raw_request(a.hub.url, "GET", "/v1/inbox", headers=good))[0] == 200


async def test_revoked_key_mid_session(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    session = await a.client.open_session(b.unit)
    a.client.session_token = session["token"]
    assert await a.client.inbox() == []
    await a.hub.directory.revoke_key(a.key.access_key)
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=a.signer,
                                        session_token=session["token"])
    assert_problem(status, h, body, 401, "auth.revoked_key")
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", signer=a.signer)
    assert_problem(status, h, body, 401, "auth.revoked_key")


async def test_body_hash_mismatch_on_json(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    body = json.dumps({"target": None}).encode()
    status, h, problem = await a.raw("POST", "/v1/sessions", body, content_sha256=hashlib.sha256(b"other").hexdigest())
    assert_problem(status, h, problem, 400, "content.hash_mismatch")


async def test_declared_body_hash_on_bodyless_request(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    status, h, body = await a.raw("GET", "/v1/inbox", content_sha256=hashlib.sha256(b"x").hexdigest())
    assert_problem(status, h, body, 400, "content.hash_mismatch")


async def test_problem_title_language(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    vi = await raw_request(a.hub.url, "GET", "/v1/inbox")
    en = await raw_request(a.hub.url, "GET", "/v1/inbox", headers={"Accept-Language": "en-US"})
    assert vi[2]["code"] == en[2]["code"] == "auth.missing"
    assert vi[2]["title"] != en[2]["title"]
    assert "authentication" in en[2]["title"].lower()


async def test_unknown_route_and_method_are_problems(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    status, h, body = await a.raw("GET", "/v1/nothing-here")
    assert_problem(status, h, body, 404, "not_found")
    status, h, body = await a.raw("DELETE", "/v1/inbox")
    assert_problem(status, h, body, 405, "method_not_allowed")


async def test_suspended_unit_cannot_authenticate(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    await a.hub.directory.set_unit_status(a.unit, "suspended")
    status, h, body = await a.raw("GET", "/v1/inbox")
    assert_problem(status, h, body, 401, "auth.revoked_key")


async def test_rsa_and_sha1_keys_authenticate(make_actor: MakeActor) -> None:
    rsa = await make_actor("000.00.00.H23", algorithm="RSA-SHA256")
    sha1 = await make_actor("000.00.01.H23", algorithm="HMAC-SHA1")
    assert rsa.key.secret is None and rsa.key.private_key_pem
    assert await rsa.client.inbox() == []
    assert await sha1.client.inbox() == []
    # The hub kept only the public key of the RSA pair.
    keys = await rsa.hub.directory.key_material(rsa.key.access_key)
    assert keys is not None and "PRIVATE" not in keys.verification_key


async def test_replays_racing_each_other_are_caught(make_actor: MakeActor) -> None:
    """Nonces are recorded in batches; two copies of a request in one batch still count as a replay."""
    import asyncio

    a = await make_actor("000.00.00.H23")
    copies = [a.signer.headers("GET", "/v1/inbox") for _ in range(20)]
    requests = [h for h in copies for _ in range(3)]  # each request sent three times at once
    answers = await asyncio.gather(*(raw_request(a.hub.url, "GET", "/v1/inbox", headers=h) for h in requests))
    by_nonce: dict[str, list[int]] = {}
    for headers, (status, _, body) in zip(requests, answers, strict=True):
        by_nonce.setdefault(headers["X-LGSP-Nonce"], []).append(status)
        assert status == 200 or body["code"] == "auth.replay"
    assert all(sorted(statuses) == [200, 401, 401] for statuses in by_nonce.values()), by_nonce


async def test_nonces_of_concurrent_requests_share_transactions(hub: Hub, make_actor: MakeActor) -> None:
    import asyncio

    from sqlalchemy import func, select

    from lgsp.core.store.tables import nonces

    a = await make_actor("000.00.00.H23")
    spent = await asyncio.gather(*(hub.auth.nonces.spend(a.key.access_key, f"batch-nonce-{i}",
                                                         datetime.now(UTC) + timedelta(minutes=5))
                                   for i in range(50)))
    assert spent == [True] * 50
    again = await hub.auth.nonces.spend(a.key.access_key, "batch-nonce-7", datetime.now(UTC) + timedelta(minutes=5))
    assert again is False
    async with hub.db.read() as conn:
        stored = await conn.scalar(select(func.count()).select_from(nonces).where(
            nonces.c.nonce.like("batch-nonce-%")))
    assert stored == 50


async def test_the_hub_accepts_the_published_worked_examples(hub: Hub) -> None:
    """docs/integrator-guide.md's examples, byte for byte, sent to a running hub whose clock reads
    their date: what an integrator checks their own signer against is what the hub accepts."""
    from lgsp.core.store.tables import access_keys

    key, secret, date = "AK_TEST_0001", "s3cr3t-EXAMPLE-key", "2026-11-27T08:00:00Z"
    await hub.directory.add_unit("000.00.00.H23", "UBND tỉnh")
    await hub.directory.add_unit("000.00.01.H23", "Sở Kế hoạch và Đầu tư")
    app = await hub.directory.add_application("000.00.01.H23", "vbql")
    async with hub.db.write() as conn:  # the published key: issue_key would draw a random one
        await conn.execute(access_keys.insert().values(
            id=key, application_id=app.id, unit_id=app.unit_id, algorithm="HMAC-SHA256",
            secret_sealed=hub.master_key.encrypt(secret, key), created_at=datetime.now(UTC)))
    hub.auth.clock = lambda: datetime(2026, 11, 27, 8, 0, 5, tzinfo=UTC)
    body = ('{"to":["000.00.00.H23"],"subject":"Thử nghiệm","priority":1,"data_type":"edxml","size":5,'
            '"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}').encode()
    post = {"X-LGSP-Key": key, "X-LGSP-Date": date, "X-LGSP-Nonce": "n0nce-0001",
            "X-LGSP-Content-SHA256": "7d71b86157ec66347c5c9ba327d520de63999181d4d8c62a15677dd099285163",
            "X-LGSP-Signature": "HMAC-SHA256 oZkUaBwuAglT+bN9rHJ09HE6+Vm+XdwS3+eaqismWM8=",
            "Content-Type": "application/json"}
    status, _, created = await raw_request(hub.url, "POST", "/v1/packets", body, headers=post)
    assert status == 201, created
    assert created["upload"]["method"] == "PUT"
    get = {"X-LGSP-Key": key, "X-LGSP-Date": date, "X-LGSP-Nonce": "n0nce-0002",
           "X-LGSP-Content-SHA256": hashlib.sha256(b"").hexdigest(),
           "X-LGSP-Signature": "HMAC-SHA256 BNrPz/GSCL1oMV9LEWQyKQj/qqMTrgBEBmNXAbTHi7s="}
    status, _, found = await raw_request(hub.url, "GET", "/v1/units?q=S%E1%BB%9F%20KH&limit=5", headers=get)
    assert status == 200, found
    # The same headers again are a replay; one changed byte of the signature is a forgery.
    status, h, again = await raw_request(hub.url, "GET", "/v1/units?q=S%E1%BB%9F%20KH&limit=5", headers=get)
    assert_problem(status, h, again, 401, "auth.replay")
    forged = get | {"X-LGSP-Nonce": "n0nce-0003"}
    status, h, bad = await raw_request(hub.url, "GET", "/v1/units?q=S%E1%BB%9F%20KH&limit=5", headers=forged)
    assert_problem(status, h, bad, 401, "auth.bad_signature")
