"""Sliding dot products on the GPU: every 1-D op of the playground except the weight and bias sums.

Variants (registered by gpu/numba_cuda/backend.py under these names, never renumbered):

    naive   `naive_kernel`: one thread per output, f and sig read from global memory: k loads per
            output, neighbouring threads share their reads only through the cache
    tiled   `tiled_kernel`: a block stages its tile of TILE = block*per_thread outputs plus the halo, and
            the filter in chunks of TILE taps, in shared memory once; each thread keeps per_thread outputs
            in registers. Global loads fall from k per output to ~2 per (output, chunk), and the inner
            loop reads shared memory without bank conflicts (filter broadcasts, consecutive signal words)
    atomic  the correlations of tiled (only the reductions differ: gpu/numba_cuda/reduce.py)

One engine computes

    out[o] = epilogue(sum_{i<L} f'[i] s[o+i] + bias)        for o < M = len(out)

with the filter f' read forwards or backwards and the signal s read at an offset, zero-padded or
periodic:

    f'[i] = f[L-1-i] if flip else f[i]
    s[t]  = sig[t + offset]   (0 outside sig)       or   sig[(t + offset) mod N]   (periodic)

That covers every 1-D op: the table is in gpu/steps.py (shared with the cupy backend).

Terms that fall on the zero padding are skipped, not multiplied by zero, so an Inf in the filter gives
the reference's result (Inf * 0 would be NaN) at the edges of the input gradient.
"""

from __future__ import annotations

import functools

import numpy as np

from gpu.launch import BLOCKS, weight_grad_splits
from gpu.launch import NumbaCudaLaunch as Launch
from gpu.numba_cuda import common, reduce
from gpu.numba_cuda.common import DEFAULT_LAUNCH, accepted, check_block, check_shared, launches, scalar_type
from gpu.numba_cuda.jit import boolean, cuda, int64, types
from gpu.steps import GATE, NONE, NOTES, RELU, Engines, Kernel, Step, correlation_impls

#: Largest block the tiled kernel (up to 124 registers) fits in the register file without spilling
#: (plots/model/resources.py checks every accepted launch).
TILED_MAX_BLOCK = 512


@cuda.jit(device=True)
def finish(v, o, zero, epilogue, gate):
    """The epilogue applied to v = acc + bias of output o."""
    if epilogue == RELU:
        return zero if v <= zero else v  # max(0, v); NaN stays NaN, as with np.maximum
    if epilogue == GATE:
        return gate[o] if v > zero else zero  # g where the ReLU passed its input
    return v


@cuda.jit
def naive_kernel(sig, offset, periodic, f, flip, out, zero, bias, epilogue, gate):
    """One thread per output o (grid-stride): out[o] = epilogue(sum_i f'[i] s[o+i] + bias).

    Every operand comes straight from global memory; neighbouring threads share most of their reads
    only through the cache.
    """
    N, L = sig.shape[0], f.shape[0]
    for o in range(int64(cuda.grid(1)), out.shape[0], cuda.gridsize(1)):
        acc = zero
        if periodic:
            p = (o + offset) % N  # s[o+i] = sig[p], p wraps at N
            for i in range(L):
                acc += (f[L - 1 - i] if flip else f[i]) * sig[p]
                p = p + 1 if p + 1 < N else 0
        else:
            # only taps with 0 <= o+i+offset < N: the padding is skipped
            for i in range(max(0, -offset - o), min(L, N - offset - o)):
                acc += (f[L - 1 - i] if flip else f[i]) * sig[o + i + offset]
        out[o] = finish(acc + bias, o, zero, epilogue, gate)


