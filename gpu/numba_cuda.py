"""The `numba_cuda` backend: @cuda.jit kernels on a GPU, or under numba's CUDA simulator.

Layers: kernels (`numba_cuda_correlate`, `numba_cuda_reduce`) -> their launch functions (grid, block,
workspaces) -> the op implementations of gpu/correlation_ops.py (shared with the cupy backend), which
map each op onto launches. A variant is a choice of engines (`engines`).

Options (`kernels.get(op, "numba_cuda", variant, block=32)`): see `gpu.numba_cuda_common.Launch`.
Inputs may be numba device arrays (results come back as device arrays) or NumPy arrays (copied in,
results copied out).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from functools import partial

import numpy as np

from gpu.correlation_ops import Engines, register
from kernels.backend import Backend, Status

try:  # numba is imported after kernels._env has chosen between a GPU and the simulator
    import numba
    from numba import cuda
    from numba.cuda.cudadrv import devicearray

    from gpu import numba_cuda_correlate as corr
    from gpu import numba_cuda_reduce as red
    from gpu.numba_cuda_common import Launch, copy, fill

    MISSING = "" if importlib.util.find_spec("numba_cuda") else "the numba-cuda package is not installed"
except ImportError as e:
    MISSING = f"numba-cuda cannot be imported ({e})"


def status() -> Status:
    """"real GPU", "simulated" (numba's CUDA simulator) or "unavailable", with the reason."""
    if MISSING:
        return Status("unavailable", MISSING)
    version = f"numba-cuda {importlib.metadata.version('numba-cuda')}"
    if numba.config.ENABLE_CUDASIM:
        return Status("simulated", f"numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), {version}")
    from numba.cuda.cudadrv.driver import driver

    if not driver.is_available:
        return Status("unavailable", f"no CUDA driver ({' '.join(driver.initialization_error.split())}); "
                                     "NUMBA_ENABLE_CUDASIM=1 runs the kernels under numba's simulator")
    if not cuda.list_devices():
        return Status("unavailable", "no CUDA device: the driver loads but reports none")
    from gpu.compile_check import compiler_problem

    if problem := compiler_problem():
        return Status("unavailable", problem)
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name  # bytes: older versions
    cc = ".".join(map(str, device.compute_capability))
    return Status("real GPU", f"{name} (compute capability {cc}), {version}")


class DeviceArrays:
    """numba device arrays (the simulator's stand-ins under NUMBA_ENABLE_CUDASIM); NumPy copied in."""

    name = "numba.cuda device array"

    def owns(self, a) -> bool:
        return devicearray.is_cuda_ndarray(a)

    def prepare(self, a):
        if not self.owns(a):
            return cuda.to_device(np.ascontiguousarray(a))
        if a.is_c_contiguous():
            return a
        dense = self.empty(a.shape, a.dtype)
        copy(a, dense)
        return dense

    def writable_in_place(self, a) -> bool:
        return self.owns(a) and a.is_c_contiguous()

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype)

    def fill_nan(self, a):
        fill(a, np.nan)

    def to_host(self, a) -> np.ndarray:
        return a.copy_to_host()

    def copy_into(self, dst, src):
        if self.owns(dst):
            copy(src, dst)
        else:
            dst[...] = src.copy_to_host()

    def synchronize(self):
        cuda.synchronize()


backend = Backend("numba_cuda", "numba @cuda.jit kernels (on a GPU, or under numba's CUDA simulator)",
                  status=status, arrays=DeviceArrays())


def engines(correlate, weight_grad, total) -> Engines:
    return Engines(correlate, weight_grad, total, empty=cuda.device_array if not MISSING else None,
                   launch_of=Launch.of)


if not MISSING:
    register(backend, "naive", engines(corr.naive, red.weight_grad_naive, red.total_naive), {
        "": "one thread per output, operands read from global memory",
        "conv1d_weight_grad": "one thread per tap, summing its m products from global memory",
        "conv1d_bias_grad": "one thread sums grad_y",
    })
    register(backend, "tiled", engines(corr.tiled, red.weight_grad_tiled, red.total_tiled), {
        "": "block tile + (k-1) halo and filter chunks staged in shared memory, several outputs per "
            "thread in registers",
        "conv1d_weight_grad": "j split over blocks, g and x chunks in shared memory, several taps per "
                              "thread; block partials added in a fixed order (deterministic)",
        "conv1d_bias_grad": "per-block tree sums in shared memory, then added in a fixed order "
                            "(deterministic)",
        "conv1d_relu_backward": "tiled ReLU gate, input gradient, weight and bias sums (deterministic)",
    }, default=True)
    register(backend, "atomic", engines(corr.tiled, partial(red.weight_grad_tiled, atomic=True),
                                        partial(red.total_tiled, atomic=True)), {
        op: "tiled, but block partials are added into the output with cuda.atomic.add: one pass, "
            "NOT deterministic (the order of the additions varies)"
        for op in ("conv1d_weight_grad", "conv1d_bias_grad")
    })
    import gpu.numba_cuda_layer  # noqa: E402,F401  (registers conv1d_layer and conv1d_layer_backward)
