"""Benchmarks: sweeps over n and k of every implementation available here, against baselines.

    python -m kernels bench                       # the quick preset (a few minutes on 2 CPU cores)
    python -m kernels bench --preset full
    python -m kernels bench --list                # what would run, and what is left out and why
    python -m plots                               # draw plots/ from the newest results per device

Modules: `sweeps` (presets as data), `baselines` (NumPy, SciPy, torch, CuPy references to beat),
`ceilings` (measured peak FLOP/s and bandwidth), `runner` (check, time, write), `isolated` (torch's
CPU baselines in a child process), `results` (the results files), `machine` (metadata), `analysis`
(crossover k*, speedups, summary), `cli`. Timers live in `plots.bench.timing`.
"""
