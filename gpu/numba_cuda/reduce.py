"""Long reductions on the GPU: the weight gradient and the bias gradient.

    dw[i] = sum_{j<m} g[j] x[j+i]      (i < k; reversed when flip)
    db    = sum_{j<m} g[j]

Variants (registered by gpu/numba_cuda/backend.py under these names, never renumbered):

    naive   one thread per tap sums its m products from global memory (`weight_grad_naive_kernel`);
            one thread sums g (`total_naive`): k threads or one, however large m is
    tiled   the sum over j split across a grid of about TARGET_BLOCKS blocks (gpu/launch.py), g and x
            chunks staged in shared memory, several taps per thread in registers; the block partials
            go to a workspace and `sum_columns` adds them in a fixed order: the GPU is filled, and the
            result repeats to the bit
    atomic  tiled, but blocks add their partials into the output with `cuda.atomic.add`: one pass and
            no workspace, not deterministic

Each is a sum over m = n-k+1 terms, far more than there are outputs, so the tiled kernels split the
sum over j across blocks. By default they do it deterministically, in two stages (like Triton's
layer-norm backward): every block writes its partial sums to a workspace ``partial[split, i]``, then
`sum_columns` adds each column in a fixed order. With ``atomic=True`` the blocks add their partials
straight into the output with `cuda.atomic.add` instead: one pass and no workspace, but the order of
the additions, hence the rounding, changes from run to run.
"""

from __future__ import annotations

import functools

import numpy as np

from gpu.launch import BLOCKS, sum_blocks, weight_grad_splits
from gpu.launch import NumbaCudaLaunch as Launch
from gpu.numba_cuda.common import (
    DEFAULT_LAUNCH,
    accepted,
    check_block,
    check_shared,
    fill,
    launches,
    per_thread_for,
    scalar_type,
)
from gpu.numba_cuda.jit import boolean, cuda, int64, types
from gpu.steps import Kernel

#: g values staged per chunk by the tiled weight gradient.
TJ = 512
#: Threads along the taps in the tiled weight gradient (one warp).
WI = 32
#: Largest block the tiled weight gradient (up to 128 registers; half as many threads with per_thread
#: 8: up to 167) fits in the register file without spilling (plots/model/resources.py checks them all).
TILED_MAX_BLOCK = 512


@cuda.jit
def weight_grad_naive_kernel(x, g, dw, zero, flip):
    """One thread per tap i (grid-stride): dw[i] = sum_j g[j] x[j+i], stored at k-1-i when flip."""
    k, m = dw.shape[0], g.shape[0]
    for i in range(int64(cuda.grid(1)), k, cuda.gridsize(1)):
        acc = zero
        for j in range(m):
            acc += g[j] * x[j + i]
        dw[k - 1 - i if flip else i] = acc


@cuda.jit
def sum_columns_kernel(partial, out, zero):
    """One thread per column i (grid-stride): out[i] = sum_b partial[b, i], in order of b.

    Consecutive threads read consecutive columns of one row, so the loads coalesce.
    """
    for i in range(int64(cuda.grid(1)), out.shape[0], cuda.gridsize(1)):
        acc = zero
        for b in range(partial.shape[0]):
            acc += partial[b, i]
        out[i] = acc


