"""pytest plugin (`-p tests.secret_scan`) used by tests/test_logs.py: during a test run, records every
secret the run creates and writes every log record, at DEBUG, as the hub's JSON lines.

Secrets recorded: random tokens of 32 characters or more (`secrets.token_*`: HMAC secrets, session
tokens, stream tickets, console tokens), master keys (current and older) and the key-encryption key
(hex and Base64), transfer-URL tokens, issued keys' secrets and private keys, and values given to
the secret store. Written at the end of the run to `$LGSP_SECRET_SCAN_DIR/secrets.json`, beside
`log.jsonl`.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

_found: set[str] = set()
#: Shorter random strings (nonces of 24 characters) are identifiers, not secrets.
MIN_TOKEN = 32


def keep(value: Any, *, short_ok: bool = False) -> None:
    if isinstance(value, bytes):
        if len(value) >= 16:
            _found.update({value.hex(), base64.b64encode(value).decode().rstrip("="),
                           base64.urlsafe_b64encode(value).decode().rstrip("=")})
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-----BEGIN"):
            _found.update(line for line in text.splitlines() if len(line) >= 40 and not line.startswith("-----"))
        elif len(text) >= MIN_TOKEN or (short_ok and len(text) >= 16):
            _found.add(text)


def _wrap_token(name: str) -> None:
    original = getattr(secrets, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        keep(value)
        return value

    setattr(secrets, name, wrapper)


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("LGSP_SECRET_SCAN_DIR"):
        return
    for name in ("token_urlsafe", "token_hex", "token_bytes"):
        _wrap_token(name)

    from lgsp.core.directory import Directory
    from lgsp.core.exchange.tokens import TransferTokens
    from lgsp.core.logs import ContextFilter, JsonFormatter
    from lgsp.core.masterkey import Kek, MasterKey
    from lgsp.core.secretstore import SecretStore

    init = MasterKey.__init__

    def master_init(self: MasterKey, key: bytes, *args: Any, **kwargs: Any) -> None:
        keep(key)
        for older in kwargs.get("older", ()):
            keep(older)
        init(self, key, *args, **kwargs)

    MasterKey.__init__ = master_init  # type: ignore[method-assign]
    kek_init = Kek.__init__

    def kek_keep(self: Kek, key: bytes, *args: Any, **kwargs: Any) -> None:
        keep(key)
        kek_init(self, key, *args, **kwargs)

    Kek.__init__ = kek_keep  # type: ignore[method-assign]
    mac = TransferTokens._mac

    def transfer_mac(self: TransferTokens, *args: Any) -> str:
        token = mac(self, *args)
        keep(token, short_ok=True)
        return token

    TransferTokens._mac = transfer_mac  # type: ignore[method-assign]
    issue = Directory.issue_key

    async def issue_key(self: Directory, *args: Any, **kwargs: Any) -> Any:
        issued = await issue(self, *args, **kwargs)
        keep(issued.secret or "")
        keep(issued.private_key_pem or "")
        return issued

    Directory.issue_key = issue_key  # type: ignore[method-assign]
    store_set = SecretStore.set

    async def secret_set(self: SecretStore, name: str, value: str) -> None:
        keep(value, short_ok=True)
        await store_set(self, name, value)

    SecretStore.set = secret_set  # type: ignore[method-assign]

    handler = logging.FileHandler(Path(os.environ["LGSP_SECRET_SCAN_DIR"]) / "log.jsonl", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = os.environ.get("LGSP_SECRET_SCAN_DIR")
    if folder:
        (Path(folder) / "secrets.json").write_text(json.dumps(sorted(_found)), encoding="utf-8")
