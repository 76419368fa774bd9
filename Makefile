# Two commands: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PEERS := .venv-peers

.PHONY: demo test lint bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[plot,dev]"
	touch $(STAMP)

# The test suite also checks against Cantera, runs Dask clusters and builds the Fortran
# example of the C ABI: those extras (and gfortran) are installed for `make test` only.
TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[plot,dev,dask,cantera,capi,zarr]"
	command -v gfortran >/dev/null || (apt-get update -qq && apt-get install -y -qq gfortran) \
		|| echo "gfortran could not be installed: the Fortran test will say so"
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(PY) examples/demo_burgers.py --out demo

# Two workers: most of a test's time is XLA compiling, on one core; a file's tests stay on
# one worker so that its module fixtures are built once. TEST_WORKERS=0 runs them in turn.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

lint: $(STAMP)
	$(VENV)/bin/ruff check surrogate tests benchmarks examples
	$(VENV)/bin/ruff format --check surrogate tests benchmarks examples

bench: $(STAMP)
	mkdir -p benchmarks/results
	for b in benchmarks/[!_]*.py; do \
		echo "== $$b"; $(PY) $$b | tee -a benchmarks/results/all.jsonl || exit 1; \
	done

# Peers (neuraloperator, torchdiffeq) live in their own venv, never in the project's.
bench-peers:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet "torch==2.13.0" "neuraloperator==2.0.*" torchdiffeq

clean:
	rm -rf demo runs benchmarks/results .pytest_cache .hypothesis
