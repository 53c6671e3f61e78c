"""The `numba_cuda` backend: @cuda.jit kernels on a GPU, or under numba's CUDA simulator.

Layers: kernels (`numba_cuda_correlate`, `numba_cuda_reduce`, `numba_cuda_ladder`, `numba_cuda_layer`,
`numba_cuda_layer_gemm`) -> their launch functions (grid, block, workspaces) -> the op implementations: for
the 1-D ops those of gpu/steps.py (shared with the cupy backend), which map each op onto launches
of a variant's engines (`auto`, the default, wraps regwin and wg_regwin: gpu/auto.py); for the layer those
of `numba_cuda_layer` (direct, tiled) and `numba_cuda_layer_gemm` (gemm), and `auto` (the default) picking
between gemm and direct. This module imports them and registers every one.

Options (`kernels.get(op, "numba_cuda", variant, block=32)`): see `gpu.launch.NumbaCudaLaunch`.
Inputs may be numba device arrays (results come back as device arrays) or NumPy arrays (copied in,
results copied out). numba's simulator is not thread-safe, so in simulated mode the calls are
serialised by a lock (on a GPU they run concurrently).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import threading
from functools import partial

import numpy as np

from gpu import auto
from gpu.steps import Engines, register
from kernels.backend import Backend, Status

#: Serialises the calls under numba's CUDA simulator, whose kernel launches share module state.
SIMULATOR_LOCK = threading.RLock()

try:  # numba is imported after kernels._env has chosen between a GPU and the simulator
    import numba
    from numba import cuda
    from numba.cuda.cudadrv import devicearray

    from gpu.launch import NumbaCudaLaunch as Launch
    from gpu.numba_cuda import correlate as corr
    from gpu.numba_cuda import ladder, layer, layer_gemm
    from gpu.numba_cuda import reduce as red
    from gpu.numba_cuda.common import copy, fill

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
    from plots.model.compile import compiler_problem

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


class NumbaCudaBackend(Backend):
    """A Backend whose public functions hold SIMULATOR_LOCK while they run under the simulator."""

    def function(self, op_name: str, variant: str | None = None, **options):
        call = super().function(op_name, variant, **options)
        if MISSING or not numba.config.ENABLE_CUDASIM:
            return call

        @functools.wraps(call)
        def serialised(*args, **kwargs):
            with SIMULATOR_LOCK:
                return call(*args, **kwargs)

        return serialised


backend = NumbaCudaBackend("numba_cuda", "numba @cuda.jit kernels (on a GPU, or under numba's CUDA simulator)",
                           status=status, arrays=DeviceArrays(), options=None if MISSING else Launch.of)


def engines(correlate, weight_grad, total) -> Engines:
    return Engines(correlate, weight_grad, total, empty=cuda.device_array if not MISSING else None,
                   launch_of=Launch.of)


if not MISSING:
    register(backend, "naive", engines(corr.naive, red.weight_grad_naive, red.total_naive))
    register(backend, "tiled", engines(corr.tiled, red.weight_grad_tiled, red.total_tiled))
    register(backend, "atomic", engines(corr.tiled, partial(red.weight_grad_tiled, atomic=True),
                                        partial(red.total_tiled, atomic=True)))
    # The ladder steps (gpu/numba_cuda/ladder.py, the twins of gpu/cupy/ladder.cu), with the tiled total for bias sums;
    # wg_regwin registers only the weight gradient (its NOTES).
    ladder_steps = engines(ladder.correlate_regwin, ladder.weight_grad_regwin, red.total_tiled)
    register(backend, "regwin", ladder_steps)
    register(backend, "wg_regwin", ladder_steps)
    register(backend, "auto", auto.engines(ladder_steps, "numba_cuda"))  # the default: regwin + wg_regwin, or FFT
    backend.impl("conv1d_layer", "direct", method="direct")(layer.layer_direct)
    backend.impl("conv1d_layer_backward", "direct", method="direct")(layer.layer_backward_direct)
    backend.impl("conv1d_layer", "tiled", method="direct")(layer.layer_tiled)
    backend.impl("conv1d_layer_backward", "tiled", method="direct")(layer.layer_backward_tiled)
    backend.impl("conv1d_layer", "gemm", method="direct")(layer_gemm.layer_gemm)
    backend.impl("conv1d_layer_backward", "gemm", method="direct")(layer_gemm.layer_backward_gemm)

    def gemm_fits(p, options) -> bool:
        return auto.layer_uses_gemm(p) and layer_gemm.accepts(p, Launch.of(options))

    @backend.impl("conv1d_layer", "auto", default=True, method="direct")
    def layer_auto(p, x, w, b, y, **options):
        """gemm where each group's GEMM is wide enough and the gemm kernels take the launch, else direct"""
        (layer_gemm.layer_gemm if gemm_fits(p, options) else layer.layer_direct)(p, x, w, b, y, **options)

    @backend.impl("conv1d_layer_backward", "auto", default=True, method="direct")
    def layer_backward_auto(p, x, w, g, dx, dw, db, **options):
        """gemm where each group's GEMM is wide enough and the gemm kernels take the launch, else direct"""
        gemm = gemm_fits(p, options)
        (layer_gemm.layer_backward_gemm if gemm else layer.layer_backward_direct)(p, x, w, g, dx, dw, db, **options)
