# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SHARED_PYTEST = $(BIN)/python -m pytest -q --backend shared tests/api tests/gunmatch
DEMO_DIR ?= demo-data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test test-slow test-shared test-shared-slow lint bench browser postgres clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,train]' --config-settings editable_mode=compat
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gunmatch demo --dir $(DEMO_DIR)
	@set -o pipefail; $(BIN)/gunmatch keys create --gallery $(DEMO_DIR)/gallery --role admin --name "demo admin" --replace \
	  | tail -n 1 > $(DEMO_DIR)/admin-key.txt
	@echo "demo admin API key (also in $(DEMO_DIR)/admin-key.txt): $$(cat $(DEMO_DIR)/admin-key.txt)"
	@echo "web form: http://$(HOST):$(PORT)/  (sign in with the key above; Ctrl-C stops)"
	$(BIN)/gunmatch serve --gallery $(DEMO_DIR)/gallery --host $(HOST) --port $(PORT)

# Headless Chromium (and a CJK font) for the web form's browser test (Debian packages; root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	  else echo "chromium not installed and no root: the browser test will be skipped"; fi; }

# PostgreSQL (initdb/pg_ctl) for the shared-gallery tests, which start a private cluster on a
# Unix socket (Debian package; root or sudo). Milvus runs from the milvus-lite dev dependency.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "postgresql not installed and no root: the PostgreSQL tests will be skipped"; fi; }

# The suite but for the tests marked slow, then the API and CLI tests again on a shared gallery
# (PostgreSQL + Milvus): under 10 minutes on 2 cores. CI runs the slow tests after it.
test: $(STAMP) browser postgres
	$(BIN)/python -m pytest -q -m "not slow"
	$(SHARED_PYTEST) -m "not slow"
	@echo "the tests marked slow (demo build, real-data baseline, browser showcase): make test-slow"

# The tests marked slow (over a few seconds each), on an embedded gallery, then on a shared one.
test-slow: $(STAMP) browser postgres
	$(BIN)/python -m pytest -q -m slow
	$(SHARED_PYTEST) -m slow

# The API and CLI tests on a shared gallery: its quick part (also in `make test`), its slow part
# (also in `make test-slow`).
test-shared: $(STAMP) browser postgres
	$(SHARED_PYTEST) -m "not slow"

test-shared-slow: $(STAMP) browser postgres
	$(SHARED_PYTEST) -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/gunmatch bench --out docs/benchmarks.md

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
