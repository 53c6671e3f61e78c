"""Register-blocked correlation: rows of vector accumulators with the taps in the inner loop.

Variants (against `parallel` in cpu/loops.py):

    blocked   each output row of ROW vectors stays in registers for the whole sum, one broadcast tap
              at a time, two taps per load (explicit FMAs, cpu/simd.py): every loaded vector feeds
              FMAs instead of one scalar add chain per output, ~50x `parallel`, the FMA peak from
              k ~ 31 on; the weight gradient, input gradient and circular ops reduce to the same
              correlation (cpu/PERFORMANCE.md)

One kernel, `correlate_span`, computes

    out[t] = sum_{lo <= i < hi} x[t + i] w[i]        for start <= t < stop

and serves both ops this module speeds up:

    forward        y[j]  = sum_{i<k} x[j+i] w[i]   = correlate_span(x, w, y, 0, m, 0, k)
    weight grad    dw[i] = sum_{j<m} x[i+j] g[j]   = correlate_span(x, g, dw, 0, k, 0, m)

(the weight gradient is the same correlation with g as the filter: k outputs, sums of length m).

A row is ROW vectors of LANES consecutive outputs (64 float32 with AVX2, 128 with AVX-512) held in
ROW vector registers for the whole sum (`row_sum`). Each step broadcasts one w[i] and multiply-adds
it into the row, so every loaded vector of x feeds an FMA; taken in pairs LANES apart, two taps
share the row's loads, and R + 1 loads feed 2R FMAs (`simd.vfma_row2`). The last, partial row uses
fewer vectors in two interleaved sets (`row_sum_split`) so that enough FMA chains stay in flight;
its lanes past `stop` are computed in a scratch row and dropped, and the few steps of the sum whose
loads would run past the end of x are finished in scalar code.

Threads: the forward pass gives each thread one contiguous span of rows; the weight gradient splits
the sum instead (two stages: one partial dw per span, then a fixed-order sum). Both are
deterministic. A weight gradient with k <= SHIFTS taps uses the dot-product form (`shifts_span`):
lanes run along the sum and each tap has its own accumulator, where a row would be one vector, one
dependency chain; k = 1 is a plain dot product (`dot_span`).
"""

import numba
import numpy as np
from numba import njit, prange

from cpu import loops
from cpu.simd import (
    LANES,
    lanes,
    vadd_rows,
    vfma,
    vfma_row,
    vfma_row2,
    vfma_shifts,
    vload,
    vsplat,
    vstore_row,
    vzero,
    vzeros,
)
from kernels.fft_choice import MIN_SUM

#: Vectors per row: 8 accumulators, 9 loads and 2 broadcasts fit AVX2's 16 vector registers.
ROW = 8
#: Longest weight gradient done in the dot-product form (one accumulator per tap, 8 in flight).
SHIFTS = 8


@njit(cache=True, inline="always")
def row_sum(x, w, j, lo, hi, acc):
    """acc[r][l] += sum_{lo <= i < hi} x[j + r*LANES + l + i] w[i]: one row, taps in the inner loop."""
    L = lanes(x)
    i = lo
    while i + 2 * L <= hi:  # taps t and t + L share the row's loads
        for t in range(i, i + L):
            acc = vfma_row2(acc, x, j + t, vsplat(w[t]), vsplat(w[t + L]))
        i += 2 * L
    pairs = hi - i - L  # fewer than 2L taps left: pair [i, i+pairs) with [i+L, hi), the rest alone
    for t in range(i, i + pairs):
        acc = vfma_row2(acc, x, j + t, vsplat(w[t]), vsplat(w[t + L]))
    for t in range(i + max(pairs, 0), min(hi, i + L)):
        acc = vfma_row(acc, x, j + t, vsplat(w[t]))
    return acc


