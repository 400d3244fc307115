# Bastion — every target installs what it needs from the locked requirements.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two processes (pytest-xdist), one per core of the smallest machine it runs on: each has
# its own schemas, Redis key prefix, temporary files and browser. The slowest tests are
# listed after every run, so a slow one is seen when it lands. `make test PYTEST_ARGS=...`
# to choose (e.g. `-n 0 -x tests/api`).
PYTEST_ARGS ?= -n 2 --durations=15
export BASTION_ENV ?= development

.PHONY: help install install-dev run test lint audit lock bench sbom clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The project itself is built with the hash-locked setuptools of requirements/build.txt
# (--no-build-isolation), never with a build backend fetched unpinned at install time.
$(VENV)/.main: requirements/main.txt requirements/build.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/main.txt -r requirements/build.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.main requirements/dev.txt .venv-wapiti/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.txt
	@touch $@

# The DAST scanner of tests/security/test_wapiti.py pins libraries at versions Bastion does
# not use, so it gets an environment of its own, never Bastion's.
.venv-wapiti/.installed: requirements/tools/wapiti.txt
	$(PYTHON) -m venv .venv-wapiti
	.venv-wapiti/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/tools/wapiti.txt
	@touch $@

install: $(VENV)/.main ## runtime dependencies (locked, hash-checked)
install-dev: $(VENV)/.dev ## plus test and lint tools (and the scanner's own .venv-wapiti)

run: install ## serve http://127.0.0.1:5000 with SQLite and in-memory limits
	$(BIN)/flask --app bastion db upgrade
	$(BIN)/flask --app bastion run --host 127.0.0.1 --port 5000

test: install-dev ## the whole suite (PostgreSQL, Redis, Chromium tests skip when absent)
	BASTION_ENV=testing $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev ## ruff and mypy
	$(BIN)/ruff check bastion flask_deploy_check tests
	$(BIN)/mypy

# Audits the lock files, not an environment. The vulnerability data comes from VULN_DB (a
# local OSV JSON export; or FLASK_SECURITY_VULN_DB) or else the OSV API (VULN_URL for a
# mirror); data that cannot be read fails the target, as does any known vulnerability, and
# so does a VULN_DB older than VULN_MAX_AGE_DAYS (default 7; 0 accepts any age).
audit: install-dev ## known vulnerabilities in the locked runtime deps (VULN_DB=osv.json offline)
	$(BIN)/python -m flask_deploy_check.lock_audit -r requirements/main.txt -r requirements/build.txt $(if $(VULN_DB),--vuln-db '$(VULN_DB)') $(if $(VULN_URL),--vuln-url '$(VULN_URL)') $(if $(VULN_MAX_AGE_DAYS),--max-age-days '$(VULN_MAX_AGE_DAYS)')

sbom: ## CycloneDX 1.5 SBOM of the locked dependencies -> sbom.cdx.json
	$(PYTHON) scripts/sbom.py -o sbom.cdx.json

bench: install-dev ## load Bastion and a bare Flask app side by side (see bench/README.md)
	$(BIN)/python -m bench.run

lock: ## re-resolve requirements/*.in into hash-pinned requirements/*.txt
	$(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet uv==0.13.9
	.lock-venv/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 requirements/main.in -o requirements/main.txt
	.lock-venv/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 requirements/dev.in -o requirements/dev.txt
	.lock-venv/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 requirements/build.in -o requirements/build.txt
	.lock-venv/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 requirements/tools/wapiti.in -o requirements/tools/wapiti.txt

clean: ## remove the environment and caches (keeps instance/)
	rm -rf $(VENV) .venv-wapiti .lock-venv .pytest_cache .mypy_cache .ruff_cache
