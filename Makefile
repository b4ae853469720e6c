# eventpipe: the targets are the interface (`make help`).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STACK := scripts/stack.sh
PYTEST := $(VENV)/bin/pytest

# `make up KAFKA_BROKERS=3`: a 3-node KRaft cluster on loopback (eventpipe.devstack)
ifdef KAFKA_BROKERS
export EVENTPIPE_STACK_KAFKA_BROKERS := $(KAFKA_BROKERS)
endif

.DEFAULT_GOAL := help
.PHONY: help install up down status demo test test-unit test-integration test-e2e test-faults test-rules test-calendar bench lint format

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}'

install: ## create .venv and install eventpipe (editable) with dev tools
	@$(STACK) install

up: ## start the whole local stack natively (installs what is missing; idempotent; KAFKA_BROKERS=3: a Kafka cluster)
	@$(STACK) up

down: ## stop the local stack (data under .local/ is kept)
	@$(STACK) down

status: ## what is running
	@$(STACK) status

demo: up ## bring the stack up, send realistic traffic, print the resulting tables
	@$(VENV)/bin/eventpipe demo

test: ## the whole suite, every fault scenario included (starts the whole stack: dashboards are checked against live metrics)
	@$(STACK) up tools
	@$(STACK) up
	@EVENTPIPE_FAULTS=all $(PYTEST) -q -p no:cacheprovider tests

test-unit: ## unit tests only (no network)
	@$(STACK) venv
	@$(PYTEST) -q tests/unit

test-integration: ## integration tests against the real Kafka, S3 API server and PostgreSQL
	@$(STACK) up kafka postgres s3
	@$(PYTEST) -q tests/integration

test-e2e: ## end-to-end tests through the whole local pipeline, the real SDKs and the dashboards (whole stack up)
	@$(STACK) up tools
	@$(STACK) up
	@$(PYTEST) -q tests/e2e

test-faults: ## every fault-injection scenario and the bad-input battery alone (~35 min; make test runs them too)
	@$(STACK) up kafka postgres s3
	@EVENTPIPE_FAULTS=all $(PYTEST) -q -p no:cacheprovider tests/faults

test-calendar: ## unit + integration tiers with the clock 31 days ahead: no test may depend on the day it runs
	@$(STACK) up tools
	@$(STACK) up kafka postgres s3
	@$(PY) -m tests.support.calendar --days-ahead 31 tests/unit tests/integration

test-rules: ## promtool: config, alert rules and their unit tests
	@$(STACK) up tools
	@scripts/check-prometheus.sh

bench: ## benchmarks on loopback; writes bench/results.json
	@$(STACK) up tools kafka postgres s3
	@$(PY) -m bench

# mypy needs the import names: the editable install maps shared/ -> eventpipe and
# services/* -> eventpipe.* with an import hook mypy cannot follow, so lint checks a tree of
# symlinks laid out as the package is (rebuilt each time; .local/ is not versioned)
MYPY_TREE := .local/mypy

lint: ## ruff lint + format check; mypy (strict on the pure core and devstack, [tool.mypy] in pyproject.toml)
	@$(STACK) venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)/eventpipe
	@for f in shared/*.py; do ln -s ../../../$$f $(MYPY_TREE)/eventpipe/; done
	@for d in reports checks devstack; do ln -s ../../../shared/$$d $(MYPY_TREE)/eventpipe/$$d; done
	@for d in ingest stream loader; do ln -s ../../../services/$$d $(MYPY_TREE)/eventpipe/$$d; done
	@cd $(MYPY_TREE) && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p eventpipe

format: ## apply ruff formatting and fixes
	@$(STACK) venv
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .
