"""The `numba_cuda` backend: @cuda.jit kernels, run on a GPU or under numba's CUDA simulator."""
