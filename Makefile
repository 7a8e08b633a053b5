# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package into it when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rechallenge priors
	$(BIN)/rechallenge fit demo --out build/demo_fit.nc

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# pytest exits 5 when no test is selected; that is not a failure here.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow || test $$? -eq 5

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/fit_speed.py 300 3000 30000

clean:
	rm -rf $(VENV) build dist .pytest_cache
