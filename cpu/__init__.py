"""CPU backends: numba @njit kernels."""
