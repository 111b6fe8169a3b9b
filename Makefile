# Two commands do everything on a fresh clone:
#   make demo   # builds .venv (TensorFlow, CPU), installs the package, runs the comparison
#   make test   # same environment, runs the whole test suite (slow tests included)
# and one more for the other Keras backends (each in its own venv, without TensorFlow):
#   make test-backends   # the backend-neutral tests under JAX and under PyTorch
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The suite runs on every core (at most 4 workers; pytest-xdist), a test module at
# a time per worker, so that its module fixtures run once; tests/conftest.py puts
# the slow tests first, so the modules that hold them start first (kept in that
# order: no reorder by size). (`--dist loadgroup` would group finer, but its
# marks have no effect under pytest 9 with pytest-xdist 3.8.)
PARALLEL ?= --numprocesses=auto --maxprocesses=4 --dist loadscope --no-loadscope-reorder
# The PyTorch build for .venv-torch: a CPU wheel (a plain `torch` is a CUDA build
# of several GB).
TORCH ?= torch==2.13.0
# Tests and doctests that run on every backend (the core's modules and the
# backend-neutral data modules).
BACKEND_TESTS := tests/backends keras_gblend/blend/formula.py keras_gblend/model/gblend_model.py \
	keras_gblend/model/builder.py keras_gblend/model/heads.py \
	keras_gblend/training/callback.py keras_gblend/blend/head_copies.py keras_gblend/blend/measure.py \
	keras_gblend/blend/compiled_losses.py \
	keras_gblend/report/history.py keras_gblend/model/encoders.py keras_gblend/model/fusion.py \
	keras_gblend/data/arrays.py keras_gblend/data/splits.py keras_gblend/data/synthetic.py \
	keras_gblend/model/prediction.py keras_gblend/model/output_modes.py keras_gblend/blend/state.py \
	keras_gblend/blend/estimators.py tests/model/test_prediction.py tests/blend/test_state.py \
	tests/blend/test_formula.py

.PHONY: demo test test-all test-backends test-jax test-torch lint format clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[tensorflow-cpu,test,plot]"
	touch $(STAMP)

.venv-jax/.installed: setup.py
	test -x .venv-jax/bin/python || $(PYTHON) -m venv .venv-jax
	.venv-jax/bin/python -m pip install --quiet -e ".[jax,test]"
	touch $@

.venv-torch/.installed: setup.py
	test -x .venv-torch/bin/python || $(PYTHON) -m venv .venv-torch
	.venv-torch/bin/python -m pip install --quiet "$(TORCH)"
	.venv-torch/bin/python -m pip install --quiet -e ".[torch,test]"
	touch $@

# Level 3 also hides tf.data's harmless `NodeDef mentions attribute
# use_unbounded_threadpool` ERROR line, logged at every fit and predict under op
# determinism.
demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m experiments.compare --preset=demo --output_dir=runs/demo
	rm -f runs/demo/crossval.jsonl
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m experiments.crossval --preset=demo --output=runs/demo/crossval.jsonl

test: $(STAMP)
	$(PY) -m pytest $(PARALLEL)

# Kept for muscle memory: `make test` runs everything now.
test-all: test

test-jax: .venv-jax/.installed
	KERAS_BACKEND=jax .venv-jax/bin/python -m pytest $(PARALLEL) $(BACKEND_TESTS)

test-torch: .venv-torch/.installed
	KERAS_BACKEND=torch .venv-torch/bin/python -m pytest $(PARALLEL) $(BACKEND_TESTS)

test-backends: test-jax test-torch

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-jax .venv-torch runs .pytest_cache build *.egg-info
