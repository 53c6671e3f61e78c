"""Measure where FFT overtakes the direct kernel on this machine: `python -m plots.bench.tune`.

For each op with an FFT path (conv1d, conv1d_weight_grad), dtype and signal length n in N, the
filter length k doubles from K0 while `blocked` (direct) and `fft` are timed side by side (the
project's CPU timer, `plots.bench.timing.time_cpu`; the fastest call counts, as other jobs on a shared
machine only ever add time). Once FFT has won at two k in a row, the sweep
stops; the crossover is where log(t_fft / t_direct) crosses zero between the last k direct won and
the first k FFT won (interpolated on log k), so `auto` is close to the faster of the two on both
sides. The result goes to cpu/crossover.json (schema in `kernels.fft_choice`) with the raw times and the
machine, written atomically (`kernels.fft_choice.write_table`). It takes about half a minute.

    python -m plots.bench.tune               # measure and write cpu/crossover.json
    python -m plots.bench.tune --dry-run     # measure and print, write nothing
    python -m plots.bench.tune --backend cupy   # on a GPU: gpu/crossover_cupy.json (also numba_cuda)
    python -m plots.bench.tune --layer       # the layer's auto: cpu/layer_choice/<this cpu>.json

With --layer, the variants the layer's `auto` chooses between (cpu/layer_auto.py VARIANTS) are timed side by
side (`time_race`, the minimum counts) on LAYER_TUNE_SHAPES, forward and backward, and the fastest of each
pass is recorded per shape with the raw times, for `auto` to take the choice of the nearest shape.

With --backend, the GPU `auto` variant's crossover is measured instead: auto's direct side (auto run with an
empty table: the direct step it runs at each k, the `wraps` of its declaration) against auto's own FFT path
(the accuracy rule included: auto run with a table that sends every k to the FFT), timed with device events
after warm-up (`time_gpu`), for n in GPU_N.
That table replaces the model's (plots.model.crossover); without a GPU the backend's arrays live on the host
(emulator, simulator) and the timer is the CPU's, which only tests the sweep.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import time

import numba
import numpy as np

import kernels
from cpu import auto, blocked, fft, layer_auto, simd
from cpu.machine import cpu_info
from gpu import auto as gpu_auto
from kernels import fft_choice
from kernels.spec import OPS
from plots.bench.sweeps import LAYER_OPS, LAYER_SHAPES, shape_label
from plots.bench.timing import time_cpu, time_gpu, time_race

N = (10_000, 100_000, 1_000_000)
K0 = fft.MIN_SUM
#: Timed seconds per measurement (at least 3 calls each).
BUDGET = 0.02
#: Longest direct call tried (seconds): past it the sweep stops, FFT or not.
MAX_CALL = 0.15


def _kernels(op):
    """(direct, fft) as functions of (x, w_or_g, out)."""
    if op == "conv1d":
        return (lambda x, w, y: blocked.correlate(x, w, y, y.dtype.type(0), y.dtype.type(0), False),
                lambda x, w, y: fft.correlate(x, w, y, y.dtype.type(0), y.dtype.type(0), False))
    return (lambda x, g, dw: blocked.weight_grad(x, g, dw, dw.dtype.type(0)),
            lambda x, g, dw: fft.weight_grad(x, g, dw, dw.dtype.type(0)))


#: Signal lengths of the GPU sweep.
GPU_N = (100_000, 1_000_000, 10_000_000)


def _gpu_kernels(op, backend):
    """(direct, fft, to_device, timer) of a GPU backend's auto: the wrapped direct step and the FFT path."""
    row = {"n": [1, 10**12], "k_fft": [1, 1], "k_max": [1, 10**12]}
    always = {"schema": 1, "ops": {o: {d: dict(row) for d in ("float32", "float64")} for o in fft_choice.FFT_OPS}}
    by_auto = kernels.get(op, backend, "auto")

    def call(fn, x, s, out):  # conv1d(x, w) or conv1d_weight_grad(x, g, k)
        return fn(x, s, out=out) if op == "conv1d" else fn(x, s, out.shape[0], out=out)

    def with_table(table):
        def run(x, s, out):
            real, gpu_auto.load = gpu_auto.load, lambda _backend: table
            try:
                return call(by_auto, x, s, out)
            finally:
                gpu_auto.load = real
        return run

    direct, by_fft = with_table({}), with_table(always)  # {}: direct everywhere

    arrays = kernels.registry.backend(backend).arrays
    real_gpu = kernels.status(backend).state == "real GPU"
    return direct, by_fft, arrays.prepare, time_gpu if real_gpu else time_cpu


def sweep(op: str, dtype, n: int, rng, backend: str | None = None) -> dict:
    """Times of direct and FFT for k = K0, 2 K0, ... at length n, and the crossover k (or None)."""
    if backend is None:
        (direct, by_fft), device, timer = _kernels(op), (lambda a: a), time_cpu
    else:
        direct, by_fft, device, timer = _gpu_kernels(op, backend)
    x = device(rng.standard_normal(n).astype(dtype))
    ks, t_direct, t_fft = [], [], []
    k, wins = K0, 0
    while k <= n // 2 and wins < 2:
        m = n - k + 1
        second = device(rng.standard_normal(k if op == "conv1d" else m).astype(dtype))
        out = device(np.empty(m if op == "conv1d" else k, dtype))
        td = timer(lambda s=second, o=out: direct(x, s, o), budget=BUDGET).min
        tf = timer(lambda s=second, o=out: by_fft(x, s, o), budget=BUDGET).min
        ks.append(k), t_direct.append(td), t_fft.append(tf)
        wins = wins + 1 if tf < td else 0
        if td > MAX_CALL:
            break
        k *= 2
    return {"k": ks, "t_direct": t_direct, "t_fft": t_fft, "k_fft": _crossover(ks, t_direct, t_fft, wins)}


