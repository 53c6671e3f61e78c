"""The conv1d layer (`kernels.layer`) in numba: kernels and the implementations `cpu.numba_cpu` registers.

Variants, never renumbered (each against the one before):

    naive    serial; one output element at a time, the index formula as written, a bounds test per
             tap; dx as a gather (one dx element at a time), the layout of a one-thread-per-element
             GPU kernel. The baseline: no vectorisation, no threads.
    direct   prange over rows of the output (n, co) / of dx (n, ci) / of dw (co, c); per tap one
             contiguous sweep over the positions whose tap lands on real input (no padded copy, no
             bounds test in the inner loop), which LLVM vectorises for stride 1: faster by the
             threads times the vector width. dw and db sum per sample, then over samples in a fixed
             order (deterministic, no atomics).
    im2col   unfold each sample into a (C_in/groups*K, L_out) matrix, then one BLAS matrix product per
             sample and group: y = W @ cols, dw += g @ cols^T, dcols = W^T @ g folded back (col2im).
             Faster where channels are many: the products run at the matmul ceiling, at the price of
             K copies of the input.

Index formulas (math in `kernels.layer`), with ci = G(co)*C_in/groups + c and
j = l*stride + t*dilation - padding:

    y[n, co, l]  = b[co] + sum_{c, t} w[co, c, t] xpad[n, ci, j]
    dw[co, c, t] = sum_{n, l} g[n, co, l] xpad[n, ci, j]
    db[co]       = sum_{n, l} g[n, co, l]
    dx[n, ci, j] = sum_{co in G(ci), t, l : l*stride + t*dilation - padding = j} g[n, co, l] w[co, c, t]

where xpad is x with zeros outside 0 <= j < L. `tap_range(t)` = [lo, hi) (the contract's
`kernels.layer.real_range`, compiled by numba) gives the real positions: tap t reads x itself exactly for
lo <= l < hi, and the padding elsewhere.

Zero padding and IEEE values follow torch (and the float64 reference): a padded zero multiplies like a
real zero, so 0 * Inf = 0 * NaN = NaN. A NaN or Inf in w[co, c, t] makes y[n, co, l] NaN at every l
whose tap t lies in the padding, and a NaN or Inf in g[n, co, l] makes dw[co, c, t] NaN for every tap
t that output l meets in the padding. The kernels skip the padded terms (they are 0 * finite = 0) and
add 0 * w (or 0 * g) to the outputs outside [lo, hi) only when that factor is not finite, a test per
tap in the forward pass and one isfinite pass over g per backward call. dx has no padded terms
(products landing in the padding are dropped, as in torch).

All loops accumulate in the arrays' dtype. `zero` is a 0 of that dtype, so accumulators keep it.
"""
# ruff: noqa: E741  (l is the output position, as in the formulas)

import numpy as np
from numba import njit, prange

from kernels import layer

real_range = njit(layer.real_range)


@njit(cache=True)
def tap_range(t, L, L_out, stride, padding, dilation):
    """[lo, hi), 0 <= lo <= hi <= L_out: the l < L_out with 0 <= l*stride + t*dilation - padding < L
    (tap t on real input; empty when tap t reads only padding)."""
    return real_range(t * dilation - padding, stride, L_out, L)


@njit(cache=True)
def tap_ranges(K, L, L_out, stride, padding, dilation):
    """taps[t] = tap_range(t, ...) for t < K, as a (K, 2) array."""
    taps = np.empty((K, 2), np.int64)
    for t in range(K):
        taps[t, 0], taps[t, 1] = tap_range(t, L, L_out, stride, padding, dilation)
    return taps


@njit(cache=True)
def gather_axpy(y, a, src, t, lo, hi, stride, padding, dilation):
    """y[l - lo] += a * src[l*stride + t*dilation - padding] for lo <= l < hi (forward: one tap's sweep)."""
    if hi <= lo:  # tap t reads only padding: nothing to read (a slice start would be out of range)
        return
    start = lo * stride + t * dilation - padding
    if stride == 1:  # contiguous views: the loop vectorises
        axpy(y, a, src[start:start + hi - lo])
    else:
        axpy(y, a, src[start:start + (hi - lo - 1) * stride + 1:stride])