@functools.cache
def tiled_kernel(dtype: np.dtype, block: int, per_thread: int):
    """The tiled engine for one dtype and launch shape (sizes are compile-time constants)."""
    B, R = block, per_thread
    TILE = B * R  # outputs per block tile; thread t owns outputs t, t+B, ..., t+(R-1)B of it
    KT = TILE  # filter taps staged per chunk
    WIN = TILE + KT - 1  # signal window a chunk needs: the tile plus the KT-1 halo
    T = scalar_type(dtype)

    @cuda.jit
    def kernel(sig, offset, periodic, f, flip, out, zero, bias, epilogue, gate):
        """Block tile of TILE outputs; the filter in chunks of KT taps, each with its signal window
        staged in shared memory:

            fs[c] = f'[c0+c]            (c < KT)
            ss[q] = s[o0+c0+q]          (q < WIN = TILE+KT-1: the tile plus the halo)
            acc[r] += fs[c] * ss[t+rB+c]  for output o = o0+t+rB (R accumulators in registers)

        Loads are coalesced (consecutive threads, consecutive addresses); in the inner loop a warp
        reads fs[c] as a broadcast and ss at 32 consecutive words, so no bank conflicts.
        """
        fs = cuda.shared.array(KT, T)
        ss = cuda.shared.array(WIN, T)
        acc = cuda.local.array(R, T)
        t = cuda.threadIdx.x
        N, L, M = sig.shape[0], f.shape[0], out.shape[0]
        lo, hi = -offset, N - offset  # non-periodic: s[q] is sig data for lo <= q < hi, else padding
        for tile in range(cuda.blockIdx.x, (M + TILE - 1) // TILE, cuda.gridDim.x):
            o0 = int64(tile) * TILE
            for r in range(R):
                acc[r] = zero
            for c0 in range(0, L, KT):
                cuda.syncthreads()  # everyone is done reading the previous chunk
                for c in range(t, KT, B):
                    i = c0 + c
                    fs[c] = zero if i >= L else (f[L - 1 - i] if flip else f[i])
                for q in range(t, WIN, B):
                    pos = o0 + c0 + q
                    if periodic:
                        ss[q] = sig[(pos + offset) % N]
                    else:
                        ss[q] = sig[pos + offset] if lo <= pos < hi else zero
                cuda.syncthreads()
                count = min(KT, L - c0)
                last = min(o0 + TILE, M) - 1 + c0 + count - 1  # furthest signal position used
                if periodic or (o0 + c0 >= lo and last < hi):
                    for c in range(count):  # interior chunk: every term is a real one
                        wc = fs[c]
                        for r in range(R):
                            acc[r] += wc * ss[t + r * B + c]
                else:
                    for r in range(R):  # chunk touching the padding: only the taps on sig data
                        o = o0 + t + r * B
                        for c in range(max(0, lo - o - c0), min(count, hi - o - c0)):
                            acc[r] += fs[c] * ss[t + r * B + c]
            for r in range(R):
                o = o0 + t + r * B
                if o < M:
                    out[o] = finish(acc[r] + bias, o, zero, epilogue, gate)

    return kernel


def _arguments(sig, f, out, flip, offset, periodic, bias, epilogue, gate):
    T = np.dtype(out.dtype).type
    return (sig, int(offset), bool(periodic), f, bool(flip), out, T(0), T(0 if bias is None else bias),
            epilogue, out if gate is None else gate)


def naive(sig, f, out, launch: Launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=NONE,
          gate=None):
    """out[o] = epilogue(sum_i f'[i] s[o+i] + bias), one thread per output (see the module docstring)."""
    args = _arguments(sig, f, out, flip, offset, periodic, bias, epilogue, gate)
    naive_kernel[launch.blocks(out.shape[0], launch.block), launch.block](*args)


def tiled_plan(launch: Launch, dtype) -> int:
    """The tile (block * per_thread outputs) of the tiled engine, after the checks (ValueError naming `block`):
    the filter chunk and the tile with its halo (3 * tile - 1 values) in shared memory, the registers."""
    tile = launch.block * launch.per_thread
    check_shared(3 * tile - 1, dtype, launch, "tiled correlation")
    check_block(launch, TILED_MAX_BLOCK, "the tiled correlation")
    return tile


def tiled(sig, f, out, launch: Launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=NONE,
          gate=None):
    """The same as `naive`, by block tiles staged in shared memory."""
    tile = tiled_plan(launch, out.dtype)
    kernel = tiled_kernel(np.dtype(out.dtype), launch.block, launch.per_thread)
    args = _arguments(sig, f, out, flip, offset, periodic, bias, epilogue, gate)
    kernel[launch.blocks(out.shape[0], tile), launch.block](*args)


# --- the steps naive, tiled and atomic ---------------------------------------------------------------------

def _corr_types(dtype: str) -> tuple:
    T = getattr(types, dtype)
    a1 = types.Array(T, 1, "C")
    return (a1, int64, boolean, a1, boolean, a1, T, T, int64, a1)


def naive_kernels(dtype: str) -> list[Kernel]:
    return [Kernel("correlate.naive_kernel", dtype, BLOCKS, default=True,
                   build=lambda: (naive_kernel, _corr_types(dtype))), *reduce.naive_kernels(dtype),
            *common.kernels(dtype)]


def tiled_kernels(dtype: str) -> list[Kernel]:
    """The tiled engine at every launch `tiled_plan` accepts, and the tiled reductions."""
    out = []
    for launch in launches():
        if accepted(functools.partial(tiled_plan, launch, dtype)):
            b, R = launch.block, launch.per_thread
            out.append(Kernel(f"correlate.tiled_kernel[B={b},R={R}]", dtype, (b,), default=launch == DEFAULT_LAUNCH,
                              build=functools.partial(lambda b, R: (tiled_kernel(np.dtype(dtype), b, R),
                                                                    _corr_types(dtype)), b, R)))
    return [*out, *reduce.tiled_kernels(atomic=False)(dtype), *common.kernels(dtype)]


def shape(tiled: bool):
    """(op, n, k, dtype) -> blocks, executed FMAs and the longest dependent-FMA chain per thread of the default
    launch of conv1d and the weight gradient."""
    def of(op: str, n: int, k: int, dtype: str) -> dict:
        launch, m = DEFAULT_LAUNCH, n - k + 1
        if op == "conv1d":
            tile = launch.block * (launch.per_thread if tiled else 1)
            return {"blocks": launch.blocks(m, tile), "fmas": k * m, "chain": k}
        if not tiled:  # one thread per tap sums m products
            return {"blocks": launch.blocks(k, launch.block), "fmas": k * m, "chain": m}
        ti = reduce.WI * common.per_thread_for(launch, -(-k // reduce.WI))
        tiles = -(-k // ti)
        splits = weight_grad_splits(m, reduce.TJ, tiles, launch)
        return {"blocks": tiles * splits, "fmas": tiles * ti * m, "chain": -(-m // (splits * (launch.block // 32)))}
    return of


def engines(correlate, weight_grad, total) -> Engines:
    return Engines(correlate, weight_grad, total, empty=cuda.device_array, launch_of=Launch.of)


NAIVE_ENGINES = engines(naive, reduce.weight_grad_naive, reduce.total_naive)
TILED_ENGINES = engines(tiled, reduce.weight_grad_tiled, reduce.total_tiled)
ATOMIC_ENGINES = engines(tiled, functools.partial(reduce.weight_grad_tiled, atomic=True),
                         functools.partial(reduce.total_tiled, atomic=True))
R0 = DEFAULT_LAUNCH.per_thread
B0 = DEFAULT_LAUNCH.block
NAIVE = Step("naive", correlation_impls(NAIVE_ENGINES), NOTES["naive"], kernels=naive_kernels,
             hot={"conv1d": lambda d, k: "correlate.naive_kernel",
                  "conv1d_weight_grad": lambda d, k: "reduce.weight_grad_naive_kernel"},
             shape=shape(tiled=False), engines=NAIVE_ENGINES)
TILED = Step("tiled", correlation_impls(TILED_ENGINES), NOTES["tiled"], kernels=tiled_kernels,
             hot={"conv1d": lambda d, k: f"correlate.tiled_kernel[B={B0},R={R0}]",
                  "conv1d_weight_grad": lambda d, k: f"reduce.weight_grad_tiled_kernel[B={B0},R={R0},atomic=0]"},
             shape=shape(tiled=True), engines=TILED_ENGINES)
ATOMIC = Step("atomic", correlation_impls(ATOMIC_ENGINES, ("conv1d_weight_grad", "conv1d_bias_grad")),
              NOTES["atomic"], kernels=lambda d: [*reduce.tiled_kernels(atomic=True)(d), *common.kernels(d)],
              hot={"conv1d_weight_grad": lambda d, k: f"reduce.weight_grad_tiled_kernel[B={B0},R={R0},atomic=1]"},
              shape=shape(tiled=True), engines=ATOMIC_ENGINES)
STEPS = (NAIVE, TILED, ATOMIC)
