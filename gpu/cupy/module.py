"""Load CUDA C kernels with CuPy on a real GPU, or on the CPU emulator (gpu.emu) otherwise.

    mod = load(Path(__file__).with_name("correlate.cu"), defines=cuda_tunables.defines_for("correlate.cu"))
    kern = mod.get_function("fill<float>")            # a name from its `// name_expressions:` lines
    kern((blocks,), (128,), (a, np.int64(a.size), np.float32(0)))  # a[i] = 0, as cupy.RawKernel

Both paths return an object with cupy.RawModule's get_function(), whose kernels are called like
cupy.RawKernel, so a backend's call sites are the same. CuPy raises on launch errors; the emulator
raises gpu.emu.EmulatorError. `defines` become ``-D NAME=value`` options on both paths (the
tunables of gpu/cupy/tunables.py). Nothing is imported or compiled until load() or mode() is called.
KERNELS_EMULATE=1 picks the emulator even where there is a GPU.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from gpu.cupy.tunables import options as define_options

_NAMES = re.compile(r"^\s*//\s*name_expressions:(.*)$", re.M)


def ctype(dtype) -> str:
    """The C type of a NumPy dtype the kernels take: "float" or "double"; TypeError otherwise."""
    import numpy as np

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
    """("real GPU" | "emulated" | "unavailable", reason): how load() runs kernels here."""
    device, gpu_reason = _cuda_device()
    if device and os.environ.get("KERNELS_EMULATE") != "1":
        return "real GPU", device
    from gpu import emu

    problem = emu.toolchain_problem()
    if problem:
        return "unavailable", f"{gpu_reason or 'KERNELS_EMULATE=1'}; emulator: {problem}"
    return "emulated", gpu_reason or "KERNELS_EMULATE=1"


def _cuda_device() -> tuple[str | None, str]:
    """(name of CUDA device 0, "") or (None, why there is none)."""
    try:
        import cupy
    except ImportError:
        return None, "cupy not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None, "no CUDA device"
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), ""
    except cupy.cuda.runtime.CUDARuntimeError as e:
        return None, "no CUDA driver" if "InsufficientDriver" in str(e) else f"no CUDA device ({e})"


def load(path_or_source, name_expressions=None, options=(), defines=None):
    """A cupy.RawModule, or its emulated counterpart, for a .cu file (a Path or a path ending .cu/.cuh)
    or CUDA C source text; `name_expressions` defaults to the source's declared names, and `defines`
    ({NAME: value}) are added to `options` as -DNAME=value."""
    code, filename, options = _source(path_or_source, (*options, *define_options(defines or {})))
    names = declared_names(code) if name_expressions is None else list(name_expressions)
    if not names:
        raise ValueError(f"{filename}: no kernels to instantiate: list them on a `// name_expressions: "
                         "kernel<float>, kernel<double>` line (or pass name_expressions)")
    kind, reason = mode()
    if kind == "real GPU":
        import cupy

        return cupy.RawModule(code=code, options=options, name_expressions=names)
    if kind == "emulated":
        from gpu import emu

        return emu.Module(code, names, options, filename=filename)
    raise RuntimeError(f"cannot run CUDA C kernels here: {reason}")


def _source(path_or_source, options: tuple) -> tuple[str, str, tuple]:
    """(code, file name for messages, options with -I<the file's directory>)."""
    is_path = isinstance(path_or_source, os.PathLike) or (
        "\n" not in path_or_source and path_or_source.endswith((".cu", ".cuh")))
    if not is_path:
        return path_or_source, "<source>", options
    path = Path(path_or_source).resolve()
    return path.read_text(), path.name, (*options, f"-I{path.parent}")
