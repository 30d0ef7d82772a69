PY ?= python3

.PHONY: install test lint quickstart bench

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

lint:
	ruff check dinctl tests
	mypy dinctl

quickstart: install
	dinctl quickstart --out quickstart
