"""The conv1d layer (`kernels.layer`) as one long-reduction BLAS product per column tile: the step after
`gemm_folded` (cpu/layer_gemm.py), registered by `cpu.numba_cpu` as

    gemm_packed  per group and tile of the folded columns, a panel P of the tile's im2col rows (every (c, t),
                 strided and dilated positions gathered once, PANEL_BYTES: it stays in L2) and one product
                 with the reduction C_in/groups * K: y[G, tile] = W[G] @ P, written once. gemm_folded makes K
                 products of reduction C_in/groups instead, and reads and writes all of y K times (beta = 1):
                 on channel-heavy layers that y traffic, not the multiply-adds, bounds it.
                 dw[G] (C_out/groups x C_in/groups*K) += g[G, tile] @ P^T over the tiles in order (w's own
                 layout, no repacking); dx per window slot i as a correlation of g with the taps that read
                 slot i: a panel of g windows (every (co, t) of the slot) and one product of reduction
                 C_out/groups * taps(i) per tile.

The folded layout and the slots are gemm_folded's (`layer_gemm.Windows`, `layer_gemm.fold_windows`):
xf[i, ci, n*W + m] = x[n, ci, start_i + m*s], and tap t reads slot i_t at column offset o_t:

    P[c*K + t, u]            = xf[i_t, G*C_in/groups + c, u + o_t]              (u in the tile)
    y'[G, u]                 = sum_{c, t} w[co, c, t] P[c*K + t, u]             y[n, co, l] = y'[co, n*W + l]
    dw[co, c, t]             = sum_u g'[co, u] P[c*K + t, u]                   g'[co, n*W + l] = g[n, co, l]
    Q_i[co*T_i + j, n*W + m] = g'[co, n*W + m - o_t]  (0 <= m - o_t < W; t = j-th tap of slot i)
    dxf[i, G*C_in/groups + c, n*W + m] = sum_{co, j} w[co, c, t_j] Q_i[co*T_i + j, n*W + m]

Every sum over taps runs inside one BLAS call and the tiles of dw are added in a fixed order, so with a
fixed thread count the results repeat to the bit. Zero padding multiplies like real zeros (P holds them).
"""

# ruff: noqa: E741  (l is the output position, as in the formulas)

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cpu.layer_gemm import _folded, fold_grad, gemm, unfold_output, unfold_windows, workspace

#: Bytes of one panel: it and the product's tile of y stay in a core's L2 while BLAS runs over them.
PANEL_BYTES = 1 << 21
#: Columns of a tile: at least this many (a narrower product runs below the matmul's speed), a multiple of it.
MIN_COLUMNS = 64
#: Elements added to the row pitch of y' and dx' when it is a multiple of 4 KiB: a tile's rows then fall on
#: different cache sets (with a pitch of 2^k bytes every row of a tile maps to the same few sets).
PITCH_PAD = 16


def pitch(columns: int, itemsize: int) -> int:
    """A row pitch of at least `columns` elements that is not a multiple of 4 KiB."""
    return columns + (PITCH_PAD if (columns * itemsize) % 4096 == 0 else 0)


