"""GPU backends: numba.cuda kernels and CUDA C kernels loaded by CuPy (or the CPU emulator)."""
