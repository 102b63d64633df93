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

.PHONY: run test lint bench clean chromium irctest redis

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

# $(call apt_install,PATH,PACKAGE): install a Debian package for a file the tests
# need, as root with apt-get (or through sudo without a password); otherwise stop
# here rather than let its tests skip.
define apt_install
	@if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: $(1) is missing and this user cannot install it;" \
	  "run as root: apt-get install $(2)" >&2; exit 1; fi; \
	set -e; $$SUDO apt-get update -q; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(2)
	@test -x $(1) || { echo "make: apt-get did not install $(1)" >&2; exit 1; }
endef

$(CHROMIUM):
	$(call apt_install,$(CHROMIUM),chromium)

# Debian does not start redis-server: the tests run their own.
$(REDIS):
	$(call apt_install,$(REDIS),redis-server)

# Style, types (mypy --strict over src/) and the layer contracts (pyproject.toml).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# irctest, the public IRC server conformance suite, against the IRC door (docs/irc.md,
# tools/irctest/README.md). Not part of `make test`: it needs a checkout of irctest
# (no network in CI), given as IRCTEST_DIR, with its own venv (pytest-xdist and
# pytest-timeout installed). The controller is tools/irctest/sockhub.py, imported
# through a symlink in build/irctest, so the checkout is not changed.
#   make irctest IRCTEST_DIR=/path/to/irctest            # the full profile
#   make irctest IRCTEST_DIR=/path/to/irctest IRCTEST_MARKERS='not services and not
#     implementation-specific and not deprecated and not strict and not IRCv3'   # core
#   make irctest IRCTEST_DIR=... IRCTEST_TESTS=irctest/server_tests/whowas.py   # one file
# SOCKHUB_BIN picks the sockhub to test (default: this repository's .venv, an editable
# install: do not edit src/ during a run, or point it at a frozen copy).
IRCTEST_MARKERS ?= not services and not implementation-specific and not deprecated and not strict
IRCTEST_PYTHON  ?= $(IRCTEST_DIR)/.venv/bin/python
IRCTEST_WORKERS ?= 4
IRCTEST_TESTS   ?= irctest/server_tests/
SOCKHUB_BIN     ?= $(abspath $(BIN)/sockhub)

irctest: $(VENV)/.installed-run
	@test -n "$(IRCTEST_DIR)" || { echo "make: set IRCTEST_DIR to an irctest checkout" >&2; exit 2; }
	@test -f "$(IRCTEST_DIR)/irctest/basecontrollers.py" || \
	  { echo "make: $(IRCTEST_DIR) is not an irctest checkout" >&2; exit 2; }
	@mkdir -p build/irctest
	@ln -sf $(abspath tools/irctest/sockhub.py) build/irctest/sockhub_controller.py
	cd "$(IRCTEST_DIR)" && SOCKHUB_BIN="$(SOCKHUB_BIN)" \
	  PYTHONPATH="$(abspath build/irctest)$${PYTHONPATH:+:$$PYTHONPATH}" \
	  timeout 1800 "$(IRCTEST_PYTHON)" -m pytest --controller sockhub_controller \
	  -n $(IRCTEST_WORKERS) -p no:cacheprovider --timeout 120 -rfEs \
	  -m "$(IRCTEST_MARKERS)" $(IRCTEST_TESTS)

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/echo.py

clean:
	rm -rf $(VENV) build src/*.egg-info
