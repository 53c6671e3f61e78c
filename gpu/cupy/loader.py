"""Load CUDA C kernels with CuPy on a real GPU, or on the CPU emulator (gpu.emu) otherwise.

    mod = load(FOLDER / "correlate.cu", ["fill<float>", "fill<double>"])   # a .cu of gpu/cupy/: its -D and -I
    kern = mod.get_function("fill<float>")
    kern((blocks,), (128,), (a, np.int64(a.size), np.float32(0)))        # a[i] = 0, as cupy.RawKernel

Both paths return an object with cupy.RawModule's get_function(), whose kernels are called like
cupy.RawKernel, so a backend's call sites are the same. CuPy raises on launch errors; the emulator
raises gpu.emu.EmulatorError. A file of gpu/cupy/ is compiled with its options from gpu/cupy/tunables.py
on both paths; a file of yours (gpu/cupy/playground.py) lists its name expressions on
`// name_expressions: k<float>, k<double>` lines. Nothing is imported or compiled until load() or mode()
is called. KERNELS_EMULATE=1 picks the emulator even where there is a GPU.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from gpu import emu
from gpu.cupy import tunables

_NAMES = re.compile(r"^\s*//\s*name_expressions:(.*)$", re.M)


def ctype(dtype) -> str:
    """The C type of a NumPy dtype the kernels take: "float" or "double"; TypeError otherwise."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return "float"
    if dtype == np.float64:
        return "double"
    raise TypeError(f"dtype: expected float32 or float64, got {dtype}")


def declared_names(code: str) -> list[str]:
    """Name expressions listed on `// name_expressions: k<float>, k<double, 4>` lines of a source."""
    return [name.strip() for line in _NAMES.findall(code)
            for name in re.split(r",(?![^<]*>)", line) if name.strip()]


@functools.cache
def mode() -> tuple[str, str]:
    """("real GPU" | "emulated" | "unavailable", reason): how load() runs kernels here. "real GPU" only once a
    tiny kernel compiled, ran on the device and read back right (`run_problem`)."""
    device, gpu_reason = _cuda_device()
    if device and os.environ.get("KERNELS_EMULATE") != "1":
        if problem := run_problem():
            return "unavailable", f"{device}: {problem}; KERNELS_EMULATE=1 runs the CUDA C on the CPU emulator"
        return "real GPU", device
    problem = emu.toolchain_problem()
    if problem:
        return "unavailable", f"{gpu_reason or 'KERNELS_EMULATE=1'}; emulator: {problem}"
    return "emulated", gpu_reason or "KERNELS_EMULATE=1"


def on_gpu() -> bool:
    return mode()[0] == "real GPU"


def _cuda_device() -> tuple[str | None, str]:
    """(name of CUDA device 0, "") or (None, why there is none)."""
    try:
        import cupy  # optional: the GPU path
    except ImportError:
        return None, "cupy not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None, "no CUDA device"
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), ""
    except cupy.cuda.runtime.CUDARuntimeError as e:
        return None, "no CUDA driver" if "InsufficientDriver" in str(e) else f"no CUDA device ({e})"


#: The kernel `run_problem` compiles (NVRTC), launches and reads back: a[i] = 2 i + 1.
PROBE = """extern "C" __global__ void probe(long long *a, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) a[i] = 2 * i + 1;
}"""


def run_problem() -> str | None:
    """Why a tiny CUDA C kernel does not compile (NVRTC), launch and read back right through CuPy, with what to
    do; None when it does."""
    import cupy  # optional: the GPU path (mode() found a device through it)

    n = 1000
    try:
        a = cupy.empty(n, dtype=cupy.int64)
        cupy.RawModule(code=PROBE).get_function("probe")(((n + 127) // 128,), (128,), (a, np.int64(n)))
        got = cupy.asnumpy(a)
    except Exception as e:
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        hint = ("install NVRTC of CuPy's CUDA major version (pip install nvidia-cuda-nvrtc)" if "nvrtc" in
                message.lower() else "see the error")
        return f"a tiny CUDA C kernel failed through CuPy ({message}); {hint}"
    wrong = np.count_nonzero(got != 2 * np.arange(n) + 1)
    return f"a tiny CUDA C kernel ran but read back {wrong} wrong values of {n}" if wrong else None


def load(path_or_source, name_expressions=None, options=()):
    """A cupy.RawModule, or its emulated counterpart, for a .cu file (a Path or a path ending .cu/.cuh) or
    CUDA C source text, compiled with `options` and, for a file of gpu/cupy/, its tunables; the kernels
    `name_expressions` (default: the source's declared names) are instantiated."""
    code, filename, options = _source(path_or_source, tuple(options))
    names = declared_names(code) if name_expressions is None else list(name_expressions)
    if not names:
        raise ValueError(f"{filename}: no kernels to instantiate: list them on a `// name_expressions: "
                         "kernel<float>, kernel<double>` line (or pass name_expressions)")
    kind, reason = mode()
    if kind == "real GPU":
        import cupy  # optional: the GPU path

        return cupy.RawModule(code=code, options=options, name_expressions=names)
    if kind == "emulated":
        return emu.Module(code, names, options, filename=filename)
    raise RuntimeError(f"cannot run CUDA C kernels here: {reason}")


def _source(path_or_source, options: tuple) -> tuple[str, str, tuple]:
    """(code, file name for messages, options with -I<the file's directory> and a product file's tunables)."""
    is_path = isinstance(path_or_source, os.PathLike) or (
        "\n" not in path_or_source and path_or_source.endswith((".cu", ".cuh")))
    if not is_path:
        return path_or_source, "<source>", options
    path = Path(path_or_source).resolve()
    return path.read_text(), path.name, (*options, f"-I{path.parent}", *tunables.options(tunables.defines_for(path)))


class Source:
    """A .cu file of gpu/cupy/ with the instantiations its launcher lists, loaded (compiled) on first use."""

    def __init__(self, path, names):
        self.path, self.names = Path(path), tuple(names)
        self._module = None

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def module(self):
        """The loaded module (cupy.RawModule or gpu.emu.Module), built once."""
        if self._module is None:
            self._module = load(self.path, self.names)
        return self._module

    def get(self, name: str):
        """The kernel of name expression `name`."""
        return self.module().get_function(name)

    def kernel(self, entry: str, dtype):
        """The kernel `entry<T>` for the C type of `dtype`."""
        return self.get(f"{entry}<{ctype(dtype)}>")
