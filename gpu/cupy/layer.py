"""Launches of gpu/cupy/layer.cu, the conv1d layer's step direct (math: kernels/layer.py):

    direct   one thread per output element (64-bit flat index, grid-stride), padded taps multiply zeros; dx by
             gather (no atomics); dw and db as chunk partials (gpu.launch.param_chunks) added in a fixed order
             by correlate.cu's sum_columns (deterministic)
"""

from __future__ import annotations

import math

import numpy as np

from gpu.cupy import correlate, loader, tunables
from gpu.cupy.arrays import empty
from gpu.launch import BLOCKS, param_chunks
from gpu.launch import CupyLaunch as Launch
from gpu.steps import Kernel, Step

SOURCE = tunables.FOLDER / "layer.cu"
ENTRIES = ("layer_forward", "layer_input_grad", "layer_param_partials")
NAMES = tuple(f"{entry}<{t}>" for entry in ENTRIES for t in ("float", "double"))


MODULE = loader.Source(SOURCE, NAMES)


def kernel(name: str, dtype):
    return MODULE.kernel(name, dtype)


def sizes(p):
    """The layer's sizes and settings as the kernels take them (int64)."""
    return tuple(map(np.int64, (p.N, p.C_in, p.L, p.C_out, p.K, p.L_out, p.stride, p.padding, p.dilation,
                                p.groups)))


def forward(p, x, w, b, y, **options):
    """one thread per output element (64-bit flat index, grid-stride), padded taps multiply zeros"""
    launch = Launch.of(options)
    if y.size == 0:
        return
    kernel("layer_forward", p.dtype)((launch.blocks(y.size, launch.block),), (launch.block,),
                                     (x, w, b if b.size else y, y, *sizes(p), np.int32(p.has_bias)))


def backward(p, x, w, g, dx, dw, db, **options):
    """dx by gather (one thread per element, no atomics); dw, db by chunk partials added in order"""
    launch = Launch.of(options)
    if dx.size:
        t_step = p.stride // math.gcd(p.stride, p.dilation)
        kernel("layer_input_grad", p.dtype)((launch.blocks(dx.size, launch.block),), (launch.block,),
                                            (w, g, dx, *sizes(p), np.int64(t_step)))
    E_w = dw.size
    columns = E_w + db.shape[0]
    NL = p.N * p.L_out
    if columns == 0:
        return
    if NL == 0:
        correlate.fill(dw.reshape(E_w), 0, launch)
        if db.shape[0]:
            correlate.fill(db, 0, launch)
        return
    chunk, splits = param_chunks(NL, columns, launch)
    partial = empty((splits * columns,), p.dtype)
    kernel("layer_param_partials", p.dtype)((launch.blocks(splits * columns, launch.block),), (launch.block,),
                                            (x, g, partial, *sizes(p), np.int64(chunk), np.int64(splits),
                                             np.int64(columns)))
    correlate.sum_columns(partial, splits, E_w, dw.reshape(E_w), launch, ld=columns)
    if db.shape[0]:
        correlate.sum_columns(partial[E_w:], splits, db.shape[0], db, launch, ld=columns)


def kernels(dtype: str):
    t = "float" if dtype == "float32" else "double"
    return [*(Kernel(f"{e}<{t}>", dtype, BLOCKS, default=True, source=SOURCE.name) for e in ENTRIES),
            *correlate.kernels_of("sum_columns", "fill")(dtype)]


DIRECT = Step.layer("direct", forward, backward, kernels=kernels)
STEPS = (DIRECT,)
