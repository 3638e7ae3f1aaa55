"""Benchmarks of the hub against baselines measured in the same invocation (see docs/performance.md).

Run `python -m bench.run --quick` (or `make bench`); `--full` for the whole grid. Nothing here is
imported by the hub itself.
"""
