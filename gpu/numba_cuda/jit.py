"""The compiler of the numba.cuda kernels, imported in one place: `cuda`, `config` and the numba types the
kernels name. Every kernel module of gpu/numba_cuda/ takes them from here, so that the compiler behind them
is chosen once.

numba-cuda is the compiler: its simulator (NUMBA_ENABLE_CUDASIM=1, chosen by kernels/_env.py before numba
loads) runs the kernels without a GPU.
"""

from numba import boolean, config, cuda, from_dtype, int32, int64, types, uint32, uint64
from numba.cuda.cudadrv import devicearray

__all__ = ["boolean", "config", "cuda", "devicearray", "from_dtype", "int32", "int64", "types", "uint32", "uint64"]
