# PolyGenix: `make run` serves the web chat and the API on 127.0.0.1:8000; `make test` runs the
# linters, the type checker and the whole suite; `make lock` refreshes constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The exact versions CI tested: every install here takes them (see `lock` below).
LOCK := constraints.txt

.PHONY: run test lint lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled whenever the dependency list or the locked versions change.
$(VENV)/.installed: setup.cfg setup.py pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e .
	touch $@

$(VENV)/.installed-dev: setup.cfg setup.py pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/polygenix db upgrade
	@echo "PolyGenix web chat: http://$(HOST):$(PORT)/"
	@echo "PolyGenix API docs: http://$(HOST):$(PORT)/docs"
	$(BIN)/gunicorn --config gunicorn.conf.py --bind $(HOST):$(PORT) wsgi:app

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# mypy checks what setup.cfg's [mypy] names (the provider clients and the chat turn).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The newest versions setup.cfg allows, the dev extras included, resolved in a fresh virtual
# environment and written to constraints.txt with pip freeze. Commit the result once `make test`
# passes with it: that is what every later install takes.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev]'
	{ echo "# The exact versions CI tests (make lock writes this file; see the Makefile)."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -Eiv '^(polygenix|pip|setuptools)( @|==)'; } > $(LOCK)
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info build dist
