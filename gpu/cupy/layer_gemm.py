"""Launches of gpu/cupy/layer_gemm.cu, the conv1d layer's step gemm, on a real GPU through CuPy or on the CPU
emulator, as gpu.cupy.loader.load decides.

    forward_gemm(p, x, w, b, y, launch)              y = conv1d_layer(x, w, b): implicit GEMM per (n, group)
    backward_gemm(p, x, w, g, dx, dw, db, launch)    dx by residue classes, dw and db by split-K partials

`p` is a kernels.layer.LayerProblem, `launch` a gpu.launch.Launch (block, max_blocks); arrays are
cupy.ndarray on a GPU and NumPy arrays in emulation (the workspace of partials is allocated like dw).
Nothing is compiled at import: the module is built on first use.

BK reduction steps per staged chunk, TX threads along N and PAD elements of padding per shared row reach the
kernels as -D options (gpu/cupy/tunables.py); the micro-tile (TM, TN) per dtype and the launch bound BOUND
(the largest block accepted) as template arguments of the name expressions (NAMES). Block tile: BM = block /
TX * TM rows, BN = TX * TN columns.

The weight gradient's split of the N*L_out positions (`param_splits`) depends on the sizes and the block
only (not on max_blocks: a capped grid strides over the tiles), so repeated calls add in the same order.
Bad launches (a block past the bound, sizes past the kernels' 32-bit row positions: `check_sizes`) raise
ValueError naming the argument before any work.
"""

from __future__ import annotations

import math

import numpy as np

from gpu.cupy import loader, tunables
from gpu.cupy.arrays import empty
from gpu.cupy.layer import sizes
from gpu.launch import BLOCKS, SHARED_LIMIT, check_shared
from gpu.launch import CupyLaunch as Launch
from gpu.steps import Kernel, Step

SOURCE = tunables.FOLDER / "layer_gemm.cu"
#: Reduction steps per staged chunk, threads along N, padding elements per shared row (-D of gpu/cupy/tunables.py).
BK, TX, PAD = tunables.LAYER_BK, tunables.LAYER_TX, tunables.LAYER_PAD
#: dtype -> (TM, TN) outputs per thread, and the launch bound (largest accepted block) of every kernel.
TILE = {"float": (8, 8), "double": (8, 4)}
BOUND = 256
#: Blocks the weight gradient's splits aim at: about four resident blocks of 128 threads on each of 132 SMs.
WG_BLOCKS = 512
KERNELS = ("layer_gemm_forward", "layer_gemm_input_grad")
#: The weight gradient's orientations (template argument CO_ROWS): rows r and columns co (0), or the reverse (1).
ORIENTATIONS = (0, 1)

NAMES = (*(f"{k}<{t}, {tm}, {tn}, {BOUND}>" for k in KERNELS for t, (tm, tn) in TILE.items()),
         *(f"layer_gemm_param_partials<{t}, {tm}, {tn}, {o}, {BOUND}>" for t, (tm, tn) in TILE.items()
           for o in ORIENTATIONS),
         "layer_gemm_sum_splits<float>", "layer_gemm_sum_splits<double>")


MODULE = loader.Source(SOURCE, NAMES)


def tile_shape(dtype, block: int) -> tuple[int, int, int, int]:
    """(TM, TN, BM, BN): outputs per thread and the block tile at `block` threads."""
    TM, TN = TILE[loader.ctype(dtype)]
    return TM, TN, block // TX * TM, TX * TN


def shared_bytes(dtype, block: int) -> int:
    """Dynamic shared memory of every gemm kernel at `block`: As[BK][BM + PAD] and Bs[BK][BN + PAD] of T, then
    the index tables of 16-byte entries (at most 4*BK + max(BM, BN) of them: dw's two position tables of
    two chunks and its table of r)."""
    _, _, BM, BN = tile_shape(dtype, block)
    return np.dtype(dtype).itemsize * BK * (BM + BN + 2 * PAD) + 16 * (4 * BK + max(BM, BN))


#: Row positions and some in-tile offsets are 32-bit in the kernels (global indices are 64-bit): the sizes that
#: reach them stay below this.
INT_LIMIT = 1 << 30