@njit(cache=True)
def scatter_axpy(dst, a, y, t, lo, hi, stride, padding, dilation):
    """dst[l*stride + t*dilation - padding] += a * y[l - lo] for lo <= l < hi (gather_axpy transposed)."""
    if hi <= lo:
        return
    start = lo * stride + t * dilation - padding
    if stride == 1:
        axpy(dst[start:start + hi - lo], a, y)
    else:
        axpy(dst[start:start + (hi - lo - 1) * stride + 1:stride], a, y)


@njit(cache=True)
def gather_dot(y, src, t, lo, hi, stride, padding, dilation, zero):
    """sum_{lo <= l < hi} y[l - lo] src[l*stride + t*dilation - padding] (dw: one tap, one sample)."""
    if hi <= lo:
        return zero
    start = lo * stride + t * dilation - padding
    if stride == 1:
        return dot(y, src[start:start + hi - lo], zero)
    return dot(y, src[start:start + (hi - lo - 1) * stride + 1:stride], zero)


@njit(cache=True)
def axpy(y, a, x):
    """y[i] += a * x[i] for i < len(y) == len(x): on contiguous views LLVM vectorises it."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit(cache=True, fastmath={"reassoc", "contract"})
def dot(a, b, zero):
    """sum_i a[i] b[i], reassociated into vector lanes (the order is fixed by the build: deterministic)."""
    acc = zero
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


@njit(cache=True)
def add_padded_terms(row, nz, lo, hi):
    """row[l] += nz for l outside [lo, hi): the padded terms 0 * w of one tap, when nz = 0 * w is NaN."""
    for l in range(lo):
        row[l] += nz
    for l in range(hi, row.shape[0]):
        row[l] += nz


@njit(cache=True)
def padded_dot(grow, lo, hi, zero):
    """sum_{l outside [lo, hi)} 0 * g[l]: dw's padded terms of one tap (0, or NaN if some g is not finite)."""
    acc = zero
    for l in range(lo):
        acc += grow[l] * zero
    for l in range(hi, grow.shape[0]):
        acc += grow[l] * zero
    return acc


# --- naive: the formulas as written, serial ------------------------------------------------------------

