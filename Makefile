# Quick start: `make demo` runs the main job on the bundled data, `make test` runs the test suite.
# Both create the virtual environment $(VENV) on first use.
#
# TORCH is the torch requirement, installed before everything else so that pip never resolves an
# unpinned `torch` (which pulls several GB of CUDA packages). The default is the CPU build these
# machines carry; on a GPU machine override it, e.g.  make test TORCH="torch==2.11.0"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# one test process per physical core (at most 8), a test file per process so that each module's
# fixtures are built once; PYTEST_ARGS="-q -n 0" runs the suite in one process
PYTEST_ARGS ?= -q -n auto --maxprocesses 8 --dist loadfile
BIN := $(VENV)/bin

.PHONY: demo test venv clean scribble-table scribble-table-short camvid-table

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

# The scribble table (README, "The scribble table") from a fresh clone: the dataset, then every
# row of RUNS for each of SEEDS at 1 thread per run, PARALLEL runs at a time (15-25 min per run
# when two share the 2-core machines; 6 rows x 3 seeds, about 3 hours). Finished runs are
# reused on a rerun; RUNS=full,pce,pce+crf,pce+entropy,pce+crf+entropy,pce+ncut,pce+potts adds
# the other two regularizers.
TABLE_DATA ?= data/synthetic-128-seed1
TABLE_DATA_SHA256 ?= 6943b7d3e1d5f19c7a7f6d6843ee5c049c9d8d2f31b44393aa7d59b63df378b5
SEEDS ?= 0,1,2
RUNS ?= full,pce,pce+crf,pce+entropy,pce+crf+entropy,pce+adm
PARALLEL ?= 2
TABLE_STEPS ?= 3000
TABLE_SWITCH_ON ?= 1000
TABLE_OUT ?= runs/scribble_table
TABLE_JSON ?= benchmarks/results/scribble_table.json
TABLE_FLAGS = --model deeplabv3plus_resnet18 --width 16 --crop-size 128 --scale-min 1.0 --scale-max 1.0 \
	--optimizer adamw --lr 3e-3 --weight-decay 1e-4 --steps $(TABLE_STEPS) --batch-size 8 --workers 0 --log-every 50 \
	--checkpoint-every 0 --no-tensorboard --regularizers-from-step $(TABLE_SWITCH_ON) --crf-sigma-xy 25 --ncut-sigma-xy 25 \
	--crf-sigma-rgb 30 --crf-weight 1.0 --potts-sigma-rgb 30 --ncut-sigma-rgb 30
scribble-table: $(VENV)/.train-installed
	test -f $(TABLE_DATA)/dataset.json || OMP_NUM_THREADS=1 $(BIN)/wsdeploy make-dataset $(TABLE_DATA) \
	    --num-images 800 --size 128 --seed 1 --no-progress
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python benchmarks/scribble_table.py --data $(TABLE_DATA) \
	    --dataset-sha256 $(TABLE_DATA_SHA256) --out-dir $(TABLE_OUT) --json $(TABLE_JSON) \
	    --runs $(RUNS) --seeds $(SEEDS) --parallel $(PARALLEL) --threads 1 -- $(TABLE_FLAGS)

# The same table on the short schedule (issue 20: "each run <= ~10 minutes at 1 thread"): 1200
# steps with the regularizers from step 400, the full schedule's 3000 / 1000 scaled by 0.4, and
# nothing else changed; SHORT_RUNS rows x SEEDS (4 x 3 runs of 6-9 minutes, 47 minutes two at a
# time on the 2-core machine; README, "The short schedule").
SHORT_RUNS ?= full,pce,pce+crf,pce+adm
scribble-table-short:
	$(MAKE) scribble-table TABLE_STEPS=1200 TABLE_SWITCH_ON=400 TABLE_OUT=runs/scribble_table_short \
	    TABLE_JSON=benchmarks/results/scribble_table_short.json RUNS=$(SHORT_RUNS)

# The CamVid table (README, "The scribble table on CamVid") from a fresh clone with ../shared
# beside it: the data links and splits, the weight tuning on splits/tune.txt, then every row for
# seeds 0 and 1 at 1 thread per run, two runs at a time (the first fifteen runs took 85 minutes on
# the 2-core machine; ADM's three tuning and two table runs about an hour more, beside other jobs).
camvid-table: $(VENV)/.train-installed
	$(BIN)/python scripts/prepare_camvid.py
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python benchmarks/camvid_table.py --data data/camvid

clean:
	rm -rf $(VENV) demo_output .pytest_cache
