# Quick start: `make demo` runs the main job on the bundled data, `make test` runs the test suite.
# Both create the virtual environment $(VENV) on first use.
#
# TORCH is the torch requirement, installed before everything else so that pip never resolves an
# unpinned `torch` (which pulls several GB of CUDA packages). The default is the CPU build these
# machines carry; on a GPU machine override it, e.g.  make test TORCH="torch==2.11.0"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -q
BIN := $(VENV)/bin

.PHONY: demo test venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.base-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.base-installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# type stubs for the TensorRT type check; --no-deps: the package requires tensorrt itself,
	# whose libraries only NVIDIA's index serves (tests/export/test_tensorrt_api.py)
	$(BIN)/python -m pip install --quiet --no-deps "tensorrt-stubs==10.13.0.35.1"
	touch $@

$(VENV)/.train-installed: $(VENV)/.base-installed
	$(BIN)/python -m pip install --quiet -e ".[train]"
	touch $@

venv: $(VENV)/.base-installed

# The demo trains briefly, so it needs the train extra. One OpenMP thread unless you set
# OMP_NUM_THREADS: on a busy 2-core machine two threads oversubscribe the CPU and run slower.
demo: $(VENV)/.train-installed
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/wsdeploy demo --out demo_output

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_output .pytest_cache
