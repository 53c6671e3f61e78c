"""Measure where FFT overtakes the direct kernel on this machine: `python -m plots.bench.tune`.

For each op with an FFT path (conv1d, conv1d_weight_grad), dtype and signal length n in N, the
filter length k doubles from K0 while `blocked` (direct) and `fft` are timed side by side (the
project's CPU timer, `plots.bench.timing.time_cpu`; the fastest call counts, as other jobs on a shared
machine only ever add time). Once FFT has won at two k in a row, the sweep
stops; the crossover is where log(t_fft / t_direct) crosses zero between the last k direct won and
the first k FFT won (interpolated on log k), so `auto` is close to the faster of the two on both
sides. The result goes to cpu/crossover.json (schema in `cpu.auto`) with the raw times and the
machine, written atomically (`write_table`). It takes about half a minute.

    python -m plots.bench.tune               # measure and write cpu/crossover.json
    python -m plots.bench.tune --dry-run     # measure and print, write nothing
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cpu import auto, blocked, fft, simd

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


def sweep(op: str, dtype, n: int, rng) -> dict:
    """Times of direct and FFT for k = K0, 2 K0, ... at length n, and the crossover k (or None)."""
    from plots.bench.timing import time_cpu

    direct, by_fft = _kernels(op)
    x = rng.standard_normal(n).astype(dtype)
    ks, t_direct, t_fft = [], [], []
    k, wins = K0, 0
    while k <= n // 2 and wins < 2:
        m = n - k + 1
        second = rng.standard_normal(k if op == "conv1d" else m).astype(dtype)
        out = np.empty(m if op == "conv1d" else k, dtype)
        td = time_cpu(lambda s=second, o=out: direct(x, s, o), budget=BUDGET).min
        tf = time_cpu(lambda s=second, o=out: by_fft(x, s, o), budget=BUDGET).min
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


def measure(seed: int = 0) -> dict:
    import numba

    from plots.bench.machine import cpu_info

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    ops, raw = {}, {}
    for op in auto.OPS:
        for dtype in ("float32", "float64"):
            row = {"n": [], "k_fft": [], "k_max": []}
            for n in N:
                s = sweep(op, np.dtype(dtype), n, rng)
                row["n"].append(n), row["k_fft"].append(s["k_fft"]), row["k_max"].append(s["k"][-1])
                raw[f"{op} {dtype} n={n}"] = s
                print(f"{op:20s} {dtype} n={n:>8d}: fft from k={s['k_fft']} "
                      f"(tried k={s['k'][0]}..{s['k'][-1]})", flush=True)
            ops.setdefault(op, {})[dtype] = row
    return {"schema": auto.SCHEMA, "command": "python -m plots.bench.tune",
            "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": {**cpu_info(), "threads": numba.get_num_threads(),
                        "vector_bytes": simd.REGISTER_BYTES},
            "ops": ops, "raw": raw}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m plots.bench.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the table, do not write it")
    parser.add_argument("--out", default=str(auto.PATH), help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    table = measure()
    auto.validate(table)
    print(f"measured in {table['seconds']} s")
    if not args.dry_run:
        write_table(table, args.out)
        print(f"wrote {args.out}")


def write_table(table: dict, path) -> Path:
    """Write `table` as JSON to `path` atomically: to a temporary file in the same folder, then
    os.replace, so that a reader sees the old file or the new one, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


if __name__ == "__main__":
    main()
