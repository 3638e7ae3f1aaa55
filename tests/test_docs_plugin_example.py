"""The plugin example at the top of docs/plugins.md runs as written: its route answers a signed
request and its `lgsp_packet_delivered` hook logs (it once called an undefined `hub_log`)."""

from __future__ import annotations

import hashlib
import logging
import re
import types
from pathlib import Path

import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.hub import Hub

from .conftest import raw_request
from .hooks.support import config

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def example_module() -> types.ModuleType:
    """The first Python block of docs/plugins.md, loaded as the module `my_lgsp_adapter`."""
    source = re.search(r"```python\n(# my_lgsp_adapter/__init__.py\n.*?)```", DOC.read_text(encoding="utf-8"),
                       re.S)
    assert source is not None, "docs/plugins.md lost its plugin example"
    module = types.ModuleType("my_lgsp_adapter")
    exec(compile(source.group(1), str(DOC), "exec"), module.__dict__)  # our own docs
    return module


async def test_the_documented_plugin_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugin = example_module()
    async with Hub(config(tmp_path), extra_plugins=(plugin,)) as hub:
        clients = {}
        for unit, name in (("000.00.00.H23", "Sở A"), ("000.00.01.H23", "Sở B")):
            await hub.directory.add_unit(unit, name)
            app = await hub.directory.add_application(unit, "docs")
            key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
            clients[unit] = LgspClient(Credentials(hub.url, key.access_key, secret=key.secret))
        a, b = clients["000.00.00.H23"], clients["000.00.01.H23"]
        try:
            status, _, body = await raw_request(hub.url, "GET", "/x/whoami", signer=a.signer)
            assert (status, body) == (200, {"unit": "000.00.00.H23", "name": "Sở A"})
            packet_id = await a.send(b"abc", ["000.00.01.H23"], subject="docs")
            with caplog.at_level(logging.INFO, logger="my_lgsp_adapter"):
                await b.ack(packet_id, hashlib.sha256(await b.fetch_bytes(packet_id)).hexdigest())
                await hub.exchange.drain()
        finally:
            await a.close()
            await b.close()
    assert f"packet {packet_id} reached 000.00.01.H23" in caplog.text
