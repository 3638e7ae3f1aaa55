"""TLS: the hub's own HTTPS (with optional client certificates), and how it checks the servers of
the units it pushes to.

Serving. With `tls.cert_file` and `tls.key_file` the hub speaks HTTPS only: TLS 1.2 or newer,
forward-secret AEAD suites for TLS 1.2 (TLS 1.3's are all fine), no compression, no
renegotiation. SIGHUP (`Hub.reload_tls`) re-reads the certificate and key into the same context,
so new connections get the new certificate and open ones are not cut. With `tls.client_ca_file`
a client certificate is requested (not required) and checked against those CAs; a unit whose
certificate fingerprint is pinned in the directory (`lgsp unit cert`) must present that very
certificate, or its requests are refused before their signature is looked at (core/auth.py).

Pushing. A push target (`delivery.targets.<unit>`) is checked against the system CAs, or
`tls_ca_file` (a CA of its own), or `tls_fingerprint` (the SHA-256 of its certificate, pinned).
Turning checks off takes `verify_tls: false`, which is logged as a warning at every start and
recorded in the audit log: there is no silent way.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lgsp.core.i18n import Text

log = logging.getLogger("lgsp.tls")

#: TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
TARGET_KEYS = ("verify_tls", "tls_ca_file", "tls_fingerprint")


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be used (the message names the file)."""


def normalise_fingerprint(text: str) -> str:
    """`AB:CD:…` or `abcd…` (SHA-256, 64 hex digits) → lowercase hex without separators."""
    value = text.strip().replace(":", "").lower()
    if not FINGERPRINT_RE.fullmatch(value):
        raise TlsError(Text("a certificate fingerprint is its SHA-256: 64 hex digits (colons allowed)"))
    return value


def fingerprint_of_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def fingerprint_of_pem(pem: str) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM text."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.strip() if "-----END CERTIFICATE-----" in pem else pem)
    except ValueError as exc:
        raise TlsError(Text("not a PEM certificate")) from exc
    return fingerprint_of_der(der)


def server_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    load_certificate(ctx, cert_file, key_file)
    if client_ca_file:
        try:
            ctx.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(Text("{file}: cannot read the client CA certificates ({reason})", file=client_ca_file,
                                reason=exc)) from exc
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a unit without a pinned certificate still connects
    return ctx


def load_certificate(ctx: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    """(Re)load the served certificate into `ctx`: new handshakes use it, open connections stay."""
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise TlsError(Text("{file}: no such file", file=exc.filename)) from exc
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(Text("{cert} / {key}: not a certificate and its private key ({reason})", cert=cert_file,
                               key=key_file, reason=exc)) from exc


def peer_fingerprint(transport: Any) -> str | None:
    """The SHA-256 of the client certificate of a TLS connection, or None (no TLS, no certificate)."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return fingerprint_of_der(der) if der else None


# -- pushing to units ---------------------------------------------------------------------------

def target_problems(target: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for the TLS settings of a push target."""
    out: list[tuple[str, str]] = []
    if "verify_tls" in target and not isinstance(target["verify_tls"], bool):
        out.append(("verify_tls", Text("must be true or false")))
    ca = target.get("tls_ca_file")
    if ca is not None and (not isinstance(ca, str) or not Path(ca).is_file()):
        out.append(("tls_ca_file", Text("must name a readable file of PEM CA certificates")))
    fp = target.get("tls_fingerprint")
    if fp is not None:
        try:
            normalise_fingerprint(fp) if isinstance(fp, str) else normalise_fingerprint("")
        except TlsError as exc:
            out.append(("tls_fingerprint", exc.args[0]))
    if target.get("verify_tls") is False and (ca is not None or fp is not None):
        out.append(("verify_tls",
                    Text("false turns every check off; remove tls_ca_file/tls_fingerprint or set it true")))
    return out


def client_ssl(target: Mapping[str, Any]) -> Any:
    """aiohttp's `ssl` argument for a push target: a context with its own CA, a pinned fingerprint,
    the default checks (True), or none at all (False: only with an explicit `verify_tls: false`)."""
    import aiohttp

    if target.get("verify_tls") is False:
        return False
    fingerprint = target.get("tls_fingerprint")
    if isinstance(fingerprint, str):
        return aiohttp.Fingerprint(bytes.fromhex(normalise_fingerprint(fingerprint)))
    ca = target.get("tls_ca_file")
    if isinstance(ca, str):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
    return True
