"""The client (and so the CLI) takes several hub addresses and moves on when a node cannot be reached."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import pytest

from lgsp.client import Credentials, LgspClient
from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .cli_support import arun_cli
from .conftest import MakeActor, base_env, free_port
from .test_exchange import next_message


def _creds(actor_key: object, url: str) -> Credentials:
    return Credentials(url, actor_key.access_key, "HMAC-SHA256", secret=actor_key.secret)  # type: ignore[attr-defined]


async def test_a_dead_first_node_is_skipped_for_every_kind_of_call(make_actor: MakeActor, hub: Hub,
                                                                  tmp_path: Path) -> None:
    a = await make_actor("000.00.00.H23")
    b = await make_actor("000.00.01.H23")
    dead = f"http://127.0.0.1:{free_port()}"
    content = os.urandom(200_000)
    async with LgspClient(_creds(a.key, f"{dead}, {hub.url}/")) as sa, \
            LgspClient(_creds(b.key, f"{dead},{hub.url}")) as sb:
        assert sa.bases == [dead, hub.url] and sa.base == dead
        async with sb.events() as stream:
            assert (await next_message(stream))["type"] == "hello"
            pid = await sa.send(content, [b.unit], subject="Qua nút còn sống")
            assert (await next_message(stream, timeout=5.0))["id"] == pid
        assert sa.base == hub.url and sb.base == hub.url
        assert [i["id"] for i in await sb.inbox()] == [pid]
        sha = await sb.download(pid, tmp_path / "got.bin")
        assert sha == hashlib.sha256(content).hexdigest() and (tmp_path / "got.bin").read_bytes() == content
        assert await sb.ack(pid, sha) == "delivered"
        assert (await sa.status(pid))["state"] == "completed"
        assert await sa.time()


async def test_every_node_down_is_a_connection_error(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    urls = ",".join(f"http://127.0.0.1:{free_port()}" for _ in range(3))
    async with LgspClient(_creds(a.key, urls)) as client:
        with pytest.raises(aiohttp.ClientConnectorError):
            await client.inbox()


@pytest.mark.parametrize("url", ["", " , ", "ftp://hub.example", "http://ok.example,hub.example"])
def test_bad_hub_addresses_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        Credentials(url, "AK", "HMAC-SHA256", secret="x").urls  # noqa: B018


async def test_the_cli_refuses_a_bad_address_in_one_line(make_actor: MakeActor) -> None:
    a = await make_actor("000.00.00.H23")
    res = await arun_cli("inbox", "--url", "http://ok.example,ftp://x", "--access-key", a.key.access_key,
                         "--secret-key", a.key.secret or "")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "ftp://x" in res.stderr


async def test_an_upload_url_of_a_node_that_died_is_finished_on_another(pg_url: str, tmp_path: Path) -> None:
    """Two nodes share PostgreSQL and the data folder; the one that handed out the upload URL stops."""
    env = base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url)
    node_a, node_b = Hub(load_config(None, env=env)), Hub(load_config(None, env=env))
    await node_a.start()
    await node_b.start()
    try:
        await node_a.directory.add_unit("000.00.00.H23", "Sở A")
        await node_a.directory.add_unit("000.00.01.H23", "Sở B")
        keys = []
        for unit in ("000.00.00.H23", "000.00.01.H23"):
            app = await node_a.directory.add_application(unit, "vbql")
            keys.append(await node_a.directory.issue_key(app.id, "HMAC-SHA256"))
        content = os.urandom(50_000)
        sha = hashlib.sha256(content).hexdigest()
        async with LgspClient(_creds(keys[0], f"{node_a.url},{node_b.url}")) as src, \
                LgspClient(_creds(keys[1], f"{node_b.url}")) as dst:
            created = await src.create_packet(["000.00.01.H23"], subject="Hai nút", size=len(content), sha256=sha)
            assert created["upload"]["url"].startswith(node_a.url)
            await node_a.stop()
            await src.upload(created["upload"]["url"], content, sha)  # rewritten to node B
            assert src.base == node_b.url
            assert await dst.fetch_bytes(created["id"]) == content
    finally:
        await asyncio.gather(node_a.stop(), node_b.stop(), return_exceptions=True)
