# Every target runs inside the project's own virtual environment (.venv), created on first use,
# so nothing is installed into the system Python (PEP 668 systems refuse that).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-scale test test-py test-fast readme lint quickstart bench

$(BIN)/dinctl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,serve]'
	touch $@

install: $(BIN)/dinctl

# TorchRec for `train --shard-embeddings`: the CPU FBGEMM build first, then torchrec itself
# without its dependencies (its metadata names the CUDA `fbgemm-gpu`, which would replace the
# CPU build); 1.8.0 is the release that pairs with torch 2.13.
SCALE_STAMP := $(VENV)/.scale-installed
$(SCALE_STAMP): $(BIN)/dinctl
	$(BIN)/python -m pip install -q -e '.[scale]'
	$(BIN)/python -m pip install -q --no-deps torchrec==1.8.0
	touch $@

install-scale: $(SCALE_STAMP)

# pytest exits 5 when it collects no tests; make treats that (like any non-zero exit) as failure
test: install install-scale
	$(BIN)/python -m pytest -q -p no:cacheprovider tests
	$(MAKE) --no-print-directory test-py

# The other Pythons the package declares (requires-python), found by name or under pyenv: each
# gets .venv<XY> with the dependencies but not torch (a CPU build exists here for 3.11 only;
# elsewhere pip would fetch the CUDA build), and runs the tests marked `notorch`.
OTHER_PYTHONS ?= 3.10 3.13
NOTORCH_REQS = $(BIN)/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join([d for d in p['dependencies'] if not d.startswith('torch')] + [d for d in p['optional-dependencies']['dev'] if d.startswith(('pytest', 'hypothesis'))]))"

test-py: install
	@for v in $(OTHER_PYTHONS); do \
	  py=$$(command -v python$$v 2>/dev/null); \
	  if [ -z "$$py" ] || ! "$$py" -c pass 2>/dev/null; then \
	    py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v 2>/dev/null | tail -1); \
	  fi; \
	  if [ -z "$$py" ]; then echo "test-py: no python$$v on this machine, skipped"; continue; fi; \
	  venv=.venv$$(echo $$v | tr -d .); \
	  if [ ! -x $$venv/bin/pytest ] || [ $$venv/bin/pytest -ot pyproject.toml ]; then \
	    $$py -m venv $$venv && $(NOTORCH_REQS) > $$venv/requirements.txt && \
	    $$venv/bin/python -m pip install -q -r $$venv/requirements.txt && \
	    $$venv/bin/python -m pip install -q --no-deps -e . && touch $$venv/bin/pytest || exit 1; \
	  fi; \
	  echo "test-py: $$($$venv/bin/python --version), no torch: pytest -m notorch"; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider -m notorch tests || exit 1; \
	done

# the quick subset: everything not marked slow in the files below (measured time in README.md)
FAST_TESTS := tests/test_metrics.py tests/test_tables.py tests/test_cli_basics.py \
	tests/test_training_config.py tests/test_runs.py tests/test_readme.py
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" $(FAST_TESTS)

# run every example of README.md and docs/ and rewrite the sample outputs that changed
readme: install
	$(BIN)/python tests/test_readme.py --write

lint: install
	$(BIN)/ruff check dinctl tests
	$(BIN)/mypy dinctl

quickstart: install
	$(BIN)/dinctl quickstart --out quickstart