@functools.cache
def weight_grad_tiled_kernel(dtype: np.dtype, block: int, per_thread: int, atomic: bool):
    """The split weight gradient for one dtype and launch shape (sizes are compile-time constants)."""
    B, R = block, per_thread
    WJ = B // WI  # warps, each taking every WJ-th j of a chunk
    TI = WI * R  # taps per tile: thread (lane, w) owns taps lane, lane+32, ..., lane+32(R-1)
    XW = TJ + TI - 1  # x window of one chunk: TJ values plus the TI-1 halo
    T = scalar_type(dtype)

    @cuda.jit
    def kernel(x, g, partial, zero, flip):
        """Block (tile, split) sums j over the chunks split, split+splits, ... of TJ values:

            gs[q] = g[j0+q],  xs[q] = x[j0+i0+q]     (staged per chunk, coalesced)
            acc[r] += gs[jj] * xs[jj + lane + 32r]   for tap i = i0+lane+32r, jj = w, w+WJ, ...

        A warp reads gs[jj] as a broadcast and xs at 32 consecutive words: no bank conflicts. The
        WJ warps' sums are then added in warp order through shared memory and stored at
        partial[split, i] (i reversed when flip), or atomically added to partial[0, i].
        """
        gs = cuda.shared.array(TJ, T)
        xs = cuda.shared.array(XW, T)
        red = cuda.shared.array((WJ, TI), T)
        acc = cuda.local.array(R, T)
        t = cuda.threadIdx.x
        lane, w = t % WI, t // WI
        n, m, k = x.shape[0], g.shape[0], partial.shape[1]
        split, splits = cuda.blockIdx.y, cuda.gridDim.y
        for tile in range(cuda.blockIdx.x, (k + TI - 1) // TI, cuda.gridDim.x):
            i0 = int64(tile) * TI
            for r in range(R):
                acc[r] = zero
            for chunk in range(split, (m + TJ - 1) // TJ, splits):
                j0 = int64(chunk) * TJ
                cuda.syncthreads()  # everyone is done reading the previous chunk
                for q in range(t, TJ, B):
                    gs[q] = g[j0 + q] if j0 + q < m else zero
                for q in range(t, XW, B):
                    xs[q] = x[j0 + i0 + q] if j0 + i0 + q < n else zero
                cuda.syncthreads()
                for jj in range(w, min(TJ, m - j0), WJ):
                    gj = gs[jj]
                    for r in range(R):
                        acc[r] += gj * xs[jj + lane + WI * r]
            cuda.syncthreads()
            for r in range(R):
                red[w, lane + WI * r] = acc[r]
            cuda.syncthreads()
            for q in range(t, TI, B):
                i = i0 + q
                if i < k:
                    v = red[0, q]
                    for ww in range(1, WJ):
                        v += red[ww, q]
                    col = k - 1 - i if flip else i
                    if atomic:
                        cuda.atomic.add(partial, (0, col), v)
                    else:
                        partial[split, col] = v

    return kernel


@functools.cache
def block_sums_kernel(dtype: np.dtype, block: int, atomic: bool):
    """Per-block sums of a vector for one dtype and block size."""
    B = block
    T = scalar_type(dtype)

    @cuda.jit
    def kernel(a, partial, zero):
        """partial[b, 0] = sum of a[j] over the j of block b: each thread adds its grid-stride
        elements in order, then a tree in shared memory adds the B thread sums (B a power of two);
        with atomic, added to partial[0, 0] instead."""
        buf = cuda.shared.array(B, T)
        t = cuda.threadIdx.x
        acc = zero
        for j in range(int64(cuda.grid(1)), a.shape[0], cuda.gridsize(1)):
            acc += a[j]
        buf[t] = acc
        s = B // 2
        while s > 0:
            cuda.syncthreads()
            if t < s:
                buf[t] += buf[t + s]
            s //= 2
        if t == 0:
            if atomic:
                cuda.atomic.add(partial, (0, 0), buf[0])
            else:
                partial[cuda.blockIdx.x, 0] = buf[0]

    return kernel


def _zero(a):
    return np.dtype(a.dtype).type(0)


def sum_columns(partial, out, launch: Launch):
    """out[i] = sum_b partial[b, i], one thread per column, in a fixed order."""
    sum_columns_kernel[launch.blocks(out.shape[0], launch.block), launch.block](partial, out, _zero(out))


def weight_grad_naive(x, g, dw, launch: Launch, flip=False):
    """dw[i] = sum_j g[j] x[j+i], one thread per tap."""
    grid = launch.blocks(dw.shape[0], launch.block)
    weight_grad_naive_kernel[grid, launch.block](x, g, dw, _zero(dw), flip)


def weight_grad_tiled_plan(launch: Launch, dtype, per_thread: int) -> None:
    """ValueError unless the tiled weight gradient takes this launch with `per_thread` taps per thread (at most
    launch.per_thread): its g and x chunks and warp partials in shared memory, its registers in the block."""
    check_shared(2 * TJ + (launch.block + WI) * per_thread, dtype, launch, "tiled weight gradient")
    check_block(launch, TILED_MAX_BLOCK if launch.per_thread <= 4 else TILED_MAX_BLOCK // 2,
                f"the tiled weight gradient with per_thread={launch.per_thread}")


def weight_grad_tiled(x, g, dw, launch: Launch, flip=False, atomic=False):
    """dw[i] = sum_j g[j] x[j+i]: split over j into blocks, then `sum_columns` (or atomics)."""
    k, m = dw.shape[0], g.shape[0]
    per_thread = per_thread_for(launch, -(-k // WI))  # no more tap accumulators than the taps need
    weight_grad_tiled_plan(launch, dw.dtype, per_thread)
    kernel = weight_grad_tiled_kernel(np.dtype(dw.dtype), launch.block, per_thread, atomic)
    tiles = launch.blocks(k, WI * per_thread)
    splits = weight_grad_splits(m, TJ, tiles, launch)
    if atomic:
        fill(dw, 0, launch)
    partial = dw.reshape(1, k) if atomic else cuda.device_array((splits, k), dw.dtype)
    kernel[(tiles, splits), launch.block](x, g, partial, _zero(dw), flip)
    if not atomic:
        sum_columns(partial, dw, launch)


def total_naive(g, out, launch: Launch):
    """out[0] = sum_j g[j] by a single thread (the one-thread-per-output baseline)."""
    sum_columns(g.reshape(g.shape[0], 1), out, launch)


def total_tiled(g, out, launch: Launch, atomic=False):
    """out[0] = sum_j g[j]: block sums, then `sum_columns` over them (or atomics)."""
    kernel = block_sums_kernel(np.dtype(out.dtype), launch.block, atomic)
    blocks = sum_blocks(g.shape[0], launch)
    if atomic:
        fill(out, 0, launch)
    partial = out.reshape(1, 1) if atomic else cuda.device_array((blocks, 1), out.dtype)
    kernel[blocks, launch.block](g, partial, _zero(out))
    if not atomic:
        sum_columns(partial, out, launch)


# --- what the steps compile ----------------------------------------------------------------------------------

def _arrays(dtype: str):
    T = getattr(types, dtype)
    return T, types.Array(T, 1, "C"), types.Array(T, 2, "C"), types.Array(T, 2, "A")


def sum_kernels(dtype: str) -> list[Kernel]:
    """sum_columns (dense and strided partials) at every block."""
    T, a1, a2, a2a = _arrays(dtype)
    return [Kernel(f"reduce.sum_columns_kernel[{part.layout}]", dtype, BLOCKS, default=part.layout == "C",
                   build=functools.partial(lambda part: (sum_columns_kernel, (part, a1, T)), part))
            for part in (a2, a2a)]


def naive_kernels(dtype: str) -> list[Kernel]:
    T, a1, _, _ = _arrays(dtype)
    return [Kernel("reduce.weight_grad_naive_kernel", dtype, BLOCKS, default=True,
                   build=lambda: (weight_grad_naive_kernel, (a1, a1, a1, T, boolean))), *sum_kernels(dtype)]


def tiled_kernels(atomic: bool):
    """dtype -> the tiled weight gradient and block sums at every launch their launchers accept."""
    def kernels(dtype: str) -> list[Kernel]:
        T, a1, a2, _ = _arrays(dtype)
        out = [Kernel(f"reduce.block_sums_kernel[B={b},atomic={int(atomic)}]", dtype, (b,),
                      default=b == DEFAULT_LAUNCH.block,
                      build=functools.partial(lambda b: (block_sums_kernel(np.dtype(dtype), b, atomic),
                                                         (a1, a2, T)), b))
               for b in BLOCKS]
        for launch in launches():
            b, R = launch.block, launch.per_thread
            if accepted(functools.partial(weight_grad_tiled_plan, launch, dtype, R)):
                out.append(Kernel(f"reduce.weight_grad_tiled_kernel[B={b},R={R},atomic={int(atomic)}]", dtype, (b,),
                                  default=launch == DEFAULT_LAUNCH,
                                  build=functools.partial(lambda b, R: (weight_grad_tiled_kernel(
                                      np.dtype(dtype), b, R, atomic), (a1, a1, a2, T, boolean)), b, R)))
        return out + sum_kernels(dtype)
    return kernels
