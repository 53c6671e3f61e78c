"""Launches of gpu/cupy/correlate.cu, and its steps naive, tiled and atomic (formulas in the .cu file).

    naive    one thread per output (correlate_naive), per tap (weight_grad_naive), one thread for a total
    tiled    block tile + halo and filter chunks in shared memory, CORR_PER_THREAD outputs per thread
             (correlate_tiled); the weight gradient split over j into blocks of WG_TI taps x WG_TJ values
             (weight_grad_tiled), block sums (block_sums), partials added in a fixed order (sum_columns)
    atomic   the reductions of tiled, block partials added atomically: one pass, not deterministic

Engines (gpu.steps.Engines): `correlate`, `weight_grad`, `total`; `fill` and `sum_columns` serve the other
launchers too. Scalars go in with explicit NumPy dtypes (np.int64 sizes, np.int32 flags, the element
type's values). Every kernel strides over the work beyond its grid.
"""

from __future__ import annotations

import functools

import numpy as np

from gpu.cupy import loader, tunables
from gpu.cupy.arrays import empty
from gpu.launch import BLOCKS, sum_blocks, weight_grad_splits
from gpu.launch import CupyLaunch as Launch
from gpu.steps import NONE, NOTES, Engines, Kernel, Step, correlation_impls

SOURCE = tunables.FOLDER / "correlate.cu"
ENTRIES = ("correlate_naive", "correlate_tiled", "weight_grad_naive", "weight_grad_tiled", "block_sums",
           "sum_columns", "fill")
NAMES = tuple(f"{entry}<{t}>" for entry in ENTRIES for t in ("float", "double"))


MODULE = loader.Source(SOURCE, NAMES)


def kernel(name: str, dtype):
    return MODULE.kernel(name, dtype)


