"""The conv1d layer (`kernels.layer`) on the `numba_cuda` backend: kernels, launches and the
implementations that gpu/numba_cuda/backend.py registers. Variants, never renumbered:

    direct   one thread per element of y and of dx (64-bit flat index, grid-stride); dx as a gather (no
             atomics); dw and db as partial sums over chunks of (n, l) into a workspace, then the chunks
             added in order by `sum_columns` (deterministic)
    tiled    a block computes CO_TILE output channels x block*per_thread positions of one sample, with
             the input window and the filter taps staged in shared memory: each x value read from
             global memory serves up to CO_TILE*K/stride multiply-adds instead of one. dx is the same
             kernel on the transposed layer (g upsampled by stride, the filter transposed and flipped,
             so 1/stride of its products are useful); dw and db as in direct

Zero padding multiplies like real zeros, as in torch and the reference: a padded position contributes
w * 0 to y and g * 0 to dw (NaN for an Inf or NaN, 0 otherwise). The tiled dx multiplies the zeros it
inserts into g too, which the reference does not, so a filter with an Inf or NaN takes the direct dx.

Index formulas (math in `kernels.layer`), with ci = G(co)*C_in/groups + c and
j = l*stride + t*dilation - padding:

    y[n, co, l]  = b[co] + sum_{c, t} w[co, c, t] x[n, ci, j]          (terms with 0 <= j < L)
    dw[co, c, t] = sum_{n, l} g[n, co, l] x[n, ci, j]
    db[co]       = sum_{n, l} g[n, co, l]
    dx[n, ci, j] = sum_{co in G(ci), t, l : l*stride + t*dilation - padding = j} g[n, co, l] w[co, c, t]

The implementations get b and db of shape (0,) when the layer has no bias. Integer arguments reach the
kernels as int64, and flat indices start from `int64(cuda.grid(1))`, so no index overflows at 2**31.
"""
# ruff: noqa: E741  (l is the output position, as in the formulas)

from __future__ import annotations

import functools
import math

import numpy as np

from gpu.launch import BLOCKS, MAX_GRID_Y, SHARED_LIMIT, param_chunks
from gpu.launch import NumbaCudaLaunch as Launch
from gpu.numba_cuda import common
from gpu.numba_cuda import reduce as red
from gpu.numba_cuda.common import (
    DEFAULT_LAUNCH,
    accepted,
    check_block,
    check_shared,
    launches,
    per_thread_for,
    scalar_type,
)
from gpu.numba_cuda.jit import cuda, int64, types
from gpu.steps import Kernel, Step
from kernels import layer

#: Output channels per block tile of the tiled forward (accumulators per thread: CO_TILE * per_thread).
CO_TILE = 4
#: Filter taps staged in shared memory per chunk by the tiled forward (fewer when dilation is large).
K_TILE = 32
#: Largest blocks the direct kernels (70-80 registers) and the tiled forward (160-220) fit in the
#: register file without spilling (plots/model/resources.py checks every accepted launch).
DIRECT_MAX_BLOCK, TILED_MAX_BLOCK = 512, 256


#: [lo, hi): the i < count with 0 <= start + i*step < L, on the input rather than its padding (the contract's
#: kernels.layer.real_range, compiled for the device).
real_range = cuda.jit(device=True)(layer.real_range)


# --- kernels: direct ----------------------------------------------------------------------------------------

