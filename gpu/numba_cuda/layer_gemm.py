"""The conv1d layer (`kernels.layer`) as implicit GEMMs on the `numba_cuda` backend: the ladder step
after gpu/numba_cuda/layer.py's `direct` and `tiled`. Registered by gpu/numba_cuda/backend.py as

    gemm     forward: per sample n and group, y[n] (C_out/groups x L_out) = W (C_out/groups x C_in/groups*K)
             times the implicit im2col of x, with register micro-tiles of RM channels x RN positions per
             thread and the x window and filter taps of each reduction chunk in shared memory. Each x
             value read from shared memory serves RM multiply-adds and each w value RN (tiled: 4 and 1),
             so a step of the inner loop is RM*RN FMAs for RM+RN shared loads, all at compile-time offsets
             from a 32-bit unsigned base: no index arithmetic, no wrap-around code, no division.
             input grad: the same kernel on the transposed layer, once per residue class r of j mod stride:
             dx[n, ci, r + stride*m] is a stride-1 correlation of g with the taps t whose l is an integer
             (t*dilation = r + padding mod stride), so no tap is tested and nothing is divided in the inner
             loop, and no inserted zero is multiplied (1/stride of tiled's products were zeros). Terms on
             g's zero padding multiply staged zeros (exact for a finite w); a w with an Inf or NaN takes
             a masked kernel that skips them by a select on the edge tiles only.
             weight and bias grads: per group, dW (C_out/groups x C_in/groups*K) = G x im2col(x)^T, a
             GEMM whose reduction runs over the N*L_out positions, split into fixed chunks (split-K): each
             block sums its chunk of (n, l) tiles into micro-tiles of RM channels x RN (c, t) columns, the
             per-chunk partials go to a workspace and `sum_columns` adds them in a fixed order (the same
             bits on every run and any grid). db comes from the same g tiles.
             The predicted share of the FMA peak of each kernel is in the model's targets table
             (python -m plots.model; plots/<device>-model/targets.md).

Index formulas (math in `kernels.layer`), with ci = G(co)*C_in/groups + c, j = l*stride + t*dilation - padding:

    y[n, co, l]  = b[co] + sum_{c, t} w[co, c, t] xpad[n, ci, j]
    dw[co, c, t] = sum_{n, l} g[n, co, l] xpad[n, ci, j]           db[co] = sum_{n, l} g[n, co, l]
    dx[n, ci, j] = sum_{co in G(ci), t, l : l*stride + t*dilation - padding = j} g[n, co, l] w[co, c, t]

Zero padding multiplies like real zeros in y and dw (staged zeros, as in the reference). dx has no padded
terms: for a finite w they are w * 0 = 0 exactly, for a w with an Inf or NaN the masked kernel skips them,
so an Inf or NaN gives the reference's NaN and Inf everywhere.

Launch (`per_thread` p, `block` B <= GEMM_MAX_BLOCK): threads form a TY x TX grid (TX = 16 for the
forward and dx, 8 for dw); a thread owns RM channels (`micro_rows`: 8 in float32 and 4 in float64 for
p >= 4, half that for smaller p, small C_out/groups, strides > 1 or the masked dx) by RN = 8 positions
(forward, dx: l = l0 + tx + r*TX, so a warp reads consecutive shared words) or (c, t) columns (dw).
Shared-memory indices are 32-bit unsigned (a base in a register plus a compile-time offset), global
indices 64-bit unsigned (the kernels read x, w, g and write y and the workspace flat: the backend hands
them dense arrays).
The kernels take up to 255 registers (2 blocks of 128 threads per SM); bounding them to 3 blocks spills.
"""
# ruff: noqa: E741  (l is the output position, as in the formulas)

from __future__ import annotations

import functools
import math

import numpy as np

from gpu.launch import BLOCKS, MAX_GRID_Y, SHARED_LIMIT
from gpu.launch import NumbaCudaLaunch as Launch
from gpu.numba_cuda import common
from gpu.numba_cuda import reduce as red
from gpu.numba_cuda.common import DEFAULT_LAUNCH, check_block, check_shared, scalar_type
from gpu.numba_cuda.jit import cuda, int32, int64, types, uint32, uint64
from gpu.numba_cuda.layer import transpose_kernels, transposed_filter_kernel
from gpu.steps import Kernel, Step

