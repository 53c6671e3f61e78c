"""The conv1d layer (`kernels.layer`) as a register-blocked direct kernel in numba: no BLAS, no im2col.

Variant (registered by `cpu.numba_cpu`; the ladder continues cpu/layer.py, cpu/layer_gemm.py, cpu/layer_packed.py):

    blocked  a tile of MR output channels x NR vectors of positions stays in MR*NR vector registers for the
             whole C_in/groups*K reduction (explicit FMAs, cpu/simd.py `vfma_tile`), from weights packed once
             per call in the tile's order and x packed once into stride phases: every step is NR loads and
             MR broadcasts for MR*NR FMAs, with no per-tap BLAS call and no K-fold copy, as `cpu/blocked.py`
             does for the 1-D ops. The input gradient at stride 1 is the same kernel on g with the flipped,
             transposed weights; the weight gradient is an outer-product tile (MR output channels x NR
             (c, t) pairs, lanes along l) summed over (n, l) in a fixed order.

Index formulas (math in `kernels.layer`), with s = stride, d = dilation, ci = G*C_in/groups + c for group G:

    xp[n, ci, q, m]     = x[n, ci, m*s + q - padding]     (0 outside [0, L))          the packed input
    xpad[n, ci, l*s + t*d] = xp[n, ci, q_t, l + o_t]       q_t = (t*d) mod s, o_t = (t*d) div s
    wp[G, cb, c, t, m]  = w[G*C_out/groups + cb*MR + m, c, t]   (0 past the group's last channel)
    y[n, co, l]         = b[co] + sum_{c, t} wp[G, cb, c, t, m] xp[n, ci, q_t, l + o_t]   co = G*C_out_g + cb*MR + m
    dx[n, ci, j]        = sum_{co in G, t'} w'[ci, co, t'] gpad[n, co, j + t'*d]   (stride 1: w'[ci, co, t'] =
                          w[co, c, K-1-t'], g padded by d*(K-1) - padding: a forward, C_in and C_out swapped)
    dw[co, c, t]        = sum_n sum_{l < L_out} g[n, co, l] xp[n, ci, q_t, l + o_t]
    db[co]              = sum_n sum_l g[n, co, l]

Padding: xp holds the padded zeros, so the tile's inner loop has no bounds tests, and 0 * Inf = NaN in
w or g reaches y and dw as in torch. Edges: tiles past L_out or past the group's last output channel compute
on zero weights / spare packed columns into a scratch tile, and only the valid part is copied out.

The whole backward pass runs `gemm_folded`'s where dx's transposed form does not hold: stride > 1
(dx sums over the taps whose l*s lands on j, a different tap set per phase of j) and non-finite w (the
transposed form would multiply the padding of g by w, where torch drops those products). dw is
deterministic: each task owns its outputs and sums over n, then l, in one order; lanes are added in order.
"""

# ruff: noqa: E741  (l is the output position, as in the formulas)

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cpu import layer_gemm
from cpu.simd import (
    LANES,
    REGISTER_BYTES,
    lanes,
    vfma_outer,
    vfma_tile,
    vload_row,
    vstore_row,
    vstore_tile,
    vzeros,
)

#: Output channels per tile and vectors of positions per tile: MR*NR accumulators plus NR loads and a broadcast
#: fit the vector registers (32 with AVX-512: 4 x 6 = 24 accumulators; 16 with AVX2: 4 x 3 = 12).
MR = 4
NR = 6 if REGISTER_BYTES == 64 else 3
TILE = MR * NR


def _tiles(count, size):
    return (count + size - 1) // size


@njit(parallel=True, cache=True)
def pack_input(x, stride, padding, phases, xp):
    """xp[n, ci, i, m] = x[n, ci, m*stride + phases[i] - padding], 0 outside [0, L) (padding may be negative)."""
    N, C, L = x.shape
    Lrow = xp.shape[3]
    for r in prange(N * C):
        n, ci = r // C, r % C
        for i in range(phases.shape[0]):
            q = phases[i]
            row = xp[n, ci, i]
            for m in range(Lrow):
                j = m * stride + q - padding
                row[m] = x[n, ci, j] if 0 <= j < L else 0


