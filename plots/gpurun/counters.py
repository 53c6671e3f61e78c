"""The kernels `ncu` profiles in the GPU run: the default 1-D kernels (forward and weight gradient) at n = 1e8,
k = 3 and 511, and the default layer step forward on the first layer shape, for each GPU backend on a real GPU.

    python -m plots.gpurun.counters            # the cases (no device needed)
    ncu --profile-from-start off --metrics ... --csv python -m plots.gpurun.counters --run

Each case is called once to warm up (compiles, pools, plans), then once between cudaProfilerStart/Stop, so ncu
sees the measured launches only. `METRICS`: DRAM throughput, FMA pipe utilisation, achieved occupancy and the
kernel's time, each as ncu names it.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

METRICS = ("dram__throughput.avg.pct_of_peak_sustained_elapsed",
           "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
           "sm__warps_active.avg.pct_of_peak_sustained_active",
           "gpu__time_duration.sum")
BACKENDS = ("numba_cuda", "cupy")
CASES = tuple((op, {"n": 10**8, "k": k}) for op in ("conv1d", "conv1d_weight_grad") for k in (3, 511)) + (
    ("conv1d_layer", None),)


def ncu_command(ncu: str, csv_path: str, python: str) -> list[str]:
    """ncu over `python -m plots.gpurun.counters --run`, the metrics to a CSV file (one row per kernel)."""
    return [ncu, "--profile-from-start", "off", "--metrics", ",".join(METRICS), "--csv", "--log-file", csv_path,
            python, "-m", "plots.gpurun.counters", "--run"]


def cases():
    """(backend, op, make_args keywords) of every profiled call."""
    from plots.bench.sweeps import LAYER_SHAPES

    return [(b, op, size or dict(LAYER_SHAPES[0])) for b in BACKENDS for op, size in CASES]


def run() -> int:
    """Warm up, then profile each case on the backends that run on a real GPU."""
    import cupy  # optional: only on a GPU (its profiler API brackets the measured launches)

    import kernels
    from kernels.spec import OPS

    rng = np.random.default_rng(0)
    for backend, op, size in cases():
        if kernels.status(backend).state != "real GPU":
            print(f"counters: {backend} skipped: {kernels.status(backend).reason}", file=sys.stderr)
            continue
        args, kwargs = OPS[op].make_args(rng, np.float32, **size)
        arrays = kernels.registry.backend(backend).arrays
        dev = tuple(arrays.prepare(a) if isinstance(a, np.ndarray) else a for a in args)
        fn = kernels.get(op, backend)
        fn(*dev, **kwargs)
        cupy.cuda.Device().synchronize()
        cupy.cuda.profiler.start()
        fn(*dev, **kwargs)
        cupy.cuda.Device().synchronize()
        cupy.cuda.profiler.stop()
        print(f"counters: {backend} {op} {size}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.gpurun.counters", description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run the cases (under ncu)")
    if ap.parse_args(argv).run:
        return run()
    for case in cases():
        print(*case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
