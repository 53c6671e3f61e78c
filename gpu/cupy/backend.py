"""The `cupy` backend: CUDA C kernels from gpu/cupy/correlate.cu, run by CuPy on a GPU or by gpu.emu on the CPU.

`gpu.cupy.module.load` returns a cupy.RawModule on a real GPU and the emulated module otherwise, so
the launch sites below are the same on both paths. Every 1-D op maps onto three engines (formulas in
gpu/cupy/correlate.cu): the correlation `correlate` (naive or tiled), the weight gradient and the total (bias
gradient), in the variants naive, tiled, atomic, the ladder steps of gpu/cupy/ladder.cu (regwin, vec,
wg_regwin) and `auto` (the default: vec and wg_regwin, or an FFT, gpu/auto.py); gpu/steps.py holds
that mapping and the variants' notes, shared with
gpu/numba_cuda/backend.py, and gpu/launch.py the launch options and the planning of the split sums. The CUDA C
tunables are defined in gpu/cupy/tunables.py and compiled in with -D.

The layer ops conv1d_layer and conv1d_layer_backward use the direct kernels of gpu/cupy/layer.cu
(variant `direct`; parameter gradients by chunk partials summed in a fixed order) and the implicit-GEMM
kernels of gpu/cupy/layer_gemm.cu (variant `gemm`, launched by gpu/cupy/layer_gemm.py).

Arrays: on a real GPU cupy.ndarray (NumPy inputs are copied in, results out); in emulation NumPy
arrays in host memory (the emulator's device memory). Scalars are passed with explicit NumPy dtypes:
np.int64 sizes, np.int32 flags, p.dtype.type values. Options: ``block`` (threads per block, a power
of two in [32, 1024], default 128) and ``max_blocks`` (grid cap), e.g.
``kernels.get("conv1d", "cupy", "tiled", block=32)``. Nothing is compiled or imported at import time:
the module is built on first use (functools.cache).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from gpu import auto
from gpu.cupy import ladder as cupy_ladder
from gpu.cupy import layer_gemm as cupy_layer_ladder
from gpu.cupy import tunables as tun
from gpu.cupy.module import ctype
from gpu.launch import CupyLaunch as Launch
from gpu.launch import param_chunks, sum_blocks, weight_grad_splits
from gpu.steps import NONE, Engines, register
from kernels.backend import Backend, HostArrays, Status

SOURCE = Path(__file__).with_name("correlate.cu")


def status() -> Status:
    """"real GPU" (CuPy), "emulated" (gpu.emu on the CPU) or "unavailable", with the reason."""
    from gpu.cupy import module as cuda_module

    kind, reason = cuda_module.mode()
    if kind == "real GPU":
        import cupy

        return Status("real GPU", f"{reason}, cupy {cupy.__version__}")
    if kind == "emulated":
        return Status("emulated", f"CUDA C on the CPU emulator gpu.emu ({reason})")
    return Status("unavailable", reason)


@functools.cache
def module():
    """The loaded correlate.cu (cupy.RawModule or gpu.emu.Module), built once."""
    from gpu.cupy import module as cuda_module

    return cuda_module.load(SOURCE, defines=tun.defines_for(SOURCE))


def kernel(name: str, dtype):
    return module().get_function(f"{name}<{ctype(dtype)}>")


def on_gpu() -> bool:
    from gpu.cupy import module as cuda_module

    return cuda_module.mode()[0] == "real GPU"


class CupyArrays:
    """cupy.ndarray on a real GPU (NumPy copied in and out)."""

    name = "cupy.ndarray"

    def owns(self, a) -> bool:
        import cupy

        return isinstance(a, cupy.ndarray)

    def prepare(self, a):
        import cupy

        return cupy.ascontiguousarray(cupy.asarray(a))

    def writable_in_place(self, a) -> bool:
        return self.owns(a) and a.flags.c_contiguous

    def empty(self, shape, dtype):
        import cupy

        return cupy.empty(shape, dtype)

    def fill_nan(self, a):
        a.fill(np.nan)

    def to_host(self, a) -> np.ndarray:
        return a.get()

    def copy_into(self, dst, src):
        if self.owns(dst):
            dst[...] = src
        else:
            dst[...] = src.get()


class Arrays:
    """CupyArrays on a real GPU, HostArrays in emulation: chosen on first use, not at import."""

    @functools.cached_property
    def _impl(self):
        return CupyArrays() if on_gpu() else HostArrays()

    @property
    def name(self):
        return self._impl.name

    def __getattr__(self, attr):
        return getattr(self._impl, attr)


backend = Backend("cupy", "CUDA C kernels (gpu/cupy/correlate.cu) through cupy.RawModule, or the CPU emulator "
                          "gpu.emu", status=status, arrays=Arrays(), options=Launch.of)


def _i64(v):
    return np.int64(v)


def _i32(v):
    return np.int32(v)


def _empty(shape, dtype):
    return backend.arrays.empty(shape, dtype)


def fill(a, value, launch: Launch):
    size = a.size
    kernel("fill", a.dtype)((launch.blocks(size, launch.block),), (launch.block,),
                            (a, _i64(size), a.dtype.type(value)))


# ------------------------------------------------------------------------------------------------
# Engines

def correlate(sig, f, out, launch: Launch, *, tiled=True, flip=False, offset=0, periodic=False, bias=None,
              epilogue=NONE, gate=None):
    """out[o] = epilogue(sum_i f'[i] s[o+i] + bias) (see gpu/cupy/correlate.cu)."""
    T = out.dtype.type
    M = out.shape[0]
    args = (sig, _i64(sig.shape[0]), _i64(offset), _i32(periodic), f, _i64(f.shape[0]), _i32(flip), out,
            _i64(M), T(0 if bias is None else bias), _i32(epilogue), out if gate is None else gate)
    if tiled:
        tile = launch.block * tun.CORR_PER_THREAD
        shared = tun.dynamic_shared("correlate_tiled", launch.block, out.dtype.itemsize)
        kernel("correlate_tiled", out.dtype)((launch.blocks(M, tile),), (launch.block,), args,
                                             shared_mem=shared)
    else:
        kernel("correlate_naive", out.dtype)((launch.blocks(M, launch.block),), (launch.block,), args)


def sum_columns(partial, rows, cols, out, launch: Launch, ld=None):
    """out[i] = sum_b partial[b * ld + i] (ld: row pitch, default cols), one thread per column, in a
    fixed order."""
    kernel("sum_columns", out.dtype)((launch.blocks(cols, launch.block),), (launch.block,),
                                     (partial, _i64(rows), _i64(cols), _i64(cols if ld is None else ld), out))


def weight_grad(x, g, dw, launch: Launch, *, tiled=True, flip=False, atomic=False):
    """dw[i] = sum_j g[j] x[j+i] (reversed when flip)."""
    n, m, k = x.shape[0], g.shape[0], dw.shape[0]
    if not tiled:
        grid = (launch.blocks(k, launch.block),)
        kernel("weight_grad_naive", dw.dtype)(grid, (launch.block,), (x, g, dw, _i64(k), _i64(m), _i32(flip)))
        return
    tiles = launch.blocks(k, tun.WG_TI)
    splits = weight_grad_splits(m, tun.WG_TJ, tiles, launch)
    shared = tun.dynamic_shared("weight_grad_tiled", launch.block, dw.dtype.itemsize)
    if atomic:
        fill(dw, 0, launch)
    partial = dw if atomic else _empty((splits * k,), dw.dtype)
    args = (x, g, partial, _i64(n), _i64(m), _i64(k), _i32(flip), _i32(atomic))
    kernel("weight_grad_tiled", dw.dtype)((tiles, splits), (launch.block,), args, shared_mem=shared)
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
    partial = out if atomic else _empty((blocks,), out.dtype)
    kernel("block_sums", out.dtype)((blocks,), (launch.block,), (g, _i64(m), partial, _i32(atomic)),
                                    shared_mem=tun.dynamic_shared("block_sums", launch.block, out.dtype.itemsize))
    if not atomic:
        sum_columns(partial, blocks, 1, out, launch)


# ------------------------------------------------------------------------------------------------
# Ops

def engines(tiled: bool, atomic: bool) -> Engines:
    return Engines(functools.partial(correlate, tiled=tiled),
                   functools.partial(weight_grad, tiled=tiled, atomic=atomic),
                   functools.partial(total, tiled=tiled, atomic=atomic), empty=_empty, launch_of=Launch.of)


register(backend, "naive", engines(tiled=False, atomic=False))
register(backend, "tiled", engines(tiled=True, atomic=False))
register(backend, "atomic", engines(tiled=True, atomic=True))


def ladder_engines(correlate) -> Engines:
    """A step of the CUDA C ladder (gpu/cupy/ladder.cu): its engines, with the tiled total for bias sums."""
    return Engines(correlate, cupy_ladder.weight_grad_regwin, functools.partial(total, tiled=True, atomic=False),
                   empty=_empty, launch_of=Launch.of)


register(backend, "regwin", ladder_engines(cupy_ladder.correlate_regwin))
register(backend, "vec", ladder_engines(cupy_ladder.correlate_vec))
register(backend, "wg_regwin", ladder_engines(cupy_ladder.correlate_regwin))
register(backend, "auto", auto.engines(ladder_engines(cupy_ladder.correlate_vec), "cupy"))


# ------------------------------------------------------------------------------------------------
# The conv1d layer (kernels/layer.py): direct kernels of gpu/cupy/layer.cu

LAYER_SOURCE = Path(__file__).with_name("layer.cu")


@functools.cache
def layer_module():
    """The loaded layer.cu, built once."""
    from gpu.cupy import module as cuda_module

    return cuda_module.load(LAYER_SOURCE, defines=tun.defines_for(LAYER_SOURCE))


def layer_kernel(name: str, dtype):
    return layer_module().get_function(f"{name}<{ctype(dtype)}>")


def _layer_sizes(p):
    return tuple(map(_i64, (p.N, p.C_in, p.L, p.C_out, p.K, p.L_out, p.stride, p.padding, p.dilation,
                            p.groups)))


@backend.impl("conv1d_layer", "direct", method="direct")
def layer_direct(p, x, w, b, y, **options):
    """one thread per output element (64-bit flat index, grid-stride), padded taps multiply zeros"""
    launch = Launch.of(options)
    if y.size == 0:
        return
    layer_kernel("layer_forward", p.dtype)((launch.blocks(y.size, launch.block),), (launch.block,),
                                           (x, w, b if b.size else y, y, *_layer_sizes(p), _i32(p.has_bias)))


@backend.impl("conv1d_layer_backward", "direct", method="direct")
def layer_backward_direct(p, x, w, g, dx, dw, db, **options):
    """dx by gather (one thread per element, no atomics); dw, db by chunk partials added in order"""
    import math

    launch = Launch.of(options)
    sizes = _layer_sizes(p)
    if dx.size:
        t_step = p.stride // math.gcd(p.stride, p.dilation)
        layer_kernel("layer_input_grad", p.dtype)((launch.blocks(dx.size, launch.block),), (launch.block,),
                                                  (w, g, dx, *sizes, _i64(t_step)))
    E_w = dw.size
    columns = E_w + db.shape[0]
    NL = p.N * p.L_out
    if columns == 0:
        return
    if NL == 0:
        fill(dw.reshape(E_w), 0, launch)
        if db.shape[0]:
            fill(db, 0, launch)
        return
    chunk, splits = param_chunks(NL, columns, launch)
    partial = _empty((splits * columns,), p.dtype)
    layer_kernel("layer_param_partials", p.dtype)(
        (launch.blocks(splits * columns, launch.block),), (launch.block,),
        (x, g, partial, *sizes, _i64(chunk), _i64(splits), _i64(columns)))
    sum_columns(partial, splits, E_w, dw.reshape(E_w), launch, ld=columns)
    if db.shape[0]:
        sum_columns(partial[E_w:], splits, db.shape[0], db, launch, ld=columns)


@backend.impl("conv1d_layer", "gemm", method="direct")
def layer_gemm(p, x, w, b, y, **options):
    """implicit GEMM per (n, group): register micro-tiles (8x8 float, 8x4 double), w and im2col(x) staged in shared"""
    cupy_layer_ladder.forward_gemm(p, x, w, b, y, Launch.of(options))


@backend.impl("conv1d_layer_backward", "gemm", method="direct")
def layer_backward_gemm(p, x, w, g, dx, dw, db, **options):
    """dx as a GEMM per stride residue class (no division in the loop); dw, db split-K partials added in order"""
    cupy_layer_ladder.backward_gemm(p, x, w, g, dx, dw, db, Launch.of(options))


@backend.impl("conv1d_layer", "auto", default=True, method="direct")
def layer_auto(p, x, w, b, y, **options):
    """gemm where each group's GEMM is wide enough and the gemm kernels take the launch, else direct"""
    use = auto.layer_uses_gemm(p) and cupy_layer_ladder.accepts(p, Launch.of(options))
    (layer_gemm if use else layer_direct)(p, x, w, b, y, **options)


@backend.impl("conv1d_layer_backward", "auto", default=True, method="direct")
def layer_backward_auto(p, x, w, g, dx, dw, db, **options):
    """gemm where each group's GEMM is wide enough and the gemm kernels take the launch, else direct"""
    use = auto.layer_uses_gemm(p) and cupy_layer_ladder.accepts(p, Launch.of(options))
    (layer_backward_gemm if use else layer_backward_direct)(p, x, w, g, dx, dw, db, **options)
