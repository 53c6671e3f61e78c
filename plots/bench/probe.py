"""The numba_cpu kernels against their targets (baselines, matmul peak, copy bandwidth), side by side.

    python -m plots.bench.probe                      # both threads (the machine's 2 vCPUs)
    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m plots.bench.probe    # one core, ceilings too
    python -m plots.bench.probe --n 1e6 --k 3,511    # a few points only

Each point times every method round-robin (`plots.bench.timing.time_race`: per round, in a new
random order, an untimed call then a timed one of each, for `--budget` seconds), so that noise from
other jobs lands on all of them alike, and keeps each method's fastest call (inputs hot in cache): on
a shared machine other work only ever adds time. A 1024 x 1024 matmul and a copy of the point's
sizes race along in every point; the matmul ratio is taken to the larger of that figure and the
2048 x 2048 matmul timed at the start. GFLOP/s = 2 k m / time.
Ratios are read off `blocked` through the public API (`out=` given); "kernel" is the same call
without the public wrapper (argument validation, about 15 us a call here).
The full benchmark (plots, all backends) is `python -m plots bench`; this is the quick check.
"""

from __future__ import annotations

import argparse
import json

import numba
import numpy as np
import scipy.signal

import kernels
from cpu import blocked
from plots.bench.ceilings import parallel_copy
from plots.bench.timing import time_race

#: Variants timed; the targets are read off `blocked` (direct) and `auto` (the default).
VARIANTS = ("parallel", "blocked", "fft", "auto")


def race(methods: dict, budget: float) -> dict:
    """{name: fastest seconds} of methods {name: fn}, timed round-robin (`timing.time_race`)."""
    return {name: t.min for name, t in time_race(methods, budget=budget).items()}


def ceilings(budget: float) -> dict:
    a32 = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a64, c32 = a32.astype(np.float64), np.empty_like(a32)
    c64 = np.empty_like(a64)
    t = race({"float32": lambda: np.matmul(a32, a32, out=c32),
              "float64": lambda: np.matmul(a64, a64, out=c64)}, budget)
    return {f"matmul_{d}_GFLOPs": 2 * 2048**3 / s / 1e9 for d, s in t.items()}


_SQUARE = {}  # dtype -> (a, c): the 1024 x 1024 matmul timed within every point


def point(op: str, dtype: str, n: int, k: int, budget: float, rng) -> dict:
    m = n - k + 1
    x, w, g = (rng.standard_normal(s).astype(dtype) for s in (n, k, m))
    second = w if op == "conv1d" else g
    out = np.empty(m if op == "conv1d" else k, dtype)
    args = (x, w) if op == "conv1d" else (x, g, k)
    methods = {"np.correlate": lambda: np.correlate(x, second, "valid")}
    if k * m <= 3e8:  # scipy's direct method is slow: skip the largest points
        methods["scipy.direct"] = lambda: scipy.signal.correlate(x, second, "valid", method="direct")
    for v in VARIANTS:
        f = kernels.get(op, "numba_cpu", v)
        methods[v] = lambda f=f: f(*args, out=out)
    zero = np.dtype(dtype).type(0)  # the blocked kernel without the public wrapper's validation
    if op == "conv1d":
        methods["kernel"] = lambda: blocked.correlate(x, w, out, zero, zero, False)
    else:
        methods["kernel"] = lambda: blocked.weight_grad(x, g, out, zero)
    if dtype not in _SQUARE:
        a = rng.standard_normal((1024, 1024)).astype(dtype)
        _SQUARE[dtype] = (a, np.empty_like(a))
    a, c = _SQUARE[dtype]
    methods["matmul"] = lambda: np.matmul(a, a, out=c)
    src, dst = x[:m].copy(), np.empty(m, dtype)
    methods["copy (numba)"] = lambda: parallel_copy(src, dst)
    methods["copy (numpy)"] = lambda: np.copyto(dst, src)
    t = race(methods, budget)
    copy = min(t.pop("copy (numba)"), t.pop("copy (numpy)"))
    matmul = 2 * 1024**3 / t.pop("matmul") / 1e9
    flops = 2 * k * m
    nbytes = (n + m + k) * np.dtype(dtype).itemsize
    return {"op": op, "dtype": dtype, "n": n, "k": k, "GFLOPs": {a: flops / s / 1e9 for a, s in t.items()},
            "blocked_GBs": nbytes / t["blocked"] / 1e9, "kernel_GBs": nbytes / t["kernel"] / 1e9,
            "copy_GBs": 2 * m * np.dtype(dtype).itemsize / copy / 1e9, "matmul_GFLOPs": matmul}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m plots.bench.probe", description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1e4,1e5,1e6")
    p.add_argument("--k", default="1,3,7,15,31,63,127,255,511,1023")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--op", default="conv1d,conv1d_weight_grad")
    p.add_argument("--budget", type=float, default=0.3, help="seconds per point (default %(default)s)")
    p.add_argument("--json", help="also write the rows to this file (JSON lines)")
    a = p.parse_args(argv)
    ns = [int(float(v)) for v in a.n.split(",")]
    ks = [int(v) for v in a.k.split(",")]
    rng = np.random.default_rng(0)
    ceil = ceilings(3 * a.budget)
    head = {"threads": numba.get_num_threads(), **ceil}
    print(json.dumps(head))
    print(f"{'op':10s} {'dtype':7s} {'n':>8s} {'k':>5s} {'best base':>9s} {'blocked':>8s} {'auto':>8s} "
          f"{'x base':>6s} {'/matmul':>7s} {'/copy':>6s} {'kernel/copy':>11s}")
    rows = [head]
    for op in a.op.split(","):
        for dtype in a.dtype.split(","):
            for n in ns:
                for k in (k for k in ks if k <= n):
                    r = point(op, dtype, n, k, a.budget, rng)
                    gf = r["GFLOPs"]
                    base = max(gf.get("np.correlate", 0), gf.get("scipy.direct", 0))
                    peak = max(r["matmul_GFLOPs"], ceil[f"matmul_{dtype}_GFLOPs"])
                    r.update(vs_baseline=gf["blocked"] / base,
                             of_matmul=gf["blocked"] / peak,
                             of_copy=r["blocked_GBs"] / r["copy_GBs"],
                             kernel_of_copy=r["kernel_GBs"] / r["copy_GBs"])
                    rows.append(r)
                    ratios = (f"{r['vs_baseline']:6.2f} {r['of_matmul']:7.2f} {r['of_copy']:6.2f} "
                              f"{r['kernel_of_copy']:11.2f}")
                    print(f"{op[:10]:10s} {dtype:7s} {n:8d} {k:5d} {base:9.1f} {gf['blocked']:8.1f} "
                          f"{gf['auto']:8.1f} {ratios}", flush=True)
    print(json.dumps({"ceilings_after": ceilings(3 * a.budget)}))
    if a.json:
        with open(a.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
