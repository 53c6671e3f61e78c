# Convolution kernel playground. Every target creates the virtual environment it needs.
#   make plots   measure every backend available here and draw the plots (the main job)
#   make test    the whole test suite (GPU tests skip with their reason when there is no device)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: setup test test-gpu test-asan check list bench plots lint clean

setup: $(STAMP)

# Dependencies come from pyproject.toml (tools/deps.py lists them); torch is optional (a baseline and a
# test oracle) and its absence is reported, not fatal.
$(STAMP): pyproject.toml tools/deps.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $$($(PYTHON) tools/deps.py test gpu)
	$(PY) -m pip install -q $$($(PYTHON) tools/deps.py torch) \
	  || echo "torch not installed: its baselines and comparisons will be skipped"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -n $(JOBS) -q --durations=10

test-gpu: setup
	$(PY) -m pytest -q -m gpu

check: setup
	$(PY) -m kernels check

list: setup
	$(PY) -m kernels list -v

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
