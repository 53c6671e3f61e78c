"""The cupy backend's arrays: cupy.ndarray on a real GPU, NumPy arrays in host memory under the emulator
(its device memory). Chosen on first use, never at import."""

from __future__ import annotations

import functools

import numpy as np

from gpu.cupy import loader
from kernels.backend import HostArrays


class CupyArrays:
    """cupy.ndarray on a real GPU (NumPy copied in and out)."""

    name = "cupy.ndarray"

    def owns(self, a) -> bool:
        import cupy  # optional: only on a GPU

        return isinstance(a, cupy.ndarray)

    def prepare(self, a):
        import cupy  # optional: only on a GPU

        return cupy.ascontiguousarray(cupy.asarray(a))

    def writable_in_place(self, a) -> bool:
        return self.owns(a) and a.flags.c_contiguous

    def empty(self, shape, dtype):
        import cupy  # optional: only on a GPU

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
        return CupyArrays() if loader.on_gpu() else HostArrays()

    @property
    def name(self):
        return self._impl.name

    def __getattr__(self, attr):
        return getattr(self._impl, attr)


ARRAYS = Arrays()


def empty(shape, dtype):
    """A workspace of the backend's kind."""
    return ARRAYS.empty(shape, dtype)
