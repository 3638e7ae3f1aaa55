# Two commands for a fresh machine with Python >= 3.11 and make:
#   make run    create .venv, install, start the hub (config/lgsp.yaml, data under ./var/)
#   make test   create .venv, install with test extras, run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/lgsp.yaml

.PHONY: run test chromium lint messages fuzz bench bench-full clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/lgsp run --config $(CONFIG)

# The console's browser tests drive Debian's Chromium (Playwright with executable_path).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make test: the console tests need Debian's chromium: sudo apt-get install -y chromium" >&2; exit 1; }

# PYTEST_WORKERS: pytest-xdist processes (auto: one per core); whole files go to one worker, so a
# module's fixtures are set up once. PYTEST_WORKERS=0 runs the suite in this process. Tests marked
# `serial` measure latency: they run afterwards, alone, so another worker cannot skew them.
PYTEST_WORKERS ?= auto

test: $(VENV)/.installed-test chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

# The gettext catalogues (docs/i18n.md): add newly marked strings, drop unmarked ones; then
# translate the empty Vietnamese entries in core/locale/vi/LC_MESSAGES/lgsp.po.
messages: $(VENV)/.installed-test
	$(BIN)/python -m lgsp.core.i18n_catalogues
	@$(BIN)/python -m lgsp.core.i18n_catalogues check

# The REST API fuzzed from schemas/openapi.yaml on a live hub (docs/security.md, section 5):
# FUZZ_EXAMPLES cases per operation and mode on SQLite, then a shorter run on PostgreSQL. The suite
# runs the same tests with 10 cases each.
FUZZ_EXAMPLES ?= 200
fuzz: $(VENV)/.installed-test
	LGSP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LGSP_FUZZ_REPORT=1 $(BIN)/python -m pytest -q -p no:randomly -s tests/fuzz
	LGSP_FUZZ_EXAMPLES=$$(( $(FUZZ_EXAMPLES) / 4 )) LGSP_FUZZ_DB=postgres $(BIN)/python -m pytest -q -p no:randomly tests/fuzz

# Benchmarks (docs/performance.md): the hub against its baselines, results in bench/results/.
# BENCH_ARGS passes extra flags, e.g. make bench BENCH_ARGS="--no-rabbit --only pull".
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-full: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run --full --pyspy $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
