"""Signing SOAP calls to the hub with zeep: a Transport that adds the LGSP1 headers.

The hub authenticates SOAP exactly like REST: the X-LGSP-* headers sign the method, the path, the
query and the SHA-256 of the exact POST body (docs/integrator-guide.md, docs/soap.md). A zeep
*plugin* sees the envelope before it is serialised, so it cannot know the bytes that are sent; the
transport's `post()` gets exactly those bytes, so the signature is computed there.

    from lgsp.client import Credentials
    from lgsp.client.zeep_signing import edxml_client

    client = edxml_client("https://lgsp.example.gov.vn", Credentials(url, access_key, secret=secret))
    answer = client.service.sendEdoc(edxml=packet_bytes)
    print(answer.packetId)

The WSDL itself is fetched unsigned (like /v1/openapi.yaml). Every call gets a fresh nonce.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import requests
import zeep
from requests.utils import requote_uri

from lgsp.client.client import Credentials
from lgsp.core.signing import Signer

__all__ = ["SigningTransport", "edxml_client", "wsdl_url"]


class SigningTransport(zeep.Transport):
    """A zeep Transport whose POSTs carry LGSP1 signature headers over the exact body."""

    def __init__(self, signer: Signer | Credentials, *args: Any, session_token: str | None = None,
                 lang: str = "vi", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signer = signer.signer() if isinstance(signer, Credentials) else signer
        self.session_token = session_token
        self.lang = lang

    def __repr__(self) -> str:  # never show key material
        return f"SigningTransport({self.signer!r})"

    def post(self, address: str, message: bytes | str, headers: dict[str, str]) -> requests.Response:
        body = message.encode("utf-8") if isinstance(message, str) else message
        url = urlsplit(requote_uri(address))  # the path exactly as requests will send it
        signed = dict(headers)
        signed.update(self.signer.headers("POST", url.path or "/", url.query, hashlib.sha256(body).hexdigest(),
                                          session=self.session_token))
        signed.setdefault("Accept-Language", self.lang)
        return super().post(address, body, signed)


def wsdl_url(hub_url: str) -> str:
    return hub_url.rstrip("/") + "/soap/edxml?wsdl"


def edxml_client(hub_url: str, credentials: Credentials, *, timeout: float = 300,
                 **transport_kwargs: Any) -> zeep.Client:
    """A zeep client for the hub's edXML SOAP service, signing as `credentials`.

    `client.service` is the SOAP 1.1 port; `client.bind("LgspEdxmlService", "LgspEdxmlSoap12")`
    gives the SOAP 1.2 one.
    """
    transport = SigningTransport(credentials, timeout=30, operation_timeout=timeout, **transport_kwargs)
    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    return zeep.Client(wsdl_url(hub_url), transport=transport, settings=settings)
