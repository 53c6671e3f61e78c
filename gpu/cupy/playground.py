"""Declare your own CUDA C kernel: a `.cu` file plus one `cuda_c(...)` call in a Python file.

    # mine.py                                          // mine.cu
    import numpy as np                                 // name_expressions: mine<float>, mine<double>
    from gpu.cupy.playground import cuda_c                  template <typename T>
                                                       __global__ void mine(const T* x, const T* w, T* y,
    cuda_c("conv1d", name="mine", source="mine.cu",                         long long m, long long k, int flip)
           entry="mine<{T}>",                          { ... }
           args=lambda p, x, w, y: (x, w, y, np.int64(p.m), np.int64(p.k), np.int32(p.flip)))

The declaration says which op (`op`), which entry point (`entry`, `{T}` becoming float or double) and
which launch rule (`grid(p, block)` -> blocks; default one thread per element of the first output,
capped at 65535 blocks, so the kernel strides over the rest). It registers variant `name` on the cupy
backend: on a GPU CuPy compiles the file with NVRTC, without one the emulator (gpu/emu) builds the same
file with g++. Scalars go in with explicit NumPy types (np.int64 for `long long`, np.int32 for `int`).

`launches(cap, dry)` is the launch control `python -m kernels check` uses: inside it every launch of a
declared kernel is recorded as (blocks, threads per block), its grid cut to `cap` blocks, or (dry) not run.
`caps_grid(impl)` says whether a declaration's launch rule caps the grid (the default rule does).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from pathlib import Path

import numpy as np

import kernels
from gpu.cupy import loader, nvrtc
from kernels.spec import OPS

MAX_BLOCKS = 65535
#: The launch control of `launches`: a grid cap, a dry run, the list the launches are recorded in.
_CONTROL = {"cap": None, "dry": False, "record": None}


def cuda_c(op: str, *, name: str, source, entry: str, args, grid=None, block: int = 128, shared_mem: int = 0,
           method: str = "direct"):
    """Register the CUDA C kernel `entry` of `source` as variant `name` of `op` on the cupy backend.

    `args(p, *inputs, *outs)` returns the kernel's argument tuple; `grid(p, block)` the number of blocks;
    `shared_mem` bytes of dynamic shared memory (an int, or a function of (p, block)).
    """
    if op not in OPS:
        raise KeyError(f"op: expected one of {sorted(OPS)}, got {op!r}")
    if "{T}" not in entry:
        raise ValueError(f"entry: expected a name expression with {{T}} for the element type, e.g. "
                         f"'{entry}<{{T}}>', got {entry!r}")
    path = Path(source)
    if not path.is_absolute():  # relative to the declaring file
        path = Path(inspect.stack()[1].filename).resolve().parent / path
    if not path.is_file():
        raise FileNotFoundError(f"source: no such file: {path}")

    @functools.cache
    def module():
        return loader.load(path)

    def impl(p, *arrays, block: int = block):
        kern = module().get_function(entry.format(T="float" if p.dtype == np.float32 else "double"))
        if grid is not None:
            blocks = int(grid(p, block))
        else:
            count = int(np.prod(OPS[op].out_shapes(p)[0]))
            blocks = max(1, min(MAX_BLOCKS, -(-count // block)))
        smem = shared_mem(p, block) if callable(shared_mem) else shared_mem
        if _CONTROL["cap"] is not None:
            blocks = min(blocks, _CONTROL["cap"])
        if _CONTROL["record"] is not None:
            _CONTROL["record"].append((blocks, block))
        if not _CONTROL["dry"]:
            kern((blocks,), (block,), args(p, *arrays), shared_mem=int(smem))

    impl.__doc__ = f"{entry} of {path.name} (CUDA C)"
    impl.caps_grid = grid is None
    impl.resources = functools.partial(resources, path)
    kernels.kernel(op, backend="cupy", name=name, method=method)(impl)
    return impl


@contextlib.contextmanager
def launches(cap: int | None = None, dry: bool = False):
    """Inside the block, every launch of a declared kernel is recorded in the list it yields as (blocks,
    threads per block), with the grid cut to `cap` blocks, or (dry) recorded and not run."""
    saved, record = dict(_CONTROL), []
    _CONTROL.update(cap=cap, dry=dry, record=record)
    try:
        yield record
    finally:
        _CONTROL.update(saved)


def caps_grid(impl) -> bool | None:
    """True when the launch rule of a declared kernel caps its grid (the default rule: MAX_BLOCKS), so that
    the kernel must stride over the outputs past it; None when it is the declaration's own (probe it)."""
    return True if getattr(impl, "caps_grid", False) else None


def resources(path: Path) -> list[str]:
    """One line per kernel and architecture: registers, static shared memory and spills (NVRTC + ptxas)."""
    problem = nvrtc.nvrtc_problem()
    if problem:
        return [f"not compiled with NVRTC here: {problem}"]
    try:
        usages = nvrtc.check(path)
    except nvrtc.CompileError as e:
        return [f"NVRTC rejects {path.name}: {e}"]
    return [f"{u.kernel} sm_{u.arch}: {u.registers} registers, {u.shared} B static shared, "
            f"spills {u.spill_stores} stores / {u.spill_loads} loads{'  <- SPILLS' if u.spill_stores else ''}"
            for u in usages]
