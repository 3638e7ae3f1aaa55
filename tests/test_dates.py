"""`X-LGSP-Date` with fractional seconds (JavaScript's `toISOString()`, Java's `Instant.toString()`).

The hub reads the moment from the header but signs over the value exactly as sent; every place that
reads the header (REST, `/v1/verify`, the reference receiver) accepts the same shapes and refuses
the rest as `auth.missing` naming the header.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lgsp.adapters.rest.push import H_IDEMPOTENCY, H_PACKET, META_HEADERS
from lgsp.adapters.rest.receiver import HubVerifier, Receiver, serve
from lgsp.core.signing import META_PARAM, Signer, metadata_digest, parse_date
from lgsp.plugins.signatures import RSA_SHA256

from .conftest import MakeActor, raw_request
from .test_auth import assert_problem


def with_fraction(moment: datetime, digits: int) -> str:
    """`moment` as `YYYY-MM-DDTHH:MM:SS.<digits>Z` (0 digits: no fraction at all)."""
    whole = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not digits:
        return whole + "Z"
    fraction = f"{moment.microsecond:06d}789"[:digits]  # 9 digits: nanoseconds beyond what we keep
    return f"{whole}.{fraction}Z"


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-12-05T09:01:02Z", datetime(2026, 12, 5, 9, 1, 2, tzinfo=UTC)),
    ("2026-12-05T09:01:02.345Z", datetime(2026, 12, 5, 9, 1, 2, 345000, tzinfo=UTC)),
    ("2026-12-05T09:01:02.3Z", datetime(2026, 12, 5, 9, 1, 2, 300000, tzinfo=UTC)),
    ("2026-12-05T09:01:02.123456Z", datetime(2026, 12, 5, 9, 1, 2, 123456, tzinfo=UTC)),
    ("2026-12-05T09:01:02.123456789Z", datetime(2026, 12, 5, 9, 1, 2, 123456, tzinfo=UTC)),
])
def test_parse_date_reads_whole_and_fractional_seconds(value: str, expected: datetime) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", [
    "2026-12-05T09:01:02.Z",             # a dot without digits
    "2026-12-05T09:01:02.1234567890Z",   # ten digits
    "2026-12-05T09:01:02,345Z",          # a comma
    "2026-12-05T09:01:02.345",           # no Z
    "2026-12-05T09:01:02.345+00:00",     # an offset instead of Z
    "2026-12-05T09:01:02.345z",          # lowercase z
    "2026-12-05T09:01:02Z\n",            # anything after the Z
    "2026-12-05T09:01:02.345Z ",
    "２０２６-12-05T09:01:02Z",           # digits other than ASCII
    "2026-13-05T09:01:02.345Z",          # no 13th month
    "2026-12-05 09:01:02.345Z",
])
def test_parse_date_refuses_other_shapes(value: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH:MM:SS"):
        parse_date(value)


def test_parse_date_refuses_and_reads_the_moments_strptime_does() -> None:
    """parse_date builds the datetime from the fields (it runs on every request); strptime was the
    reference: the same moment, or the same refusal, for every month and day of ordinary, leap and
    edge years and for out-of-range times."""
    times = [("00", "00", "00"), ("23", "59", "59"), ("24", "00", "00"), ("23", "60", "00"), ("23", "59", "60"),
             ("23", "59", "61"), ("99", "99", "99")]
    compared = 0
    for year in ("0000", "0001", "1900", "2000", "2024", "2026", "2100", "9999"):
        for month in range(100):
            for day in range(100):
                for hour, minute, second in times:
                    whole = f"{year}-{month:02d}-{day:02d}T{hour}:{minute}:{second}Z"
                    try:
                        expected: datetime | None = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                    except ValueError:
                        expected = None
                    try:
                        got: datetime | None = parse_date(whole)
                    except ValueError:
                        got = None
                    assert got == expected, whole
                    compared += expected is not None
    assert compared > 8 * 366  # the valid ones were compared too, not only refusals


@pytest.mark.parametrize("digits", [1, 3, 6, 9])
async def test_fractional_dates_are_accepted_over_http(make_actor: MakeActor, digits: int) -> None:
    a = await make_actor("000.00.00.H23")
    date = with_fraction(datetime.now(UTC), digits)
    headers = a.signer.headers("GET", "/v1/inbox", "limit=5", date=date)
    status, _, body = await raw_request(a.hub.url, "GET", "/v1/inbox?limit=5", headers=headers)
    assert status == 200, body
    assert body["items"] == []


async def test_what_a_browser_clock_writes_is_accepted(make_actor: MakeActor) -> None:
    """Exactly `new Date().toISOString()`: milliseconds, always three digits."""
    a = await make_actor("000.00.00.H23")
    now = datetime.now(UTC)
    date = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    status, _, body = await raw_request(a.hub.url, "GET", "/v1/inbox",
                                        headers=a.signer.headers("GET", "/v1/inbox", date=date))
    assert status == 200, body


@pytest.mark.parametrize(("signed", "sent"), [
    ("{whole}.500Z", "{whole}.5Z"),       # the same moment written differently
    ("{whole}.000Z", "{whole}Z"),
    ("{whole}Z", "{whole}.000Z"),
])
async def test_the_signature_covers_the_date_as_sent(make_actor: MakeActor, signed: str, sent: str) -> None:
    """The hub never re-formats the date: a client signing one spelling and sending another fails."""
    a = await make_actor("000.00.00.H23")
    whole = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    headers = a.signer.headers("GET", "/v1/inbox", date=signed.format(whole=whole))
    headers["X-LGSP-Date"] = sent.format(whole=whole)
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    assert_problem(status, h, body, 401, "auth.bad_signature")


@pytest.mark.parametrize("value", ["{whole}.Z", "{whole}.1234567890Z", "{whole},345Z", "{whole}.345",
                                   "{whole}.345+00:00"])
async def test_other_date_shapes_are_auth_missing_naming_the_header(make_actor: MakeActor, value: str) -> None:
    a = await make_actor("000.00.00.H23")
    date = value.format(whole=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    headers = a.signer.headers("GET", "/v1/inbox", date=date)  # correctly signed, but not a date we read
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    problem = assert_problem(status, h, body, 401, "auth.missing")
    assert "X-LGSP-Date" in problem["detail"] and "1 to 9 fractional digits" in problem["detail"]


async def test_skew_is_measured_with_the_fraction(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    late = datetime.now(UTC) - timedelta(seconds=301)
    headers = a.signer.headers("GET", "/v1/inbox", date=with_fraction(late, 3))
    status, h, body = await raw_request(a.hub.url, "GET", "/v1/inbox", headers=headers)
    assert_problem(status, h, body, 401, "auth.clock_skew")


async def test_verify_accepts_fractional_dates_and_refuses_trailing_text(make_actor: MakeActor) -> None:
    """`/v1/verify` reads header values from JSON, where a newline after the Z could be smuggled in."""
    caller = await make_actor("000.00.00.H23")
    dest = await make_actor("000.00.01.H23")
    good = caller.signer.headers("POST", "/api/x", "", date=with_fraction(datetime.now(UTC), 3))
    answer = await dest.client.verify("POST", "/api/x", "", good)
    assert answer["valid"] is True and answer["unit"] == caller.unit
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n"
    smuggled = caller.signer.headers("POST", "/api/x", "", date=date)
    answer = await dest.client.verify("POST", "/api/x", "", smuggled)
    assert answer["valid"] is False and answer["code"] == "auth.missing" and "X-LGSP-Date" in answer["detail"]


async def test_reference_receiver_accepts_fractional_dates() -> None:
    """The reference receiver reads the hub's headers with the hub's own rules."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    receiver = Receiver(None, HubVerifier("AKHUB", public_pem))
    runner, port = await serve(receiver, "127.0.0.1", 0)
    signer = Signer("AKHUB", RSA_SHA256, private_pem)
    try:
        async with aiohttp.ClientSession() as http:
            async def post(date: str) -> tuple[int, dict[str, object]]:
                body = b"noi dung"
                meta = {H_IDEMPOTENCY: "p-1:000.00.01.H23", H_PACKET: "p-1"}
                query = f"{META_PARAM}={metadata_digest(meta, META_HEADERS)}"
                headers = signer.headers("POST", "/lgsp/receive", query, hashlib.sha256(body).hexdigest(),
                                         date=date) | meta
                async with http.post(f"http://127.0.0.1:{port}/lgsp/receive?{query}", data=body,
                                     headers=headers) as resp:
                    return resp.status, await resp.json()

            status, answer = await post(with_fraction(datetime.now(UTC), 3))
            assert status == 200, answer
            status, answer = await post(with_fraction(datetime.now(UTC), 0)[:-1] + ".Z")
            assert status == 401 and "X-LGSP-Date" in str(answer["detail"])
    finally:
        await runner.cleanup()
    assert len(receiver.stored) == 1