def check_sizes(p, block: int) -> None:
    """ValueError naming the size when a row position or an in-tile offset of the kernels could pass 2^30:
    L + 2*padding + (BN + 1)*stride + K*dilation (positions in a row of x), C_in/groups * K * BM (w offsets of
    a forward tile), C_out/groups * K (the input gradient's reduction)."""
    _, _, BM, BN = tile_shape(p.dtype, block)
    span = p.L + 2 * p.padding + (BN + 1) * p.stride + p.K * p.dilation
    for name, value, what in (("x", span, "L + 2*padding + (BN + 1)*stride + K*dilation"),
                              ("w", p.C_in_g * p.K * BM, "C_in/groups * K * BM"),
                              ("w", p.C_out_g * p.K, "C_out/groups * K")):
        if value >= INT_LIMIT:
            raise ValueError(f"{name}: the gemm layer kernels index with 32-bit offsets, {what} = {value} must stay "
                             f"below 2**30 (use the direct variant)")


def accepts(p, launch) -> bool:
    """True when the gemm kernels take this layer at this launch (check_sizes and check_block pass)."""
    try:
        check_sizes(p, check_block(p.dtype, launch))
    except ValueError:
        return False
    return True


def check_block(dtype, launch) -> int:
    """The block size, after checking it against the launch bound and the shared-memory limit."""
    block = launch.block
    if block > BOUND:
        raise ValueError(f"block: the gemm layer kernels take at most {BOUND} threads, got {block}")
    check_shared(shared_bytes(dtype, block), f"the gemm layer kernels at {block} threads")
    return block


def kernel_name(name, dtype, orientation=None) -> str:
    """The name expression of kernel `name` for `dtype` (the weight gradient's partials: of `orientation`)."""
    t = loader.ctype(dtype)
    if name == "layer_gemm_sum_splits":
        return f"{name}<{t}>"
    TM, TN = TILE[t]
    more = "" if orientation is None else f"{orientation}, "
    return f"{name}<{t}, {TM}, {TN}, {more}{BOUND}>"


def _kernel(name, dtype, orientation=None):
    return MODULE.get(kernel_name(name, dtype, orientation))