def shared_bytes(entry: str, block: int, size: int) -> int:
    """Dynamic shared memory a launch of `entry` asks for at `block` threads (`size`: bytes per element)."""
    if entry == "correlate_tiled":  # the filter chunk and the x tile with its halo
        return (2 * tunables.CORR_TAPS + block * tunables.CORR_PER_THREAD - 1) * size
    if entry == "weight_grad_tiled":  # g and x chunks, and the per-warp tap partials
        return (2 * tunables.WG_TJ + tunables.WG_TI - 1 + (block // tunables.WG_WI) * tunables.WG_TI) * size
    if entry == "block_sums":
        return block * size
    return 0


def _i64(v):
    return np.int64(v)


def _i32(v):
    return np.int32(v)


def fill(a, value, launch: Launch):
    """a[i] = value for every i."""
    size = a.size
    kernel("fill", a.dtype)((launch.blocks(size, launch.block),), (launch.block,), (a, _i64(size), a.dtype.type(value)))


def sum_columns(partial, rows, cols, out, launch: Launch, ld=None):
    """out[i] = sum_b partial[b * ld + i] (ld: row pitch, default cols), one thread per column, in a fixed order."""
    kernel("sum_columns", out.dtype)((launch.blocks(cols, launch.block),), (launch.block,),
                                     (partial, _i64(rows), _i64(cols), _i64(cols if ld is None else ld), out))


# --- engines --------------------------------------------------------------------------------------------------

def correlate(sig, f, out, launch: Launch, *, tiled=True, flip=False, offset=0, periodic=False, bias=None,
              epilogue=NONE, gate=None):
    """out[o] = epilogue(sum_i f'[i] s[o+i] + bias)."""
    T = out.dtype.type
    M = out.shape[0]
    args = (sig, _i64(sig.shape[0]), _i64(offset), _i32(periodic), f, _i64(f.shape[0]), _i32(flip), out,
            _i64(M), T(0 if bias is None else bias), _i32(epilogue), out if gate is None else gate)
    if tiled:
        tile = launch.block * tunables.CORR_PER_THREAD
        shared = shared_bytes("correlate_tiled", launch.block, out.dtype.itemsize)
        kernel("correlate_tiled", out.dtype)((launch.blocks(M, tile),), (launch.block,), args, shared_mem=shared)
    else:
        kernel("correlate_naive", out.dtype)((launch.blocks(M, launch.block),), (launch.block,), args)


def weight_grad(x, g, dw, launch: Launch, *, tiled=True, flip=False, atomic=False):
    """dw[i] = sum_j g[j] x[j+i] (reversed when flip)."""
    n, m, k = x.shape[0], g.shape[0], dw.shape[0]
    if not tiled:
        kernel("weight_grad_naive", dw.dtype)((launch.blocks(k, launch.block),), (launch.block,),
                                              (x, g, dw, _i64(k), _i64(m), _i32(flip)))
        return
    tiles = launch.blocks(k, tunables.WG_TI)
    splits = weight_grad_splits(m, tunables.WG_TJ, tiles, launch)
    if atomic:
        fill(dw, 0, launch)
    partial = dw if atomic else empty((splits * k,), dw.dtype)
    kernel("weight_grad_tiled", dw.dtype)((tiles, splits), (launch.block,),
                                          (x, g, partial, _i64(n), _i64(m), _i64(k), _i32(flip), _i32(atomic)),
                                          shared_mem=shared_bytes("weight_grad_tiled", launch.block, dw.dtype.itemsize))
    if not atomic:
        sum_columns(partial, splits, k, dw, launch)


def total(g, out, launch: Launch, *, tiled=True, atomic=False):
    """out[0] = sum_j g[j]."""
    m = g.shape[0]
    if not tiled:  # one thread sums everything: g as a column of m rows
        sum_columns(g, m, 1, out, launch)
        return
    blocks = sum_blocks(m, launch)
    if atomic:
        fill(out, 0, launch)
    partial = out if atomic else empty((blocks,), out.dtype)
    kernel("block_sums", out.dtype)((blocks,), (launch.block,), (g, _i64(m), partial, _i32(atomic)),
                                    shared_mem=shared_bytes("block_sums", launch.block, out.dtype.itemsize))
    if not atomic:
        sum_columns(partial, blocks, 1, out, launch)


def engines(tiled: bool, atomic: bool = False) -> Engines:
    return Engines(functools.partial(correlate, tiled=tiled),
                   functools.partial(weight_grad, tiled=tiled, atomic=atomic),
                   functools.partial(total, tiled=tiled, atomic=atomic), empty=empty, launch_of=Launch.of)


# --- what the steps compile, and the shape of their default launch ---------------------------------------------

def kernels_of(*entries):
    """dtype -> the Kernels of `entries` (launched at every block size, with the shared memory they ask for)."""
    def kernels(dtype: str):
        t, size = ("float", 4) if dtype == "float32" else ("double", 8)
        return [Kernel(f"{e}<{t}>", dtype, BLOCKS, {b: shared_bytes(e, b, size) for b in BLOCKS},
                       default=True, source=SOURCE.name) for e in entries]
    return kernels


def shape(tiled: bool):
    """(op, n, k, dtype) -> blocks, executed FMAs and the longest dependent-FMA chain per thread of the
    default launch of conv1d (correlate_*) and the weight gradient (weight_grad_*)."""
    def of(op: str, n: int, k: int, dtype: str) -> dict:
        launch, m = Launch(), n - k + 1
        if op == "conv1d":
            tile = launch.block * (tunables.CORR_PER_THREAD if tiled else 1)
            return {"blocks": launch.blocks(m, tile), "fmas": k * m, "chain": k}
        if not tiled:  # one thread per tap sums m products
            return {"blocks": launch.blocks(k, launch.block), "fmas": k * m, "chain": m}
        tiles = -(-k // tunables.WG_TI)
        splits = weight_grad_splits(m, tunables.WG_TJ, tiles, launch)
        return {"blocks": tiles * splits, "fmas": tiles * tunables.WG_TI * m,
                "chain": -(-m // (splits * (launch.block // 32)))}
    return of


def _hot(entry: str):
    return lambda dtype, k: f"{entry}<{'float' if dtype == 'float32' else 'double'}>"


NAIVE = Step("naive", correlation_impls(engines(tiled=False)), NOTES["naive"],
             kernels=kernels_of("correlate_naive", "weight_grad_naive", "sum_columns"),
             hot={"conv1d": _hot("correlate_naive"), "conv1d_weight_grad": _hot("weight_grad_naive")},
             shape=shape(tiled=False), engines=engines(tiled=False))
TILED = Step("tiled", correlation_impls(engines(tiled=True)), NOTES["tiled"],
             kernels=kernels_of("correlate_tiled", "weight_grad_tiled", "block_sums", "sum_columns", "fill"),
             hot={"conv1d": _hot("correlate_tiled"), "conv1d_weight_grad": _hot("weight_grad_tiled")},
             shape=shape(tiled=True), engines=engines(tiled=True))
ATOMIC = Step("atomic", correlation_impls(engines(tiled=True, atomic=True), ("conv1d_weight_grad", "conv1d_bias_grad")),
              NOTES["atomic"], kernels=kernels_of("weight_grad_tiled", "block_sums", "fill"),
              hot={"conv1d_weight_grad": _hot("weight_grad_tiled")}, shape=shape(tiled=True))
STEPS = (NAIVE, TILED, ATOMIC)
