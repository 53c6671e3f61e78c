# Convolution kernel playground. Every target creates the virtual environment it needs.
#   make plots   measure every backend available here and draw the plots (the main job)
#   make test    the whole test suite (GPU tests skip with their reason when there is no device)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: setup test test-gpu test-asan check list bench plots tune lint clean gpu-report gpu-inspect

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

# One GPU run in about 8 minutes, with the machine's Python as it is (no venv, no pip: a GPU machine may
# have no package registry): make gpu-report PY=python3. GPU tests, the gpu-short preset (ceilings
# included), the measured direct/FFT crossovers of the GPU auto variants (gpu/crossover_*.json), the plots,
# and the model beside the measurements; versions go to plots/results/.
gpu-report:
	@$(PY) -c "import sys; sys.path.insert(0, '.'); from kernels._env import cuda_driver_present as p; \
	  sys.exit(0 if p() else 'no CUDA device: make gpu-report needs an NVIDIA GPU and its driver')"
	@mkdir -p plots/results
	$(PY) -m plots.model.oned --versions | tee plots/results/gpu-report-versions.txt
	$(PY) -m pytest -q -m gpu -p no:cacheprovider | tee plots/results/gpu-report-tests.txt
	$(PY) -m plots bench --preset gpu-short
	$(PY) -m plots.bench.tune --backend cupy
	$(PY) -m plots.bench.tune --backend numba_cuda
	$(PY) -m plots draw
	$(PY) -m plots.model --measured $$(ls -t plots/results/*gpu-short.jsonl | head -1)

# Re-measure the direct/FFT crossover that numba_cpu's `auto` variant reads (cpu/crossover.json).
tune: setup
	$(PY) -m plots.bench.tune

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis $${KERNELS_EMU_CACHE:-$$HOME/.cache/kernels-emu} \
	  $${KERNELS_COMPILE_CACHE:-$$HOME/.cache/kernels-compile}
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
