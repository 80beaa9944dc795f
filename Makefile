# Hebdo — the two commands of the README, and a few more.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 5000
PYTEST_ARGS ?=
# The suite keeps at least this share of service/ and worker/ lines covered (in-process runs only).
COVERAGE_FLOOR ?= 90

.PHONY: install axe vnu api-docs demo test faults lock audit lint typecheck bench bench-tracking clean \
	messages messages-extract messages-update messages-compile

# pyproject.toml says which versions work (lower bounds); requirements.lock pins the exact
# versions installed and audited (README, "Dependencies").
LOCK ?= requirements.lock

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[test]'
	touch $@

# Node packages the tests use (not the demo): `make test` fails here, loudly, without npm.
# --ignore-scripts: each package ships what we use; vnu-jar's install script would only try
# to download a Java runtime.
NPM_CI := npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# The Nu Html Checker (vnu.jar, pinned by tools/vnu/package-lock.json) that the email HTML
# test runs on Java.
VNU := tools/vnu/node_modules/.installed
$(VNU): tools/vnu/package.json tools/vnu/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: apt-get install nodejs npm (the email HTML test runs vnu.jar)"; exit 1; }
	$(NPM_CI) --prefix tools/vnu
	touch $@

# axe-core for the accessibility checks of tests/browser, pinned by its package-lock.json
# (README, "Accessibility").
AXE_DIR := tests/browser/axe
$(AXE_DIR)/node_modules/.package-lock.json: $(AXE_DIR)/package.json $(AXE_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: apt-get install nodejs npm (the browser tests run axe-core)"; exit 1; }
	$(NPM_CI) --prefix $(AXE_DIR)
	touch $@

# Swagger UI for the browsable API page (/api/v1/docs), pinned by its package-lock.json and
# served by the app itself (no CDN). Without it the page links the OpenAPI document only.
APIDOCS := tools/apidocs/node_modules/.installed
$(APIDOCS): tools/apidocs/package.json tools/apidocs/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: apt-get install nodejs npm (the API page serves Swagger UI)"; exit 1; }
	$(NPM_CI) --prefix tools/apidocs
	touch $@

axe: $(AXE_DIR)/node_modules/.package-lock.json
vnu: $(VNU)
## make api-docs: install the pinned Swagger UI that /api/v1/docs serves
api-docs: $(APIDOCS)

install: $(VENV)/.installed

## make demo: install, start web + worker + SMTP sink on SQLite, send the sample edition, keep serving
demo: install
	$(VENV)/bin/hebdo demo --port $(PORT)

## make test: install, lint, type-check and run the whole suite (SQLite and PostgreSQL, Redis, Chromium)
test: install axe vnu api-docs lint typecheck
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

## make faults: the fault table (tests/faults): servers die, restart or misbehave, and
## nobody is lost; prints one table and fails if a row lost a reader (README, "Guarantees")
FAULT_WORKERS ?= 3
faults: install
	$(PY) -m pytest -m faults tests/faults -n $(FAULT_WORKERS) --dist load $(PYTEST_ARGS)

## make lock: re-pin every dependency to the newest versions pyproject.toml allows
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e '.[test]'
	{ sed -n '1,2p' $(LOCK); .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock

## make audit: known vulnerabilities of the pinned dependencies (PyPI's advisory data).
## --strict fails when a package could not be checked; AUDIT_STRICT= to only warn.
AUDIT_STRICT ?= --strict
AUDIT_VENV   := .venv-audit
$(AUDIT_VENV)/.installed:
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install -q pip-audit==2.10.1
	touch $@

audit: $(AUDIT_VENV)/.installed
	$(AUDIT_VENV)/bin/pip-audit --requirement $(LOCK) --no-deps --disable-pip \
		--progress-spinner off $(AUDIT_STRICT)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(PY) -m mypy

## make bench: one table from one run (DKIM off and on, both back ends, against the
## smtp-source ceiling; also written to bench/results.json), personalise()+DKIM per
## message, and the import benchmark (figures in bench/RESULTS.md). Needs Postfix's
## smtp-source and smtp-sink (apt-get install postfix); no test does.
BENCH_SUBSCRIBERS ?= 100000
bench: install
	$(PY) -m bench.table --subscribers $(BENCH_SUBSCRIBERS) --workers 2
	$(PY) -m bench.dkim_bench
	$(PY) -m bench.import_bench
	$(PY) -m bench.tracking_bench

## make bench-tracking: load on the pixel and the click under gunicorn (needs wrk)
bench-tracking: install
	$(PY) -m bench.tracking_bench

## make messages: gather the messages of code and templates, merge them into every
## language's .po, compile the .mo files (see README, "Translations")
TRANSLATIONS := service/translations
PYBABEL      := $(VENV)/bin/pybabel

messages: messages-extract messages-update messages-compile

messages-extract: install
	$(PYBABEL) extract -F babel.cfg -o $(TRANSLATIONS)/messages.pot --project=Hebdo \
		--copyright-holder="the Hebdo authors" --add-comments=Translators: \
		--sort-by-file --width=100 .

messages-update: install
	$(PYBABEL) update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -D messages \
		--ignore-pot-creation-date --width=100

messages-compile: install
	$(PYBABEL) compile -d $(TRANSLATIONS) -D messages --statistics

clean:
	rm -rf $(VENV) $(AUDIT_VENV) $(AXE_DIR)/node_modules instance test-artifacts *.egg-info