@njit(cache=True)
def pack_weights(w, groups, mr, wp):
    """wp[((G*nCb + cb)*C_in_g + c)*K*mr + t*mr + m] = w[G*C_out_g + cb*mr + m, c, t] (0 past the group)."""
    C_out, C_in_g, K = w.shape
    C_out_g = C_out // groups
    nCb = (C_out_g + mr - 1) // mr
    wp[:] = 0
    for G in range(groups):
        for cb in range(nCb):
            for c in range(C_in_g):
                for t in range(K):
                    base = (((G * nCb + cb) * C_in_g + c) * K + t) * mr
                    for m in range(mr):
                        co = cb * mr + m
                        if co < C_out_g:
                            wp[base + m] = w[G * C_out_g + co, c, t]


@njit(parallel=True, cache=True)
def forward_tiles(xp, wp, bp, toff, y, groups, C_in_g, K):
    """y[n, co, l] = bp[co'] + sum_{c,t} wp[...] xp[n, ci, q_t, l + o_t]: prange over (n, G, column block),
    every output-channel block of the group inside (the block of xp stays in cache across them)."""
    N, C_out, L_out = y.shape
    C_in, S, Lrow = xp.shape[1], xp.shape[2], xp.shape[3]
    C_out_g = C_out // groups
    nCb = (C_out_g + MR - 1) // MR
    xpf, yf = xp.reshape(-1), y.reshape(-1)
    width = NR * lanes(yf)
    nLb = (L_out + width - 1) // width
    for task in prange(N * groups * nLb):
        n, rest = task // (groups * nLb), task % (groups * nLb)
        G, lb = rest // nLb, rest % nLb
        l0 = lb * width
        scratch = np.empty(MR * width, y.dtype)
        for cb in range(nCb):
            acc = vzeros(yf, TILE)
            wb = (G * nCb + cb) * C_in_g * K * MR
            for c in range(C_in_g):
                xb = (n * C_in + G * C_in_g + c) * S * Lrow + l0
                for t in range(K):
                    acc = vfma_tile(acc, xpf, xb + toff[t], wp, wb, NR)
                    wb += MR
            co0 = G * C_out_g + cb * MR
            if l0 + width <= L_out and cb * MR + MR <= C_out_g:
                vstore_tile(yf, (n * C_out + co0) * L_out + l0, L_out, acc, NR, bp, (G * nCb + cb) * MR)
            else:
                vstore_tile(scratch, 0, width, acc, NR, bp, (G * nCb + cb) * MR)
                for m in range(min(MR, C_out_g - cb * MR)):
                    for l in range(l0, min(L_out, l0 + width)):
                        y[n, co0 + m, l] = scratch[m * width + l - l0]


#: Columns of l per chunk of the weight gradient: a chunk of every (c, t) pair's x row (C_in/groups rows of
#: CHUNK + (K-1)*d values) stays in L2 while every pair block of a channel block passes over it.
CHUNK = 512


