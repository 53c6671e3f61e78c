"""The `numba_cuda` backend: @cuda.jit kernels on a GPU, or under numba's CUDA simulator.

Ladder (each step declared once, next to its launches; gpu/steps.py says who reads the declarations):

    1-D ops      naive -> tiled -> atomic (reductions)    gpu/numba_cuda/correlate.py (+ reduce.py for the sums)
                 regwin, wg_regwin -> wg_stream            gpu/numba_cuda/ladder.py (twins of gpu/cupy/ladder.cu)
                 auto (the default): tiled up to gpu.auto.STREAM_MAX_K taps and regwin beyond, wg_stream; or
                 an FFT where faster and accurate (gpu/auto.py)
    the layer    direct -> tiled                           gpu/numba_cuda/layer.py
                 gemm                                      gpu/numba_cuda/layer_gemm.py
                 auto (the default): gemm where each group's GEMM is wide enough and the gemm kernels take
                 the launch (gpu.auto.layer_uses_gemm), else direct

Options (`kernels.get(op, "numba_cuda", variant, block=32)`): see `gpu.launch.NumbaCudaLaunch`. Inputs may be
numba device arrays (results come back as device arrays) or NumPy arrays (copied in, results copied out).
numba's simulator is not thread-safe, so in simulated mode the calls are serialised by a lock (on a GPU they
run concurrently).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import threading

import numpy as np

if importlib.util.find_spec("numba_cuda") is None:  # the registry reports the backend unavailable, with this
    raise ImportError("the numba-cuda package is not installed")

from gpu import auto  # noqa: E402  (after the check above)
from gpu.launch import NumbaCudaLaunch as Launch  # noqa: E402
from gpu.numba_cuda import correlate, ladder, layer, layer_gemm  # noqa: E402
from gpu.numba_cuda.common import copy, fill  # noqa: E402
from gpu.numba_cuda.jit import COMPILER, config, cuda, devicearray  # noqa: E402
from gpu.steps import Step, register  # noqa: E402
from kernels.backend import Backend, Status  # noqa: E402

#: The kernel modules, in ladder order; each lists its steps in STEPS.
KERNEL_MODULES = (correlate, ladder, layer, layer_gemm)
#: Serialises the calls under numba's CUDA simulator, whose kernel launches share module state.
SIMULATOR_LOCK = threading.RLock()


def compiler_problem() -> str | None:
    """Why numba-cuda cannot compile a kernel here (libnvvm not loadable), or None; in a process that runs
    numba.cuda for real (simulator off)."""
    try:
        from numba.cuda.cudadrv import nvvm  # only where kernels are compiled: the simulator loads no NVVM

        nvvm.NVVM()
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        return f"numba-cuda cannot compile: NVVM not loadable ({reason}); pip install 'numba-cuda[cu13]'"
    return None


def status() -> Status:
    """"real GPU" once a tiny kernel compiled, ran on the device and read back right (`run_problem`);
    "simulated" (numba's CUDA simulator) or "unavailable", with the reason."""
    version = f"{COMPILER} {importlib.metadata.version(COMPILER)}"
    if config.ENABLE_CUDASIM:
        return Status("simulated", f"numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), {version}")
    from numba.cuda.cudadrv.driver import driver  # the real driver: not under the simulator

    if not driver.is_available:
        return Status("unavailable", f"no CUDA driver ({' '.join(driver.initialization_error.split())}); "
                                     "NUMBA_ENABLE_CUDASIM=1 runs the kernels under numba's simulator")
    if not cuda.list_devices():
        return Status("unavailable", "no CUDA device: the driver loads but reports none")
    if problem := compiler_problem():
        return Status("unavailable", problem)
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name  # bytes: older versions
    cc = ".".join(map(str, device.compute_capability))
    if problem := run_problem():
        return Status("unavailable", f"{name} (compute capability {cc}): {problem}")
    return Status("real GPU", f"{name} (compute capability {cc}), {version}")


#: What to do about a failure of the tiny kernel, by a piece of its message.
RUN_HINTS = (
    ("version", "NVVM writes PTX newer than the linker and driver here accept: install nvidia-nvjitlink of NVVM's "
                "release (numba-cuda links through nvJitLink when it loads), or the ptxas/driver of that release"),
    ("row_stack", "numba-cuda under numpy >= 2.5: import the compiler through gpu.numba_cuda.jit"),
    ("nvjitlink", "install nvidia-nvjitlink of NVVM's release (pip install 'numba-cuda[cu13]')"),
)


@functools.cache
def run_problem() -> str | None:
    """Why a tiny kernel (`common.fill_kernel`, a[i] = 1.25) does not compile, launch and read back right on the
    current device, with what to do; None when it does. Once per process."""
    n = 1000
    try:
        a = cuda.device_array(n, np.float64)
        fill(a, 1.25)
        got = a.copy_to_host()
    except Exception as e:
        message = " ".join(f"{type(e).__name__}: {e}".split())
        hint = next((h for key, h in RUN_HINTS if key in message.lower()), "see the error above")
        return f"a tiny numba.cuda kernel failed ({message[:300]}); {hint}"
    wrong = np.count_nonzero(got != 1.25)
    return f"a tiny numba.cuda kernel ran but read back {wrong} wrong values of {n}" if wrong else None


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
        if not config.ENABLE_CUDASIM:
            return call

        @functools.wraps(call)
        def serialised(*args, **kwargs):
            with SIMULATOR_LOCK:
                return call(*args, **kwargs)

        return serialised


AUTO = auto.step(stream=correlate.TILED, forward=ladder.REGWIN, weight_grad=ladder.WG_STREAM, table="numba_cuda")
LAYER_AUTO = auto.layer_step(layer_gemm.GEMM, layer.DIRECT, layer_gemm.accepts, Launch.of)
STEPS: tuple[Step, ...] = (*(s for m in KERNEL_MODULES for s in m.STEPS), AUTO, LAYER_AUTO)

backend = NumbaCudaBackend("numba_cuda", "numba @cuda.jit kernels (on a GPU, or under numba's CUDA simulator)",
                           status=status, arrays=DeviceArrays(), options=Launch.of)
register(backend, STEPS)