@njit(cache=True)
def forward_naive(x, w, b, y, stride, padding, dilation, groups, has_bias, zero):
    """y[n, co, l] = b[co] + sum_{c, t} w[co, c, t] xpad[n, ci, l*stride + t*dilation - padding]."""
    N, C_in, L = x.shape
    C_out, C_in_g, K = w.shape
    L_out = y.shape[2]
    C_out_g = C_out // groups
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for n in range(N):
        for co in range(C_out):
            ci0 = (co // C_out_g) * C_in_g  # first input channel of co's group
            for l in range(L_out):
                acc = zero
                for c in range(C_in_g):
                    for t in range(K):
                        if taps[t, 0] <= l < taps[t, 1]:
                            acc += w[co, c, t] * x[n, ci0 + c, l * stride + t * dilation - padding]
                        else:
                            acc += w[co, c, t] * zero  # the padding: 0 * w
                y[n, co, l] = acc + b[co] if has_bias else acc


@njit(cache=True)
def backward_naive(x, w, g, dx, dw, db, stride, padding, dilation, groups, has_bias, zero):
    """dx by gather, dw and db as plain sums over (n, l): each output element computed on its own."""
    N, C_in, L = x.shape
    C_out, C_in_g, K = w.shape
    L_out = g.shape[2]
    C_out_g = C_out // groups
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for n in range(N):
        for ci in range(C_in):
            co0, c = (ci // C_in_g) * C_out_g, ci % C_in_g
            for j in range(L):
                # dx[n, ci, j] = sum over co in the group and taps t with l*stride = j + padding - t*dilation
                acc = zero
                for co in range(co0, co0 + C_out_g):
                    for t in range(K):
                        q = j + padding - t * dilation
                        if q % stride == 0 and taps[t, 0] <= q // stride < taps[t, 1]:
                            acc += g[n, co, q // stride] * w[co, c, t]
                dx[n, ci, j] = acc
    for co in range(C_out):
        ci0 = (co // C_out_g) * C_in_g
        for c in range(C_in_g):
            for t in range(K):
                # dw[co, c, t] = sum_{n, l} g[n, co, l] xpad[n, ci, l*stride + t*dilation - padding]
                acc = zero
                for n in range(N):
                    for l in range(L_out):
                        if taps[t, 0] <= l < taps[t, 1]:
                            acc += g[n, co, l] * x[n, ci0 + c, l * stride + t * dilation - padding]
                        else:
                            acc += g[n, co, l] * zero  # the padding: 0 * g
                dw[co, c, t] = acc
        if has_bias:
            acc = zero
            for n in range(N):
                for l in range(L_out):
                    acc += g[n, co, l]
            db[co] = acc


# --- direct: rows in parallel, one contiguous sweep per tap ----------------------------------------------

@njit(parallel=True, cache=True)
def forward_direct(x, w, b, y, stride, padding, dilation, groups, has_bias, zero):
    """prange over rows y[n, co, :]: start from b[co], then per (c, t) add w[co, c, t] * x[n, ci, j(l)]."""
    N, C_in, L = x.shape
    C_out, C_in_g, K = w.shape
    L_out = y.shape[2]
    C_out_g = C_out // groups
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for r in prange(N * C_out):
        n, co = r // C_out, r % C_out
        ci0 = (co // C_out_g) * C_in_g
        yrow = y[n, co]
        yrow[:] = b[co] if has_bias else zero
        for c in range(C_in_g):
            xrow = x[n, ci0 + c]
            for t in range(K):
                lo, hi = taps[t, 0], taps[t, 1]
                a = w[co, c, t]
                # yrow[l] += w[co, c, t] * xrow[l*stride + t*dilation - padding] for lo <= l < hi
                gather_axpy(yrow[lo:hi], a, xrow, t, lo, hi, stride, padding, dilation)
                nz = a * zero
                if nz != zero:  # w not finite: the padded terms 0 * w are NaN
                    add_padded_terms(yrow, nz, lo, hi)


@njit(parallel=True, cache=True)
def input_grad_direct(w, g, dx, stride, padding, dilation, groups, zero):
    """prange over rows dx[n, ci, :]: g[n, co, l] * w[co, c, t] goes to j = l*stride + t*dilation - padding.

    One task owns a row, so the scatter has no races.
    """
    N, C_in, L = dx.shape
    C_out, C_in_g, K = w.shape
    L_out = g.shape[2]
    C_out_g = C_out // groups
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for r in prange(N * C_in):
        n, ci = r // C_in, r % C_in
        co0, c = (ci // C_in_g) * C_out_g, ci % C_in_g
        dxrow = dx[n, ci]
        dxrow[:] = zero
        for co in range(co0, co0 + C_out_g):
            grow = g[n, co]
            for t in range(K):
                lo, hi = taps[t, 0], taps[t, 1]
                # dxrow[l*stride + t*dilation - padding] += w[co, c, t] * grow[l] for lo <= l < hi
                scatter_axpy(dxrow, w[co, c, t], grow[lo:hi], t, lo, hi, stride, padding, dilation)


@njit(parallel=True, cache=True)
def weight_grad_direct(x, g, dw, stride, padding, dilation, groups, zero, padded_terms):
    """prange over (co, c): dw[co, c, t] = sum_n (sum_l g[n, co, l] xpad[n, ci, j(l)]), fixed order.

    padded_terms (some g not finite): add the terms 0 * g[n, co, l] of the l outside tap t's range.
    """
    N, C_in, L = x.shape
    C_out, C_in_g, K = dw.shape
    L_out = g.shape[2]
    C_out_g = C_out // groups
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for r in prange(C_out * C_in_g):
        co, c = r // C_in_g, r % C_in_g
        ci = (co // C_out_g) * C_in_g + c
        for t in range(K):
            lo, hi = taps[t, 0], taps[t, 1]
            acc = zero
            for n in range(N):  # per-sample partial sums (two levels), added in a fixed order
                acc += gather_dot(g[n, co, lo:hi], x[n, ci], t, lo, hi, stride, padding, dilation, zero)
                if padded_terms:
                    acc += padded_dot(g[n, co], lo, hi, zero)
            dw[co, c, t] = acc


@njit(parallel=True, cache=True)
def bias_grad_direct(g, db, zero):
    """prange over co: db[co] = sum_n (sum_l g[n, co, l]), fixed order."""
    N, C_out, L_out = g.shape
    for co in prange(C_out):
        acc = zero
        for n in range(N):
            part = zero
            for l in range(L_out):
                part += g[n, co, l]
            acc += part
        db[co] = acc


# --- im2col: unfold, then BLAS -------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def unfold(xn, K, L_out, stride, padding, dilation, cols):
    """cols[ci*K + t, l] = xpad[ci, l*stride + t*dilation - padding], 0 on the padding (im2col of a sample)."""
    C_in, L = xn.shape
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for r in prange(C_in * K):
        ci, t = r // K, r % K
        lo, hi = taps[t, 0], taps[t, 1]
        row = cols[r]
        row[:lo] = 0
        row[hi:] = 0
        base = t * dilation - padding
        for l in range(lo, hi):
            row[l] = xn[ci, l * stride + base]


@njit(parallel=True, cache=True)
def fold(dcols, K, stride, padding, dilation, dxn, zero):
    """dx[ci, j] = sum_{t, l : l*stride + t*dilation - padding = j} dcols[ci*K + t, l] (col2im: unfold^T)."""
    C_in, L = dxn.shape
    L_out = dcols.shape[1]
    taps = tap_ranges(K, L, L_out, stride, padding, dilation)
    for ci in prange(C_in):
        row = dxn[ci]
        row[:] = zero
        for t in range(K):
            lo, hi = taps[t, 0], taps[t, 1]
            src, base = dcols[ci * K + t], t * dilation - padding
            for l in range(lo, hi):
                row[l * stride + base] += src[l]


def _group_blocks(p):
    """(output-channel slice, unfolded-row slice) of each group."""
    rows = p.C_in_g * p.K
    return [(slice(gi * p.C_out_g, (gi + 1) * p.C_out_g), slice(gi * rows, (gi + 1) * rows))
            for gi in range(p.groups)]


# --- the implementations (`fn(p, *inputs, *outputs)`, registered by cpu.numba_cpu) ------------------

def _settings(p):
    return p.stride, p.padding, p.dilation, p.groups


def naive_forward(p, x, w, b, y):
    """serial loop, one output element at a time, bounds test per tap (the formula as written)"""
    forward_naive(x, w, b, y, *_settings(p), p.has_bias, p.dtype.type(0))


def naive_backward(p, x, w, g, dx, dw, db):
    """serial loops, one element of dx (gather), dw and db at a time"""
    backward_naive(x, w, g, dx, dw, db, *_settings(p), p.has_bias, p.dtype.type(0))


def direct_forward(p, x, w, b, y):
    """prange over output rows; per tap one bounds-free contiguous sweep (vectorises for stride 1)"""
    forward_direct(x, w, b, y, *_settings(p), p.has_bias, p.dtype.type(0))


def direct_backward(p, x, w, g, dx, dw, db):
    """prange over dx rows (scatter, no races), dw (co, c) pairs and db channels; per-sample partial sums"""
    zero = p.dtype.type(0)
    input_grad_direct(w, g, dx, *_settings(p), zero)
    padded_terms = p.padding > 0 and not np.isfinite(g).all()
    weight_grad_direct(x, g, dw, *_settings(p), zero, padded_terms)
    if p.has_bias:
        bias_grad_direct(g, db, zero)


def im2col_forward(p, x, w, b, y):
    """unfold each sample to (C_in/groups*K, L_out) columns, then BLAS: y[n] = W @ cols (+ b)"""
    w2 = w.reshape(p.C_out, p.C_in_g * p.K)
    cols = np.empty((p.C_in * p.K, p.L_out), p.dtype)
    for n in range(p.N):
        unfold(x[n], p.K, p.L_out, p.stride, p.padding, p.dilation, cols)
        for co, rows in _group_blocks(p):
            np.matmul(w2[co], cols[rows], out=y[n, co])
    if p.has_bias:
        y += b[None, :, None]


def im2col_backward(p, x, w, g, dx, dw, db):
    """per sample: dw += g @ cols^T and dx = col2im(W^T @ g) with BLAS; db by NumPy row sums"""
    zero = p.dtype.type(0)
    w2 = w.reshape(p.C_out, p.C_in_g * p.K)
    dw2 = dw.reshape(w2.shape)
    dw2[...] = zero
    cols = np.empty((p.C_in * p.K, p.L_out), p.dtype)
    dcols = np.empty_like(cols)
    for n in range(p.N):
        unfold(x[n], p.K, p.L_out, p.stride, p.padding, p.dilation, cols)
        for co, rows in _group_blocks(p):
            dw2[co] += g[n, co] @ cols[rows].T
            np.matmul(w2[co].T, g[n, co], out=dcols[rows])
        fold(dcols, p.K, p.stride, p.padding, p.dilation, dx[n], zero)
    if p.has_bias:
        db[...] = g.sum(axis=2).sum(axis=0)