@njit(parallel=True, cache=True)
def weight_grad_tiles(xp, gp, offs, dw, groups, L_out):
    """dw[co, c, t] = sum_n sum_{l < L_out} gp[n, co', l] xp[n, ci, q_t, l + o_t]; offs[G, j] is the offset of
    pair j = c*K + t in xp[n] (the last pair repeated past C_in_g*K). prange over (G, channel block); the sum
    over l is cut into chunks of CHUNK columns with every pair block inside a chunk (partial tiles kept in
    memory between chunks), so g's rows are read once per task and x's chunk is reused from L2 by every pair
    block. Each output sums n, then chunks and lanes in order, then its scalar tail: a fixed order,
    whatever the threads (deterministic)."""
    C_out, C_in_g, K = dw.shape
    N, C_in, S, Lrow = xp.shape
    C_out_g = C_out // groups
    nCb = (C_out_g + MR - 1) // MR
    J = C_in_g * K
    nJb = (J + NR - 1) // NR
    Lg = gp.shape[3]
    xpf, gpf = xp.reshape(-1), gp.reshape(-1)
    L = lanes(xpf)
    full = L_out // L * L
    for task in prange(groups * nCb):
        G, cb = task // nCb, task % nCb
        part = np.zeros(nJb * TILE * L, dw.dtype)
        tail = np.zeros(nJb * TILE, dw.dtype)
        for n in range(N):
            gb = ((n * groups + G) * nCb * MR + cb * MR) * Lg
            xb = n * C_in * S * Lrow
            for l0 in range(0, full, CHUNK):
                l1 = min(full, l0 + CHUNK)
                for jb in range(nJb):
                    acc = vload_row(part, jb * TILE * L, TILE)
                    ob = G * nJb * NR + jb * NR
                    for l in range(l0, l1, L):
                        acc = vfma_outer(acc, gpf, gb + l, Lg, xpf, xb + l, offs, ob, NR)
                    vstore_row(part, jb * TILE * L, acc)
            for jb in range(nJb):
                ob = G * nJb * NR + jb * NR
                for m in range(MR):
                    for j in range(NR):
                        o = xb + offs[ob + j]
                        s = tail[jb * TILE + m * NR + j]
                        for l in range(full, L_out):
                            s += gpf[gb + m * Lg + l] * xpf[o + l]
                        tail[jb * TILE + m * NR + j] = s
        for jb in range(nJb):
            for m in range(MR):
                co = cb * MR + m
                for j in range(NR):
                    pj = jb * NR + j
                    if co < C_out_g and pj < J:
                        i0 = (jb * TILE + m * NR + j) * L
                        s = part[i0]
                        for i in range(1, L):
                            s += part[i0 + i]
                        dw[G * C_out_g + co, pj // K, pj % K] = s + tail[jb * TILE + m * NR + j]


@njit(parallel=True, cache=True)
def pack_grad(g, groups, mr, gp):
    """gp[n, G, m', l] = g[n, G*C_out_g + m', l] for m' < C_out_g, 0 for the spare rows up to a multiple of mr."""
    N, C_out, L_out = g.shape
    C_out_g = C_out // groups
    rows = gp.shape[2]
    for r in prange(N * groups):
        n, G = r // groups, r % groups
        for m in range(rows):
            if m < C_out_g:
                gp[n, G, m, :L_out] = g[n, G * C_out_g + m]
                gp[n, G, m, L_out:] = 0
            else:
                gp[n, G, m, :] = 0


def _row_layout(L_out, stride, dilation, K, dtype):
    """(phases, Lrow, width): the P <= min(K, stride) stride phases the taps read, q_t = t*dilation % stride, and
    rows long enough for whole tiles of L_out plus the largest tap offset."""
    width = NR * LANES[np.dtype(dtype)]
    phases = np.array(sorted({t * dilation % stride for t in range(K)}), np.int64)
    return phases, _tiles(L_out, width) * width + (K - 1) * dilation // stride, width


def _packed_input(x, stride, padding, dilation, K, L_out):
    """xp (N, C, P, Lrow) over `_row_layout`'s phases and toff[t] = index(q_t)*Lrow + o_t (a workspace of O(K)
    rows per channel, whatever the stride)."""
    phases, Lrow, _ = _row_layout(L_out, stride, dilation, K, x.dtype)
    xp = np.empty((x.shape[0], x.shape[1], phases.shape[0], Lrow), x.dtype)
    pack_input(np.ascontiguousarray(x), stride, padding, phases, xp)
    index = {int(q): i for i, q in enumerate(phases)}
    toff = np.array([index[t * dilation % stride] * Lrow + (t * dilation) // stride for t in range(K)], np.int64)
    return xp, toff


def _conv(x, w, b, y, stride, padding, dilation, groups):
    """y = conv1d(x, w, b) with the tile kernel (b None: no bias); padding may be negative."""
    C_out, C_in_g, K = w.shape
    C_out_g = C_out // groups
    nCb = _tiles(C_out_g, MR)
    xp, toff = _packed_input(x, stride, padding, dilation, K, y.shape[2])
    wp = np.empty(groups * nCb * C_in_g * K * MR, w.dtype)
    pack_weights(np.ascontiguousarray(w), groups, MR, wp)
    bp = np.zeros((groups, nCb * MR), w.dtype)
    if b is not None:
        bp[:, :C_out_g] = b.reshape(groups, C_out_g)
    out = y if y.flags.c_contiguous else np.empty(y.shape, y.dtype)
    forward_tiles(xp, wp, bp.reshape(-1), toff, out, groups, C_in_g, K)
    if out is not y:
        y[...] = out
    return xp, toff


def _bounded(L_in, L_out, stride, dilation, K, dtype) -> bool:
    """True when the packed rows (P phases x Lrow) stay within twice the input row plus a few tiles; a padding or
    dilation far past the input would make them mostly zeros, and gemm_folded's bounded workspace runs instead."""
    phases, Lrow, width = _row_layout(L_out, stride, dilation, K, dtype)
    return phases.shape[0] * Lrow <= 2 * L_in + 4 * width


def forward(p, x, w, b, y):
    """MR output channels x NR vectors of positions in registers, the C_in/groups*K reduction inside (explicit
    FMAs on weights packed per call, x packed into stride phases: no bounds tests, no BLAS); gemm_folded's where
    the packed rows would outgrow the input (`_bounded`)"""
    if not _bounded(p.L, p.L_out, p.stride, p.dilation, p.K, p.dtype):
        layer_gemm.forward_folded(p, x, w, b, y)
        return
    _conv(x, w, b if p.has_bias else None, y, p.stride, p.padding, p.dilation, p.groups)


def _weight_grad(p, xp, toff, g, dw):
    Og, Cg, K = p.C_out_g, p.C_in_g, p.K
    nCb, J = _tiles(Og, MR), Cg * K
    nJb = _tiles(J, NR)
    S, Lrow = xp.shape[2], xp.shape[3]
    gp = np.empty((p.N, p.groups, nCb * MR, p.L_out), p.dtype)
    pack_grad(np.ascontiguousarray(g), p.groups, MR, gp)
    offs = np.empty((p.groups, nJb * NR), np.int64)
    for G in range(p.groups):
        pairs = np.minimum(np.arange(nJb * NR), J - 1)
        c, t = pairs // K, pairs % K
        offs[G] = (G * Cg + c) * S * Lrow + toff[t]
    out = dw if dw.flags.c_contiguous else np.empty(dw.shape, dw.dtype)
    weight_grad_tiles(xp, gp, offs.reshape(-1), out, p.groups, p.L_out)
    if out is not dw:
        dw[...] = out


def backward(p, x, w, g, dx, dw, db):
    """dw: MR output channels x NR (c, t) pairs in registers, lanes along l, a fixed-order sum over (n, l); dx at
    stride 1: the forward tile kernel on g with the flipped, transposed weights; at stride > 1 or with a
    non-finite w, or where the packed rows would outgrow the input (`_bounded`), gemm_folded's backward does
    the whole pass"""
    if (p.stride > 1 or not np.isfinite(w).all() or not _bounded(p.L, p.L_out, 1, p.dilation, p.K, p.dtype)
            or not _bounded(p.L_out, p.L, 1, p.dilation, p.K, p.dtype)):
        layer_gemm.backward_folded(p, x, w, g, dx, dw, db)
        return
    Og, Cg, K, d = p.C_out_g, p.C_in_g, p.K, p.dilation
    xp, toff = _packed_input(x, 1, p.padding, d, K, p.L_out)
    _weight_grad(p, xp, toff, g, dw)
    # w'[G*Cg + c, o, t'] = w[G*Og + o, c, K-1-t']: (C_in, C_out/groups, K)
    wt = w.reshape(p.groups, Og, Cg, K)[..., ::-1].transpose(0, 2, 1, 3).reshape(p.C_in, Og, K)
    _conv(g, wt, None, dx, 1, d * (K - 1) - p.padding, d, p.groups)
    if p.has_bias:
        db[...] = g.sum(axis=2).sum(axis=0)
