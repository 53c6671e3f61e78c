"""Benchmarks: sweeps over n and k (and layer shapes) of every implementation available here, against baselines.

    python -m plots bench                         # the quick preset (a few minutes on 2 CPU cores)
    python -m plots bench --preset full
    python -m plots bench --list                  # what would run, and what is left out and why
    python -m plots draw                          # draw plots/ from the newest results per device

Modules: `sweeps` (presets as data), `baselines` (the NumPy, SciPy, torch and CuPy calls to beat, as a
table), `ceilings` (measured peak FLOP/s and bandwidth), `timing` (the CPU, round-robin and GPU timers),
`plan` (the candidates and points a run measures), `measure` (one candidate at one point: check, time,
result row), `sessions` (where calls run: in process or in the `isolated` child that runs torch's CPU
baselines; GPU memory pools; OpenMP waiting), `runner` (the one run loop over (n, k) points and layer
shapes), `results` (the results files), `machine` (metadata), `analysis` (crossover k*, speedups,
summary), `layer` (the layer runs' summary), `cli` (`python -m plots bench`), `tune` (the CPU direct/FFT
crossover table, `python -m plots.bench.tune`) and `probe` (the numba_cpu kernels against their targets,
`python -m plots.bench.probe`).
"""