def forward_tiles(p, block: int) -> int:
    """Block tiles of the forward: N * groups * ceil(C_out_g / BM) * ceil(L_out / BN)."""
    _, _, BM, BN = tile_shape(p.dtype, block)
    return p.N * p.groups * -(-p.C_out_g // BM) * -(-p.L_out // BN)


def forward_gemm(p, x, w, b, y, launch):
    """y[n, co, l] = b[co] + sum_{c, t} w[co, c, t] xpad[n, ci, l*stride + t*dilation] (gemm step)."""
    block = check_block(p.dtype, launch)
    check_sizes(p, block)
    if y.size == 0:
        return
    _kernel("layer_gemm_forward", p.dtype)(
        (launch.blocks(forward_tiles(p, block), 1),), (block,),
        (x, w, b if b.size else y, y, *sizes(p), np.int32(p.has_bias)), shared_mem=shared_bytes(p.dtype, block))


def input_grad_columns(p) -> int:
    """The most output positions of one residue class: max over rho of #{m : 0 <= rho - padding + stride*m < L}."""
    widest = 0
    for rho in range(min(p.stride, p.L + p.padding)):
        m_lo = -(-(p.padding - rho) // p.stride)
        m_hi = (p.L - 1 + p.padding - rho) // p.stride
        widest = max(widest, m_hi - max(m_lo, 0) + 1)
    return widest


def input_grad_tiles(p, block: int) -> tuple[int, int]:
    """(column tiles per class, block tiles): N * groups * stride * ceil(C_in_g / BM) * column tiles."""
    _, _, BM, BN = tile_shape(p.dtype, block)
    col_tiles = max(1, -(-input_grad_columns(p) // BN))
    return col_tiles, p.N * p.groups * p.stride * -(-p.C_in_g // BM) * col_tiles


def param_orientation(p, block: int) -> int:
    """CO_ROWS of the weight gradient: 1 (rows co, columns r) where its tiles compute fewer products than
    those of 0 (rows r = c*K + t, columns co), else 0."""
    _, _, BM, BN = tile_shape(p.dtype, block)
    R, C = p.C_in_g * p.K, p.C_out_g
    return int(-(-C // BM) * BM * -(-R // BN) * BN < -(-R // BM) * BM * -(-C // BN) * BN)


def param_splits(p, block: int, orientation=None) -> tuple[int, int, int]:
    """(chunk, splits, tiles) of the weight gradient: the N*L_out positions in `splits` chunks of `chunk`
    (a multiple of BK), enough for about WG_BLOCKS blocks over the (r x co x groups) tiles of each
    split; tiles = splits x those tiles (orientation: default param_orientation)."""
    _, _, BM, BN = tile_shape(p.dtype, block)
    if orientation is None:
        orientation = param_orientation(p, block)
    RW, CW = (BN, BM) if orientation else (BM, BN)
    per_split = p.groups * -(-p.C_in_g * p.K // RW) * -(-p.C_out_g // CW)
    positions = p.N * p.L_out
    steps = -(-positions // BK)
    splits = max(1, min(steps, -(-WG_BLOCKS // per_split)))
    chunk = max(1, -(-steps // splits)) * BK
    splits = -(-positions // chunk) if positions else 0
    return chunk, splits, splits * per_split


def backward_gemm(p, x, w, g, dx, dw, db, launch, orientation=None):
    """(dx, dw, db) of the layer (gemm step): dx by the residue classes of (j + padding) mod stride, dw and
    db by partials over fixed chunks of the positions, added in a fixed order (the same bits every run).
    `orientation` (0 or 1) overrides param_orientation (tests reach both)."""
    if orientation not in (None, *ORIENTATIONS):
        raise ValueError(f"orientation: expected one of {ORIENTATIONS} or None, got {orientation!r}")
    block = check_block(p.dtype, launch)
    check_sizes(p, block)
    shared = shared_bytes(p.dtype, block)
    layer_sizes = sizes(p)
    if dx.size:
        col_tiles, tiles = input_grad_tiles(p, block)
        t_step = p.stride // math.gcd(p.stride, p.dilation)
        _kernel("layer_gemm_input_grad", p.dtype)((launch.blocks(tiles, 1),), (block,),
                                                  (w, g, dx, *layer_sizes, np.int64(t_step), np.int64(col_tiles)),
                                                  shared_mem=shared)
    R = p.C_in_g * p.K
    cols = (R + (1 if db.shape[0] else 0)) * p.C_out
    if cols == 0:
        return
    if orientation is None:
        orientation = param_orientation(p, block)
    chunk, splits, tiles = param_splits(p, block, orientation)
    partial = empty((max(1, splits * cols),), dw.dtype)
    if splits:
        _kernel("layer_gemm_param_partials", p.dtype, orientation)(
            (launch.blocks(tiles, 1),), (block,),
            (x, g, partial, *layer_sizes, np.int64(chunk), np.int64(splits), np.int64(cols), np.int32(db.shape[0] > 0)),
            shared_mem=shared)
    _kernel("layer_gemm_sum_splits", p.dtype)(
        (launch.blocks(cols, block),), (block,),
        (partial, np.int64(splits), np.int64(R), np.int64(p.C_out), np.int64(cols), np.int32(orientation),
         dw.reshape(dw.size),
         db if db.shape[0] else dw.reshape(dw.size)))


# --- the step -----------------------------------------------------------------------------------------------

def forward(p, x, w, b, y, **options):
    """implicit GEMM per (n, group): register micro-tiles (8x8 float, 8x4 double), w and im2col(x) staged in shared"""
    forward_gemm(p, x, w, b, y, Launch.of(options))


def backward(p, x, w, g, dx, dw, db, **options):
    """dx as a GEMM per stride residue class (no division in the loop); dw, db split-K partials added in order"""
    backward_gemm(p, x, w, g, dx, dw, db, Launch.of(options))


def kernels(dtype: str):
    """Every gemm kernel of `dtype`, at the blocks up to BOUND whose shared memory fits."""
    blocks = tuple(b for b in BLOCKS if b <= BOUND and shared_bytes(dtype, b) <= SHARED_LIMIT)
    shared = {b: shared_bytes(dtype, b) for b in blocks}
    t = loader.ctype(dtype)
    names = [n for n in NAMES if n.split("<")[1].startswith(t)]
    return [Kernel(n, dtype, blocks, {} if "sum_splits" in n else shared, default=True, source=SOURCE.name)
            for n in names]


GEMM = Step.layer("gemm", forward, backward, kernels=kernels)
STEPS = (GEMM,)
