"""The conv1d layer (`kernels.layer`) as shifted matrix products through BLAS, with no im2col buffer.

Variants (registered by `cpu.numba_cpu`, never renumbered; the older ones live in `cpu.layer`):

    gemm         one BLAS call per (sample, group, column span, tap): y[n] += W_t @ window_t(x[n]), accumulated
                 in place by the BLAS (beta = 1), so the K-fold im2col matrix never exists; the only copy is
                 one padded, phase-split copy of x (dx: its transpose). BLAS runs near the matmul peak on
                 channel-heavy shapes, where `im2col` pays an unfold per sample and `direct` an axpy per
                 (row, channel, tap); spans of SPAN_BYTES keep a few-channel product in L2 across the taps
    gemm_folded  the samples side by side in the columns (xf[slot, ci, n*W + m]): one BLAS call per (group, tap),
                 N times larger, for the price of copying y (and g) once; scratch arrays kept per thread
    gemm_numpy   `gemm` with np.matmul and an add in place of CBLAS (the fallback without numpy's OpenBLAS)

The formulation. Let xpad be x zero-padded by `padding` at both ends (length L_pad = L + 2*padding)
and split it into s = stride phases, xph[n, q, ci, c] = xpad[n, ci, c*s + q]. Tap t reads
xpad[n, ci, l*s + t*d] = xph[n, q_t, ci, o_t + l] with q_t = (t*d) mod s, o_t = (t*d) div s: a window of
L_out consecutive columns of one phase. Only those windows are copied (`Windows`): the windows of the
taps of one phase that overlap or touch are merged into one slot, a range of W (the widest slot)
consecutive columns of that phase,

    xq[n, slot, ci, m] = xpad[n, ci, (c0 + m)*s + q] = x[n, ci, start + m*s]   (0 outside [0, L))

with start = c0*s + q - padding, and tap t reads slot(t) at column offset off_t = o_t - c0. The copy thus
grows with the output (at most K windows of L_out columns per row, or the padded row itself), never with
the stride, the padding or the dilation alone. Each window is a plain BLAS operand (row stride W). With
W_t[co, c] = w[co, c, t] (packed once per call as wt[t, co, c]) and the channels of group G (co in G,
ci = G*C_in/groups + c):

    y[n, G]             = b[G] + sum_t W_t[G] @ xq[n, slot(t), G, off_t : off_t + L_out]     (C_out/groups, L_out)
    dxq[n, slot(t), G, off_t : off_t + L_out] += W_t[G]^T @ g[n, G]                 (transposed conv, per tap)
    dW_t[G]             = sum_n g[n, G] @ xq[n, slot(t), G, off_t : off_t + L_out]^T   (n in increasing order)
    db                  = sum_n sum_l g[n, :, l]

and dx[n, ci, j] = dxq[n, slot, ci, m] for the one slot holding j = start + m*s (slots are disjoint), 0
where no tap reads x. Every product is one BLAS call (`gemm` below): N*groups*K calls per op, each
(C_out/groups) x L_out x (C_in/groups). The sums over taps and samples run in a fixed order, and BLAS with
a fixed thread count is deterministic per call shape, so dw is too.
"""

# ruff: noqa: E741  (l is the output position, as in the formulas)

from __future__ import annotations

import ctypes
import functools
import glob
import os
import threading

import numpy as np
from numba import njit, prange

from cpu.layer import real_range

