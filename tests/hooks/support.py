"""Shared by the hook tests: a hub with test plugins, and a pair of units that exchange packets.

Each file of this folder is named for the hook it exercises (tests/test_plugins.py checks that
every hook in plugins/hookspecs.py has one), through a test plugin registered with
`Hub(config, extra_plugins=...)`, the way a third-party plugin would be loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from ..conftest import base_env

SRC, DST, OTHER = "000.00.00.H23", "000.00.01.H23", "000.00.02.H23"


def config(tmp_path: Path, **env: str) -> Config:
    return load_config(None, env=base_env(tmp_path / "var", **env))


async def client_of(hub: Hub, unit: str, *, existing: bool = False) -> LgspClient:
    if not existing:
        await hub.directory.add_unit(unit, unit)
    app = await hub.directory.add_application(unit, "hooks")
    key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
    return LgspClient(Credentials(hub.url, key.access_key, secret=key.secret))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def send(client: LgspClient, data: bytes, to: list[str], **body: Any) -> str:
    return await client.send(data, to, subject=body.pop("subject", "s"), **body)