#: Largest block of every gemm kernel (up to ~130 registers in float64 at RM=8: 256 threads fit the register
#: file without spilling; plots/model/resources.py checks every accepted launch).
GEMM_MAX_BLOCK = 256
#: Channels per thread micro-tile by itemsize: RM_MAX (per_thread >= 4) or RM_MAX/2 (per_thread < 4, or when
#: RM_MAX/2 covers C_out/groups, or for the masked dx and strides > 1). float64 at RM = 8 would need more than
#: the 255 registers of a thread; the masked dx and the stride > 1 forward at RM_MAX spill a few bytes.
RM_MAX = {4: 8, 8: 4}
#: Positions (forward, dx) or (c, t) columns (dw) per thread micro-tile.
RN = 8
#: Threads along the positions (forward, dx) and along the (c, t) columns (dw).
TX, TXW = 16, 8
#: Input channels and taps per reduction chunk of the forward and dx (x window and w taps in shared memory);
#: the hot loop of `conv_kernel` calls its step once per channel, CC = 4 times.
CC, KT = 4, 4
#: Positions per reduction chunk of dw (staged g and im2col(x) tiles).
BL = 16
#: Blocks the dw split aims at (about two per SM of a 132-SM H100/H200); with the sizes and the launch it
#: alone fixes the chunks, so repeated calls add in the same order, to the bit.
WG_TARGET_BLOCKS = 256


