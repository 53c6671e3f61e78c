"""The GPU run: one script that, on a GPU machine's Python as it is (no registry, the project not installed, run
from the repository root), checks what the run needs and then measures what matters most in about 8 minutes.

    python -m plots.gpurun.preflight      what the run needs, no device required (exit 1 on a missing piece)
    python -m plots.gpurun.report         the run: preflight, then the steps of plots/gpurun/steps.py in order of
                                          value, each with its own time limit, into one folder with a manifest
    python -m plots.gpurun.report --dry-run     the plan with each step's estimated time and its evidence

    counters.py   the kernels `ncu` profiles (default 1-D and layer kernels at n = 1e8, k = 3 and 511)
    sanitize.py   every CUDA C kernel at small sizes, the target of compute-sanitizer
    windows.py    float64 references of large problems by windows and chunks, on every core
    standin.txt   the GPU machine's package set: `make gpu-standin` builds it here and runs every step that needs
                  no device

The product never imports this package (tests/test_architecture.py).
"""
