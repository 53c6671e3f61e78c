"""Backend discovery: the one place that knows which backends exist and whether they run here.

Backends are imported lazily by module path, so a missing package or GPU shows up as an
"unavailable" status with its reason instead of an import error.
"""

from __future__ import annotations

import functools
import importlib

from kernels.backend import Backend, Status
from kernels.spec import OPS

BACKEND_MODULES = {
    "numpy": "kernels.reference",
    "numba_cpu": "cpu.numba_cpu",
    "numba_cuda": "gpu.numba_cuda.backend",
    "cupy": "gpu.cupy.backend",
}


@functools.cache
def backend(name: str) -> Backend:
    """The backend called `name`; an unavailable stand-in (with the reason) if it cannot load."""
    if name not in BACKEND_MODULES:
        raise KeyError(f"backend: expected one of {sorted(BACKEND_MODULES)}, got {name!r}")
    try:
        module = importlib.import_module(BACKEND_MODULES[name])
    except ImportError as e:
        reason = f"cannot import {BACKEND_MODULES[name]}: {e}"
        return Backend(name, "not loaded", status=lambda: Status("unavailable", reason))
    return module.backend


@functools.cache
def status(name: str) -> Status:
    """Whether backend `name` runs here: available, real GPU, simulated, emulated or unavailable."""
    try:
        return backend(name).status()
    except Exception as e:  # a broken driver must not take the registry down
        return Status("unavailable", f"{type(e).__name__}: {e}")


def backends() -> dict[str, Status]:
    """Every known backend with its status."""
    return {name: status(name) for name in BACKEND_MODULES}


def steps(name: str) -> tuple:
    """The steps backend `name` declares (gpu.steps.Step: its variants with their kernels and launches); () for
    a backend that declares none (the CPU backends) or cannot load."""
    if name not in BACKEND_MODULES:
        raise KeyError(f"backend: expected one of {sorted(BACKEND_MODULES)}, got {name!r}")
    try:
        module = importlib.import_module(BACKEND_MODULES[name])
    except ImportError:
        return ()
    return tuple(getattr(module, "STEPS", ()))


def ops() -> list[str]:
    return list(OPS)


def get(op: str, backend_name: str = "numpy", variant: str | None = None, **options):
    """The public function computing `op` on `backend_name` with `variant` (None: its default).

    `options` (for example block=32 on a GPU backend) go to the implementation; they are checked
    here, against what the implementation takes (TypeError/ValueError naming the option).
    """
    if op not in OPS:
        raise KeyError(f"op: expected one of {sorted(OPS)}, got {op!r}")
    if backend_name not in BACKEND_MODULES:
        raise KeyError(f"backend: expected one of {sorted(BACKEND_MODULES)}, got {backend_name!r}")
    st = status(backend_name)
    if not st.usable:
        raise RuntimeError(f"backend {backend_name!r} is unavailable here: {st.reason}")
    return backend(backend_name).function(op, variant, **options)


def variants(op: str, backend_name: str) -> dict[str, str]:
    """Variant name -> one-line note, for `op` on a usable backend (empty if unavailable)."""
    return backend(backend_name).variants(op) if status(backend_name).usable else {}
