# The two commands that matter: `make run` and `make test`. Both create .venv when missing;
# `make run` installs the runtime dependencies only, `make test` and `make lint` the `dev`
# extra too (test tools), and the pinned npm tools (package.json, `npm ci`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps: what serving needs, and that plus the test tools. A dev install satisfies run.
RUN_STAMP := $(VENV)/.runtime-stamp
STAMP     := $(VENV)/.installed-stamp
# npm ci writes this file; it is newer than package-lock.json once the tools are installed.
NODE_STAMP    := node_modules/.package-lock.json
# Debian's plpgsql_check for PostgreSQL 15: `supabase db lint` needs it (make dblint).
PLPGSQL_CHECK := /usr/lib/postgresql/15/lib/plpgsql_check.so
# Debian's chromium and its driver: the console's browser tests (tests/test_console_browser.py).
CHROMEDRIVER  := /usr/bin/chromedriver

.PHONY: install tools run test lint dblint format fuzz bench drill clean

$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test $(STAMP) -nt pyproject.toml || { \
		$(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -e .; }
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm not found. Install Node.js (20 or newer) with npm: the Supabase CLI, PostgREST and @upstash/qstash pinned in package.json are installed with it."; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

$(PLPGSQL_CHECK):
	@command -v apt-get >/dev/null || { echo "make: $(PLPGSQL_CHECK) missing and no apt-get: install Debian's postgresql-15-plpgsql-check."; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15-plpgsql-check \
		|| { echo "make: could not install postgresql-15-plpgsql-check (needs root): install it, then rerun."; exit 1; }

$(CHROMEDRIVER):
	@command -v apt-get >/dev/null || { echo "make: $(CHROMEDRIVER) missing and no apt-get: install Debian's chromium and chromium-driver."; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core \
		|| { echo "make: could not install chromium and chromium-driver (needs root): install them, then rerun."; exit 1; }

install: $(STAMP)

tools: $(NODE_STAMP)

run: $(RUN_STAMP)  ## serve on 127.0.0.1:8000 (PORT) with embedded Postgres and direct processing
	APP_ENV=$${APP_ENV:-development} $(BIN)/python -m ingest

test: $(STAMP) $(NODE_STAMP) $(CHROMEDRIVER)  ## every test: CI-sized fuzz run, real PostgREST, real browser
	$(BIN)/python -m pytest

lint: $(STAMP) dblint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

dblint: $(STAMP) $(NODE_STAMP) $(PLPGSQL_CHECK)  ## supabase db lint + advisors on PostgreSQL 15
	$(BIN)/python -m tests.dblint

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

fuzz: $(STAMP)  ## larger schemathesis and hostile-input runs than CI's
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(BIN)/python -m pytest tests/test_fuzz.py tests/test_hostile_input.py

bench: $(STAMP)  ## needs wrk (Debian package), installed here when missing
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench

drill: $(STAMP)
	$(BIN)/python -m bench.drills

clean:
	rm -rf $(VENV) node_modules .data .mypy_cache .ruff_cache .pytest_cache .hypothesis .artifacts
