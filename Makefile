# landmark_study -- the two commands: `make book` and `make test`.
# Both create the virtualenv on first use (`make .venv` alone does just that).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CH ?= datasets
PROFILE ?= quick
NOTEBOOKS := $(filter-out book/index.ipynb,$(wildcard book/*.ipynb))

.PHONY: book test chapter sync bench clean

$(VENV): pyproject.toml requirements-lock.txt
	@echo "[setup] creating $(VENV) with $(PYTHON) and installing pinned dependencies (first time: ~2 min)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -c requirements-lock.txt -e ".[dev]"
	@touch $(VENV)
	@echo "[setup] environment ready: $$($(PY) -c 'import torch,sys; print("python", sys.version.split()[0], "torch", torch.__version__)')"

book: $(VENV)
	@echo "[book] executing every chapter at the full profile (runs are read from book/results/full)"
	@$(PY) -m landmark_study book --profile full
	@test -f _build/html/index.html && echo "[book] open _build/html/index.html"

test: $(VENV)
	@echo "[test] unit tests"
	@CI=$${CI:-1} $(PY) -m pytest tests -q
	@echo "[test] chapter notebooks at their quick parameters (nbval-lax)"
	@export LANDMARK_STUDY_QUICK_STORE=$$(mktemp -d); CI=$${CI:-1} $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider $(NOTEBOOKS) -q; \
	  rc=$$?; rm -rf $$LANDMARK_STUDY_QUICK_STORE; exit $$rc

chapter: $(VENV)
	@$(PY) -m landmark_study chapter $(CH) --profile $(PROFILE)

# Regenerate every .ipynb from its py:percent source (the .py is the single source).
sync: $(VENV)
	@for f in book/*.py; do $(VENV)/bin/jupytext --quiet --update --to ipynb --update-metadata '{"jupytext":{"formats":"ipynb,py:percent"}}' "$$f"; done
	@echo "[sync] notebooks regenerated from book/*.py"

bench: $(VENV)
	@$(PY) -m landmark_study bench

clean:
	rm -rf _build