@njit(cache=True)
def row_sum_split(x, w, j, lo, hi, acc, other):
    """row_sum for rows of at most 4 vectors: `other` takes alternate blocks of taps (twice the
    independent FMA chains); returns acc + other."""
    L = lanes(x)
    i = lo
    while i + 4 * L <= hi:
        for t in range(i, i + L):
            acc = vfma_row2(acc, x, j + t, vsplat(w[t]), vsplat(w[t + L]))
            other = vfma_row2(other, x, j + t + 2 * L, vsplat(w[t + 2 * L]), vsplat(w[t + 3 * L]))
        i += 4 * L
    while i + 2 <= hi:
        acc = vfma_row(acc, x, j + i, vsplat(w[i]))
        other = vfma_row(other, x, j + i + 1, vsplat(w[i + 1]))
        i += 2
    if i < hi:
        acc = vfma_row(acc, x, j + i, vsplat(w[i]))
    return vadd_rows(acc, other)


@njit(cache=True)
def short_row(x, w, j, lo, hi, vectors, row):
    """row[:R*LANES] = the sums of a row of R vectors starting at j, R = `vectors` (1 .. ROW)
    rounded up to 1, 2, 4 or 8 (fewer specializations to compile; row has ROW*LANES elements)."""
    if vectors == 1:
        vstore_row(row, 0, row_sum_split(x, w, j, lo, hi, vzeros(row, 1), vzeros(row, 1)))
    elif vectors == 2:
        vstore_row(row, 0, row_sum_split(x, w, j, lo, hi, vzeros(row, 2), vzeros(row, 2)))
    elif vectors <= 4:
        vstore_row(row, 0, row_sum_split(x, w, j, lo, hi, vzeros(row, 4), vzeros(row, 4)))
    else:
        vstore_row(row, 0, row_sum(x, w, j, lo, hi, vzeros(row, 8)))


@njit(cache=True)
def correlate_span(x, w, out, start, stop, lo, hi, scratch):
    """out[t] = sum_{lo <= i < hi} x[t+i] w[i] for start <= t < stop (scratch: ROW*LANES elements)."""
    L = lanes(out)
    t = start
    while t + ROW * L <= stop:
        vstore_row(out, t, row_sum(x, w, t, lo, hi, vzeros(out, 8)))
        t += ROW * L
    rest = stop - t
    if rest > 0:
        vectors = (rest + L - 1) // L
        width = vectors if vectors <= 2 else (4 if vectors <= 4 else ROW)
        # vector loads reach x[t + width*L - 1 + i]: keep them inside x, finish in scalar code
        safe = min(hi, max(lo, x.shape[0] - t - width * L + 1))
        short_row(x, w, t, lo, safe, vectors, scratch)
        for r in range(rest):
            s = scratch[r]
            for i in range(safe, hi):
                s += x[t + r + i] * w[i]
            out[t + r] = s


@njit(cache=True, inline="always")
def shifts_sum(x, g, lo, hi, acc):
    """acc[i][l] += sum over j = lo + l, lo + l + LANES, ... of g[j] x[j+i]: lanes along the sum."""
    L = lanes(x)
    j = lo
    while j + L <= hi:
        acc = vfma_shifts(acc, x, j, vload(g, j))
        j += L
    return acc, j


@njit(cache=True)
def shifts_span(x, g, out, lo, hi, scratch):
    """out[i] = sum_{lo <= j < hi} g[j] x[j+i] for i < k <= SHIFTS: lanes along j, one accumulator
    per tap, 4 or 8 of them (taps k .. 3 or 7 are computed and dropped)."""
    L, k = lanes(out), out.shape[0]
    # vector loads reach x[j + taps-1 + L-1]: stop them inside x (the scalar loop below finishes)
    if k <= 4:
        acc, j = shifts_sum(x, g, lo, max(lo, min(hi, x.shape[0] - 4 + 1)), vzeros(out, 4))
        vstore_row(scratch, 0, acc)
    else:
        acc, j = shifts_sum(x, g, lo, max(lo, min(hi, x.shape[0] - SHIFTS + 1)), vzeros(out, 8))
        vstore_row(scratch, 0, acc)
    for i in range(k):
        s = scratch[i * L]
        for lane in range(1, L):
            s += scratch[i * L + lane]
        for jj in range(j, hi):
            s += g[jj] * x[jj + i]
        out[i] = s