def tile_columns(rows: int, itemsize: int, total: int) -> int:
    """Columns per tile of a panel of `rows` rows: PANEL_BYTES of them, at least MIN_COLUMNS, a multiple of
    MIN_COLUMNS, at most `total`."""
    cols = max(MIN_COLUMNS, PANEL_BYTES // (rows * itemsize) // MIN_COLUMNS * MIN_COLUMNS)
    return min(cols, total)


@njit(parallel=True, cache=True)
def pack_input(xf, c0, Cg, K, qs, offsets, u0, width, P):
    """P[c*K + t, v] = xf[qs[t], c0 + c, u0 + v + offsets[t]] for c < Cg, t < K, v < width."""
    for c in prange(Cg):
        for t in range(K):
            src = xf[qs[t], c0 + c]
            start = u0 + offsets[t]
            P[c * K + t, :width] = src[start:start + width]


@njit(parallel=True, cache=True)
def pack_grad(gf, o0, Og, offsets, W, u0, width, Q):
    """Q[co*T + j, v] = gf[o0 + co, u - offsets[j]] for u = u0 + v, where that column stays in u's sample
    (0 <= (u mod W) - offsets[j]), else 0; T = len(offsets)."""
    T = offsets.shape[0]
    for co in prange(Og):
        src = gf[o0 + co]
        for j in range(T):
            row = Q[co * T + j]
            o = offsets[j]
            for v in range(width):
                u = u0 + v
                row[v] = src[u - o] if u % W >= o else 0


def forward(p, x, w, b, y):
    """im2col panels of a column tile, one product of reduction C_in/groups * K per (group, tile)"""
    xf, win, _ = _folded(p, x)
    NL, Og, Cg, K = p.N * win.W, p.C_out_g, p.C_in_g, p.K
    rows = Cg * K
    slots = np.array([i for _, i, _ in win.taps], np.int64)
    offsets = np.array([o for _, _, o in win.taps], np.int64)
    wp = np.ascontiguousarray(w).reshape(-1)  # w[co, c, t] is already W[co, c*K + t]
    ld = pitch(NL, p.dtype.itemsize)
    yf = workspace("yf", (p.C_out, ld), p.dtype)
    cols = tile_columns(rows, p.dtype.itemsize, NL)
    P = workspace("panel", (rows, cols), p.dtype)
    Pf, yff = P.reshape(-1), yf.reshape(-1)
    for gi in range(p.groups):
        for u0 in range(0, NL, cols):
            width = min(cols, NL - u0)
            pack_input(xf, gi * Cg, Cg, K, slots, offsets, u0, width, P)
            # y'[G, tile] (Og x width) = W[G] (Og x Cg*K) @ P (Cg*K x width, row stride cols)
            gemm(False, False, Og, width, rows, wp, gi * Og * rows, rows, Pf, 0, cols, 0, yff, gi * Og * ld + u0, ld)
    unfold_output(yf, b, p.has_bias, win.W, y)


def backward(p, x, w, g, dx, dw, db):
    """dw from the forward's panels, one product per (group, tile) over the positions in order; dx per stride
    slot from panels of g windows, one product of reduction C_out/groups * taps per (slot, group, tile)"""
    xf, win, R = _folded(p, x)
    NL, Og, Cg, K = p.N * win.W, p.C_out_g, p.C_in_g, p.K
    rows = Cg * K
    slots = np.array([i for _, i, _ in win.taps], np.int64)
    offsets = np.array([o for _, _, o in win.taps], np.int64)
    gf = workspace("yf", (p.C_out, NL), p.dtype)
    fold_grad(g, win.W, gf)
    gff = gf.reshape(-1)
    dwf = dw.reshape(-1)  # dw[co, c, t] = dW[co, c*K + t]
    cols = tile_columns(rows, p.dtype.itemsize, NL)
    P = workspace("panel", (rows, cols), p.dtype)
    Pf = P.reshape(-1)
    for gi in range(p.groups):
        for u0 in range(0, NL, cols):
            width = min(cols, NL - u0)
            pack_input(xf, gi * Cg, Cg, K, slots, offsets, u0, width, P)
            # dW[G] (Og x Cg*K) (+)= g'[G, tile] (Og x width) @ P^T (width x Cg*K)
            gemm(False, True, Og, rows, width, gff, gi * Og * NL + u0, NL, Pf, 0, cols, 1 if u0 else 0,
                 dwf, gi * Og * rows, rows)
    dxf = workspace("dxf", (win.S, p.C_in, R), p.dtype)
    dxff = dxf.reshape(-1)
    wt = np.ascontiguousarray(w.transpose(1, 0, 2))  # wt[c, co, t] = w[co, c, t]
    for q in range(win.S):  # slot q; every slot holds at least one tap
        slot_taps = [t for t, i, _ in win.taps if i == q]
        T = len(slot_taps)
        offs = np.array([win.taps[t][2] for t in slot_taps], np.int64)
        # Wq[c, co*T + j] = w[co, c, t_j], per group
        Wq = np.ascontiguousarray(wt[:, :, slot_taps]).reshape(Cg, p.C_out * T)
        qrows = Og * T
        qcols = tile_columns(qrows, p.dtype.itemsize, NL)
        Q = workspace("grad_panel", (qrows, qcols), p.dtype)
        Qf, Wqf = Q.reshape(-1), Wq.reshape(-1)
        for gi in range(p.groups):
            for u0 in range(0, NL, qcols):
                width = min(qcols, NL - u0)
                pack_grad(gf, gi * Og, Og, offs, win.W, u0, width, Q)
                # dxf[q, G, tile] (Cg x width) = Wq[G] (Cg x Og*T) @ Q (Og*T x width)
                gemm(False, False, Cg, width, qrows, Wqf, gi * Og * T, p.C_out * T, Qf, 0, qcols, 0,
                     dxff, (q * p.C_in + gi * Cg) * R + u0, R)
    unfold_windows(dxf, p.stride, win.starts, win.widths, win.W, dx)
    if p.has_bias:
        db[...] = g.sum(axis=2).sum(axis=0)
