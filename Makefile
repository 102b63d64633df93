# The two commands of the README's quick start:
#   make run   install sockhub into .venv and run `sockhub serve` with its defaults
#   make test  install sockhub with every test dependency, check style, types and layers,
#              and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[uvloop]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/sockhub serve

test: lint
	$(BIN)/python -m pytest

# Style, types (mypy --strict over src/) and the layer contracts (pyproject.toml).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/echo.py

clean:
	rm -rf $(VENV) build src/*.egg-info
