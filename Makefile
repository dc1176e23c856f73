SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies in /opt/wheels on the build machines; without it
# pip would take the multi-GB CUDA build from the registry.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt $(FIND_LINKS)
PROTO_FILES := $(shell find proto -name '*.proto' | sort)
GEN := libs/api/src
STAMP := $(VENV)/.installed

.PHONY: help install proto lint demo up test frontend dashboard chromium screenshots bench-quality clean

help:
	@echo "make demo   run the whole retention loop on the CDNOW data and print a summary"
	@echo "make test   run the test suite against real PostgreSQL, Redis and Envoy"
	@echo "make up     start the stack until Ctrl-C"
	@echo "make proto  regenerate the Python package from proto/"
	@echo "make lint   buf lint, buf format and ruff"
	@echo "make frontend  build and test the dashboard"
	@echo "make screenshots  save each dashboard page under docs/screenshots"
	@echo "make bench-quality  the churn model against baselines on CDNOW"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.tools: $(BIN)/python constraints.txt
	$(PIP) grpcio-tools buf-bin==1.75.0 "googleapis-common-protos>=1.70"
	touch $@

$(GEN)/retain/.generated: $(VENV)/.tools $(PROTO_FILES) buf.yaml scripts/gen_proto.py
	$(BIN)/python scripts/gen_proto.py --out $(GEN)
	touch $@

proto: $(GEN)/retain/.generated

# Writes docs/openapi.json from the descriptor set that `make proto` builds;
# a test fails while the checked-in file differs from a fresh one.
.PHONY: openapi
openapi: proto install
	$(BIN)/python scripts/gen_openapi.py

$(STAMP): $(GEN)/retain/.generated requirements-dev.txt constraints.txt $(wildcard */pyproject.toml */*/pyproject.toml)
	$(PIP) -r requirements-dev.txt
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: install dashboard
	$(BIN)/retain demo --fresh --summary-json .retain/demo-summary.json

up: install dashboard
	$(BIN)/retain up

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

# Generates the TypeScript client, type-checks, lints, tests and builds the dashboard.
frontend: proto frontend/node_modules/.installed
	cd frontend && npm run ci

# Builds the dashboard without its checks, for `make demo` and `make up`.
DASHBOARD_SOURCES := $(shell find frontend/src frontend/index.html frontend/vite.config.ts -type f -not -path 'frontend/src/gen/*' 2>/dev/null)
frontend/dist/index.html: $(GEN)/retain/.generated frontend/node_modules/.installed $(DASHBOARD_SOURCES)
	cd frontend && npm run generate && npm run build

dashboard: frontend/dist/index.html

# The browser tests drive Debian's chromium; RETAIN_CHROMIUM may name another binary.
chromium:
	@if [ -n "$${RETAIN_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y --no-install-recommends chromium; \
	else \
		echo "Chromium is missing: install Debian's chromium package or set RETAIN_CHROMIUM"; \
		exit 1; \
	fi

# Starts a stack of its own, runs the demo on 3,000 customers and saves a
# picture of each dashboard page under docs/screenshots.
screenshots: install frontend chromium
	$(BIN)/python scripts/screenshots.py

test: install frontend chromium
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/python -m pytest

$(VENV)/.bench: $(STAMP) bench/requirements.txt
	$(PIP) -r bench/requirements.txt
	touch $@

# Writes its table to the terminal; copy it into docs/benchmarks.md with the date.
bench-quality: $(VENV)/.bench
	$(BIN)/python bench/model_quality.py --json .retain/bench/model_quality.json

clean:
	rm -rf $(VENV) $(GEN)/retain .retain frontend/node_modules frontend/dist
