"""SOAP pushes to a unit served over HTTPS: its certificate pinned by fingerprint (the WSDL read and
the POST alike), checked against the unit's CA, and refused when neither matches."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import certifi
import pytest

from lgsp.core.hub import Hub
from lgsp.core.push import PushFailure
from lgsp.core.tls import fingerprint_of_pem

from ..conftest import MakeActor
from ..test_tls import _cert, _key, _write
from .test_soap_push import HUB_KEY, HUB_SECRET, job_for
from .vbql_double import VbqlReceiver, target

B = "000.00.02.H23"


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[VbqlReceiver, Path]]:
    """A VBQL double on HTTPS with a self-signed certificate for 127.0.0.1 (no system CA knows it),
    and a second, unrelated certificate to pin wrongly."""
    for name in ("vbql", "other"):
        key = _key()
        _write(tmp_path / f"{name}.pem", _cert(f"{name} server", key, None, server=True), key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "vbql.pem", tmp_path / "vbql.key")
    double = await VbqlReceiver(access_key=HUB_KEY, secret=HUB_SECRET, ssl=ctx).start()
    yield double, tmp_path
    await double.stop()


async def test_soap_push_to_a_pinned_certificate(hub: Hub, make_actor: MakeActor,
                                                 tls_receiver: tuple[VbqlReceiver, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A CA bundle named in the environment (common on managed servers) must not replace the
    # target's own checks when the WSDL is read.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    receiver, pki = tls_receiver
    assert receiver.url.startswith("https://")
    await hub.secrets.set("vbql-b", HUB_SECRET)
    adapter = hub.push_adapters["soap"]
    pinned = target(receiver, access_key=HUB_KEY, secret="vbql-b",
                    tls_fingerprint=fingerprint_of_pem((pki / "vbql.pem").read_text()).upper())
    assert adapter.validate_target(B, pinned) == []  # a soap target may pin now, as a rest one does
    job = await job_for(hub, make_actor, pinned)
    assert (await adapter.push(job)).remote_id == "VB-1"
    assert receiver.wsdl_reads == 1 and len(receiver.received) == 1

    # Another certificate pinned: the WSDL is not even read.
    wrong = target(receiver, access_key=HUB_KEY, secret="vbql-b",
                   tls_fingerprint=fingerprint_of_pem((pki / "other.pem").read_text()))
    with pytest.raises(PushFailure) as err:
        await adapter.push(dataclasses.replace(job, target=wrong))
    assert "WSDL" in str(err.value)
    # Nothing pinned and no CA: the system CAs do not know the certificate.
    plain = target(receiver, access_key=HUB_KEY, secret="vbql-b")
    with pytest.raises(PushFailure):
        await adapter.push(dataclasses.replace(job, target=plain))
    # The unit's own CA (its self-signed certificate) is the other way to trust it.
    with_ca = target(receiver, access_key=HUB_KEY, secret="vbql-b", tls_ca_file=str(pki / "vbql.pem"))
    assert (await adapter.push(dataclasses.replace(job, target=with_ca))).remote_id == "VB-2"
    assert receiver.wsdl_reads == 2 and len(receiver.received) == 2


async def test_the_post_itself_is_pinned(hub: Hub, make_actor: MakeActor,
                                         tls_receiver: tuple[VbqlReceiver, Path]) -> None:
    """A WSDL read from the pinned server that names another HTTPS address for the service: the
    POST goes there only if that server shows the pinned certificate too."""
    receiver, pki = tls_receiver
    other_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other_ctx.load_cert_chain(pki / "other.pem", pki / "other.key")
    other = await VbqlReceiver(access_key=HUB_KEY, secret=HUB_SECRET, ssl=other_ctx).start()
    try:
        await hub.secrets.set("vbql-b", HUB_SECRET)
        pinned = target(receiver, access_key=HUB_KEY, secret="vbql-b", address=other.url,
                        tls_fingerprint=fingerprint_of_pem((pki / "vbql.pem").read_text()))
        job = await job_for(hub, make_actor, pinned)
        with pytest.raises(PushFailure) as err:
            await hub.push_adapters["soap"].push(job)
        assert "POST" in str(err.value) and other.received == []
    finally:
        await other.stop()
