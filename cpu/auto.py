"""The `auto` variant: direct (`blocked`) or FFT per (op, n, k, dtype), from a measured crossover.

`cpu/crossover.json` (written by `python -m plots.bench.tune`) holds, per op and dtype, the filter lengths
n it was measured at and, for each, the smallest k from which the FFT was faster (null: direct
won everywhere up to the largest k tried). Between measured n the crossover is interpolated on
log-log axes; outside them the nearest one applies; it is scaled by the thread count now over the
one it was measured with (direct scales with threads, scipy's FFT runs on one). Without the file,
auto is direct.

    {"schema": 1, "machine": {...}, "command": "python -m plots.bench.tune",
     "ops": {"conv1d": {"float32": {"n": [10000, ...], "k_fft": [256, ...], "k_max": [...]}}}}
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

from cpu import blocked, fft

PATH = Path(__file__).with_name("crossover.json")
SCHEMA = 1
#: ops that have an FFT path; conv1d_input_grad (the same sums, full instead of valid) uses conv1d's.
OPS = ("conv1d", "conv1d_weight_grad")
TABLE_OF = {"conv1d": "conv1d", "conv1d_weight_grad": "conv1d_weight_grad", "conv1d_input_grad": "conv1d"}


@functools.cache
def load(path: Path = PATH) -> dict:
    """The crossover table ({} when the file is missing)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def validate(table: dict) -> None:
    """Raise ValueError unless `table` follows the schema above."""
    if table.get("schema") != SCHEMA:
        raise ValueError(f"crossover: schema {table.get('schema')!r}, expected {SCHEMA}")
    for op in OPS:
        for dtype in ("float32", "float64"):
            row = table["ops"][op][dtype]
            ns, ks, kmax = row["n"], row["k_fft"], row["k_max"]
            if not (len(ns) == len(ks) == len(kmax) >= 1) or sorted(ns) != ns:
                raise ValueError(f"crossover {op} {dtype}: n, k_fft and k_max must align, n ascending")
            for n, k, top in zip(ns, ks, kmax, strict=True):
                if not (isinstance(n, int) and n > 0 and isinstance(top, int) and 0 < top <= n):
                    raise ValueError(f"crossover {op} {dtype}: bad n={n!r} or k_max={top!r}")
                if k is not None and not (isinstance(k, int) and 0 < k <= top):
                    raise ValueError(f"crossover {op} {dtype}: bad k_fft={k!r} at n={n}")


def crossover(op: str, n: int, dtype, table: dict | None = None) -> float:
    """The smallest k from which FFT is used for `op` at length n (inf: never)."""
    table = load() if table is None else table
    try:
        row = table["ops"][TABLE_OF[op]][str(dtype)]
    except KeyError:
        return math.inf
    # never-FFT points count as just past the largest k tried there
    points = [(math.log(nn), math.log(k if k is not None else 2 * top))
              for nn, k, top in zip(row["n"], row["k_fft"], row["k_max"], strict=True)]
    never = [k is None for k in row["k_fft"]]
    ln = math.log(max(n, 1))
    if ln <= points[0][0]:
        return math.inf if never[0] else math.exp(points[0][1])
    if ln >= points[-1][0]:
        return math.inf if never[-1] else math.exp(points[-1][1])
    for (a, fa), (b, fb), na, nb in zip(points, points[1:], never, never[1:], strict=False):
        if a <= ln <= b:
            if na and nb:
                return math.inf
            return math.exp(fa + (fb - fa) * (ln - a) / (b - a))
    return math.inf


def use_fft(op: str, n: int, k: int, dtype, table: dict | None = None) -> bool:
    """True when the FFT path should be faster for `op` with signal length n and filter length k."""
    if table is None:  # the stored table: remember its answers (a call costs ~0.3 us, not ~4)
        table = load()
        kx = _stored_crossover(op, n, str(dtype), id(table))
    else:
        kx = crossover(op, n, dtype, table)
    kx *= _thread_scale(table)
    return kx != math.inf and k >= math.ceil(kx - 1e-6)


def _thread_scale(table: dict) -> float:
    """Threads now / threads when measured: direct time scales with threads, scipy's FFT uses one,
    so the crossover k moves in proportion (numba.config's count: set_num_threads is not seen)."""
    import numba

    measured = table.get("machine", {}).get("threads")
    return numba.config.NUMBA_NUM_THREADS / measured if measured else 1.0


@functools.lru_cache(maxsize=4096)
def _stored_crossover(op, n, dtype, table_id):
    """crossover() on load(); table_id (of the table load() returns) only keys the cache."""
    return crossover(op, n, dtype, load())


# --- the loops of the `auto` variant (`numba_cpu.Loops`) -------------------------------------------

#: dtype -> its name, without numpy's slow str(dtype) on every call
_NAMES = {np.dtype(d): d for d in ("float32", "float64")}


def _pick(op, n, k, dtype):
    return fft if use_fft(op, n, k, _NAMES.get(dtype) or str(dtype)) else blocked


def correlate(x, w, y, zero, bias, relu):
    _pick("conv1d", x.shape[0], w.shape[0], y.dtype).correlate(x, w, y, zero, bias, relu)


def weight_grad(x, g, dw, zero):
    _pick("conv1d_weight_grad", x.shape[0], dw.shape[0], dw.dtype).weight_grad(x, g, dw, zero)


def full_convolve(w, g, dx, zero):
    _pick("conv1d_input_grad", dx.shape[0], w.shape[0], dx.dtype).full_convolve(w, g, dx, zero)


# a circular sum of n terms costs what a valid correlation of 2n-1 samples with n taps does

def circular(x, y, z, zero):
    _pick("conv1d", 2 * x.shape[0] - 1, x.shape[0], z.dtype).circular(x, y, z, zero)


def circular_convolve(g, x, d, zero):
    _pick("conv1d", 2 * x.shape[0] - 1, x.shape[0], d.dtype).circular_convolve(g, x, d, zero)
