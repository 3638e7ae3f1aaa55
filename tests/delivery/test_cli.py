"""`lgsp deliveries|service|hub` (in-process through `main(argv)`) against the store of a running hub."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from ..cli_support import arun_cli
from .helpers import UNITS, add_units, has_state, hub_verifier, receiver_server, status, wait_for

SRC, DST, PULL, OTHER = UNITS[0], UNITS[1], UNITS[3], UNITS[4]


async def lgsp(*args: str) -> tuple[int, str, str]:
    res = await arun_cli(*args)
    return res.returncode, res.stdout, res.stderr


def write_cfg(tmp_path: Path, receiver_url: str) -> Path:
    path = tmp_path / "lgsp.yaml"
    path.write_text(f"""
hub:
  data_dir: {tmp_path / "hub"}
server:
  port: 0
blobs:
  fsync: false
security:
  rsa_key_bits: 2048
delivery:
  poll_interval_seconds: 0.5
  probe_interval_seconds: 0
  retry:
    base_delay_seconds: 600
  targets:
    "{DST}":
      protocol: rest
      url: {receiver_url}
logging:
  access_log: false
""", encoding="utf-8")
    return path


async def test_operator_lists_retries_cancels_and_reroutes(tmp_path: Path) -> None:
    async with receiver_server() as rr:
        rr.script.steps = [status(503)] * 3
        cfg_path = write_cfg(tmp_path, rr.url)
        cfg = load_config(cfg_path, env={})
        c = str(cfg_path)
        async with Hub(cfg) as hub:
            rr.receiver.verify = await hub_verifier(hub)
            creds = await add_units(hub, [SRC, DST, PULL, OTHER])
            async with creds[SRC].client(hub.url) as src:
                stuck = await src.send(b"stuck", [DST], subject="s")
                to_cancel = await src.send(b"cancel me", [DST, PULL], subject="s")
                to_move = await src.send(b"move me", [DST], subject="s")
                for pid in (stuck, to_cancel, to_move):
                    await wait_for(lambda pid=pid: has_state(hub, pid, DST, "retrying"), what="retrying")

                code, out, err = await lgsp("deliveries", "list", "--state", "retrying", "--json", "-c", c)
                assert code == 0, err
                rows = {r["packet"]: r for r in json.loads(out)}
                assert set(rows) == {stuck, to_cancel, to_move}
                assert rows[stuck]["attempts"] == 1
                assert "HTTP 503" in rows[stuck]["last_error"]
                assert rows[stuck]["next_attempt_at"]
                code, out, _ = await lgsp("deliveries", "list", "--unit", PULL, "-c", c)
                assert to_cancel in out
                assert stuck not in out

                # retry now instead of in 10 minutes: the running hub picks it up from the store
                code, out, err = await lgsp("deliveries", "retry", stuck, DST, "-c", c)
                assert code == 0, err
                assert "queued packet" in out
                await wait_for(lambda: has_state(hub, stuck, DST, "delivered"), timeout=10, what="retried delivery")

                code, out, err = await lgsp("deliveries", "cancel", to_cancel, DST, "--reason", "sai nơi nhận", "-c", c)
                assert code == 0, err
                view = await src.status(to_cancel)
                d = {x["unit"]: x for x in view["deliveries"]}
                assert d[DST]["state"] == "cancelled"
                assert d[PULL]["state"] == "queued"
                assert "sai nơi nhận" in d[DST]["reason"]
                # An operator reads the stored reason and the state in the default language.
                listed = await arun_cli("deliveries", "list", "--state", "cancelled", "-c", c, lang="")
                assert "bị người vận hành hủy: sai nơi nhận" in listed.stdout and "đã hủy" in listed.stdout
                assert "cancelled" not in listed.stdout and "retrying" not in listed.stdout, listed.stdout
                assert view["content"] == "stored"  # PULL still needs it

                code, out, err = await lgsp("deliveries", "reroute", to_move, DST, "--to", PULL, "-c", c)
                assert code == 0, err
                assert "pull" in out
                async with creds[PULL].client(hub.url) as pull:
                    inbox = [i["id"] for i in await pull.inbox()]
                    assert to_move in inbox
                    data = await pull.fetch_bytes(to_move)
                    assert await pull.ack(to_move, hashlib.sha256(data).hexdigest()) == "delivered"
                view = await src.status(to_move)
                assert view["state"] == "completed"
                assert {x["unit"]: x["state"] for x in view["deliveries"]} == {DST: "cancelled", PULL: "delivered"}
                assert any(e["type"] == "packet.rerouted" for e in view["events"])

                # bad paths: one line, non-zero exit (independent, so run side by side)
                cases = (
                    (("deliveries", "retry", stuck, DST), "conflict"),  # already delivered
                    (("deliveries", "retry", to_move, DST), "content.gone"),  # completed, content purged
                    (("deliveries", "retry", "00000000-0000-0000-0000-000000000000", DST), "not_found"),
                    (("deliveries", "reroute", to_cancel, PULL, "--to", "000.00.99.H23"), "route.unknown_destination"),
                    (("deliveries", "reroute", to_cancel, PULL, "--to", DST), "conflict"),
                    # the hub's own unit (it signs pushes) is never a destination
                    (("deliveries", "reroute", to_cancel, PULL, "--to", cfg.hub.identifier),
                     "route.unknown_destination"),
                    (("deliveries", "list", "--state", "lost"), "request.invalid"),
                )
                results = await asyncio.gather(*(lgsp(*args, "-c", c) for args, _ in cases))
                for (args, expect), (code, out, err) in zip(cases, results, strict=True):
                    assert code == 1, (args, out, err)
                    assert expect in err, (args, err)
                    assert len(err.strip().splitlines()) == 1, err


async def test_service_and_hub_key_commands(tmp_path: Path) -> None:
    cfg_path = write_cfg(tmp_path, "http://127.0.0.1:9/lgsp")
    c = str(cfg_path)
    cfg = load_config(cfg_path, env={})
    hub = Hub(cfg)
    await hub.open_store()
    await add_units(hub, [SRC, DST])
    await hub.db.close()
    code, out, err = await lgsp("service", "add", "van-ban.tra-cuu", "--unit", DST, "--url", "http://127.0.0.1:9/api",
                                "-c", c)
    assert code == 0, err
    code, out, err = await lgsp("service", "grant", "van-ban.tra-cuu", SRC, "-c", c)
    assert code == 0, err
    assert "may call" in out
    code, out, _ = await lgsp("service", "list", "--json", "-c", c)
    listed = json.loads(out)
    assert listed[0]["id"] == "van-ban.tra-cuu"
    assert listed[0]["granted_to"] == [SRC]
    (code, _, err), (code2, _, err2) = await asyncio.gather(
        lgsp("service", "add", "Bad", "--unit", DST, "--url", "http://x", "-c", c),
        lgsp("service", "revoke", "van-ban.tra-cuu", DST, "-c", c))
    assert code == 1
    assert "request.invalid" in err
    assert code2 == 1
    assert "not_found" in err2
    code, pem, err = await lgsp("hub", "key", "-c", c)
    assert code == 0, err
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    code, pem2, _ = await lgsp("hub", "key", "-c", c)
    assert pem2 == pem  # made once, then kept (sealed in the secret store)
    code, out, _ = await lgsp("hub", "key", "--json", "-c", c)
    key = json.loads(out)
    assert key["public_key_pem"] == pem
    assert key["algorithm"] == "RSA-SHA256"
    assert key["access_key"].startswith("AK")