@njit(cache=True)
def dot_span(x, g, out, lo, hi, scratch):
    """out[0] = sum_{lo <= j < hi} g[j] x[j] (the weight gradient for k = 1): a dot product with four
    vector accumulators, where the shifts form would spend 3 of 4 FMAs on dropped taps."""
    L = lanes(out)
    a0 = a1 = a2 = a3 = vzero(out)
    j = lo
    while j + 4 * L <= hi:
        a0 = vfma(vload(x, j), vload(g, j), a0)
        a1 = vfma(vload(x, j + L), vload(g, j + L), a1)
        a2 = vfma(vload(x, j + 2 * L), vload(g, j + 2 * L), a2)
        a3 = vfma(vload(x, j + 3 * L), vload(g, j + 3 * L), a3)
        j += 4 * L
    vstore_row(scratch, 0, (a0, a1, a2, a3))
    s = scratch[0]
    for i in range(1, 4 * L):
        s += scratch[i]
    for jj in range(j, hi):
        s += g[jj] * x[jj]
    out[0] = s


@njit(cache=True)
def weight_grad_span(x, g, out, lo, hi, scratch):
    """out[i] = sum_{lo <= j < hi} g[j] x[j+i] for every tap i < k = len(out)."""
    if out.shape[0] == 1:
        dot_span(x, g, out, lo, hi, scratch)
    elif out.shape[0] <= SHIFTS:
        shifts_span(x, g, out, lo, hi, scratch)
    else:
        correlate_span(x, g, out, 0, out.shape[0], lo, hi, scratch)


@njit(cache=True)
def bias_relu(y, start, stop, bias, zero, relu):
    """y[j] += bias, then max(y[j], 0) when relu, for start <= j < stop (the fused ops' epilogue)."""
    for j in range(start, stop):
        acc = y[j] + bias
        y[j] = max(acc, zero) if relu else acc


# --- whole ops over threads (serially, call the spans above on the whole range) ------------------

