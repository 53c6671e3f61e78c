"""The `cupy` backend: CUDA C kernels (gpu/cupy/*.cu), run by CuPy on a GPU or by the emulator gpu.emu on the CPU.

Ladder (each step declared once, next to its launches; gpu/steps.py says who reads the declarations):

    1-D ops      naive -> tiled -> atomic (reductions)    gpu/cupy/correlate.py   correlate.cu
                 regwin -> vec -> vec16                    gpu/cupy/ladder.py      ladder.cu
                 wg_regwin -> wg_stream                    gpu/cupy/ladder.py      ladder.cu
                 auto (the default): naive up to gpu.auto.STREAM_MAX_K taps and vec16 beyond, wg_stream; or an
                 FFT where faster and accurate (gpu/auto.py)
    the layer    direct                                    gpu/cupy/layer.py       layer.cu
                 gemm                                      gpu/cupy/layer_gemm.py  layer_gemm.cu
                 auto (the default): gemm where each group's GEMM is wide enough and the gemm kernels take
                 the launch (gpu.auto.layer_uses_gemm), else direct

`gpu.cupy.loader.load` returns a cupy.RawModule on a real GPU and the emulated module otherwise, so the launch
sites are the same on both paths. Arrays: cupy.ndarray on a real GPU (NumPy inputs copied in, results out),
NumPy arrays under the emulator. Options: ``block`` (threads per block, a power of two in [32, 1024], default
128) and ``max_blocks`` (grid cap), e.g. ``kernels.get("conv1d", "cupy", "tiled", block=32)``. Nothing is
compiled or imported at import time: each module is built on first use.
"""

from __future__ import annotations

from gpu import auto
from gpu.cupy import correlate, ladder, layer, layer_gemm, loader
from gpu.cupy.arrays import ARRAYS
from gpu.launch import CupyLaunch as Launch
from gpu.steps import Step, register
from kernels.backend import Backend, Status

#: The kernel modules, in ladder order; each lists its steps in STEPS.
KERNEL_MODULES = (correlate, ladder, layer, layer_gemm)


def status() -> Status:
    """"real GPU" (CuPy, once a tiny kernel compiled, ran and read back right: `loader.mode`), "emulated" (gpu.emu
    on the CPU) or "unavailable", with the reason."""
    kind, reason = loader.mode()
    if kind == "real GPU":
        import cupy  # optional: only on a GPU

        return Status("real GPU", f"{reason}, cupy {cupy.__version__}")
    if kind == "emulated":
        return Status("emulated", f"CUDA C on the CPU emulator gpu.emu ({reason})")
    return Status("unavailable", reason)


AUTO = auto.step(stream=correlate.NAIVE, forward=ladder.VEC16, weight_grad=ladder.WG_STREAM, table="cupy")
LAYER_AUTO = auto.layer_step(layer_gemm.GEMM, layer.DIRECT, layer_gemm.accepts, Launch.of)
STEPS: tuple[Step, ...] = (*(s for m in KERNEL_MODULES for s in m.STEPS), AUTO, LAYER_AUTO)

backend = Backend("cupy", "CUDA C kernels (gpu/cupy/*.cu) through cupy.RawModule, or the CPU emulator gpu.emu",
                  status=status, arrays=ARRAYS, options=Launch.of)
register(backend, STEPS)
