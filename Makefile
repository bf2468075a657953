# Two commands do all set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# A CUDA user sets e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genlowdim-installed
DEMO_OUT ?= runs/demo

.PHONY: install test demo bench notebooks clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# Trains a few-minute CDVAE on perov_5, samples, evaluates; JSON, CIFs and PNGs land in $(DEMO_OUT)/.
demo: $(STAMP)
	$(VENV)/bin/genlowdim data info perov_5
	$(VENV)/bin/genlowdim demo --out $(DEMO_OUT)

# Re-execute notebooks/*.ipynb in their quick mode and store them with their outputs (a few minutes each).
notebooks: $(STAMP)
	$(PY) tests/_notebooks.py

# Quick versions of every benchmark (each prints its table with the baseline from the same run).
# Full-size runs: see the header of each script; bench/sampling.py needs a trained checkpoint.
bench: $(STAMP)
	$(PY) bench/graphs.py
	$(PY) bench/kernels.py
	$(PY) bench/samplers.py
	$(PY) bench/likelihood.py --quick
	$(PY) bench/train_step.py
	$(PY) bench/readout.py --steps 100
	$(PY) bench/evaluate.py --num 600 --num-reference 400 --baseline-num 60 --num-20 100 --baseline-20 10
	$(PY) bench/tie_sensitivity.py --num 200 --check-reference 20

clean:
	rm -rf $(VENV) runs .pytest_cache