@cuda.jit
def forward_kernel(x, w, b, y, stride, padding, dilation, groups, zero):
    """One thread per y element, i = (n*C_out + co)*L_out + l (grid-stride):

        y[n, co, l] = b[co] + sum_{c < C_in/groups, t < K} w[co, c, t] xpad[n, ci, base + t*dilation]

    with base = l*stride - padding and xpad = x on 0 <= j < L, 0 on the padding: the taps [t_lo, t_hi)
    of `real_range` multiply x, the others a zero (not skipped). Consecutive threads take consecutive l:
    x loads coalesce for stride 1, w loads are broadcasts.
    """
    N, C_in, L = x.shape
    C_out, C_in_g, K = w.shape
    L_out = y.shape[2]
    C_out_g = C_out // groups
    has_bias = b.shape[0] > 0
    for i in range(int64(cuda.grid(1)), N * C_out * L_out, cuda.gridsize(1)):
        l, r = i % L_out, i // L_out
        co, n = r % C_out, r // C_out
        ci0 = (co // C_out_g) * C_in_g  # first input channel of co's group
        base = l * stride - padding
        t_lo, t_hi = real_range(base, dilation, K, L)
        acc = zero
        for c in range(C_in_g):
            for t in range(t_lo, t_hi):
                acc += w[co, c, t] * x[n, ci0 + c, base + t * dilation]
            for t in range(t_lo):  # taps on the padding (edges only)
                acc += w[co, c, t] * zero
            for t in range(t_hi, K):
                acc += w[co, c, t] * zero
        y[n, co, l] = acc + b[co] if has_bias else acc


@cuda.jit
def input_grad_kernel(w, g, dx, stride, padding, dilation, groups, t_step, zero):
    """One thread per dx element, i = (n*C_in + ci)*L + j (grid-stride), a gather:

        dx[n, ci, j] = sum_{co in G(ci), t} g[n, co, (q - t*dilation) / stride] w[co, c, t],   q = j + padding

    over the taps with q - t*dilation a multiple of stride in [0, (L_out-1)*stride]. The first one, t0,
    is searched from the lowest t allowed; the others are t0 + t_step, t0 + 2*t_step, ... with
    t_step = stride / gcd(stride, dilation), so no tap is tested twice.
    """
    N, C_in, L = dx.shape
    C_out, C_in_g, K = w.shape
    L_out = g.shape[2]
    C_out_g = C_out // groups
    for i in range(int64(cuda.grid(1)), N * C_in * L, cuda.gridsize(1)):
        j, r = i % L, i // L
        ci, n = r % C_in, r // C_in
        co0, c = (ci // C_in_g) * C_out_g, ci % C_in_g
        q = j + padding
        t_hi = min(K, q // dilation + 1)  # q - t*dilation >= 0
        t0 = max(0, -(((L_out - 1) * stride - q) // dilation))  # q - t*dilation <= (L_out-1)*stride
        while t0 < t_hi and (q - t0 * dilation) % stride != 0:
            t0 += 1
        acc = zero
        for co in range(co0, co0 + C_out_g):
            for t in range(t0, t_hi, t_step):
                acc += g[n, co, (q - t * dilation) // stride] * w[co, c, t]
        dx[n, ci, j] = acc


@cuda.jit
def param_grad_partial_kernel(x, g, partial, K, stride, padding, dilation, groups, chunk, zero):
    """Partial sums of dw and db, one thread per (chunk s, column e), k = s*E + e (grid-stride):

        partial[s, e]        = sum_{(n, l) in chunk s} g[n, co, l] x[n, ci, l*stride + t*dilation - padding]
                               for e = (co*C_in/groups + c)*K + t < E_w = dw.size
        partial[s, E_w + co] = sum_{(n, l) in chunk s} g[n, co, l]          (the db columns, if any)

    Chunk s holds the flat positions i = n*L_out + l in [s*chunk, (s+1)*chunk), added in order of i;
    for dw the l of `real_range` (tap t on real input) multiply x, the others the zero padding
    (g * 0: NaN for an Inf or NaN in g, as in the reference). Consecutive threads take
    consecutive taps of one (co, c), so their g loads are one broadcast and their stores coalesce.
    """
    N, C_in, L = x.shape
    C_out, L_out = g.shape[1], g.shape[2]
    C_in_g, C_out_g = C_in // groups, C_out // groups
    splits, E = partial.shape
    E_w, NL = C_out * C_in_g * K, N * L_out
    for k in range(int64(cuda.grid(1)), splits * E, cuda.gridsize(1)):
        s, e = k // E, k % E
        if e < E_w:
            t, r = e % K, e // K
            c, co = r % C_in_g, r // C_in_g
            ci = (co // C_out_g) * C_in_g + c
            lo, hi = real_range(t * dilation - padding, stride, L_out, L)
            shift = t * dilation - padding
        else:
            co, ci, lo, hi, shift = e - E_w, 0, 0, L_out, 0
        acc = zero
        i, end = s * chunk, min((s + 1) * chunk, NL)
        while i < end:  # row by row: the chunk's part of g[n, co, :]
            n = i // L_out
            l0 = i - n * L_out
            l1 = min(L_out, l0 + end - i)
            if e < E_w:
                for l in range(max(l0, lo), min(l1, hi)):
                    acc += g[n, co, l] * x[n, ci, l * stride + shift]
                for l in range(l0, min(l1, lo)):  # tap t on the padding
                    acc += g[n, co, l] * zero
                for l in range(max(l0, hi), l1):
                    acc += g[n, co, l] * zero
            else:
                for l in range(l0, l1):
                    acc += g[n, co, l]
            i += l1 - l0
        partial[s, e] = acc


# --- kernels: tiled ------------------------------------------------------------------------------------

@functools.cache
def tiled_kernel(dtype: np.dtype, block: int, per_thread: int, window: int):
    """The tiled layer forward for one dtype, launch shape and x window (compile-time sizes)."""
    B, R, CO, KT = block, per_thread, CO_TILE, K_TILE
    TL = B * R  # output positions per tile: thread u owns l0 + u + r*B for r < R
    T = scalar_type(dtype)

    @cuda.jit
    def kernel(x, w, b, y, stride, padding, dilation, groups, up, kt_max, zero):
        """The forward on an input upsampled by `up` (up = 1: x itself), by tiles: block
        (l tile, (n, channel tile)) computes y[n, co0+o, l0+u] for o < CO, u < TL; per input channel
        ci = ci0 + c and chunk of kt <= kt_max taps t0 + tc, staged in shared memory,

            ws[o, tc]  = w[co0+o, c, t0+tc]
            xs[q]      = xup[n, ci, l0*stride + t0*dilation - padding + q]
            acc[o, r] += ws[o, tc] * xs[(u + r*B)*stride + tc*dilation]      (u = threadIdx.x)

        with q <= (TL-1)*stride + (kt-1)*dilation < window, and xup[n, ci, p] = x[n, ci, p/up] if p is
        a multiple of up in [0, L*up), else 0. The padding and the inserted zeros are staged and
        multiplied, as in the reference's padded matrix products. Loads are coalesced; a warp reads ws
        as broadcasts and xs at consecutive words for stride 1.
        """
        xs = cuda.shared.array(window, T)
        ws = cuda.shared.array((CO, KT), T)
        acc = cuda.local.array((CO, R), T)
        u = cuda.threadIdx.x
        N, C_in, L = x.shape
        C_out, C_in_g, K = w.shape
        L_out = y.shape[2]
        C_out_g = C_out // groups
        tiles = (C_out_g + CO - 1) // CO  # channel tiles per group
        has_bias = b.shape[0] > 0
        for rt in range(cuda.blockIdx.y, N * groups * tiles, cuda.gridDim.y):
            n, gt = rt // (groups * tiles), rt % (groups * tiles)
            co0 = (gt // tiles) * C_out_g + (gt % tiles) * CO
            cos = min(CO, C_out_g - (gt % tiles) * CO)  # channels in this tile
            ci0 = (gt // tiles) * C_in_g
            for lt in range(cuda.blockIdx.x, (L_out + TL - 1) // TL, cuda.gridDim.x):
                l0 = int64(lt) * TL
                for o in range(CO):
                    for r in range(R):
                        acc[o, r] = zero
                for c in range(C_in_g):
                    for t0 in range(0, K, kt_max):
                        kt = min(kt_max, K - t0)
                        start = l0 * stride + t0 * dilation - padding
                        cuda.syncthreads()  # everyone is done reading the previous chunk
                        for q in range(u, CO * KT, B):
                            o, tc = q // KT, q % KT
                            ws[o, tc] = w[co0 + o, c, t0 + tc] if o < cos and tc < kt else zero
                        for q in range(u, (TL - 1) * stride + (kt - 1) * dilation + 1, B):
                            pos = start + q
                            inside = 0 <= pos < L * up and pos % up == 0
                            xs[q] = x[n, ci0 + c, pos // up] if inside else zero
                        cuda.syncthreads()
                        for tc in range(kt):
                            for r in range(R):
                                xv = xs[(u + r * B) * stride + tc * dilation]
                                for o in range(CO):
                                    acc[o, r] += ws[o, tc] * xv
                for o in range(cos):
                    for r in range(R):
                        l = l0 + u + r * B
                        if l < L_out:
                            y[n, co0 + o, l] = acc[o, r] + b[co0 + o] if has_bias else acc[o, r]

    return kernel


@cuda.jit
def transposed_filter_kernel(w, wt, groups):
    """wt[ci, o, K-1-t] = w[G*C_out/groups + o, c, t] for ci = G*C_in/groups + c (grid-stride over wt):
    the filter of the transposed layer, from C_out to C_in channels with the same groups."""
    C_out, C_in_g, K = w.shape
    C_in, C_out_g = wt.shape[0], wt.shape[1]
    for i in range(int64(cuda.grid(1)), C_in * C_out_g * K, cuda.gridsize(1)):
        tt, r = i % K, i // K
        o, ci = r % C_out_g, r // C_out_g
        wt[ci, o, tt] = w[(ci // C_in_g) * C_out_g + o, ci % C_in_g, K - 1 - tt]


# --- launches ------------------------------------------------------------------------------------------

def _settings(p):
    return p.stride, p.padding, p.dilation, p.groups


def forward_direct(p, x, w, b, y, launch: Launch):
    """y = conv1d_layer(x, w, b), one thread per output element."""
    check_block(launch, DIRECT_MAX_BLOCK, "the direct layer forward")
    grid = launch.blocks(y.size, launch.block)
    forward_kernel[grid, launch.block](x, w, b, y, *_settings(p), p.dtype.type(0))


def input_grad_direct(p, w, g, dx, launch: Launch):
    """dx of conv1d_layer by gather, one thread per dx element."""
    t_step = p.stride // math.gcd(p.stride, p.dilation)
    grid = launch.blocks(dx.size, launch.block)
    input_grad_kernel[grid, launch.block](w, g, dx, *_settings(p), t_step, p.dtype.type(0))


def param_grads(p, x, g, dw, db, launch: Launch):
    """dw and db (when db has C_out elements): chunk partials in a workspace (chunks planned by
    `gpu.launch.param_chunks`: they depend only on the sizes and the launch, so repeated calls add in
    the same order, to the bit), then `red.sum_columns`."""
    check_block(launch, DIRECT_MAX_BLOCK, "the layer's parameter gradients")
    E_w = dw.size
    columns = E_w + db.shape[0]
    chunk, splits = param_chunks(p.N * p.L_out, columns, launch)
    partial = cuda.device_array((splits, columns), dw.dtype)
    grid = launch.blocks(splits * columns, launch.block)
    param_grad_partial_kernel[grid, launch.block](x, g, partial, p.K, *_settings(p), chunk, p.dtype.type(0))
    red.sum_columns(partial[:, :E_w], dw.reshape(E_w), launch)
    if db.shape[0]:
        red.sum_columns(partial[:, E_w:], db, launch)


def tiled_plan(launch: Launch, dtype, K: int, L_out: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """(per_thread, x window, taps per chunk) of `tiled_kernel`, after the checks (ValueError naming `block`).

    The shared x window is a power of two (few kernels compile) holding K_TILE taps per chunk if that fits in
    shared memory, else one; per_thread is cut down to what L_out needs."""
    dtype = np.dtype(dtype)
    per_thread = per_thread_for(launch, -(-L_out // launch.block))  # no more positions than L_out needs
    TL = launch.block * per_thread
    for kt in (min(K, K_TILE), 1):
        window = 1 << ((TL - 1) * stride + (kt - 1) * dilation).bit_length()
        if (window + CO_TILE * K_TILE) * dtype.itemsize <= SHARED_LIMIT:
            break
    check_shared(window + CO_TILE * K_TILE, dtype, launch, "tiled layer")
    check_block(launch, TILED_MAX_BLOCK, "the tiled layer")
    return per_thread, window, min(K_TILE, (window - 1 - (TL - 1) * stride) // dilation + 1)


def tiled(x, w, b, y, launch: Launch, *, stride, padding, dilation, groups, up=1):
    """`tiled_kernel`: y = conv1d_layer(xup, w, b) with these settings, xup = x upsampled by `up`."""
    dtype, L_out = np.dtype(y.dtype), y.shape[2]
    per_thread, window, kt_max = tiled_plan(launch, dtype, w.shape[2], L_out, stride, dilation)
    TL = launch.block * per_thread
    rows = x.shape[0] * groups * -(-(w.shape[0] // groups) // CO_TILE)
    grid = (launch.blocks(L_out, TL), min(rows, launch.max_blocks, MAX_GRID_Y))
    kernel = tiled_kernel(dtype, launch.block, per_thread, window)
    kernel[grid, launch.block](x, w, b, y, stride, padding, dilation, groups, up, kt_max, dtype.type(0))


def input_grad_tiled(p, w, g, dx, launch: Launch):
    """dx as the tiled forward of the transposed layer: from g upsampled by stride, with the filter
    transposed and flipped and the padding K_span-1-padding (negative: a crop), stride 1.

    dx[n, ci, j] = sum_{co, t'} wt[ci, co, t'] gup[n, co, j + t'*dilation - (K_span-1-padding)]
    with t' = K-1-t and gup[n, co, p] = g[n, co, p/stride] where stride divides p, else 0.
    """
    wt = cuda.device_array((p.C_in, p.C_out_g, p.K), p.dtype)
    transposed_filter_kernel[launch.blocks(wt.size, launch.block), launch.block](w, wt, p.groups)
    no_bias = cuda.device_array(0, p.dtype)
    tiled(g, wt, no_bias, dx, launch, stride=1, padding=p.K_span - 1 - p.padding, dilation=p.dilation,
          groups=p.groups, up=p.stride)


# --- implementations -----------------------------------------------------------------------------------

def layer_direct(p, x, w, b, y, **options):
    """one thread per output element (64-bit flat index, grid-stride), padded taps multiply zeros"""
    forward_direct(p, x, w, b, y, Launch.of(options))


def layer_backward_direct(p, x, w, g, dx, dw, db, **options):
    """dx by gather (one thread per element, no atomics); dw, db by chunk partials added in order"""
    launch = Launch.of(options)
    check_block(launch, DIRECT_MAX_BLOCK, "the direct layer backward")
    input_grad_direct(p, w, g, dx, launch)
    param_grads(p, x, g, dw, db, launch)


def layer_tiled(p, x, w, b, y, **options):
    """4 output channels x block*per_thread positions per block, x window and filter taps in shared memory"""
    tiled(x, w, b, y, Launch.of(options), stride=p.stride, padding=p.padding, dilation=p.dilation,
          groups=p.groups)


def layer_backward_tiled(p, x, w, g, dx, dw, db, **options):
    """dx by the tiled forward of the transposed layer (g upsampled by stride); dw, db as in direct"""
    launch = Launch.of(options)
    check_block(launch, TILED_MAX_BLOCK, "the tiled layer backward")
    if np.isfinite(w.copy_to_host()).all():  # w is small next to x and g
        input_grad_tiled(p, w, g, dx, launch)
    else:  # the inserted zeros would multiply the Inf or NaN: only real products, as in the reference
        input_grad_direct(p, w, g, dx, launch)
    param_grads(p, x, g, dw, db, launch)


# --- the steps direct and tiled ----------------------------------------------------------------------------

def _types(dtype: str):
    T = getattr(types, dtype)
    return T, types.Array(T, 1, "C"), types.Array(T, 2, "C"), types.Array(T, 3, "C")


def direct_kernels(dtype: str) -> list[Kernel]:
    """The direct kernels at every block up to DIRECT_MAX_BLOCK, and the parameter sums."""
    T, a1, a2, a3 = _types(dtype)
    blocks = tuple(b for b in BLOCKS if b <= DIRECT_MAX_BLOCK)
    return [Kernel("layer.forward_kernel", dtype, blocks, default=True,
                   build=lambda: (forward_kernel, (a3, a3, a1, a3, *[int64] * 4, T))),
            Kernel("layer.input_grad_kernel", dtype, blocks, default=True,
                   build=lambda: (input_grad_kernel, (a3, a3, a3, *[int64] * 5, T))),
            Kernel("layer.param_grad_partial_kernel", dtype, blocks, default=True,
                   build=lambda: (param_grad_partial_kernel, (a3, a3, a2, *[int64] * 6, T))),
            *red.sum_kernels(dtype), *common.kernels(dtype)]


def transpose_kernels(dtype: str) -> list[Kernel]:
    T, a1, a2, a3 = _types(dtype)
    return [Kernel("layer.transposed_filter_kernel", dtype, BLOCKS, default=True,
                   build=lambda: (transposed_filter_kernel, (a3, a3, int64)))]


def tiled_kernels(dtype: str) -> list[Kernel]:
    """tiled_kernel at every launch `tiled_plan` takes for stride 1, dilation 1, K >= K_TILE and a long L_out
    (the x window of K_TILE taps: the sizes, not the registers, change with the layer), and what the tiled
    backward launches besides."""
    T, a1, a2, a3 = _types(dtype)
    out = []
    for launch in launches():
        b, R = launch.block, launch.per_thread
        if accepted(functools.partial(tiled_plan, launch, dtype, K_TILE, b * R, 1, 1)):
            _, window, _ = tiled_plan(launch, dtype, K_TILE, b * R, 1, 1)
            out.append(Kernel(f"layer.tiled_kernel[B={b},R={R},window={window}]", dtype, (b,),
                              default=launch == DEFAULT_LAUNCH,
                              build=functools.partial(lambda b, R, window: (tiled_kernel(np.dtype(dtype), b, R, window),
                                                                            (a3, a3, a1, a3, *[int64] * 6, T)),
                                                      b, R, window)))
    return [*out, *transpose_kernels(dtype), *direct_kernels(dtype)]


DIRECT = Step.layer("direct", layer_direct, layer_backward_direct, kernels=direct_kernels)
TILED = Step.layer("tiled", layer_tiled, layer_backward_tiled, kernels=tiled_kernels)
STEPS = (DIRECT, TILED)
