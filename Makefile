# The two commands: `make run` and `make test`. Both create the virtualenv when it is missing; `make run`
# installs what the product and the demo need (`.[run]`: embedded servers, the sandbox), `make test`
# also the test and lint tools (`.[dev]`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUM := $(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(SUM)
DEV_STAMP := $(VENV)/.installed-dev-$(SUM)

.PHONY: run test lint typecheck pytest pytest-cluster install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[run]'
	rm -f $(VENV)/.installed-run-* && touch $(RUN_STAMP)

$(DEV_STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(DEV_STAMP) $(RUN_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/sanxiang dev

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	$(BIN)/pytest -q

# The suites whose code uses Redis, again on a local 3-master Redis Cluster (tests/conftest.py,
# SX_TEST_REDIS=cluster): every key a script or an MGET touches together must share a slot there.
CLUSTER_SUITES := $(addprefix tests/test_,$(addsuffix .py,\
	auth_protection auth_logins auth_tokens auth_refresh_machine auth_guards auth_kiosk abuse \
	idempotency holds appointments appointment_intents appointments_capacity waitlist payments \
	push worker worker_jobs tasks feeds catalogue_sync items home resilience mandates \
	graceful_shutdown pgbouncer deny_cache))

pytest-cluster: $(DEV_STAMP)
	SX_TEST_REDIS=cluster $(BIN)/pytest -q $(CLUSTER_SUITES)

test: lint typecheck pytest pytest-cluster

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