# --- BLAS: numpy's own OpenBLAS through its CBLAS interface --------------------------------------------

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@functools.cache
def cblas():
    """{dtype: cblas ?gemm} from the OpenBLAS numpy ships (ILP64, `scipy_` prefix), or None if absent."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            fns = {np.dtype(np.float32): lib.scipy_cblas_sgemm64_, np.dtype(np.float64): lib.scipy_cblas_dgemm64_}
        except (OSError, AttributeError):
            continue
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        for dt, fn in fns.items():
            real = ctypes.c_float if dt == np.float32 else ctypes.c_double
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real, ptr, i64, ptr, i64,
                           real, ptr, i64]
        return fns
    return None


def _view(a, offset, rows, cols, ld, trans):
    """The (rows, cols) matrix at element `offset` of flat `a` with leading dimension `ld` (transposed)."""
    s = a.itemsize
    if trans:  # stored as (cols, rows)
        return np.lib.stride_tricks.as_strided(a[offset:], (rows, cols), (s, ld * s))
    return np.lib.stride_tricks.as_strided(a[offset:], (rows, cols), (ld * s, s))


def gemm(ta, tb, m, n, k, A, oa, lda, B, ob, ldb, beta, C, oc, ldc, use_cblas=True):
    """C[m x n] = op(A)[m x k] @ op(B)[k x n] + beta * C, on row-major matrices inside flat arrays.

    A, B, C are 1-D contiguous arrays of one dtype; each matrix starts at element oa / ob / oc and has
    leading dimension lda / ldb / ldc (ta, tb: the stored matrix is transposed). beta is 0 or 1; with
    beta = 0, C is not read (so NaN there does not propagate). Falls back to np.matmul without CBLAS.
    """
    if use_cblas and cblas() is not None:
        s = C.itemsize
        cblas()[C.dtype](_ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS, m, n, k, 1.0,
                       A.ctypes.data + oa * s, lda, B.ctypes.data + ob * s, ldb, float(beta),
                       C.ctypes.data + oc * s, ldc)
        return
    out = _view(C, oc, m, n, ldc, False)
    prod = _view(A, oa, m, k, lda, ta) @ _view(B, ob, k, n, ldb, tb)
    if beta:
        out += prod
    else:
        out[...] = prod


# --- the windows of the padded, phase-split input, and their transpose -----------------------------------

class Windows:
    """The slots tap windows are copied to (see the module docstring): slot i holds W columns of x's padded
    row from x index starts[i] with step `stride`, widths[i] of them its own (the rest overlaps another slot
    or the padding); taps[t] = (t, slot, off_t). `identity`: the one slot is x's row itself."""

    def __init__(self, p):
        by_phase = {}
        for t in range(p.K):
            by_phase.setdefault((t * p.dilation) % p.stride, []).append(((t * p.dilation) // p.stride, t))
        slots, taps = [], [None] * p.K  # slots: [q, c0, c1)
        for q in sorted(by_phase):
            for o, t in sorted(by_phase[q]):
                if slots and slots[-1][0] == q and o <= slots[-1][2]:  # overlaps or touches: merge
                    slots[-1][2] = max(slots[-1][2], o + p.L_out)
                else:
                    slots.append([q, o, o + p.L_out])
                taps[t] = (t, len(slots) - 1, o - slots[-1][1])
        self.S, self.taps = len(slots), taps
        self.starts = np.array([c0 * p.stride + q - p.padding for q, c0, _ in slots], np.int64)
        self.widths = np.array([c1 - c0 for _, c0, c1 in slots], np.int64)
        self.W = int(self.widths.max())
        self.identity = p.stride == 1 and self.S == 1 and self.starts[0] == 0 and self.W == p.L

    def offset(self, p, n, slot, gi, o):
        """Flat index of xq[n, slot, gi*C_in/groups, o]."""
        return ((n * self.S + slot) * p.C_in + gi * p.C_in_g) * self.W + o


@njit(parallel=True, cache=True)
def split_windows(x, stride, starts, xq):
    """xq[n, i, ci, m] = x[n, ci, starts[i] + m*stride], 0 where that index is outside [0, L)."""
    N, C_in, L = x.shape
    W = xq.shape[3]
    for r in prange(N * C_in):
        n, ci = r // C_in, r % C_in
        for i in range(starts.shape[0]):
            row = xq[n, i, ci]
            for m in range(W):
                j = starts[i] + m * stride
                row[m] = x[n, ci, j] if 0 <= j < L else 0


@njit(parallel=True, cache=True)
def merge_windows(xq, stride, starts, widths, x):
    """x[n, ci, j] = xq[n, i, ci, m] for j = starts[i] + m*stride, m < widths[i]; 0 where no slot holds j
    (split_windows^T on real input: the slots' own columns are disjoint)."""
    N, C_in, L = x.shape
    for r in prange(N * C_in):
        n, ci = r // C_in, r % C_in
        row = x[n, ci]
        row[:] = 0
        for i in range(starts.shape[0]):
            for m in range(widths[i]):
                j = starts[i] + m * stride
                if 0 <= j < L:
                    row[j] = xq[n, i, ci, m]


def _windowed(p, x):
    """(xq flat, Windows): the windows of x's padded rows; x itself where that is the one slot."""
    win = Windows(p)
    if win.identity:
        return x.reshape(-1), win
    xq = np.empty((p.N, win.S, p.C_in, win.W), p.dtype)
    split_windows(x, p.stride, win.starts, xq)
    return xq.reshape(-1), win


# --- the ops --------------------------------------------------------------------------------------------

#: Bytes of one column span's operands (C_out/groups + C_in/groups rows): the K products of a span run back
#: to back, so with few channels (a memory-bound product per tap) the span stays in L2 across the taps.
SPAN_BYTES = 1 << 20
MIN_SPAN = 1024  # columns: shorter spans make BLAS calls too small to run at the matmul's speed


def column_spans(p):
    """[l0, l1) spans of the L_out output positions: SPAN_BYTES of operands each, at least MIN_SPAN columns."""
    span = max(MIN_SPAN, SPAN_BYTES // ((p.C_out_g + p.C_in_g) * p.dtype.itemsize))
    return [(l0, min(p.L_out, l0 + span)) for l0 in range(0, p.L_out, span)]


def forward(p, x, w, b, y, use_cblas=True):
    """K shifted BLAS products per (sample, group, span) accumulated in y: y[n, G] = b[G] + sum_t W_t[G] @ window_t"""
    xq, win = _windowed(p, x)
    wt = np.ascontiguousarray(w.transpose(2, 0, 1)).reshape(-1)  # wt[t, co, c] = w[co, c, t]
    yf = y.reshape(-1)
    if p.has_bias:
        y[...] = b[None, :, None]
    Og, Cg, Lo = p.C_out_g, p.C_in_g, p.L_out
    for n in range(p.N):
        for gi in range(p.groups):
            oc = (n * p.C_out + gi * Og) * Lo
            for l0, l1 in column_spans(p):
                for t, i, o in win.taps:
                    # y[n, G, l0:l1] += W_t[G] (Og x Cg) @ xq[n, i, G, o+l0 : o+l1] (Cg x (l1-l0), row stride W)
                    gemm(False, False, Og, l1 - l0, Cg, wt, (t * p.C_out + gi * Og) * Cg, Cg, xq,
                         win.offset(p, n, i, gi, o + l0), win.W, 1 if (p.has_bias or t) else 0, yf, oc + l0, Lo,
                         use_cblas)


def backward(p, x, w, g, dx, dw, db, use_cblas=True):
    """per (sample, group, span, tap): dW_t[G] += g[n, G] @ window_t^T, window_t(dxq) += W_t[G]^T @ g[n, G] (BLAS)"""
    xq, win = _windowed(p, x)
    wt = np.ascontiguousarray(w.transpose(2, 0, 1)).reshape(-1)
    dwt = np.empty((p.K, p.C_out, p.C_in_g), p.dtype)
    dwf, gf = dwt.reshape(-1), g.reshape(-1)
    dxq = dx if win.identity else np.empty((p.N, win.S, p.C_in, win.W), p.dtype)  # dx itself: in place
    dxq[...] = 0  # taps overlap and need not cover every position: accumulate from zero
    dxf = dxq.reshape(-1)
    Og, Cg, Lo = p.C_out_g, p.C_in_g, p.L_out
    for n in range(p.N):  # samples, then spans, in increasing order: a fixed reduction order for dw
        for gi in range(p.groups):
            for l0, l1 in column_spans(p):
                og = (n * p.C_out + gi * Og) * Lo + l0  # g[n, G, l0]
                for t, i, o in win.taps:
                    ox, ow = win.offset(p, n, i, gi, o + l0), (t * p.C_out + gi * Og) * Cg
                    # dW_t[G] (Og x Cg) (+)= g[n, G, l0:l1] (Og x (l1-l0)) @ window^T ((l1-l0) x Cg)
                    gemm(False, True, Og, Cg, l1 - l0, gf, og, Lo, xq, ox, win.W, 1 if (n or l0) else 0, dwf, ow,
                         Cg, use_cblas)
                    # window_t(dxq[n, i, G])[:, l0:l1] += W_t[G]^T (Cg x Og) @ g[n, G, l0:l1] (Og x (l1-l0))
                    gemm(True, False, Cg, l1 - l0, Og, wt, ow, Cg, gf, og, Lo, 1, dxf, ox, win.W, use_cblas)
    dw[...] = dwt.transpose(1, 2, 0)
    if not win.identity:
        merge_windows(dxq, p.stride, win.starts, win.widths, dx)
    if p.has_bias:
        db[...] = g.sum(axis=2).sum(axis=0)


# --- gemm: samples side by side in the columns, one BLAS call per (group, tap) -------------------------

@njit(parallel=True, cache=True)
def fold_windows(x, stride, starts, W, xf):
    """xf[i, ci, n*W + m] = x[n, ci, starts[i] + m*stride] for m < W (0 outside [0, L)); columns past N*W are 0."""
    N, C_in, L = x.shape
    for r in prange(starts.shape[0] * C_in):
        i, ci = r // C_in, r % C_in
        row = xf[i, ci]
        start = starts[i]
        lo, hi = real_range(start, stride, W, L)
        for n in range(N):
            base = n * W
            row[base:base + lo] = 0
            j0 = start + lo * stride
            if stride == 1:
                row[base + lo:base + hi] = x[n, ci, j0:j0 + hi - lo]
            else:
                for m in range(lo, hi):
                    row[base + m] = x[n, ci, start + m * stride]
            row[base + hi:base + W] = 0
        row[N * W:] = 0


@njit(parallel=True, cache=True)
def unfold_output(yf, b, has_bias, W, y):
    """y[n, co, l] = yf[co, n*W + l] (+ b[co]) for l < L_out."""
    N, C_out, L_out = y.shape
    for r in prange(N * C_out):
        n, co = r // C_out, r % C_out
        src = yf[co, n * W:n * W + L_out]
        if has_bias:
            bc = b[co]
            for l in range(L_out):
                y[n, co, l] = src[l] + bc
        else:
            y[n, co, :] = src


@njit(parallel=True, cache=True)
def fold_grad(g, W, gf):
    """gf[co, n*W + l] = g[n, co, l] for l < L_out, 0 for L_out <= l < W (no product leaves a sample)."""
    N, C_out, L_out = g.shape
    for r in prange(N * C_out):
        n, co = r // C_out, r % C_out
        gf[co, n * W:n * W + L_out] = g[n, co, :]
        gf[co, n * W + L_out:(n + 1) * W] = 0


@njit(parallel=True, cache=True)
def unfold_windows(dxf, stride, starts, widths, W, dx):
    """dx[n, ci, j] = dxf[i, ci, n*W + m] for the slot i whose own columns hold j = starts[i] + m*stride
    (fold_windows^T: the slots' own columns are disjoint), 0 where no slot holds j."""
    N, C_in, L = dx.shape
    for r in prange(N * C_in):
        n, ci = r // C_in, r % C_in
        row = dx[n, ci]
        row[:] = 0
        for i in range(starts.shape[0]):
            lo, hi = real_range(starts[i], stride, widths[i], L)
            src = dxf[i, ci, n * W:(n + 1) * W]
            if stride == 1:
                row[starts[i] + lo:starts[i] + hi] = src[lo:hi]
            else:  # a contiguous read, a strided write (no division per element)
                for m in range(lo, hi):
                    row[starts[i] + m * stride] = src[m]


_WORKSPACE = threading.local()


def workspace(name, shape, dtype):
    """A scratch array of `shape` kept per thread between calls (reused while large enough).

    A fresh multi-MiB np.empty costs a page fault per 4 KiB page on first touch, measured at about
    as much time as the copy into it; this thread keeps its largest buffer of each name instead.
    """
    size, dtype = int(np.prod(shape)), np.dtype(dtype)
    buffers = _WORKSPACE.__dict__.setdefault("buffers", {})
    buf = buffers.get((name, dtype))
    if buf is None or buf.size < size:
        buf = buffers[name, dtype] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _folded(p, x):
    """(xf, win, R): the windows of x's padded rows (`Windows`), the samples side by side in the columns,
    xf[slot, ci, n*W + m], rows of R (room for the last window of the largest offset)."""
    win = Windows(p)
    R = p.N * win.W + max(o for _, _, o in win.taps)
    xf = workspace("xf", (win.S, p.C_in, R), p.dtype)
    fold_windows(x, p.stride, win.starts, win.W, xf)
    return xf, win, R


def forward_folded(p, x, w, b, y, use_cblas=True):
    """samples side by side in the columns: one BLAS call per (group, tap), y' = sum_t W_t @ window_t"""
    xf, win, R = _folded(p, x)
    NL, Og, Cg = p.N * win.W, p.C_out_g, p.C_in_g
    wt = np.ascontiguousarray(w.transpose(2, 0, 1)).reshape(-1)  # wt[t, co, c] = w[co, c, t]
    yf = workspace("yf", (p.C_out, NL), p.dtype)
    xff, yff = xf.reshape(-1), yf.reshape(-1)
    for gi in range(p.groups):
        for t, i, o in win.taps:
            # y'[G] (Og x N*W) (+)= W_t[G] (Og x Cg) @ xf[i, G, o:o + N*W] (Cg x N*W, row stride R)
            gemm(False, False, Og, NL, Cg, wt, (t * p.C_out + gi * Og) * Cg, Cg, xff,
                 (i * p.C_in + gi * Cg) * R + o, R, 1 if t else 0, yff, gi * Og * NL, NL, use_cblas)
    unfold_output(yf, b, p.has_bias, win.W, y)


def backward_folded(p, x, w, g, dx, dw, db, use_cblas=True):
    """samples side by side: per (group, tap) one BLAS call for dW_t = g' @ window_t^T, one for dx' += W_t^T @ g'"""
    xf, win, R = _folded(p, x)
    NL, Og, Cg = p.N * win.W, p.C_out_g, p.C_in_g
    wt = np.ascontiguousarray(w.transpose(2, 0, 1)).reshape(-1)
    gf = workspace("yf", (p.C_out, NL), p.dtype)
    fold_grad(g, win.W, gf)
    dxf = workspace("dxf", xf.shape, p.dtype)
    dxf.fill(0)  # taps overlap and need not cover every position: accumulate from zero
    dwt = np.empty((p.K, p.C_out, p.C_in_g), p.dtype)
    xff, gff, dxff, dwf = xf.reshape(-1), gf.reshape(-1), dxf.reshape(-1), dwt.reshape(-1)
    for gi in range(p.groups):
        for t, i, o in win.taps:
            ox, ow, og = (i * p.C_in + gi * Cg) * R + o, (t * p.C_out + gi * Og) * Cg, gi * Og * NL
            # dW_t[G] (Og x Cg) = g'[G] (Og x N*W) @ window^T (N*W x Cg): the sum over (n, l) in one call
            gemm(False, True, Og, Cg, NL, gff, og, NL, xff, ox, R, 0, dwf, ow, Cg, use_cblas)
            # window_t(dx'[i, G]) (Cg x N*W) += W_t[G]^T (Cg x Og) @ g'[G] (Og x N*W)
            gemm(True, False, Cg, NL, Og, wt, ow, Cg, gff, og, NL, 1, dxff, ox, R, use_cblas)
    dw[...] = dwt.transpose(1, 2, 0)
    unfold_windows(dxf, p.stride, win.starts, win.widths, win.W, dx)
    if p.has_bias:
        db[...] = g.sum(axis=2).sum(axis=0)


def forward_numpy(p, x, w, b, y):
    """`gemm` with np.matmul in place of the CBLAS calls (a product and an add per tap)"""
    forward(p, x, w, b, y, use_cblas=False)


def backward_numpy(p, x, w, g, dx, dw, db):
    """`gemm` backward with np.matmul in place of the CBLAS calls"""
    backward(p, x, w, g, dx, dw, db, use_cblas=False)
