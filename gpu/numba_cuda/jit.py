"""The compiler of the numba.cuda kernels, imported in one place: `cuda`, `config` and the numba types the
kernels name. Every kernel module of gpu/numba_cuda/ takes them from here, so that the compiler behind them
is chosen once.

    KERNELS_NUMBA_COMPILER=numba-cuda        numba-cuda (the default): it has the simulator
                                             (NUMBA_ENABLE_CUDASIM=1, chosen by kernels/_env.py before numba
                                             loads), which runs the kernels without a GPU
    KERNELS_NUMBA_COMPILER=numba-cuda-mlir   NVIDIA's successor, `pip install ".[mlir]"`: no simulator, so a
                                             GPU or a compile-only process (plots/model/resources.py)

`config` is numba's either way: `config.ENABLE_CUDASIM` says whether the simulator runs.

numpy 2.5 removed `np.row_stack`, and numba-cuda 0.30 still registers an overload of it in the module
that its first real compile loads (numba.cuda.np.arrayobj), so every compile raised AttributeError there.
`numpy_compat` loads that module once with the name bound to `np.vstack` (what numba-cuda overloads it
with) and removes the name again; with the simulator, or a numpy that has the name, it does nothing.
numba-cuda-mlir's copy of that module checks the numpy version itself.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
from numba import config

COMPILERS = ("numba-cuda", "numba-cuda-mlir")
COMPILER = os.environ.get("KERNELS_NUMBA_COMPILER", "numba-cuda")
if COMPILER not in COMPILERS:
    raise ImportError(f"KERNELS_NUMBA_COMPILER: expected one of {', '.join(COMPILERS)}, got {COMPILER!r}")
if COMPILER == "numba-cuda-mlir" and config.ENABLE_CUDASIM:
    raise ImportError("KERNELS_NUMBA_COMPILER=numba-cuda-mlir has no simulator: unset NUMBA_ENABLE_CUDASIM "
                      "(on a GPU), or use numba-cuda")


def numpy_compat(module: str = "numba.cuda.np.arrayobj") -> bool:
    """Load numba-cuda's `module` with `np.row_stack` bound for the time of its import, where numpy has no such
    name (numpy >= 2.5) and a real compile will load it; True when it did."""
    if hasattr(np, "row_stack") or config.ENABLE_CUDASIM or module in sys.modules:
        return False
    np.row_stack = np.vstack
    try:
        importlib.import_module(module)
    finally:
        del np.row_stack
    return True


if COMPILER == "numba-cuda":
    from numba import boolean, cuda, from_dtype, int32, int64, types, uint32, uint64
    from numba.cuda.cudadrv import devicearray

    numpy_compat()
else:
    from numba_cuda_mlir import cuda  # the optional `mlir` extra
    from numba_cuda_mlir.numba_cuda import boolean, int32, int64, types, uint32, uint64
    from numba_cuda_mlir.numba_cuda.cudadrv import devicearray
    from numba_cuda_mlir.numba_cuda.np.numpy_support import from_dtype

__all__ = ["COMPILER", "boolean", "config", "cuda", "devicearray", "from_dtype", "int32", "int64", "numpy_compat",
           "types", "uint32", "uint64"]
