# The two commands of the README's quick start:
#   make run   install sockhub into .venv and run `sockhub serve` with its defaults
#   make test  install sockhub with every test dependency (and Debian's chromium for the
#              browser tests, redis-server for the --bus tests), check style, types and
#              layers, and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The browser tests (tests/browser) drive Debian's chromium with pip's Playwright:
# no `playwright install` download (docs/web-protocol.md, RECIPES).
CHROMIUM := /usr/bin/chromium
# The --bus tests (tests/services/test_chat_redis.py) start Debian's redis-server.
REDIS := /usr/bin/redis-server

.PHONY: run test lint bench clean chromium redis

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

test: lint $(CHROMIUM) $(REDIS)
	$(BIN)/python -m pytest

chromium: $(CHROMIUM)

redis: $(REDIS)

# Installed as root with apt-get (or through sudo without a password); otherwise
# stop here rather than let the browser tests skip.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: $(CHROMIUM) is missing and this user cannot install it;" \
	  "run as root: apt-get install chromium" >&2; exit 1; fi; \
	set -e; $$SUDO apt-get update -q; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium
	@test -x $(CHROMIUM) || { echo "make: apt-get did not install $(CHROMIUM)" >&2; exit 1; }

# The same for redis-server (Debian does not start it: the tests run their own).
$(REDIS):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: $(REDIS) is missing and this user cannot install it;" \
	  "run as root: apt-get install redis-server" >&2; exit 1; fi; \
	set -e; $$SUDO apt-get update -q; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q redis-server
	@test -x $(REDIS) || { echo "make: apt-get did not install $(REDIS)" >&2; exit 1; }

# Style, types (mypy --strict over src/) and the layer contracts (pyproject.toml).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/echo.py

clean:
	rm -rf $(VENV) build src/*.egg-info
