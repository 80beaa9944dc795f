# Hebdo — the two commands of the README, and a few more.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 5000
PYTEST_ARGS ?=
# The suite keeps at least this share of service/ and worker/ lines covered (in-process runs only).
COVERAGE_FLOOR ?= 90

.PHONY: install demo test lint typecheck bench clean \
	messages messages-extract messages-update messages-compile

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## make demo: install, start web + worker + SMTP sink on SQLite, send the sample edition, keep serving
demo: install
	$(VENV)/bin/hebdo demo --port $(PORT)

## make test: install, lint, type-check and run the whole suite (SQLite and PostgreSQL, Redis, Chromium)
test: install lint typecheck
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(PY) -m mypy

## make bench: the send and import benchmarks (figures in bench/RESULTS.md)
bench: install
	$(PY) -m bench.send_bench --subscribers 100000 --workers 2
	$(PY) -m bench.import_bench

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
	rm -rf $(VENV) instance test-artifacts *.egg-info
