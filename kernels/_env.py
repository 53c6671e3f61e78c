"""Decide, before numba.cuda is imported, whether it runs on a GPU or under numba's simulator.

Without a CUDA driver the playground turns on numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), so
the numba_cuda kernels still run, slowly, on the CPU. Set NUMBA_ENABLE_CUDASIM yourself to decide.
"""

import ctypes
import os
import sys


def cuda_driver_present() -> bool:
    """True if libcuda loads and reports at least one device."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except OSError:
        return False


if "NUMBA_ENABLE_CUDASIM" not in os.environ and "numba.cuda" not in sys.modules and not cuda_driver_present():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:  # numba has read its config already (pytest imports it for filterwarnings)
        from numba.core import config

        config.reload_config()
