"""Auth overhead, in-process: signature verifications per second for each algorithm.

Three levels per algorithm, so the cost of each layer shows:
- `primitive`: the algorithm's verify() on a ready string to sign (the cryptography floor; this is
  the baseline the other two are divided by);
- `protocol`: parse the X-LGSP-* headers, canonicalise, build the string to sign, verify;
- `full`: Authenticator.authenticate() as the hub runs it: key lookup in the store, skew check,
  verification, nonce recorded (a write transaction), presence noted. Same store settings as the
  hub (SQLite WAL on a file).
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import yaml

ALGORITHMS = ("HMAC-SHA256", "HMAC-SHA1", "RSA-SHA256")
PATH = "/v1/inbox"
QUERY = "limit=100"


def _write_config(workdir: Path) -> Path:
    """Defaults of config/lgsp.yaml (the hub's production settings), our own data folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "lgsp.yaml"
    config_path.write_text(yaml.safe_dump({"hub": {"data_dir": str(workdir / "var")}}), encoding="utf-8")
    return config_path


def _protocol(auth: Any, headers: dict[str, str], material: Any) -> None:
    """Everything authenticate() does but the store: parse, canonicalise, verify."""
    from lgsp.core.auth import parse_signed_request

    auth._check_signature(parse_signed_request("GET", PATH, QUERY, headers), material)


def _rate(fn: Any, seconds: float, batch: int = 50) -> float:
    """Calls per second of fn() over about `seconds` (checked every `batch` calls)."""
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


async def run(workdir: Path, *, seconds: float, full_requests: int) -> list[dict[str, Any]]:
    """One result per algorithm: {algorithm, primitive, protocol, full} in verifications/s."""
    from lgsp.core.auth import parse_signed_request
    from lgsp.core.config import load_config
    from lgsp.core.hub import Hub
    from lgsp.core.signing import EMPTY_SHA256, Signer

    config_path = await asyncio.to_thread(_write_config, workdir)
    hub = Hub(load_config(config_path))
    await hub.open_store()
    out: list[dict[str, Any]] = []
    try:
        await hub.directory.add_unit("000.09.01.H23", "Bench auth unit")
        app = await hub.directory.add_application("000.09.01.H23", "bench-auth")
        for name in ALGORITHMS:
            alg = hub.algorithms[name]
            issued = await hub.directory.issue_key(app.id, name)
            signing_key = issued.secret if alg.shared_secret else issued.private_key_pem
            assert signing_key is not None
            material = await hub.directory.key_material(issued.access_key)
            assert material is not None
            signer = Signer(issued.access_key, alg, signing_key)
            headers = signer.headers("GET", PATH, QUERY, EMPTY_SHA256)
            request = parse_signed_request("GET", PATH, QUERY, headers)
            message = request.message()
            signature = request.signature
            if not alg.verify(material.verification_key, message, signature):
                raise RuntimeError(f"{name}: a fresh signature does not verify")

            primitive = _rate(functools.partial(alg.verify, material.verification_key, message, signature), seconds)
            proto = _rate(functools.partial(_protocol, hub.auth, headers, material), seconds)

            # Full path: fresh nonces, signed ahead of time so signing is not timed.
            batch = [signer.headers("GET", PATH, QUERY, EMPTY_SHA256) for _ in range(full_requests)]
            for h in batch[:5]:  # warm the store's connections and caches
                await hub.auth.authenticate("GET", PATH, QUERY, h)
            t0 = time.perf_counter()
            for h in batch[5:]:
                await hub.auth.authenticate("GET", PATH, QUERY, h)
            full = (len(batch) - 5) / (time.perf_counter() - t0)
            # The floor again, after: on a shared machine one short window can be slowed by others'
            # work, and a floor measured low would make the full path look cheaper than verify()
            # alone. The better of the two windows is the floor (the full path now adds only tens of
            # µs to verify(): an inline nonce write on SQLite).
            primitive = max(primitive, _rate(functools.partial(alg.verify, material.verification_key, message,
                                                               signature), seconds))
            bits = None
            if not alg.shared_secret:
                from cryptography.hazmat.primitives import serialization

                bits = serialization.load_pem_public_key(material.verification_key.encode()).key_size  # type: ignore[union-attr]
            out.append({"algorithm": name, "key_bits": bits, "primitive": primitive, "protocol": proto,
                        "full": full})
    finally:
        await hub.db.close()
    return out
