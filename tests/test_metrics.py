"""`GET /metrics`: what each series counts after real exchanges, access by address or token, promtool."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lgsp.core.config import Config, load_config
from lgsp.core.hub import Hub

from .conftest import MakeActor, base_env, free_port, raw_request, wait_for
from .delivery.helpers import fast_retries, with_delivery
from .edxml_hub.support import HUB_ID, A, B, add_units, edoc, sha

SRC, DST, PUSHED = "000.00.01.H23", "000.00.02.H23", "000.00.03.H23"


async def scrape(hub: Hub, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    hub.metrics.snapshot.max_age = 0  # every scrape reads the store (the test follows each change)
    async with aiohttp.ClientSession() as http, http.get(hub.url + "/metrics", headers=headers or {}) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_an_exchange_is_counted_from_creation_to_completion(hub: Hub, make_actor: MakeActor) -> None:
    src, dst = await make_actor(SRC), await make_actor(DST)
    data = b"cong van so 1" * 100
    packet_id = await src.client.send(data, [DST], subject="Công văn", priority=1)
    status, text, headers = await scrape(hub)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert value(text, "lgsp_packets_total", stage="created") == 1
    assert value(text, "lgsp_packets_total", stage="accepted") == 1
    assert value(text, "lgsp_packets_total", stage="completed") == 0
    assert value(text, "lgsp_deliveries", state="queued", protocol="pull") == 1
    assert value(text, "lgsp_blob_bytes") == len(data)
    assert value(text, "lgsp_unit_offline_waiting_deliveries", unit=DST) == 1  # never seen yet
    assert value(text, "lgsp_unit_offline_seconds", unit=DST) > 0
    assert value(text, "lgsp_unit_offline_waiting_deliveries", unit=SRC) == 0
    await wait_for(lambda: _online(hub, 1), what="the presence flush (the source only)")
    assert value(text, "lgsp_ready") == 1
    assert value(text, "lgsp_http_requests_total", route="/v1/packets", method="POST", status="201") == 1
    assert packet_id not in text  # routes are templates: no per-packet series
    fetched = await dst.client.fetch_bytes(packet_id)
    await dst.client.ack(packet_id, hashlib.sha256(fetched).hexdigest())
    # A signed request that fails: counted by its problem code.
    status_code, _, _ = await raw_request(hub.url, "GET", "/v1/inbox", headers={
        "X-LGSP-Access-Key": dst.key.access_key, "X-LGSP-Date": "2001-01-01T00:00:00Z",
        "X-LGSP-Nonce": "n" * 24, "X-LGSP-Content-SHA256": hashlib.sha256(b"").hexdigest(),
        "X-LGSP-Signature": "HMAC-SHA256 AAAA"})
    assert status_code == 401
    await wait_for(lambda: _completed(hub), what="the completion to be counted")
    await wait_for(lambda: _online(hub, 2), what="the destination online too")
    _, text, _ = await scrape(hub)
    assert value(text, "lgsp_deliveries_ended_total", state="delivered", protocol="pull") == 1
    assert value(text, "lgsp_delivery_duration_seconds_count", priority="urgent") == 1
    assert value(text, "lgsp_blob_bytes") == 0
    assert value(text, "lgsp_unit_offline_waiting_deliveries", unit=DST) == 0
    assert value(text, "lgsp_deliveries", state="queued", protocol="pull") == 0
    failures = {dict(k[1])["code"]: v for k, v in samples(text).items() if k[0] == "lgsp_auth_failures_total"}
    assert sum(failures.values()) == 1 and all(code.startswith("auth.") for code in failures)
    assert value(text, "lgsp_store_pool_connections", pool="writer", use="size") == 1
    # The SQLite store keeps its connections between uses: kept ones count as idle, not in use.
    assert value(text, "lgsp_store_pool_connections", pool="writer", use="in_use") == 0
    assert value(text, "lgsp_store_pool_connections", pool="writer", use="idle") == 1
    assert value(text, "lgsp_store_pool_connections", pool="reader", use="in_use") == 0
    assert value(text, "lgsp_http_requests_total", route="unmatched", method="GET", status="404") == 0


async def _online(hub: Hub, n: int) -> bool:
    _, text, _ = await scrape(hub)
    return value(text, "lgsp_units_online") == n


async def _completed(hub: Hub) -> bool:
    _, text, _ = await scrape(hub)
    return value(text, "lgsp_packets_total", stage="completed") == 1


async def test_open_event_streams_are_counted(hub: Hub, make_actor: MakeActor) -> None:
    dst = await make_actor(DST)
    async with dst.client.events() as stream:
        assert (await anext(aiter(stream)))["type"] == "hello"
        _, text, _ = await scrape(hub)
        assert value(text, "lgsp_event_streams_open") == 1
    await wait_for(lambda: _streams(hub, 0), what="the stream to close")


async def _streams(hub: Hub, n: int) -> bool:
    _, text, _ = await scrape(hub)
    return value(text, "lgsp_event_streams_open") == n


async def test_failing_pushes_show_as_retries_and_a_queue_that_ages(tmp_path: Path) -> None:
    cfg = load_config(None, env=base_env(tmp_path / "var"))
    cfg = fast_retries(with_delivery(cfg, targets={PUSHED: {"protocol": "rest",
                                                            "url": f"http://127.0.0.1:{free_port()}/in"}},
                                     probe_interval_seconds=0), attempts=50)
    async with Hub(cfg) as hub:
        await hub.directory.add_unit(PUSHED, "Đơn vị đẩy")
        await hub.directory.add_unit(SRC, "Nguồn")
        app = await hub.directory.add_application(SRC, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.client import Credentials, LgspClient

        async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as client:
            await client.send(b"x" * 10, [PUSHED], subject="đẩy")

        async def retried() -> bool:
            _, text, _ = await scrape(hub)
            return value(text, "lgsp_push_retries_total", protocol="rest") >= 2

        await wait_for(retried, timeout=30, what="two retries")
        _, text, _ = await scrape(hub)
        assert value(text, "lgsp_push_queue_depth", unit=PUSHED) == 1
        assert value(text, "lgsp_push_queue_oldest_seconds", unit=PUSHED) > 0


async def test_edxml_validation_is_timed(tmp_path: Path, make_actor: Any) -> None:
    cfg = load_config(None, env=base_env(tmp_path / "var", LGSP_HUB_IDENTIFIER=HUB_ID))
    async with Hub(cfg) as hub:
        await add_units(hub)
        app = await hub.directory.add_application(A, "vbql")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        from lgsp.client import Credentials, LgspClient

        data = edoc(A, [B])
        async with LgspClient(Credentials(hub.url, key.access_key, "HMAC-SHA256", secret=key.secret)) as client:
            created = await client.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                                "sha256": sha(data)})
            await client.upload(created["upload"]["url"], data, sha(data))
        _, text, _ = await scrape(hub)
        assert value(text, "lgsp_edxml_validation_duration_seconds_count") == 1
        assert value(text, "lgsp_edxml_validation_duration_seconds_sum") > 0


# -- access ----------------------------------------------------------------------------------------

TOKEN = "metrics-token-for-tests"


def _config(tmp_path: Path, **env: str) -> Config:
    return load_config(None, env=base_env(tmp_path / "var", **env))


async def test_access_by_address_or_token(tmp_path: Path) -> None:
    token_hash = hashlib.sha256(TOKEN.encode()).hexdigest()
    cfg = _config(tmp_path, LGSP_METRICS_ALLOW="[10.0.0.0/8, '2001:db8::/32']", LGSP_METRICS_TOKEN_SHA256=token_hash)
    async with Hub(cfg) as hub:
        status, text, headers = await scrape(hub)
        assert status == 403 and headers["Content-Type"].startswith("application/problem+json")
        assert '"forbidden"' in text and "lgsp_" not in text
        for bad in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
            assert (await scrape(hub, {"Authorization": bad}))[0] == 403, bad
        status, text, _ = await scrape(hub, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and "lgsp_http_requests_total" in text
    # Loopback is allowed by default; no token configured means a token opens nothing.
    async with Hub(_config(tmp_path)) as hub:
        assert (await scrape(hub))[0] == 200
    async with Hub(_config(tmp_path, LGSP_METRICS_ALLOW="[]")) as hub:
        assert (await scrape(hub, {"Authorization": "Bearer "}))[0] == 403
    async with Hub(_config(tmp_path, LGSP_METRICS_ENABLED="false")) as hub:
        assert (await scrape(hub))[0] == 404


def test_bad_metrics_settings_name_their_key(tmp_path: Path) -> None:
    from lgsp.core.config import ConfigError

    with pytest.raises(ConfigError) as err:
        _config(tmp_path, LGSP_METRICS_ALLOW="[10.0.0.0/33]", LGSP_METRICS_TOKEN_SHA256="abc")
    text = str(err.value)
    assert "metrics.allow" in text and "metrics.token_sha256" in text


async def test_the_dashboard_and_alert_rules_use_only_series_the_hub_exports(hub: Hub,
                                                                         make_actor: MakeActor) -> None:
    import json
    import re

    ops = Path(__file__).resolve().parents[1] / "docs" / "ops"
    dashboard = json.loads((ops / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append((ops / "prometheus-alerts.yaml").read_text(encoding="utf-8"))
    used = {name for e in exprs for name in re.findall(r"\blgsp_[a-z_]*[a-z]\b", e)}
    _, text, _ = await scrape(hub)
    exported = set()
    for family in text_string_to_metric_families(text):
        exported |= {family.name} | {s.name for s in family.samples}
        exported |= {family.name + suffix for suffix in ("_total", "_bucket", "_count", "_sum")}
    assert used, "no lgsp series found in the dashboard"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


# -- promtool ----------------------------------------------------------------------------------------

def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian's prometheus package; .ci/run installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


async def test_promtool_accepts_the_exposition(hub: Hub, make_actor: MakeActor) -> None:
    promtool = _promtool()
    src, _ = await make_actor(SRC), await make_actor(DST)
    await src.client.send(b"abc", [DST], subject="s")
    _, text, _ = await scrape(hub)
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool = _promtool()
    ops = Path(__file__).resolve().parents[1] / "docs" / "ops"
    res = subprocess.run([promtool, "check", "rules", str(ops / "prometheus-alerts.yaml")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([promtool, "test", "rules", "prometheus-alerts.test.yaml"], cwd=ops,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
