# One-command entry points. The Makefile finds a Python 3.12+ by itself: PATH first
# (python3.12, then newer, then python3), then pyenv's installed versions.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

FIND_PYTHON = for c in python3.12 python3.13 python3.14 python3; do \
    p=$$(command -v $$c 2>/dev/null) || continue; \
    "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$$p"; exit 0; }; \
  done; \
  root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
  for p in $$(ls -d "$$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do \
    "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$$p"; exit 0; }; \
  done; \
  echo "No Python 3.12+ found on PATH or in pyenv; install one (Django 6.1 needs it)." >&2; exit 1

.PHONY: run test venv lint fuzz bench bench-smoke clean

$(STAMP): pyproject.toml
	@test -x $(PY) || { base=$$($(FIND_PYTHON)) && echo "Using $$base" && "$$base" -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

PORT ?= 8000

# The server and one background worker (jobs and the periodic schedule); Ctrl-C stops both.
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo "Serving on http://127.0.0.1:$(PORT)  (admin: http://127.0.0.1:$(PORT)/admin/, API docs: http://127.0.0.1:$(PORT)/v1/docs/), with a background worker; Ctrl-C stops both"
	$(PY) manage.py run 127.0.0.1:$(PORT)

test: $(STAMP)
	$(PY) -m pytest -n $${PYTEST_WORKERS:-auto} $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

fuzz: $(STAMP)
	$(PY) scripts/fuzz.py

bench: $(STAMP)
	@for b in auth_overhead hub_scale outcomes_ingest outcomes_scale multimodal_overhead; do \
	  echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

# Golden tasks and every benchmark at smoke size (<= 10 min on 2 cores, PostgreSQL on
# 127.0.0.1): reports/benchmarks.ctrf.json and a table. Exits 0 when targets are missed
# (failed tests in the report), non-zero only when the harness itself breaks.
bench-smoke: $(STAMP)
	$(PY) bench/smoke.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
