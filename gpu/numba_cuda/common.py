"""What the numba.cuda kernel modules share: their launch checks and the small utility kernels.

A launch (`gpu.launch.NumbaCudaLaunch`: block size, outputs per thread, grid cap) is parsed once per call
from the options given to `kernels.get(op, "numba_cuda", variant, **options)`, e.g. ``block=32`` in the
simulator tests. Kernels whose shared-memory sizes depend on it are built by cached factories, one per
(dtype, block, per_thread): numba needs the sizes and the dtype of `cuda.shared.array` as compile-time
constants.

Indexing: every index that can exceed 2**31 is an int64 (`int64(...)` before a multiplication), and every
kernel strides over the work beyond its grid, so any n fits in a grid of `max_blocks` blocks.
"""

from __future__ import annotations

import functools

import numpy as np

from gpu import launch as plan
from gpu.launch import NumbaCudaLaunch as Launch
from gpu.numba_cuda.jit import cuda, from_dtype, int64, types
from gpu.steps import Kernel

#: The launch of the utility kernels when the caller gives none.
DEFAULT_LAUNCH = Launch()


def launches():
    """Every launch the options accept (block x per_thread; max_blocks does not change what is compiled)."""
    return [Launch(block=b, per_thread=r) for b in plan.BLOCKS for r in Launch.PER_THREAD]


def per_thread_for(launch: Launch, needed: int) -> int:
    """launch.per_thread, cut down to the smallest of Launch.PER_THREAD that covers `needed` items per
    thread (so only the compiled and resource-checked values are ever built)."""
    return min(launch.per_thread, next((p for p in Launch.PER_THREAD if p >= needed), Launch.PER_THREAD[-1]))


def check_block(launch: Launch, most: int, kernel: str):
    """ValueError when the launch's block exceeds `most`, the largest block `kernel` is built for."""
    plan.check_block(launch.block, most, kernel)


def check_shared(elements: int, dtype, launch: Launch, kernel: str):
    """ValueError when `elements` of `dtype` exceed the shared memory of a block (gpu.launch.SHARED_LIMIT)."""
    plan.check_shared(elements * np.dtype(dtype).itemsize,
                      f"{kernel} at block={launch.block}, per_thread={launch.per_thread} in {np.dtype(dtype)}")


def accepted(check) -> bool:
    """True when `check()` raises no ValueError: a launch its launcher takes."""
    try:
        check()
    except ValueError:
        return False
    return True


def scalar_type(dtype):
    """The numba type of a NumPy float dtype (for shared/local arrays in a kernel factory)."""
    return from_dtype(np.dtype(dtype))


@cuda.jit
def fill_kernel(a, value):
    """a[i] = value for every i (grid-stride)."""
    for i in range(int64(cuda.grid(1)), a.shape[0], cuda.gridsize(1)):
        a[i] = value


@cuda.jit
def copy_kernel(src, dst):
    """dst[i] = src[i] for every i; either may be strided (grid-stride)."""
    for i in range(int64(cuda.grid(1)), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


def fitted_block(launch: Launch, items: int) -> int:
    """launch.block, cut to the smallest block of gpu.launch.BLOCKS that covers `items` (a warp at least): an
    idle thread costs a GPU nothing, but under numba's simulator each thread is a Python thread."""
    return min(launch.block, next(b for b in plan.BLOCKS if b >= min(items, plan.BLOCKS[-1])))


def fill(a, value, launch: Launch = DEFAULT_LAUNCH):
    block = fitted_block(launch, a.shape[0])
    fill_kernel[launch.blocks(a.shape[0], block), block](a, a.dtype.type(value))


def copy(src, dst, launch: Launch = DEFAULT_LAUNCH):
    """dst[...] = src on the device; either may be strided (N-D: numba's own strided assignment)."""
    if dst.ndim != 1:
        dst[...] = src
        return
    block = fitted_block(launch, dst.shape[0])
    copy_kernel[launch.blocks(dst.shape[0], block), block](src, dst)


def kernels(dtype: str) -> list[Kernel]:
    """The utility kernels at every block: fill, and copy between dense and strided arrays."""
    T = getattr(types, dtype)
    dense, strided = types.Array(T, 1, "C"), types.Array(T, 1, "A")
    out = [Kernel("common.fill_kernel", dtype, plan.BLOCKS, default=True, build=lambda: (fill_kernel, (dense, T)))]
    for src in (dense, strided):
        for dst in (dense, strided):
            out.append(Kernel(f"common.copy_kernel[{src.layout}->{dst.layout}]", dtype, plan.BLOCKS,
                              default=src.layout == dst.layout == "C",
                              build=functools.partial(lambda s, d: (copy_kernel, (s, d)), src, dst)))
    return out
