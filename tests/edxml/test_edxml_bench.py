"""The benchmark module runs and reports the fields the bench harness reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "edxml_bench.py"


@pytest.mark.slow
def test_bench_quick_run() -> None:
    spec = importlib.util.spec_from_file_location("edxml_bench_under_test", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.run(quick=True)
    for name in ("small_10kb", "medium_1mb"):
        row = results[name]
        assert row["edxml_packets_per_s"] > 0
        assert row["lxml_fromstring_per_s"] > 0
        assert row["edxml_packets_per_cpu_s"] > 0
    assert 5_000 < results["small_10kb"]["packet_bytes"] < 20_000
    assert 900_000 < results["medium_1mb"]["packet_bytes"] < 1_100_000
    assert results["large"]["packet_bytes"] > 19_000_000
    assert results["large"]["peak_rss_growth_mb"] < 32
