"""The benchmark harness works and its numbers are sane (never how fast: that is bench/'s job).

One `python -m bench.run --smoke` run (the hub and the relay as real processes, a few seconds)
feeds the checks below; the pure helpers are checked on their own. Speed thresholds do not belong
here: a shared CI machine makes them flaky, and a regression is a ratio in bench/results, not a
red test.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a folder of the repository, not an installed package

from bench.common import fractional_rate, percentile, ratio_summary, summarize  # noqa: E402
from bench.profiling import idle_lines  # noqa: E402
from bench.profiling import summarize as summarize_profile  # noqa: E402
from bench.report import Row, table  # noqa: E402


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "result.json"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(out), "--workdir", str(tmp)],
                          cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"bench exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = _strict(out.read_text(encoding="utf-8"))
    result["_stdout"] = proc.stdout
    result["_leftovers"] = [p.name for p in tmp.iterdir() if p.name != "result.json"]
    return result


def _rows(result: dict[str, Any], group: str) -> list[dict[str, Any]]:
    rows = [r for r in result["rows"] if r["group"] == group]
    assert rows, f"no {group} rows in {[r['id'] for r in result['rows']]}"
    return rows


def test_run_is_complete_and_clean(smoke: dict[str, Any]) -> None:
    assert smoke["errors"] == []
    assert smoke["servers"]["hub_log_errors"] == 0, smoke["servers"]["hub_log_error_sample"]
    assert smoke["servers"]["exit_codes"] == {"hub": 0, "relay": 0}
    assert {r["group"] for r in smoke["rows"]} >= {"pull", "latency", "large", "auth"}
    assert smoke["_leftovers"] == [], "the temporary folder was not removed"
    assert "hub ÷ baseline" in smoke["_stdout"] and "targets:" in smoke["_stdout"]


def test_machine_facts_are_recorded(smoke: dict[str, Any]) -> None:
    m = smoke["machine"]
    assert m["cpu_count"] >= 1 and m["ram_bytes"] > 0
    assert m["python"].startswith("3.") and m["sqlite"].count(".") == 2
    assert {"aiohttp", "SQLAlchemy", "aiosqlite"} <= set(m["versions"])
    assert "commit" in m["git"]


def test_pull_rows_complete_exchanges_on_both_servers(smoke: dict[str, Any]) -> None:
    for row in _rows(smoke, "pull"):
        for system in ("hub", "relay"):
            s = row["systems"][system]
            assert s["n"] == 1 and s["median"] > 0
            for run in s["details"]:
                assert run["completed"] > 0 and run["errors"] == 0, run
                assert run["whole_completions_rate"] == pytest.approx(run["completed"] / run["window_s"])
                assert run["value"] > 0
                assert run["server_cpu"] >= 0
        ratio = row["ratios"]["hub/relay"]
        assert math.isfinite(ratio["median"]) and ratio["median"] > 0


def test_cpu_per_exchange_rows_follow_the_pull_rows(smoke: dict[str, Any]) -> None:
    pulls = {r["id"]: r for r in _rows(smoke, "pull")}
    cpus = {r["id"]: r for r in _rows(smoke, "pull-cpu")}
    assert set(cpus) == {f"{i}/cpu" for i in pulls}
    for pid, pull in pulls.items():
        for system in ("hub", "relay"):
            run = pull["systems"][system]["details"][0]
            expected = 1000.0 * run["server_cpu"] / run["value"]
            assert cpus[f"{pid}/cpu"]["systems"][system]["median"] == pytest.approx(expected)
        assert cpus[f"{pid}/cpu"]["higher_is_better"] is False


def test_latency_percentiles_are_ordered(smoke: dict[str, Any]) -> None:
    rows = {r["id"]: r for r in _rows(smoke, "latency")}
    for metric in ("notify_ms", "create_to_delivered_ms"):
        for system in ("hub", "relay"):
            p50, p95, p99 = (rows[f"latency/{metric}/{q}"]["systems"][system]["median"] for q in ("p50", "p95", "p99"))
            assert 0 < p50 <= p95 <= p99, (metric, system, p50, p95, p99)
    detail = rows["latency/notify_ms/p99"]["systems"]["hub"]["details"][0]
    assert detail["completed"] == detail["sent"] > 0 and detail["errors"] == 0
    assert detail["upload_complete_traced"] == detail["completed"], "upload-complete instants were not traced"
    # a notification cannot arrive before the packet was created and delivered after it
    assert detail["notify_ms"]["p50"] <= detail["create_to_delivered_ms"]["p99"]


def test_large_rows_measure_bytes_and_memory(smoke: dict[str, Any]) -> None:
    rows = {r["id"]: r for r in _rows(smoke, "large")}
    throughput = next(r for i, r in rows.items() if not i.endswith(("/rss", "/upload", "/download")))
    assert throughput["systems"]["hub"]["median"] > 0
    assert throughput["systems"]["disk+hash ceiling"]["median"] > 0
    run = throughput["systems"]["hub"]["details"][0]
    assert run["bytes"] == throughput["params"]["size"] * throughput["params"]["packets"]
    rss = next(r for i, r in rows.items() if i.endswith("/rss"))
    peak, idle = rss["systems"]["hub"]["median"], rss["systems"]["hub idle"]["median"]
    assert 10 < idle <= peak < 4096, (idle, peak)  # MB: a live Python process, not garbage


def test_auth_rows_cover_each_algorithm(smoke: dict[str, Any]) -> None:
    rows = _rows(smoke, "auth")
    assert {r["params"]["algorithm"] for r in rows} == {"HMAC-SHA256", "HMAC-SHA1", "RSA-SHA256"}
    for row in rows:
        full, primitive = row["systems"]["hub"]["median"], row["systems"]["primitive"]["median"]
        assert 0 < full < primitive  # the full path verifies *and* does more


def test_targets_and_extension_rows_are_reported(smoke: dict[str, Any]) -> None:
    assert len(smoke["targets"]) >= 4
    assert {t["status"] for t in smoke["targets"]} <= {"met", "missed", "not measured"}
    groups = {r["group"] for r in smoke["rows"]}
    assert {"push", "edxml"} <= groups, smoke["skipped"]  # both exist now: they must run
    for row in smoke["rows"]:
        if row["group"] in ("push", "edxml"):
            for name, system in row["systems"].items():
                floor_ok = system["median"] > 0 if row["higher_is_better"] else system["median"] >= 0
                assert system["n"] >= 1 and floor_ok, (row["id"], name, system["median"])
                for run in system["details"]:
                    assert run.get("errors", 0) == 0, (row["id"], name, run)


def test_protocol_rows_have_their_baseline_in_the_same_run(smoke: dict[str, Any]) -> None:
    """The national axis bridge beside the axis client alone; /vxp beside REST on the same hub."""
    ids = {r["id"]: r for r in _rows(smoke, "axis") + _rows(smoke, "vxp")}
    assert set(ids) == {"axis/outbound", "axis/inbound", "vxp/end-to-end", "vxp/cpu"}
    for row in ids.values():
        assert len(row["systems"]) == 2 and len(row["ratios"]) == 1, row["id"]
        assert all(system["median"] > 0 for system in row["systems"].values()), row["id"]


# -- the helpers, on their own ----------------------------------------------------------------

def test_percentile_and_summary() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    s = summarize([3.0, 1.0, 2.0, float("nan")])
    assert (s["n"], s["median"], s["min"], s["max"]) == (3, 2.0, 1.0, 3.0)
    r = ratio_summary([10.0, 20.0], [100.0, 100.0])
    assert r["runs"] == [0.1, 0.2] and r["median"] == pytest.approx(0.15)


def test_fractional_rate_credits_partial_operations() -> None:
    # two operations inside the window, one half inside, one outside
    spans = [(1.0, 2.0), (2.0, 3.0), (9.0, 11.0), (20.0, 21.0)]
    assert fractional_rate(spans, 0.0, 10.0) == pytest.approx(2.5 / 10.0)
    # lock-step waves: 4 pairs finishing together every 4 s; a 6 s window must not jump with phase
    waves = [(4.0 * k, 4.0 * (k + 1)) for k in range(10) for _ in range(4)]
    rates = {round(fractional_rate(waves, t0, t0 + 6.0), 6) for t0 in (4.0, 5.0, 6.5)}
    assert rates == {1.0}


def test_profile_summary_attributes_samples(tmp_path: Path) -> None:
    idle = next(n for f, _, n in idle_lines() if f == "_connection_worker_thread")
    worker = "thread (2): Thread-1 (_connection_worker_thread);_connection_worker_thread (aiosqlite/core.py"
    raw = tmp_path / "p.txt"
    raw.write_text(
        "thread (1): MainThread;main (x.py:1);handler (core/packets.py:10);execute (sqlalchemy/engine/base.py:5) 3\n"
        f"{worker}:{idle}) 5\n"  # waiting for work: left out
        f"{worker}:{idle + 4}) 1\n")  # running a statement
    s = summarize_profile(raw)
    assert (s["samples"], s["idle_samples"], s["busy_samples"]) == (9, 5, 4)
    assert s["threads"] == [{"frame": "MainThread", "samples": 3, "pct": 75.0},
                            {"frame": "aiosqlite worker threads", "samples": 1, "pct": 25.0}]
    assert [c["frame"] for c in s["components"]] == ["SQLAlchemy", "sqlite executing"]
    assert s["deepest_lgsp_frame"][0]["frame"] == "handler (core/packets.py)"


def test_profile_summary_knows_the_inline_sqlite_store(tmp_path: Path) -> None:
    # core/store/sqlite_inline.py runs each statement in its buffered cursor, on the loop's thread or
    # (`_waiting`) on the store's: that is SQLite executing, not lgsp code, although the frame lives
    # under core/
    raw = tmp_path / "p.txt"
    raw.write_text(
        "thread (2): lgsp-sqlite_0;_worker (concurrent/futures/thread.py:83);"
        "_waiting (core/store/sqlite_inline.py:80);_BufferedCursor.execute (core/store/sqlite_inline.py:75) 1\n"
        "thread (1): MainThread;handler (core/packets.py:10);"
        "_BufferedCursor.execute (core/store/sqlite_inline.py:75) 1\n"
        "thread (1): MainThread;handler (core/packets.py:10);"
        "where (<sqlalchemy generated _generative() wrapper for sqlalchemy.sql.selectable.Select.where>:2) 1\n"
        "thread (1): MainThread;handler (core/packets.py:10);parse (core/signing.py:3) 1\n")
    s = summarize_profile(raw)
    components = {c["frame"]: c["samples"] for c in s["components"]}
    assert components == {"sqlite executing": 2, "SQLAlchemy": 1, "lgsp code": 1}
    assert s["main_thread_busy_samples"] == 3
    assert {c["frame"]: c["samples"] for c in s["components_main_thread"]} == {
        "sqlite executing": 1, "SQLAlchemy": 1, "lgsp code": 1}


def test_table_shows_ratio_per_baseline() -> None:
    row = Row(id="x", group="pull", title="pull test", unit="exchanges/s", ratios=[("hub", "relay")])
    for hub, relay in ((10.0, 100.0), (12.0, 100.0), (11.0, 100.0)):
        row.add("hub", hub)
        row.add("relay", relay)
    text = table([row], [], [])
    assert "11.0 [10.0–12.0]" in text and "0.110× relay" in text


def test_encryption_on_and_off_are_measured_in_the_same_run(smoke: dict[str, Any]) -> None:
    """Small packets on the usual hub and on one with `blobs.encrypt: false`, every repetition."""
    (row,) = _rows(smoke, "encryption")
    for system in ("hub", "hub unencrypted"):
        assert len(row["systems"][system]["runs"]) == 1 and row["systems"][system]["median"] > 0
    ratio = row["ratios"]["hub/hub unencrypted"]
    assert math.isfinite(ratio["median"]) and ratio["median"] > 0
    (cpu,) = _rows(smoke, "encryption-cpu")
    assert cpu["id"] == row["id"] + "/cpu" and cpu["higher_is_better"] is False


def test_servers_die_when_the_bench_is_killed(tmp_path: Path) -> None:
    """A bench killed outright (SIGKILL, a CI timeout) takes its server processes with it."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bench.procs import RelayProcess\n"
        "async def main():\n"
        f"    relay = RelayProcess(Path({str(tmp_path)!r}))\n"
        "    await relay.start()\n"
        "    print(relay.pid, flush=True)\n"
        "    await asyncio.sleep(120)\n"
        "asyncio.run(main())\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert psutil.pid_exists(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail(f"the relay (pid {child}) outlived the bench that started it")
    finally:
        if parent.poll() is None:
            parent.kill()
