"""The `cupy` backend: CUDA C kernels (the `.cu` files here), run by CuPy on a GPU or by gpu.emu on the CPU."""
