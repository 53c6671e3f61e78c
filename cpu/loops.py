"""Plain numba loops: one output element at a time, accumulating in the arrays' dtype.

Variants, never renumbered (each against the one before):

    naive     `*_rows` over the whole output range, serial: the index formula as written, one scalar
              dependency chain per output (no FMA, no vectors: LLVM keeps a float sum in order)
    parallel  the same loop, one contiguous chunk of outputs per prange task (`*_parallel`;
              reductions in two stages, per-chunk partials then a fixed-order sum): x the threads

Every kernel takes the range of outputs it computes ([start, stop)), so the same serial loop serves
the `naive` variant (whole range) and the `parallel` one (one contiguous chunk per prange task).
`zero` is a 0 of the working dtype, passed in so that accumulators keep that type.
"""

import numpy as np
from numba import config, njit, prange


@njit(cache=True)
def correlate_rows(x, w, y, start, stop, zero, bias, relu):
    """y[j] = sum_i x[j+i] w[i] (+ bias, then max(0, .) if relu) for start <= j < stop."""
    k = w.shape[0]
    for j in range(start, stop):
        acc = zero
        for i in range(k):
            acc += x[j + i] * w[i]
        acc += bias
        y[j] = max(acc, zero) if relu else acc


@njit(cache=True)
def full_convolve_rows(w, g, dx, start, stop, zero):
    """dx[t] = sum_{i<k, 0<=t-i<m} g[t-i] w[i] for start <= t < stop."""
    k, m = w.shape[0], g.shape[0]
    for t in range(start, stop):
        acc = zero
        for i in range(max(0, t - m + 1), min(k, t + 1)):
            acc += g[t - i] * w[i]
        dx[t] = acc


@njit(cache=True)
def weight_grad_rows(x, g, dw, jstart, jstop, zero):
    """dw[i] = sum_{jstart <= j < jstop} g[j] x[j+i]: a slice of the reduction over j."""
    for i in range(dw.shape[0]):
        acc = zero
        for j in range(jstart, jstop):
            acc += g[j] * x[j + i]
        dw[i] = acc


@njit(cache=True)
def circular_rows(x, y, z, start, stop, zero):
    """z[s] = sum_i x[i] y[(i+s) mod n] for start <= s < stop."""
    n = x.shape[0]
    for s in range(start, stop):
        acc = zero
        for i in range(n):
            acc += x[i] * y[(i + s) % n]
        z[s] = acc


@njit(cache=True)
def circular_convolve_rows(g, x, d, start, stop, zero):
    """d[i] = sum_s g[s] x[(i-s) mod n] for start <= i < stop."""
    n = g.shape[0]
    for i in range(start, stop):
        acc = zero
        for s in range(n):
            acc += g[s] * x[(i - s + n) % n]
        d[i] = acc


@njit(cache=True)
def chunk(c, count, total):
    """[start, stop) of chunk c when `total` items are split into `count` near-equal chunks."""
    return c * total // count, (c + 1) * total // count


#: prange tasks per parallel loop: enough to balance the threads, few enough to keep partials small.
CHUNKS = 4 * config.NUMBA_NUM_THREADS


@njit(cache=True)
def n_chunks(total):
    return max(1, min(total, CHUNKS))


@njit(parallel=True, cache=True)
def correlate_parallel(x, w, y, zero, bias, relu):
    count = n_chunks(y.shape[0])
    for c in prange(count):
        start, stop = chunk(c, count, y.shape[0])
        correlate_rows(x, w, y, start, stop, zero, bias, relu)


@njit(parallel=True, cache=True)
def full_convolve_parallel(w, g, dx, zero):
    count = n_chunks(dx.shape[0])
    for c in prange(count):
        start, stop = chunk(c, count, dx.shape[0])
        full_convolve_rows(w, g, dx, start, stop, zero)


@njit(parallel=True, cache=True)
def weight_grad_parallel(x, g, dw, zero):
    """Two stages, deterministic: per-chunk partial dw over a slice of j, then a fixed-order sum."""
    count = n_chunks(g.shape[0])
    partial = np.empty((count, dw.shape[0]), dw.dtype)
    for c in prange(count):
        start, stop = chunk(c, count, g.shape[0])
        weight_grad_rows(x, g, partial[c], start, stop, zero)
    for i in range(dw.shape[0]):
        acc = zero
        for c in range(count):
            acc += partial[c, i]
        dw[i] = acc


@njit(parallel=True, cache=True)
def circular_parallel(x, y, z, zero):
    count = n_chunks(z.shape[0])
    for c in prange(count):
        start, stop = chunk(c, count, z.shape[0])
        circular_rows(x, y, z, start, stop, zero)


@njit(parallel=True, cache=True)
def circular_convolve_parallel(g, x, d, zero):
    count = n_chunks(d.shape[0])
    for c in prange(count):
        start, stop = chunk(c, count, d.shape[0])
        circular_convolve_rows(g, x, d, start, stop, zero)


@njit(cache=True)
def sum_rows(g, out, start, stop, zero):
    """out[0] = sum_{start <= j < stop} g[j]."""
    acc = zero
    for j in range(start, stop):
        acc += g[j]
    out[0] = acc


@njit(parallel=True, cache=True)
def sum_parallel(g, out, zero):
    """Two stages, deterministic: per-chunk partial sums, then a fixed-order sum."""
    count = n_chunks(g.shape[0])
    partial = np.empty((count, 1), out.dtype)
    for c in prange(count):
        start, stop = chunk(c, count, g.shape[0])
        sum_rows(g, partial[c], start, stop, zero)
    sum_rows(partial[:, 0], out, 0, count, zero)
