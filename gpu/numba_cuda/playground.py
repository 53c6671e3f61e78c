"""Launch control over the numba.cuda kernels of user files, for `python -m kernels check` (its capped case).

`launches(cap, dry)`: inside it, every launch `kernel[grid, block](...)` of a kernel defined outside the
project's packages and numba (a user file's, or a module it imports) is recorded as (blocks, threads per
block), its grid cut to `cap` blocks in each dimension, or (dry) recorded and not run. It wraps the launch
configuration (`__getitem__`) of numba's CUDA simulator kernels or, on a GPU, of numba-cuda's dispatcher.
The playground's own kernels (the NaN fill, copies) launch as they are. A numba.cuda kernel's launch rule
lives in its user's code, so `caps_grid` cannot tell: the checker probes it with a dry run.
"""

from __future__ import annotations

import contextlib
import math

from gpu.numba_cuda.jit import config

#: Top-level packages whose kernels launch as they are: the project's and numba's.
OWN = ("kernels", "cpu", "gpu", "plots", "numba", "numba_cuda")


def _kernel_class():
    if config.ENABLE_CUDASIM:
        from numba.cuda.simulator.kernel import FakeCUDAKernel  # the simulator's kernels

        return FakeCUDAKernel
    from numba.cuda.dispatcher import CUDADispatcher  # the real compiler's kernels

    return CUDADispatcher


def _from_user_file(kernel) -> bool:
    fn = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None)
    module = getattr(fn, "__module__", None) or ""
    return bool(module) and module.split(".")[0] not in OWN


def _dims(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


class _NotRun:
    def __call__(self, *args):
        return None


@contextlib.contextmanager
def launches(cap: int | None = None, dry: bool = False):
    """Record (and cap, or skip) every launch of a user file's kernel inside the block; yields the record."""
    cls, record = _kernel_class(), []
    original = cls.__getitem__

    def configure(self, configuration):
        if not _from_user_file(self):
            return original(self, configuration)
        grid, block, *rest = configuration
        grid = _dims(grid)
        if cap is not None:
            grid = tuple(min(int(g), cap) for g in grid)
        record.append((math.prod(int(g) for g in grid), math.prod(int(b) for b in _dims(block))))
        return _NotRun() if dry else original(self, (grid if len(grid) > 1 else grid[0], block, *rest))

    cls.__getitem__ = configure
    try:
        yield record
    finally:
        cls.__getitem__ = original


def caps_grid(impl) -> None:
    """Unknown: a numba.cuda kernel's launch rule is in the user's code (probe it with a dry run)."""
    return None
