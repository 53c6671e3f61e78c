"""Side-by-side layer timings in one process: torch CPU conv1d against numba_cpu layer variants.

    python -m plots.bench.layer_probe [--variants auto,gemm,direct] [--rounds 7] [--shapes 0,1]

Prints, per shape of the layer preset and a same-run FP32 matmul, the best time of each method over
`rounds` round-robin rounds (random order per round, an untimed call first), as GFLOP/s and x torch.
torch runs with torch.set_num_threads(2) and OMP_WAIT_POLICY=PASSIVE, so its idle OpenMP threads do
not spin against numba's and OpenBLAS's (see `sessions.quiet_spinning`).
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np

import kernels
from kernels.spec import OPS
from plots.bench import baselines
from plots.bench.sweeps import LAYER_SHAPES

OPS_FB = ("conv1d_layer", "conv1d_layer_backward")


def _best(fn, rounds_log, key):
    t = time.perf_counter()
    fn()
    rounds_log.setdefault(key, []).append(time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="auto,gemm,direct")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--shapes", default="", help="indices into LAYER_SHAPES (default: all)")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch  # optional: the `torch` extra; after OMP_WAIT_POLICY is set, which its OpenMP reads once

    torch.set_num_threads(2)
    baselines._torch()
    variants = a.variants.split(",")
    shapes = [LAYER_SHAPES[int(i)] for i in a.shapes.split(",")] if a.shapes else list(LAYER_SHAPES)
    rng = np.random.default_rng(0)
    dt = np.dtype(a.dtype)
    mm = rng.standard_normal((2048, 2048)).astype(dt)
    mm_out = np.empty_like(mm)
    print(f"{'shape':<44} {'op':<4} {'torch GF/s':>10} {variants[0] + ' GF/s':>10} {'% matmul':>8} "
          + " ".join(f"{v + ' x':>12}" for v in variants))
    for shape in shapes:
        times, flops = {}, {}
        calls = {("matmul", "np"): lambda: np.matmul(mm, mm, out=mm_out)}
        flops["matmul"] = 2 * 2048 ** 3
        for op in OPS_FB:
            args, kw = OPS[op].make_args(rng, dt, **shape)
            p, _ = OPS[op].parse(*args, **kw)
            flops[op] = OPS[op].flops(p)
            targs = [torch.from_numpy(np.ascontiguousarray(v)) for v in args]
            extra = list(kw.values())
            fn = baselines._torch_layer if op == OPS_FB[0] else baselines._torch_layer_backward
            calls[op, "torch"] = lambda fn=fn, targs=targs, extra=extra: fn(*targs, *extra)
            for v in variants:
                f = kernels.get(op, "numba_cpu", v)
                calls[op, v] = lambda f=f, args=args, kw=kw: f(*args, **kw)
        for c in calls.values():  # warm-up (JIT)
            c()
        keys = list(calls)
        for _ in range(a.rounds):
            random.shuffle(keys)
            for k in keys:
                calls[k]()
                _best(calls[k], times, k)
        best = {k: min(v) for k, v in times.items()}
        label = " ".join(f"{k}={v}" for k, v in shape.items())
        for op in OPS_FB:
            tg, g0 = (flops[op] / best[op, k] / 1e9 for k in ("torch", variants[0]))
            peak = flops["matmul"] / best["matmul", "np"] / 1e9
            ratios = " ".join(f"{best[op, 'torch'] / best[op, v]:12.2f}" for v in variants)
            print(f"{label:<44} {'fwd' if op == OPS_FB[0] else 'bwd':<4} {tg:10.1f} {g0:10.1f} {100 * g0 / peak:8.0f} "
                  f"{ratios}", flush=True)
        print(f"{'':<44} matmul 2048: {flops['matmul'] / best['matmul', 'np'] / 1e9:.0f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
