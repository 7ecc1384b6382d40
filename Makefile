# The two commands of the README's Quick start. Each creates .venv when it is missing.
PYTHON ?= python3
# Extra pip options, e.g. PIP_EXTRA="--index-url https://download.pytorch.org/whl/cpu" on a
# machine whose package index would otherwise give torch's multi-GB CUDA build.
PIP_EXTRA ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-quick test test-slow setup clean

$(BIN)/.installed: pyproject.toml constraints.txt
	@py=$(BIN)/python; test -x $$py || py="$(PYTHON)"; \
	$$py -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "LENNA needs Python 3.11 or newer; $$py is: $$($$py -V 2>&1 || echo missing)"; \
	  echo "run: rm -rf $(VENV) && make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_EXTRA) -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# The main job: measure on this machine, train the predictors, search at λ = 0 and λ > 0,
# measure and train the derived networks, write demo-out/report.html. Running it again
# resumes. `make demo-quick` is the same loop, smaller (CI's smoke test).
DEMO := demo-out
demo: $(BIN)/.installed
	$(BIN)/lenna demo --out $(DEMO)

demo-quick: $(BIN)/.installed
	$(BIN)/lenna demo --quick --out $(DEMO)-quick

# One pytest worker per core (pytest-xdist); tests/conftest.py gives each worker one torch thread.
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --durations=15

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow --durations=15

clean:
	rm -rf $(VENV) demo-out demo-out-quick .pytest_cache
