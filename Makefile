# Every target runs inside the project's own virtual environment (.venv), created on first use,
# so nothing is installed into the system Python (PEP 668 systems refuse that).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint quickstart bench

$(BIN)/dinctl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,serve]'
	touch $@

install: $(BIN)/dinctl

# pytest exits 5 when it collects no tests; make treats that (like any non-zero exit) as failure
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check dinctl tests
	$(BIN)/mypy dinctl

quickstart: install
	$(BIN)/dinctl quickstart --out quickstart
