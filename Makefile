# fundhub developer entry points. Everything runs from the project .venv, built with a pinned uv.
#   make up          the whole dev stack in the foreground (Kafka, Postgres, services); Ctrl-C stops it
#   make test        the test suite (it starts Kafka and Postgres itself when they are not running; prints the 25 slowest)
#   make lint        ruff check, ruff format --check, mypy (strict)
#   make bench       the end-to-end benchmark (bench/notify_e2e.py) against a running stack
#   make down        stop background Kafka/Postgres left by tests or `fundhub infra up`
#   make clean-data  down, then delete .data (Kafka log, Postgres cluster, dev keys)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=
LINT_PATHS := libs contexts services cli clients tests bench
TYPED_PATHS := libs/common/src libs/web/src libs/bank-client/src contexts/ledger/src contexts/access/src contexts/bank-transfers/src contexts/payouts/src contexts/webhooks/src contexts/audit/src \
	contexts/merchants/src contexts/channels/src contexts/orders/src contexts/settlement/src contexts/reconciliation/src \
	services/gateway/src services/notify-ingest/src services/payment-worker/src services/callback-dispatcher/src services/audit-writer/src services/reconciler/src services/bank-simulator/src services/channel-simulator/src cli/src clients/python/src

.PHONY: help install up test lint bench down clean-data

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

# uv sync is quick when nothing changed, so it runs every time (lock or pyprojects may have moved).
install: $(UV)
	$(UV) sync --frozen

up: install
	exec $(BIN)/fundhub up

test: install lint
	$(BIN)/pytest -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy $(TYPED_PATHS)

bench: install
	$(BIN)/python bench/notify_e2e.py $(BENCH_ARGS)

down:
	@if [ -x $(BIN)/fundhub ]; then $(BIN)/fundhub infra down; else echo "no .venv: nothing to stop"; fi

clean-data: down
	rm -rf .data
