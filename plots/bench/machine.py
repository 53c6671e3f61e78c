"""What a result was measured on: CPU or GPU, library versions, threads, git commit, date."""

from __future__ import annotations

import ctypes
import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from cpu.machine import cpu_info, slug
from plots.bench import baselines

ROOT = Path(__file__).resolve().parents[2]

#: Distributions whose versions go into every results file (missing ones are recorded as None).
LIBRARIES = ("numpy", "numba", "numba-cuda", "scipy", "torch", "cupy", "matplotlib", "tqdm")


@functools.cache
def gpu_info() -> dict | None:
    """Name, driver and sizes of CUDA device 0 (None without a real device)."""
    if not baselines.gpu_present():
        return None
    try:
        import cupy  # optional: only on a GPU

        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        info = {"name": name, "compute_capability": f"{props['major']}.{props['minor']}",
                "sm_count": props["multiProcessorCount"], "memory_bytes": props["totalGlobalMem"],
                "l2_bytes": props["l2CacheSize"], "driver": _cuda_version(rt.driverGetVersion()),
                "runtime": _cuda_version(rt.runtimeGetVersion()), "via": "cupy"}
    except Exception:  # cupy missing or broken: ask numba.cuda
        try:
            info = _gpu_info_numba()
        except Exception as e:
            info = {"name": "CUDA device", "error": f"{type(e).__name__}: {e}", "l2_bytes": 0}
    info["slug"] = slug(info["name"])
    return info


def _gpu_info_numba() -> dict:
    from numba import cuda  # heavy: initialises the CUDA driver, only without CuPy

    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "compute_capability": ".".join(map(str, dev.compute_capability)),
            "sm_count": dev.MULTIPROCESSOR_COUNT, "l2_bytes": dev.L2_CACHE_SIZE,
            "memory_bytes": cuda.current_context().get_memory_info().total,
            "driver": _cuda_version(cuda.cudadrv.driver.driver.get_version()), "via": "numba.cuda"}


def sm_clock_mhz(device: int = 0) -> float | None:
    """The current SM clock of CUDA device `device` in MHz, from NVML (libnvidia-ml, with the driver); None where
    it cannot be read."""
    nvml = _nvml()
    if nvml is None:
        return None
    handle, mhz = ctypes.c_void_p(), ctypes.c_uint(0)
    if nvml.nvmlDeviceGetHandleByIndex_v2(device, ctypes.byref(handle)) or \
            nvml.nvmlDeviceGetClockInfo(handle, 1, ctypes.byref(mhz)):  # 1: NVML_CLOCK_SM
        return None
    return float(mhz.value)


@functools.cache
def _nvml():
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        return lib if lib.nvmlInit_v2() == 0 else None
    except (OSError, AttributeError):
        return None


def _cuda_version(v) -> str:
    if isinstance(v, tuple):
        return ".".join(map(str, v))
    return f"{v // 1000}.{v % 1000 // 10}"


def versions() -> dict:
    out = {"python": platform.python_version()}
    installed = {}
    for dist in importlib.metadata.distributions():
        installed.setdefault(dist.metadata["Name"].lower(), dist.version)
    for lib in LIBRARIES:
        if lib == "cupy":  # published as cupy-cuda12x, cupy-cuda13x, ...
            hits = [v for n, v in installed.items() if n == "cupy" or n.startswith("cupy-cuda")]
            out[lib] = hits[0] if hits else None
        else:
            out[lib] = installed.get(lib)
    return out


def threads() -> dict:
    """Thread counts each library uses (call after a numba parallel kernel ran, for its layer)."""
    import numba  # heavy: plots.bench.results imports this module, so every `python -m plots` would load numba

    out = {"numba_threads": numba.config.NUMBA_NUM_THREADS}
    try:
        out["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        out["numba_threading_layer"] = None
    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if var in os.environ:
            out[var] = os.environ[var]
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass
    return out


def git() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run("rev-parse", "HEAD") or None
    dirty = bool(run("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit, "dirty": dirty}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).astimezone()


def metadata() -> dict:
    """Everything about the machine and software a results file needs."""
    return {"date": now().isoformat(timespec="seconds"), "host": platform.node(),
            "platform": platform.platform(), "cpu": cpu_info(), "gpu": gpu_info(),
            "versions": versions(), "threads": threads(), "git": git()}