def micro_rows(launch: Launch, rows_needed: int, tx: int, dtype, half=False) -> int:
    """RM: channels per thread, RM_MAX of the dtype for per_thread >= 4, else RM_MAX/2; RM_MAX/2 too when its
    block tile (block/tx threads x RM) covers `rows_needed` channels, or when `half` is asked for."""
    most = RM_MAX[np.dtype(dtype).itemsize]
    if half or launch.per_thread < 4 or (most // 2) * (launch.block // tx) >= rows_needed:
        return most // 2
    return most


# --- kernels: forward and dx --------------------------------------------------------------------------------

@functools.cache
def conv_kernel(dtype: np.dtype, block: int, rm: int, window: int, masked: bool, stride1: bool):
    """The implicit-GEMM correlation for one dtype, block, micro-tile height RM, x window (compile-time
    sizes), whether terms on the input's padding are skipped (dx) or multiplied (forward), and whether the
    stride is 1 (then the x offsets of a thread's positions are compile-time constants)."""
    B, RM, XW, MASKED, S1 = block, rm, window, masked, stride1
    TY = B // TX
    BM, BN = TY * RM, TX * RN  # block tile: BM channels x BN positions
    WS, XS, ACC = CC * KT * BM, CC * XW, RM * RN  # shared and local array sizes (compile-time constants)
    WK, XK = WS // B, XW // B  # filter and x window values each thread stages per chunk (XW >= 256 >= B)
    T, U, U64 = scalar_type(dtype), uint32, uint64  # unsigned indices (no wrap-around code): shared 32-bit, global 64

    @cuda.jit(device=True, inline="always")
    def step(acc, av, xv, ws, xs, wq, xq, xo, tk, lo, hi, edge):  # edge: a compile-time constant
        """One channel of a reduction step: acc[i, r] += ws[wq + i] * xs[xq + x offset of r] (i < RM, r < RN),
        the offsets compile-time constants for stride 1; on an edge tile only where lo <= tk + xo[r] < hi."""
        for i in range(RM):
            av[i] = ws[wq + U(i)]
        if S1:  # stride 1: one base register, compile-time offsets
            for r in range(RN):
                xv[r] = xs[xq + U(r * TX)]
        else:
            for r in range(RN):
                xv[r] = xs[xq + xo[r]]
        if MASKED and edge:
            for i in range(RM):
                for r in range(RN):
                    if lo <= tk + xo[r] < hi:
                        acc[i * RN + r] += av[i] * xv[r]
        else:
            for i in range(RM):
                for r in range(RN):
                    acc[i * RN + r] += av[i] * xv[r]

    @cuda.jit(device=True, inline="always")
    def chunk(acc, av, xv, ws, xs, wbase, xb, xo, d32, kt, lo, hi, edge):
        """The hot loop over the kt taps of a staged chunk: CC steps of RM*RN FMAs per RM+RN shared loads."""
        wk, tk = wbase, U(0)
        for _kc in range(kt):
            xq = tk + xb if S1 else tk
            step(acc, av, xv, ws, xs, wk, xq, xo, tk, lo, hi, edge)  # cc = 0 .. CC-1
            step(acc, av, xv, ws, xs, wk + U(KT * BM), xq + U(XW), xo, tk, lo, hi, edge)
            step(acc, av, xv, ws, xs, wk + U(2 * KT * BM), xq + U(2 * XW), xo, tk, lo, hi, edge)
            step(acc, av, xv, ws, xs, wk + U(3 * KT * BM), xq + U(3 * XW), xo, tk, lo, hi, edge)
            wk += U(BM)
            tk += d32

    @cuda.jit
    def kernel(x, w, b, y, N, C_x, L, C_y, C_xg, Kw, Ly, stride, padding, dilation, groups, tap0, tap_step, Kc, ostart,
               ostride, Lc, kt_max, zero):
        """Block ((n, group, channel tile), position tile) computes, for o < cos <= BM and l < BN,

            y[n, co0+o, ostart + (l0+l)*ostride] = b[co0+o] + sum_{c, k < Kc} wk[o, c, k] xpad[n, ci, p]
            wk[o, c, k] = w[co0+o, c, tap0 + k*tap_step],   p = (l0+l)*stride + k*dilation - padding

        (forward: ostart = tap0 = 0, ostride = tap_step = 1, Kc = K), with x, w and y flat (shapes
        (N, C_x, L), (C_y, C_xg, Kw) and (N, C_y, Ly)). Per chunk of CC channels and kt <= kt_max taps
        k0 + kc, staged in shared memory,

            ws[(cc*KT + kc)*BM + o] = wk[o, c0+cc, k0+kc]
            xs[cc*XW + q]           = xpad[n, ci0+c0+cc, l0*stride + k0*dilation - padding + q]
            acc[i, r] += ws[(cc*KT + kc)*BM + ty*RM + i] * xs[cc*XW + (tx + r*TX)*stride + kc*dilation]

        for thread (ty, tx), i < RM, r < RN, with q < (BN-1)*stride + (kt-1)*dilation + 1 <= XW. Padded
        channels (c >= C_xg) stage zeros in both; when masked, a term with p outside [0, L) is skipped
        (a select, on the tiles that touch the edges only), else the staged zero is multiplied.
        Each thread stages the RM filter values ws[u + k*B] (k < RM) of one row o = u % BM.
        """
        xs = cuda.shared.array(XS, T)
        ws = cuda.shared.array(WS, T)
        acc = cuda.local.array(ACC, T)
        av = cuda.local.array(RM, T)
        xv = cuda.local.array(RN, T)
        xo = cuda.local.array(RN, uint32)  # 32-bit shared offsets of the thread's positions
        u = cuda.threadIdx.x
        tx, ty = u % TX, u // TX
        ow, rw = u % BM, u // BM  # the filter row this thread stages, and its first (cc, kc) slot
        C_yg = C_y // groups
        tiles = (C_yg + BM - 1) // BM  # channel tiles per group
        d32 = U(dilation)
        for r in range(RN):
            xo[r] = U(tx + r * TX) * U(stride)
        wbase, xb = U(ty * RM), U(tx)
        ys = TX * ostride  # y index step between a thread's positions
        has_bias = b.shape[0] > 0
        for rt in range(cuda.blockIdx.y, N * groups * tiles, cuda.gridDim.y):
            n, gt = rt // (groups * tiles), rt % (groups * tiles)
            co0 = (gt // tiles) * C_yg + (gt % tiles) * BM
            cos = min(BM, C_yg - (gt % tiles) * BM)  # channels in this tile
            ci0 = (gt // tiles) * C_xg
            wrow = (co0 + ow) * (C_xg * Kw) + tap0  # flat w index of the staged row's tap 0
            for lt in range(cuda.blockIdx.x, (Lc + BN - 1) // BN, cuda.gridDim.x):
                l0 = int64(lt) * BN
                for e in range(RM * RN):
                    acc[e] = zero
                for c0 in range(0, C_xg, CC):
                    for k0 in range(0, Kc, kt_max):
                        kt = min(kt_max, Kc - k0)
                        start = l0 * stride + k0 * dilation - padding
                        width = (BN - 1) * stride + (kt - 1) * dilation + 1
                        cuda.syncthreads()  # everyone is done reading the previous chunk
                        wc = wrow + c0 * Kw + k0 * tap_step
                        for k in range(WK):  # slot k: ws[u + k*B] = wk[ow, c0 + cc, k0 + kc]
                            cc, kc = (rw + k * (B // BM)) // KT, (rw + k * (B // BM)) % KT
                            inside = ow < cos and kc < kt and c0 + cc < C_xg
                            v = w[U64(wc + cc * Kw + kc * tap_step) if inside else U64(0)]  # no branch
                            ws[U(u + k * B)] = v if inside else zero
                        interior = start >= 0 and start + XW <= L  # the whole staged window is real x
                        for cc in range(CC):  # xs[cc*XW + q] for q = u + k*B < XW: the window and what follows
                            real = c0 + cc < C_xg
                            row = ((n * C_x + ci0 + c0 + cc) * L + start) if real else int64(0)
                            if real and interior:
                                for k in range(XK):
                                    xs[U(cc * XW + u + k * B)] = x[U64(row + u + k * B)]
                            else:
                                for k in range(XK):
                                    q = u + k * B
                                    inside = real and U64(start + q) < U64(L)  # 0 <= p < L
                                    v = x[U64(row + q) if inside else U64(0)]  # no branch
                                    xs[U(cc * XW + q)] = v if inside else zero
                        cuda.syncthreads()
                        lo, hi = U(0), U(XW)  # the staged q whose p is real: lo <= q < hi
                        edge = MASKED and not (start >= 0 and start + width <= L)
                        if edge:
                            lo, hi = U(max(-start, int64(0))), U(max(int64(0), min(L - start, int64(XW))))
                        if MASKED and edge:  # a tile touching the padding of dx's g: the masked steps
                            chunk(acc, av, xv, ws, xs, wbase, xb, xo, d32, kt, lo, hi, True)
                        else:
                            chunk(acc, av, xv, ws, xs, wbase, xb, xo, d32, kt, lo, hi, False)
                # epilogue: y flat, yi = flat index of (n, co0 + ty*RM, ostart + (l0 + tx)*ostride)
                yi = (n * C_y + co0 + ty * RM) * Ly + ostart + (l0 + tx) * ostride
                left = Lc - l0 - tx  # position r is stored when r*TX < left
                for i in range(RM):
                    if ty * RM + i < cos:
                        bias = b[co0 + ty * RM + i] if has_bias else zero
                        yr = yi
                        for r in range(RN):
                            if r * TX < left:
                                y[U64(yr)] = acc[i * RN + r] + bias
                            yr += ys
                    yi += Ly

    return kernel


# --- kernels: dw and db -------------------------------------------------------------------------------------

@functools.cache
def weight_grad_kernel(dtype: np.dtype, block: int, rm: int):
    """The split-K weight gradient for one dtype, block and micro-tile height RM (compile-time sizes)."""
    B, RM = block, rm
    TY = B // TXW
    BM, BC = TY * RM, TXW * RN  # block tile: BM channels x BC (c, t) columns
    # row pitches of the staged tiles: GP keeps a thread's RM g values 16-byte aligned (vector loads) and
    # shifts the banks of consecutive rows, XP = BC + 1 makes the stores of consecutive rows conflict-free
    GP, XP = BM + 16 // np.dtype(dtype).itemsize, BC + 1
    GS, XS, ACC = BL * GP, BL * XP, RM * RN  # shared and local array sizes (compile-time constants)
    GK, XK = BL * BM // B, BL * BC // B  # g and x values each thread stages per chunk
    T, U, U64 = scalar_type(dtype), uint32, uint64  # unsigned indices (no wrap-around code): shared 32-bit, global 64

    @cuda.jit(device=True, inline="always")
    def step(acc, av, xv, gs, xs, gq, xq):
        """One position of the reduction: acc[i, r] += gs[gq + i] * xs[xq + r*TXW] (i < RM, r < RN)."""
        for i in range(RM):
            av[i] = gs[gq + U(i)]
        for r in range(RN):
            xv[r] = xs[xq + U(r * TXW)]
        for i in range(RM):
            for r in range(RN):
                acc[i * RN + r] += av[i] * xv[r]

    @cuda.jit
    def kernel(x, g, partial, N, C_in, L, C_out, L_out, K, stride, padding, dilation, groups, splits, E, per_split,
               zero):
        """Block (output tile, split s) sums over the (n, l) tiles it0 = s*per_split, ..., in order (BL
        positions l0 + l each, l0 = (it % L_tiles)*BL, n = it // L_tiles):

            gs[l*GP + o]   = g[n, co0+o, l0+l]                       (0 past L_out)
            xs[l*XP + e]   = xpad[n, ci(e), (l0+l)*stride + t(e)*dilation - padding]
            acc[i, r]     += gs[l*GP + ty*RM + i] * xs[l*XP + tx + r*TXW]

        for column e = col0 + tx + r*TXW = c*K + t of dw's group (ci(e) = G*C_in/groups + c), and stores

            partial[s, co*C_in/groups*K + e] = acc        partial[s, dw.size + co] = sum_l gs[l*GP + o]

        (the db columns from the blocks of column tile 0, when E > dw.size), with x, g and partial
        (splits, E) flat. The splits are independent of the grid: every block strides over (tile, split) pairs.
        """
        gs = cuda.shared.array(GS, T)
        xs = cuda.shared.array(XS, T)
        col_ci = cuda.shared.array(BC, int32)
        col_p = cuda.shared.array(BC, int32)
        acc = cuda.local.array(ACC, T)
        av = cuda.local.array(RM, T)
        xv = cuda.local.array(RN, T)
        u = cuda.threadIdx.x
        tx, ty = u % TXW, u // TXW
        ls, rs = u % BL, u // BL  # staging: this thread's position l and first row (g) or column (x)
        C_in_g, C_out_g = C_in // groups, C_out // groups
        CK = C_in_g * K
        E_w = C_out * CK
        has_db = E > E_w
        row_tiles, col_tiles = (C_out_g + BM - 1) // BM, (CK + BC - 1) // BC
        L_tiles = (L_out + BL - 1) // BL
        total = N * L_tiles
        gb, xb = U(ty * RM), U(tx)
        for s in range(cuda.blockIdx.y, splits, cuda.gridDim.y):
            for tile in range(cuda.blockIdx.x, groups * row_tiles * col_tiles, cuda.gridDim.x):
                grp, rest = tile // (row_tiles * col_tiles), tile % (row_tiles * col_tiles)
                rt, ct = rest // col_tiles, rest % col_tiles
                co0 = grp * C_out_g + rt * BM
                cos = min(BM, C_out_g - rt * BM)
                col0 = ct * BC
                db_here = has_db and ct == 0
                cuda.syncthreads()  # everyone is done with the previous tile's column table
                for q in range(u, BC, B):
                    e = col0 + q
                    col_ci[q] = int32(grp * C_in_g + e // K) if e < CK else -1
                    col_p[q] = int32((e % K) * dilation - padding) if e < CK else 0
                for e in range(RM * RN):
                    acc[e] = zero
                dbacc = zero
                for it in range(s * per_split, min(total, (s + 1) * per_split)):
                    n, l0 = it // L_tiles, (it % L_tiles) * BL
                    lsv = l0 + ls < L_out
                    gi = (n * C_out + co0 + rs) * L_out + l0 + ls  # flat g index of slot 0
                    xn = n * C_in * L
                    ps = (l0 + ls) * stride
                    cuda.syncthreads()  # everyone is done reading the previous chunk
                    for k in range(GK):  # slot k: gs[ls*GP + rs + k*(B//BL)] (consecutive threads, consecutive l)
                        o = rs + k * (B // BL)
                        inside = lsv and o < cos
                        v = g[U64(gi + k * (B // BL) * L_out) if inside else U64(0)]  # no branch
                        gs[U(ls * GP + o)] = v if inside else zero
                    for k in range(XK):  # slot k: xs[ls*XP + e], e = rs + k*(B//BL)
                        e = rs + k * (B // BL)
                        ci = col_ci[e]
                        p = ps + col_p[e]
                        inside = lsv and ci >= 0 and U64(p) < U64(L)  # 0 <= p < L
                        v = x[U64(xn + ci * L + p) if inside else U64(0)]  # no branch
                        xs[U(ls * XP + e)] = v if inside else zero
                    cuda.syncthreads()
                    gq, xq = gb, xb
                    for _lq in range(BL // 4):  # the hot loop: RM*RN FMAs per RM+RN shared loads, 4 l per trip
                        step(acc, av, xv, gs, xs, gq, xq)
                        step(acc, av, xv, gs, xs, gq + U(GP), xq + U(XP))
                        step(acc, av, xv, gs, xs, gq + U(2 * GP), xq + U(2 * XP))
                        step(acc, av, xv, gs, xs, gq + U(3 * GP), xq + U(3 * XP))
                        gq += U(4 * GP)
                        xq += U(4 * XP)
                    if db_here and u < cos:
                        for l in range(BL):
                            dbacc += gs[U(l * GP + u)]
                pi = s * E + (co0 + ty * RM) * CK + col0 + tx  # flat partial index of acc[0, 0]
                left = CK - col0 - tx  # column r is stored when r*TXW < left
                for i in range(RM):
                    if ty * RM + i < cos:
                        for r in range(RN):
                            if r * TXW < left:
                                partial[U64(pi + r * TXW)] = acc[i * RN + r]
                    pi += CK
                if db_here and u < cos:
                    partial[U64(s * E + E_w + co0 + u)] = dbacc

    return kernel


# --- launches -----------------------------------------------------------------------------------------------

def conv_plan(launch: Launch, dtype, rows_needed: int, Kc: int, stride: int, dilation: int,
              masked: bool = False) -> tuple[int, int, int]:
    """(RM, x window, taps per staged chunk) of a `conv_kernel` launch, after the checks (ValueError naming the
    block): the shared x window is a power of two (few kernels compile) holding KT taps per chunk if that fits,
    else one."""
    dtype = np.dtype(dtype)
    check_block(launch, GEMM_MAX_BLOCK, "the gemm layer")
    rm = micro_rows(launch, rows_needed, TX, dtype, half=masked or stride != 1)
    BM, BN = launch.block // TX * rm, TX * RN
    for kt in (max(1, min(Kc, KT)), 1):
        window = 1 << ((BN - 1) * stride + (kt - 1) * dilation).bit_length()
        if CC * (window + KT * BM) * dtype.itemsize <= SHARED_LIMIT:
            break
    check_shared(CC * (window + KT * BM), dtype, launch, f"gemm layer (stride={stride})")
    return rm, window, min(KT, (window - 1 - (BN - 1) * stride) // dilation + 1)


def correlate(x, w, b, y, launch: Launch, *, stride, padding, dilation, groups, tap0=0, tap_step=1, Kc=None,
              ostart=0, ostride=1, Lc=None, masked=False):
    """`conv_kernel`: y[n, co, ostart + l*ostride] = b[co] + sum_{c, k<Kc} w[co, c, tap0 + k*tap_step]
    xpad[n, ci, l*stride + k*dilation - padding] for l < Lc (defaults: the layer forward).

    The shared x window is a power of two (few kernels compile) holding KT taps per chunk if that fits,
    else one; ValueError (naming the block) when even one tap's window does not fit.
    """
    dtype = np.dtype(y.dtype)
    Kc = w.shape[2] if Kc is None else Kc
    Lc = y.shape[2] if Lc is None else Lc
    rm, window, kt_max = conv_plan(launch, dtype, w.shape[0] // groups, Kc, stride, dilation, masked)
    BM, BN = launch.block // TX * rm, TX * RN
    rows = x.shape[0] * groups * -(-(w.shape[0] // groups) // BM)
    grid = (launch.blocks(Lc, BN), min(rows, launch.max_blocks, MAX_GRID_Y))
    kernel = conv_kernel(dtype, launch.block, rm, window, masked, stride == 1)
    kernel[grid, launch.block](x.reshape(x.size), w.reshape(w.size), b, y.reshape(y.size), x.shape[0], x.shape[1],
                               x.shape[2], w.shape[0], w.shape[1], w.shape[2], y.shape[2], stride, padding, dilation,
                               groups, tap0, tap_step, Kc, ostart, ostride, Lc, kt_max, dtype.type(0))


def residue_classes(p):
    """[(r, Kc, tap0, padding', Lc)] of dx: for j = r + stride*m (m < Lc), the taps t with l = (j + padding -
    t*dilation)/stride an integer are t_last, t_last - t_step, ... (Kc of them, t_step = stride /
    gcd(stride, dilation)), and l = m + k*dilation/gcd - padding' for tap k of the reversed filter
    (tap0 + k*t_step = K-1-t), padding' = -(r + padding - t_last*dilation)/stride."""
    s, d, K = p.stride, p.dilation, p.K
    out = []
    for r in range(min(s, p.L)):
        taps = [t for t in range(K) if (r + p.padding - t * d) % s == 0]
        Lc = -(-(p.L - r) // s)
        if not taps:
            out.append((r, 0, 0, 0, Lc))
            continue
        t_last = taps[-1]
        out.append((r, len(taps), K - 1 - t_last, -((r + p.padding - t_last * d) // s), Lc))
    return out


def input_grad(p, w, g, dx, launch: Launch):
    """dx: `conv_kernel` on the transposed layer (filter transposed and flipped), once per residue class of
    j mod stride (`residue_classes`), each a stride-1 correlation of g. A term on g's zero padding is then
    w * 0, exactly 0 for a finite w: the forward's kernel. A filter with an Inf or NaN takes the masked
    kernel, which skips those terms (Inf * 0 would be NaN where the reference has only real products)."""
    masked = not np.isfinite(w.copy_to_host()).all()  # w is small next to g and dx
    wt = cuda.device_array((p.C_in, p.C_out_g, p.K), p.dtype)
    transposed_filter_kernel[launch.blocks(wt.size, launch.block), launch.block](w, wt, p.groups)
    no_bias = cuda.device_array(0, p.dtype)
    step = p.stride // math.gcd(p.stride, p.dilation)
    for r, Kc, tap0, padding, Lc in residue_classes(p):
        correlate(g, wt, no_bias, dx, launch, stride=1, padding=padding, dilation=p.dilation // math.gcd(
            p.stride, p.dilation), groups=p.groups, tap0=tap0, tap_step=step, Kc=Kc, ostart=r, ostride=p.stride,
            Lc=Lc, masked=masked)


def weight_grad_plan(p, launch: Launch) -> tuple[int, int, int]:
    """(RM, per_split, splits) of `weight_grad_kernel`: the N * ceil(L_out/BL) position tiles in `splits`
    chunks of `per_split`, so that (output tiles) x splits is about WG_TARGET_BLOCKS. Depends only on the
    sizes, the block and per_thread (never max_blocks): repeated calls add in the same order."""
    rm = micro_rows(launch, p.C_out_g, TXW, p.dtype)
    BM, BC = launch.block // TXW * rm, TXW * RN
    tiles = p.groups * -(-p.C_out_g // BM) * -(-(p.C_in_g * p.K) // BC)
    total = p.N * -(-p.L_out // BL)
    splits = max(1, min(total, -(-WG_TARGET_BLOCKS // tiles)))
    per_split = -(-total // splits)
    return rm, per_split, -(-total // per_split)


def param_grads(p, x, g, dw, db, launch: Launch):
    """dw and db (when db has C_out elements): split-K partials in a workspace (`weight_grad_plan`), then
    `red.sum_columns` adds each column's partials in order of the split."""
    check_block(launch, GEMM_MAX_BLOCK, "the gemm layer's parameter gradients")
    rm, per_split, splits = weight_grad_plan(p, launch)
    E_w = dw.size
    partial = cuda.device_array((splits, E_w + db.shape[0]), dw.dtype)
    BM = launch.block // TXW * rm
    tiles = p.groups * -(-p.C_out_g // BM) * -(-(p.C_in_g * p.K) // (TXW * RN))
    grid = (min(tiles, launch.max_blocks), min(splits, launch.max_blocks, MAX_GRID_Y))
    kernel = weight_grad_kernel(np.dtype(dw.dtype), launch.block, rm)
    kernel[grid, launch.block](x.reshape(x.size), g.reshape(g.size), partial.reshape(partial.size), p.N, p.C_in, p.L,
                               p.C_out, p.L_out, p.K, p.stride, p.padding, p.dilation, p.groups, splits,
                               partial.shape[1], per_split, p.dtype.type(0))
    red.sum_columns(partial[:, :E_w], dw.reshape(E_w), launch)
    if db.shape[0]:
        red.sum_columns(partial[:, E_w:], db, launch)


def accepts(p, launch: Launch) -> bool:
    """True when the gemm kernels take the layer problem p at this launch: the block within GEMM_MAX_BLOCK
    and the forward's window of one tap (the smallest `correlate` tries) within shared memory."""
    if launch.block > GEMM_MAX_BLOCK:
        return False
    dtype = np.dtype(p.dtype)
    rm = micro_rows(launch, p.C_out // p.groups, TX, dtype, half=p.stride != 1)
    window = 1 << ((TX * RN - 1) * p.stride).bit_length()
    return CC * (window + KT * (launch.block // TX * rm)) * dtype.itemsize <= SHARED_LIMIT


# --- implementations ----------------------------------------------------------------------------------------

def layer_gemm(p, x, w, b, y, **options):
    """implicit GEMM: micro-tiles of up to 8 channels x 8 positions per thread, x window and taps in shared memory"""
    correlate(x, w, b, y, Launch.of(options), stride=p.stride, padding=p.padding, dilation=p.dilation,
              groups=p.groups)


def layer_backward_gemm(p, x, w, g, dx, dw, db, **options):
    """dx by the implicit GEMM per residue class of stride (no division, no inserted zeros); dw, db split-K"""
    launch = Launch.of(options)
    check_block(launch, GEMM_MAX_BLOCK, "the gemm layer backward")
    input_grad(p, w, g, dx, launch)
    param_grads(p, x, g, dw, db, launch)


# --- the step gemm -----------------------------------------------------------------------------------------

def kernels(dtype: str) -> list[Kernel]:
    """conv_kernel at both micro-tile heights RM and every block up to GEMM_MAX_BLOCK, with the x windows of
    stride 1 and 2 at KT taps per chunk and of one tap (an input-gradient residue class of a single tap) (the
    sizes, not the registers, change with the layer; strides > 1 and the masked dx take the lower RM only);
    weight_grad_kernel at both RM; and what the backward launches besides."""
    T = getattr(types, dtype)
    a1 = types.Array(T, 1, "C")
    rm_max = RM_MAX[np.dtype(dtype).itemsize]
    out = []
    for b in (b for b in BLOCKS if b <= GEMM_MAX_BLOCK):
        for rm in (rm_max // 2, rm_max):
            is_default = b == DEFAULT_LAUNCH.block and rm == rm_max
            for masked, stride in ((False, 1), (False, 2), (True, 1))[:3 if rm < rm_max else 1]:
                window = 1 << ((TX * RN - 1) * stride + KT - 1).bit_length()
                one_tap = 1 << (TX * RN - 1).bit_length()
                for w_size in sorted({window, one_tap} if stride == 1 else {window}):
                    out.append(Kernel(
                        f"layer_gemm.conv_kernel[B={b},RM={rm},window={w_size},masked={int(masked)},"
                        f"stride1={int(stride == 1)}]", dtype, (b,),
                        default=is_default and stride == 1 and w_size == window,
                        build=functools.partial(lambda *k: (conv_kernel(np.dtype(dtype), *k),
                                                            (a1, a1, a1, a1, *[int64] * 18, T)),
                                                b, rm, w_size, masked, stride == 1)))
            out.append(Kernel(f"layer_gemm.weight_grad_kernel[B={b},RM={rm}]", dtype, (b,), default=is_default,
                              build=functools.partial(lambda b, rm: (weight_grad_kernel(np.dtype(dtype), b, rm),
                                                                     (a1, a1, a1, *[int64] * 13, T)), b, rm)))
    return [*out, *transpose_kernels(dtype), *red.sum_kernels(dtype), *common.kernels(dtype)]


GEMM = Step.layer("gemm", layer_gemm, layer_backward_gemm, kernels=kernels)
STEPS = (GEMM,)
