# Convolution kernel playground. Every target creates the virtual environment it needs.
#   make plots   measure every backend available here and draw the plots (the main job; plots/figures/)
#   make test    the test suite without its exhaustive sweeps (GPU tests skip with their reason without a device)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2
# The CUDA major version of the GPU wheels: 13 (driver R580 or newer) or 12 (`make setup CUDA=12`, R525 or newer).
CUDA   ?= 13
GPU_EXTRA := $(if $(filter 12,$(CUDA)),gpu-cu12,gpu)
# The oldest and newest Python the project supports, each checked by a fast job in `make test-all`. Each is
# found as pythonX.Y on the PATH or under pyenv's versions (a pyenv shim of a version not selected fails to run).
PYTHONS ?= 3.10 3.13
FIND_PYTHON = for p in python$(1) $$HOME/.pyenv/versions/$(1)*/bin/python$(1); do \
                $$p -c 'import sys; assert "%d.%d" % sys.version_info[:2] == sys.argv[1]' $(1) 2>/dev/null && { echo $$p; break; }; done

.PHONY: setup test test-all test-pythons test-gpu test-asan check list bench plots publish tune lint clean \
	gpu-report gpu-inspect gpu-preflight gpu-standin

setup: $(STAMP)

# The project installs into the venv in editable mode with its extras from pyproject.toml; torch is
# optional (a baseline and a test oracle) and its absence is reported, not fatal. A venv is named .venv* (git
# ignores those); its stamp records the CUDA wheels it has, so `make setup CUDA=12` reinstalls them. pip
# byte-compiles on one core: compileall does it on all (50 s against 62 s here), leaving out the packages nothing
# here imports (torch's sympy and networkx, the installers: 29% of the files); like pip, it passes over the files
# this Python cannot compile (another Python's syntax in torch's test helpers).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e ".[test,$(GPU_EXTRA)]"
	$(PY) -m pip install -q --no-compile -e ".[torch]" \
	  || echo "torch not installed: its baselines and comparisons will be skipped"
	$(PY) -m compileall -q -j 0 -x '/site-packages/(sympy|networkx|mpmath|pip|setuptools)/' \
	  $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') > /dev/null || true
	echo "$(GPU_EXTRA)" > $(STAMP)

ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell cat $(STAMP)),$(GPU_EXTRA))
.PHONY: $(STAMP)
endif
endif

# Everything but the tests marked `exhaustive`; --durations lists the slowest.
test: setup
	$(PY) -m pytest -n $(JOBS) --dist worksteal -q -m "not exhaustive" --durations=15

# The exhaustive sweeps (every accepted launch compiled, the model's coverage, long property runs), then
# the fast job on the oldest and newest Python. CI runs `make test` and this.
test-all: setup
	$(PY) -m pytest -n $(JOBS) -q -m exhaustive --durations=10
	$(MAKE) test-pythons

# One fast job per Python of PYTHONS, each in its own venv (.venv310, .venv313): the conformance matrix of the
# CPU backends and the workflow.
test-pythons:
	@for v in $(PYTHONS); do \
	  py=$$($(call FIND_PYTHON,$$v)); \
	  test -n "$$py" || { echo "Python $$v not found: skipping it"; continue; }; \
	  venv=.venv$$(echo $$v | tr -dc 0-9); \
	  $(MAKE) --no-print-directory setup PYTHON=$$py VENV=$$venv && \
	  $$venv/bin/python -m pytest -n $(JOBS) -q -k "numpy or numba_cpu" tests/test_conformance.py && \
	  $$venv/bin/python -m pytest -n $(JOBS) -q tests/test_workflow.py tests/test_project.py || exit 1; \
	done

test-gpu: setup
	$(PY) -m pytest -q -m gpu

# Every emulated CUDA C test again, with the kernels built under AddressSanitizer (out-of-bounds reads).
test-asan: setup
	KERNELS_EMU_ASAN=1 LD_PRELOAD=$$($${CXX:-g++} -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	  $(PY) -m pytest -q -m emulated

check: setup
	$(PY) -m kernels check

list: setup
	$(PY) -m kernels list -v

# Benchmarks: `make bench PRESET=full` for the long sweep; results go to plots/results/ (one new file
# per run, ignored by git). `make plots` measures the quick and layer presets and draws plots/figures/<cpu>/
# (and the static GPU model when its predictions for these sources are at hand; `make gpu-inspect` makes them).
PRESET ?= quick
bench: setup
	$(PY) -m plots bench --preset $(PRESET)

plots: setup
	$(PY) -m plots bench --preset quick
	$(PY) -m plots bench --preset layer
	$(PY) -m plots draw

# The only target that writes plots/published/ (tracked: the README shows it): the newest runs of this machine
# and the model's predictions are copied there, and everything published is drawn again.
publish: setup
	$(PY) -m plots publish
	@git status --short -- plots/published | sed 's/^/changed: /'

# The static performance model of every GPU kernel (no GPU needed): resources, SASS mix, counted traffic,
# predicted bounds for an H100 SXM and an H200; then its plots (plots/figures/<device>-model/).
gpu-inspect: setup
	$(PY) -m plots.model.oned
	$(PY) -m plots.model.layer
	$(PY) -m plots.model

# The GPU run, with a GPU machine's Python as it is (no venv, no pip, the project not installed): make gpu-report
# PY=python3. The preflight (versions, imports, a real compile and assembly, NVRTC, test collection, tools, disk,
# memory) stops it at once on a missing piece; then tests, ncu counters, compute-sanitizer, a reduced bench, the
# crossover tune and the plots beside the model, each step within its own limit, in 8 minutes, into one folder with
# a manifest (plots/gpurun/report.py; --dry-run prints the plan with its estimates).
gpu-preflight:
	$(PY) -m plots.gpurun.preflight

gpu-report:
	$(PY) -m plots.gpurun.report

# A stand-in of the GPU machine's Python here (plots/gpurun/standin.txt, Python 3.12, no project install, no pyyaml,
# ruff, tomli or torch), running every step of the GPU run that needs no device.
STANDIN        ?= build/gpu-standin
STANDIN_PYTHON ?= $(shell $(call FIND_PYTHON,3.12))
gpu-standin:
	@test -n "$(STANDIN_PYTHON)" || { echo "gpu-standin: no Python 3.12 found (set STANDIN_PYTHON)"; exit 1; }
	test -x $(STANDIN)/bin/python || $(STANDIN_PYTHON) -m venv $(STANDIN)
	$(STANDIN)/bin/python -m pip install -q -r plots/gpurun/standin.txt
	$(STANDIN)/bin/python -m plots.gpurun.report --standin --out $(STANDIN)/run

# Re-measure what numba_cpu's `auto` variants read: the direct/FFT crossover (cpu/crossover.json) and the layer's
# variant per shape (cpu/layer_choice/<this cpu>.json), both tracked.
tune: setup
	$(PY) -m plots.bench.tune
	$(PY) -m plots.bench.tune --layer
	@git status --short -- cpu/crossover.json cpu/layer_choice | sed 's/^/changed (tracked): /'

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .venv3* plots/results plots/figures .pytest_cache .ruff_cache .hypothesis $${KERNELS_EMU_CACHE:-$$HOME/.cache/kernels-emu} \
	  $${KERNELS_COMPILE_CACHE:-$$HOME/.cache/kernels-compile}
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
