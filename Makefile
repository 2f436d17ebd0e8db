# Strata: every command a user or CI needs. Only python3, git and make are assumed.
# uv comes from PyPI when it is not on PATH; everything else from uv.lock.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
RUN := $(UV) run --frozen

HOME_DIR ?= $(or $(STRATA_HOME),.strata)
USERS ?= 2000
DAYS ?= 120
SEED ?= 7

.PHONY: demo install prepare test browser test-postgres postgresql lint format ui bench clean

# Quickstart step 1: install, generate sample data, run the whole pipeline for the latest day.
demo: install prepare
	$(RUN) strata generate --users $(USERS) --days $(DAYS) --seed $(SEED) --home $(HOME_DIR)
	$(RUN) strata run --home $(HOME_DIR)

# --compile-bytecode: every strata process (and the test suite) imports some 3,000 modules;
# where PYTHONDONTWRITEBYTECODE is set (as on the machines we test on) none is ever cached and
# each process compiles them again (about 10 s of a small run). Compiled once here instead.
install:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --compile-bytecode

prepare:
	$(RUN) strata prepare --home $(HOME_DIR)

# Quickstart step 2: the whole test suite (what CI runs). The report test renders the HTML
# report in a real headless browser: Debian's chromium, installed here when it is missing.
# One worker per core; a module's tests, and the modules sharing the pipeline sample, stay on
# one worker (tests/conftest.py).
test: install browser
	$(RUN) pytest -n auto

browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the report's browser test"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
		|| { echo "could not install chromium: install Debian's chromium package, then make test"; exit 1; }; }

# CI's second step: every dbt model built on PostgreSQL (a throwaway server on 127.0.0.1 that the
# test starts and removes: Debian's postgresql, installed here when it is missing) and compared
# with DuckDB's build of the same sample; Dagster's instance on PostgreSQL from
# deploy/dagster-postgres.yaml.
test-postgres: install postgresql
	$(RUN) pytest --postgres -m postgres tests/integration/test_postgres.py

postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
		echo "installing Debian's postgresql for make test-postgres"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
		|| { echo "could not install postgresql: install Debian's postgresql package, then make test-postgres"; exit 1; }; }

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) sqlfluff lint dbt/models

format:
	$(RUN) ruff check --fix .
	$(RUN) ruff format .
	$(RUN) sqlfluff fix dbt/models

# Optional: the Dagster UI on http://127.0.0.1:3000 with the runs `strata run` made.
ui: install prepare
	STRATA_HOME=$(abspath $(HOME_DIR)) DAGSTER_HOME=$(abspath $(HOME_DIR))/dagster $(RUN) dg dev

clean:
	rm -rf $(HOME_DIR) dbt/target dbt/logs
