# Convolution kernel playground. Every target creates the virtual environment it needs.
#   make plots   measure every backend available here and draw the plots (the main job)
#   make test    the whole test suite (GPU tests skip with their reason when there is no device)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: setup test test-gpu test-asan check list bench plots tune lint clean gpu-report gpu-inspect gpu-preflight \
        gpu-standin

setup: $(STAMP)

# The project installs into the venv in editable mode with its extras from pyproject.toml; torch is
# optional (a baseline and a test oracle) and its absence is reported, not fatal.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,gpu]"
	$(PY) -m pip install -q -e ".[torch]" \
	  || echo "torch not installed: its baselines and comparisons will be skipped"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -n $(JOBS) -q --durations=10

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
# per run), `make plots` measures the quick preset and draws plots/<device>/ from the newest results.
PRESET ?= quick
bench: setup
	$(PY) -m plots bench --preset $(PRESET)

plots: setup
	$(PY) -m plots bench --preset quick
	$(PY) -m plots bench --preset layer
	$(PY) -m plots draw

# The static performance model of every GPU kernel (no GPU needed): resources, SASS mix, counted traffic,
# predicted bounds for an H100 SXM and an H200; then its plots (plots/<device>-model/).
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
STANDIN_PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
                    $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
gpu-standin:
	@test -n "$(STANDIN_PYTHON)" || { echo "gpu-standin: no Python 3.12 found (set STANDIN_PYTHON)"; exit 1; }
	test -x $(STANDIN)/bin/python || $(STANDIN_PYTHON) -m venv $(STANDIN)
	$(STANDIN)/bin/python -m pip install -q -r plots/gpurun/standin.txt
	$(STANDIN)/bin/python -m plots.gpurun.report --standin --out $(STANDIN)/run

# Re-measure the direct/FFT crossover that numba_cpu's `auto` variant reads (cpu/crossover.json).
tune: setup
	$(PY) -m plots.bench.tune

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis $${KERNELS_EMU_CACHE:-$$HOME/.cache/kernels-emu} \
	  $${KERNELS_COMPILE_CACHE:-$$HOME/.cache/kernels-compile}
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