def _crossover(ks, td, tf, wins) -> int | None:
    """First k of the final run of FFT wins, moved down to where the log time ratio crosses 0."""
    if wins == 0:
        return None
    first = len(ks) - wins
    if first == 0:
        return ks[0]
    r_lo, r_hi = math.log(tf[first - 1] / td[first - 1]), math.log(tf[first] / td[first])
    lo, hi = math.log(ks[first - 1]), math.log(ks[first])
    return int(math.ceil(math.exp(lo + (hi - lo) * r_lo / (r_lo - r_hi))))


def measure(seed: int = 0, backend: str | None = None, ns=None) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    ops, raw = {}, {}
    for op in auto.FFT_OPS:
        for dtype in ("float32", "float64"):
            row = {"n": [], "k_fft": [], "k_max": []}
            for n in ns or (N if backend is None else GPU_N):
                s = sweep(op, np.dtype(dtype), n, rng, backend)
                row["n"].append(n), row["k_fft"].append(s["k_fft"]), row["k_max"].append(s["k"][-1])
                raw[f"{op} {dtype} n={n}"] = s
                print(f"{op:20s} {dtype} n={n:>8d}: fft from k={s['k_fft']} "
                      f"(tried k={s['k'][0]}..{s['k'][-1]})", flush=True)
            ops.setdefault(op, {})[dtype] = row
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if backend is not None:
        where = kernels.status(backend).reason
        return {"schema": auto.SCHEMA, "command": f"python -m plots.bench.tune --backend {backend}",
                "source": f"measured on {where}", "measured": when, "seconds": round(time.perf_counter() - t0, 1),
                "machine": {"name": where}, "ops": ops, "raw": raw}
    return {"schema": auto.SCHEMA, "command": "python -m plots.bench.tune", "measured": when,
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": {**cpu_info(), "threads": numba.get_num_threads(),
                        "vector_bytes": simd.REGISTER_BYTES},
            "ops": ops, "raw": raw}


#: The layer shapes `--layer` measures: the layer preset's, and small and mid-sized ones where direct or a
#: BLAS product can win.
LAYER_TUNE_SHAPES = LAYER_SHAPES + tuple(
    dict(N=4, C_in=c, C_out=c, L=length, K=3, padding=1) for c in (4, 16, 64) for length in (128, 1024))


def measure_layer(seed: int = 0, dtype="float32", shapes=LAYER_TUNE_SHAPES, budget: float = 0.4) -> dict:
    """The layer choice table (cpu/layer_auto.py schema) measured here."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    points = []
    for shape in shapes:
        point = {"shape": shape}
        for which, op in zip(layer_auto.PASSES, LAYER_OPS):
            args, kw = OPS[op].make_args(rng, np.dtype(dtype), **shape)
            p = OPS[op].parse(*args, **kw)[0]
            fns = {v: functools.partial(kernels.get(op, "numba_cpu", v), *args, **kw) for v in layer_auto.VARIANTS}
            times = {v: timing.min for v, timing in time_race(fns, budget=budget).items()}
            point[which] = min(times, key=times.get)
            point[f"{which}_seconds"] = times
        sizes, kinds = layer_auto.features(p)
        point["features"] = [list(sizes), list(kinds)]
        points.append(point)
        print(f"layer {shape_label(shape):<36} forward {point['forward']:<12} backward {point['backward']}", flush=True)
    return {"schema": layer_auto.SCHEMA, "command": "python -m plots.bench.tune --layer", "dtype": dtype,
            "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": {**cpu_info(), "threads": numba.get_num_threads()}, "points": points}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m plots.bench.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the table, do not write it")
    parser.add_argument("--backend", choices=("cupy", "numba_cuda"),
                        help="measure that GPU backend's auto instead (default out: gpu/crossover_<backend>.json)")
    parser.add_argument("--n", type=int, nargs="+", help="signal lengths (default: N, or GPU_N with --backend)")
    parser.add_argument("--layer", action="store_true",
                        help="measure the layer's auto (cpu/layer_choice/<this cpu>.json)")
    parser.add_argument("--out", help=f"where to write (default: {auto.PATH}; with --layer, "
                                      f"{layer_auto.FOLDER}/<this cpu>.json)")
    args = parser.parse_args(argv)
    if args.layer:
        table = measure_layer()
        layer_auto.validate(table)
        print(f"measured in {table['seconds']} s")
        if not args.dry_run:
            print(f"wrote {layer_auto.write(table, args.out)}")
        return
    if args.out is None:
        args.out = str(auto.PATH if args.backend is None else gpu_auto.path(args.backend))
    table = measure(backend=args.backend, ns=args.n)
    auto.validate(table)
    print(f"measured in {table['seconds']} s")
    if not args.dry_run:
        fft_choice.write_table(table, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
