"""The `auto` variant: direct (`blocked`) or FFT per call, the default of every 1-D op.

Variants, against the ones it chooses between:

    auto    blocked, or fft where the measured crossover says the FFT is faster for (op, n, k, dtype)
            AND a cheap bound says its error stays within the per-output tolerance of a direct sum
            (`fft_slack`); outside either, blocked. As fast as the faster side, plus ~5% for the bound
            on the FFT side (cpu/PERFORMANCE.md)

The crossover. `cpu/crossover.json` (written by `python -m plots.bench.tune`; schema, interpolation and
the accuracy rule in `kernels.fft_choice`) holds, per op and dtype, the smallest filter length k from
which the FFT was faster at each measured signal length n; it is scaled by the thread count now over
the one it was measured with (direct scales with threads, scipy's FFT runs on one).

The accuracy rule (`kernels.fft_choice`): the FFT result is kept only when its estimated error stays
within the per-output tolerance of a direct sum. Everything but R(y) is known before the transform
(`fft_slack`: lb is a blocked correlation, LB_TAPS / k of the direct work); R(y) is checked after it,
and a result that fails is recomputed directly. An outlier, a wide dynamic range or a signal with runs
of zeros thus go direct, and `auto` meets the elementwise tolerance for every finite input.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numba
import numpy as np
from numba import njit

from cpu import blocked, fft
from kernels import fft_choice
from kernels.fft_choice import FFT_OPS, LB_TAPS, SCHEMA, TABLE_OF, read_table, validate  # noqa: F401 (public)

PATH = Path(__file__).with_name("crossover.json")
TOOL = "python -m plots.bench.tune"


def load(path: Path | None = None) -> dict:
    """The crossover table at `path` (default `PATH`); {} (direct everywhere) when the file is missing
    or invalid, with one warning naming the file."""
    return _load(PATH if path is None else Path(path))


@functools.cache
def _load(path: Path) -> dict:
    return read_table(path, TOOL)


def crossover(op: str, n: int, dtype, table: dict | None = None) -> float:
    """The smallest k from which FFT is used for `op` at length n (inf: never); `table` default load()."""
    return fft_choice.crossover(op, n, dtype, load() if table is None else table)


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
    measured = table.get("machine", {}).get("threads")
    return numba.config.NUMBA_NUM_THREADS / measured if measured else 1.0


@functools.lru_cache(maxsize=4096)
def _stored_crossover(op, n, dtype, table_id):
    """crossover() on load(); table_id (of the table load() returns) only keys the cache."""
    return crossover(op, n, dtype, load())


# --- the accuracy rule ------------------------------------------------------------------------------

@njit(cache=True, fastmath={"reassoc", "contract"})
def _sum_squares(y, start, stop, scale, out):
    """sum_{start <= i < stop} (y[i] * scale)**2 in float64; out[i] = |y[i]| * scale when out is not empty."""
    acc = 0.0
    if out.shape[0]:
        for i in range(start, stop):
            v = abs(np.float64(y[i])) * scale
            out[i] = v
            acc += v * v
    else:
        for i in range(start, stop):
            v = np.float64(y[i]) * scale
            acc += v * v
    return acc


@njit(cache=True)
def block_rms(y, block, scale, out):
    """The largest root-mean-square of y * scale over blocks of `block` samples (float64 sums), and
    out[i] = |y[i]| * scale on the way (scale a power of two: exact unless out's dtype underflows)
    when out is not empty."""
    n = y.shape[0]
    top = 0.0
    for start in range(0, n, block):
        stop = min(n, start + block)
        top = max(top, _sum_squares(y, start, stop, scale, out) / (stop - start))
    return np.sqrt(top)


def fft_slack(s, f):
    """(slack, scale): TOLERANCE_C sqrt(k) lb - FFT_ERROR_C sqrt(log2 N) R(s) ||f||_2 in units of
    1/scale (the accuracy rule above without R(y)); slack <= 0 means the FFT would not be accurate
    enough. (0, 0) for non-finite or extreme-range inputs."""
    n, k = s.shape[0], f.shape[0]
    ms, mf = fft.max_abs(s), fft.max_abs(f)
    if not (math.isfinite(ms) and math.isfinite(mf)) or ms == 0 or mf == 0:
        return 0.0, 0.0  # non-finite: the FFT path goes direct anyway; zeros: direct is exact and fast
    es, ef = fft_choice.exponent(ms), fft_choice.exponent(mf)
    if max(abs(es), abs(ef), abs(es + ef)) > 1000:  # 2**-e would leave float64's range
        return 0.0, 0.0
    # |s| * 2**-es in float32 whatever s's dtype (a lower bound needs no more: values that underflow
    # only lower it), and R(s) on the way
    ss = np.empty(n, np.float32)
    r_s = block_rms(s, k, 2.0 ** -es, ss)
    fs = np.abs(f.astype(np.float64)) * 2.0 ** -ef
    norm_f = float(np.sqrt(fs @ fs))
    r = min(k, LB_TAPS)
    sums = np.cumsum(np.concatenate(([0.0], fs)))
    a = int(np.argmax(sums[r:] - sums[:-r]))  # the run of r taps with the largest sum |f|
    m = n - k + 1
    lb_terms = np.empty(m, np.float32)
    zero = np.float32(0)
    run = (fs[a:a + r] * (1 - 2.0 ** -23)).astype(np.float32)  # rounded down
    blocked.correlate(ss[a:a + m + r - 1], run, lb_terms, zero, zero, False)
    lb = float(lb_terms.min()) * (1 - 4 * r * 2.0 ** -23)  # less the rounding of its own sums
    return fft_choice.slack(n, k, lb, r_s, norm_f), 2.0 ** -es * 2.0 ** -ef


def result_within(y, k, n, slack, scale) -> bool:
    """The accuracy rule's a-posteriori half: FFT_ERROR_C sqrt(log2 N) R(y) <= slack."""
    return fft_choice.within(n, k, block_rms(y, k, scale, y[:0]), slack)


def _fft_correlate(s, f, y, zero) -> bool:
    """y = the valid correlation of s with f by FFT when the accuracy rule allows it; False (y not
    meaningful) when it does not."""
    n, k = s.shape[0], f.shape[0]
    if k < fft.MIN_SUM or not fft.fits(n, k, y.dtype):
        return False
    slack, scale = fft_slack(s, f)
    if slack <= 0:
        return False
    fft.correlate(s, f, y, zero, zero, False)
    return result_within(y, k, n, slack, scale)


# --- the engines of the `auto` variant (`numba_cpu.Loops`) ----------------------------------------

#: dtype -> its name, without numpy's slow str(dtype) on every call
_NAMES = {np.dtype(d): d for d in ("float32", "float64")}


def _use_fft(op, n, k, dtype):
    return use_fft(op, n, k, _NAMES.get(dtype) or str(dtype))


def correlate(x, w, y, zero, bias, relu):
    """y[j] = sum_i x[j+i] w[i] + bias (then max(0, y) when relu)."""
    if w.shape[0] < fft.MIN_SUM:  # the FFT never serves sums this short: no table lookup
        blocked.correlate(x, w, y, zero, bias, relu)
        return
    if _use_fft("conv1d", x.shape[0], w.shape[0], y.dtype) and _fft_correlate(x, w, y, zero):
        if relu or bias != zero:
            blocked.bias_relu(y, 0, y.shape[0], bias, zero, relu)
        return
    blocked.correlate(x, w, y, zero, bias, relu)


def weight_grad(x, g, dw, zero):
    """dw[i] = sum_j g[j] x[j+i]: the valid correlation of x with g."""
    if _use_fft("conv1d_weight_grad", x.shape[0], dw.shape[0], dw.dtype) and _fft_correlate(x, g, dw, zero):
        return
    blocked.weight_grad(x, g, dw, zero)


def full_convolve(w, g, dx, zero):
    """dx[t] = sum_{i<k, 0<=t-i<m} g[t-i] w[i]: for k-1 <= t < m all k terms are there, a valid
    correlation of g with w reversed (by FFT if the rule allows); the k-1 outputs at each end are
    short sums, direct."""
    k, m = w.shape[0], g.shape[0]
    if m >= k and _use_fft("conv1d_input_grad", dx.shape[0], k, dx.dtype) \
            and _fft_correlate(g, np.ascontiguousarray(w[::-1]), dx[k - 1:m], zero):
        if k > 1:  # the full convolutions (2k-2 outputs) of the k-1 samples at each end
            edge = np.empty(2 * k - 2, dx.dtype)
            blocked.full_convolve(w, g[:k - 1], edge, zero)
            dx[:k - 1] = edge[:k - 1]
            blocked.full_convolve(w, g[m - k + 1:], edge, zero)
            dx[m:] = edge[k - 1:]
        return
    blocked.full_convolve(w, g, dx, zero)


# a circular sum of n terms is a valid correlation of 2n-1 samples with n taps

def circular(x, y, z, zero):
    """z[s] = sum_i x[i] y[(i+s) mod n]: the valid correlation of y extended by one period with x."""
    n = x.shape[0]
    if _use_fft("conv1d", 2 * n - 1, n, z.dtype) and _fft_correlate(np.concatenate((y, y[:-1])), x, z, zero):
        return
    blocked.circular(x, y, z, zero)


def circular_convolve(g, x, d, zero):
    """d[i] = sum_s g[s] x[(i-s) mod n]: the valid correlation of x rotated by one, extended by one
    period, with g reversed."""
    n = g.shape[0]
    if _use_fft("conv1d", 2 * n - 1, n, d.dtype) and _fft_correlate(
            np.concatenate((x[1:], x)), np.ascontiguousarray(g[::-1]), d, zero):
        return
    blocked.circular_convolve(g, x, d, zero)
