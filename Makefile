# The two commands of the README's Quick start. Each creates .venv when it is missing.
PYTHON ?= python3
# Extra pip options, e.g. PIP_EXTRA="--index-url https://download.pytorch.org/whl/cpu" on a
# machine whose package index would otherwise give torch's multi-GB CUDA build.
PIP_EXTRA ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow lint setup clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_EXTRA) -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Until `lenna demo` exists, the main job is the real measuring pipeline on this machine:
# a small labelled dataset, the op table, its summary, a Parquet export and the seed's
# convergence figures. Running it again resumes instead of starting over.
DEMO := demo-out
demo: $(BIN)/.installed
	mkdir -p $(DEMO)
	$(BIN)/lenna space show lenna
	$(BIN)/lenna measure --space lenna --out $(DEMO)/lenna.db -n 30 --trace
	$(BIN)/lenna measure-ops --out $(DEMO)/lenna.db
	$(BIN)/lenna dataset info $(DEMO)/lenna.db
	$(BIN)/lenna dataset export $(DEMO)/lenna.db $(DEMO)/lenna.parquet
	$(BIN)/lenna plot convergence $(DEMO)/lenna.db --sample 0 --out $(DEMO)/convergence.png

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) demo-out .pytest_cache