@njit(cache=True)
def row_span(c, count, total, width):
    """[start, stop) of span c when `total` outputs, in rows of `width`, go to `count` spans."""
    rows = (total + width - 1) // width
    return min(total, c * rows // count * width), min(total, (c + 1) * rows // count * width)


@njit(parallel=True, cache=True)
def correlate_parallel(x, w, y, zero, bias, relu, count):
    """y = correlate(x, w) + bias (then max(0, y) when relu), one span of whole rows per prange task."""
    width = ROW * lanes(y)
    scratch = np.empty((count, width), y.dtype)
    for c in prange(count):
        start, stop = row_span(c, count, y.shape[0], width)
        correlate_span(x, w, y, start, stop, 0, w.shape[0], scratch[c])
        if relu or bias != zero:
            bias_relu(y, start, stop, bias, zero, relu)


@njit(parallel=True, cache=True)
def weight_grad_parallel(x, g, dw, count):
    """Two stages: partial dw over `count` slices of the sum, then a fixed-order sum."""
    k, m = dw.shape[0], g.shape[0]
    partial = np.empty((count, k), dw.dtype)
    scratch = np.empty((count, ROW * lanes(dw)), dw.dtype)
    for c in prange(count):
        weight_grad_span(x, g, partial[c], c * m // count, (c + 1) * m // count, scratch[c])
    for i in range(k):
        s = partial[0, i]
        for c in range(1, count):
            s += partial[c, i]
        dw[i] = s


# --- the numba_cpu backend's engines (`numba_cpu.Loops`) in terms of the kernels above ------------

#: Below this many multiply-adds a call stays on one thread (starting the threads costs more).
PARALLEL_MIN_MACS = 1 << 17


def threads() -> int:
    """numba's thread count for this thread (numba.set_num_threads applies); about 3 us a call."""
    return numba.get_num_threads()


def _scratch(dtype):
    return np.empty(ROW * LANES[np.dtype(dtype)], dtype)


#: Up to this many multiply-adds `conv1d_whole` sums tap by tap (a few passes over a y that stays in L1 beat the
#: register-blocked rows, whose vector loads would reach past a short x and fall back to scalar code).
TAP_BY_TAP_MACS = 2048


@njit(["float32[::1](float32[::1], float32[::1])", "float64[::1](float64[::1], float64[::1])"], cache=True)
def conv1d_whole(x, w):
    """y = conv1d(x, w) (flip=False) as one compiled call, for a problem too small for threads and a filter
    shorter than MIN_SUM (the FFT never serves such sums, so `auto` would take this kernel too); an empty array
    (declined: the public call's other paths take it) otherwise.
    Compiled for contiguous writable float32 and float64 arrays only: numba raises TypeError for any other."""
    n, k = x.shape[0], w.shape[0]
    m = n - k + 1
    if k < 1 or m < 1 or k >= MIN_SUM or m * k >= PARALLEL_MIN_MACS:
        return np.empty(0, x.dtype)
    if m * k > TAP_BY_TAP_MACS:
        y = np.empty(m, x.dtype)
        correlate_span(x, w, y, 0, m, 0, k, np.empty(ROW * lanes(y), y.dtype))
        return y
    y = np.zeros(m, x.dtype)
    for i in range(k):  # tap by tap: the loop over j vectorises, and each y[j] still adds its taps in order
        wi = w[i]
        for j in range(m):
            y[j] += x[j + i] * wi
    return y


@njit(cache=True)
def correlate_small(x, w, y, zero, bias, relu):
    """`correlate` in one compiled call, for problems too small for threads: a small call's time is mostly
    its dispatches, so the scratch row, the span and the epilogue share one."""
    correlate_span(x, w, y, 0, y.shape[0], 0, w.shape[0], np.empty(ROW * lanes(y), y.dtype))
    if relu or bias != zero:
        bias_relu(y, 0, y.shape[0], bias, zero, relu)


def correlate(x, w, y, zero, bias, relu):
    """y[j] = sum_i x[j+i] w[i] + bias (then max(0, y) when relu)."""
    if y.shape[0] * w.shape[0] < PARALLEL_MIN_MACS:
        correlate_small(x, w, y, zero, bias, relu)
        return
    if threads() > 1:
        correlate_parallel(x, w, y, zero, bias, relu, min(threads(), y.shape[0]))
        return
    correlate_span(x, w, y, 0, y.shape[0], 0, w.shape[0], _scratch(y.dtype))
    if relu or bias != zero:
        bias_relu(y, 0, y.shape[0], bias, zero, relu)


def weight_grad(x, g, dw, zero):
    """dw[i] = sum_j g[j] x[j+i]."""
    if g.shape[0] * dw.shape[0] >= PARALLEL_MIN_MACS and threads() > 1:
        weight_grad_parallel(x, g, dw, min(threads(), g.shape[0]))
    else:
        weight_grad_span(x, g, dw, 0, g.shape[0], _scratch(dw.dtype))


def full_convolve(w, g, dx, zero):
    """dx[t] = sum_{i<k, 0<=t-i<m} g[t-i] w[i]: the correlation of g, zero-padded by k-1 on both
    sides, with w reversed. A non-finite w would turn padding zeros into NaN (0 * inf), so that
    case keeps the loop that skips the missing terms."""
    k = w.shape[0]
    if not np.isfinite(w).all():
        loops.full_convolve_parallel(w, g, dx, zero)
        return
    padded = np.zeros(g.shape[0] + 2 * (k - 1), g.dtype)
    padded[k - 1:k - 1 + g.shape[0]] = g
    correlate(padded, np.ascontiguousarray(w[::-1]), dx, zero, zero, False)


def circular(x, y, z, zero):
    """z[s] = sum_i x[i] y[(i+s) mod n]: the valid correlation of y extended by one period with x."""
    correlate(np.concatenate((y, y[:-1])), x, z, zero, zero, False)


def circular_convolve(g, x, d, zero):
    """d[i] = sum_s g[s] x[(i-s) mod n] = sum_s g[n-1-s] x[(i+1+s) mod n]: a valid correlation of
    x rotated by one and extended by one period with g reversed."""
    correlate(np.concatenate((x[1:], x)), np.ascontiguousarray(g[::-1]), d, zero, zero, False)
