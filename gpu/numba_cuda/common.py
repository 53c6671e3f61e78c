"""The shared-memory check and the small utility kernels shared by the numba.cuda kernels.

A launch (`gpu.launch.NumbaCudaLaunch`: block size, outputs per thread, grid cap) is parsed once per
call from the options given to `kernels.get(op, "numba_cuda", variant, **options)`, e.g. ``block=32``
in the simulator tests. Kernels whose shared-memory sizes depend on it are built by cached factories,
one per (dtype, block, per_thread): numba needs the sizes and the dtype of `cuda.shared.array` as
compile-time constants.

Indexing: every index that can exceed 2**31 is an int64 (`int64(...)` before a multiplication), and
every kernel strides over the work beyond its grid, so any n fits in a grid of `max_blocks` blocks.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda, int64

from gpu.launch import NumbaCudaLaunch as Launch

#: The launch of the utility kernels when the caller gives none.
DEFAULT_LAUNCH = Launch()
#: Static shared memory a block may use without opting in to more.
SHARED_BYTES = 48 * 1024


def per_thread_for(launch: Launch, needed: int) -> int:
    """launch.per_thread, cut down to the smallest of Launch.PER_THREAD that covers `needed` items per
    thread (so only the compiled and resource-checked values are ever built)."""
    return min(launch.per_thread, next((p for p in Launch.PER_THREAD if p >= needed), Launch.PER_THREAD[-1]))


def check_block(launch: Launch, most: int, kernel: str):
    """Raise ValueError when the launch's block exceeds `most`, the largest block `kernel` is compiled for
    (more threads would not fit its registers in the register file without spilling)."""
    if launch.block > most:
        raise ValueError(f"block: {kernel} runs with at most {most} threads per block (its registers), "
                         f"got {launch.block}")


def scalar_type(dtype):
    """The numba type of a NumPy float dtype (for shared/local arrays in a kernel factory)."""
    return numba.from_dtype(np.dtype(dtype))


def check_shared(elements: int, dtype, launch: Launch, kernel: str):
    """Raise ValueError when `elements` of `dtype` exceed the static shared memory of a block."""
    nbytes = elements * np.dtype(dtype).itemsize
    if nbytes > SHARED_BYTES:
        raise ValueError(f"{kernel}: block={launch.block}, per_thread={launch.per_thread} need {nbytes} "
                         f"bytes of shared memory in {np.dtype(dtype)}, over the {SHARED_BYTES} limit")


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


def fill(a, value, launch: Launch = DEFAULT_LAUNCH):
    fill_kernel[launch.blocks(a.shape[0], launch.block), launch.block](a, a.dtype.type(value))


def copy(src, dst, launch: Launch = DEFAULT_LAUNCH):
    """dst[...] = src on the device; either may be strided (N-D: numba's own strided assignment)."""
    if dst.ndim != 1:
        dst[...] = src
        return
    copy_kernel[launch.blocks(dst.shape[0], launch.block), launch.block](src, dst)
