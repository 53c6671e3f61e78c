"""Your own kernels: declare them in a file of your own, check them, benchmark them.

    # mine.py, anywhere on disk
    import kernels
    from numba import njit

    @njit
    def correlate(x, w, y):                       # y[j] = sum_i x[j+i] w[i]
        ...

    @kernels.kernel("conv1d", backend="numba_cpu", name="mine")
    def conv1d_mine(p, x, w, y):
        '''my first kernel: one output per loop iteration'''
        correlate(x, w[::-1].copy() if p.flip else w, y)

    $ python -m kernels check mine.py             # the edge-size matrix, a verdict per case
    $ python -m kernels bench mine.py             # timed beside the built-in variants and baselines
    $ python -m kernels new conv1d --lang numba   # a starter file that passes check as written

An implementation has the signature of every built-in one, `impl(p, *inputs, *outs)`: `p` is the
validated problem (p.n, p.k, p.m, p.dtype, p.flip, ...; the layer: p.N, p.C_in, p.L_out, p.stride, ...),
inputs are contiguous arrays of the backend's kind and outputs are preallocated (NaN-poisoned when
checked). It validates and allocates nothing. A file may implement any subset of the ops; `check`
covers the ops it declares and nothing else. CUDA C kernels are declared with `gpu.cupy.playground.cuda_c`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernels import backend as backend_module
from kernels import cases, compare, registry
from kernels.spec import OPS

#: Thread orders an emulated CUDA C kernel is checked in (a race shows as order-dependent results).
EMULATED_ORDERS = ("forward", "reverse")


def kernel(op: str, *, backend: str, name: str, method: str = "direct", default: bool = False):
    """Register the decorated `impl(p, *inputs, *outs)` as variant `name` of `op` on `backend`.

    `method` ("direct", "fft" or "auto") says how it computes: benchmarks and plots group by it.
    """
    if op not in OPS:
        raise KeyError(f"op: expected one of {sorted(OPS)}, got {op!r}")
    target = registry.backend(backend)  # KeyError listing the backends for an unknown name
    if name in target.impls.get(op, {}):
        raise ValueError(f"name: {backend} already has a variant {name!r} of {op}; pick another name")

    def register(fn):
        if not (fn.__doc__ or "").strip():
            fn.__doc__ = f"{name} (a kernel of {getattr(fn, '__module__', 'a user file')})"
        return target.impl(op, name, default=default, method=method)(fn)

    return register


@dataclass(frozen=True)
class Declared:
    """One implementation a file registered."""

    backend: str
    op: str
    variant: str

    def __str__(self):
        return f"{self.op} {self.backend}:{self.variant}"


def _registered() -> set[Declared]:
    found = set()
    for name in registry.BACKEND_MODULES:
        impls = registry.backend(name).impls
        found |= {Declared(name, op, v) for op, variants in impls.items() for v in variants}
    return found


def load_file(path) -> list[Declared]:
    """Import the Python file at `path` and return the implementations it registered, in a stable order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FILE: no such file: {path}")
    if path.suffix != ".py":
        raise ValueError(f"FILE: expected a Python file (.py) that declares kernels, got {path.name}")
    before = _registered()
    module_name = f"_playground_{path.stem}_{abs(hash(path.resolve())) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    declared = sorted(_registered() - before, key=lambda d: (list(OPS).index(d.op), d.backend, d.variant))
    if not declared:
        raise ValueError(f"FILE: {path.name} declares no kernel; decorate an implementation with "
                         "@kernels.kernel(op, backend=..., name=...) or use gpu.cupy.playground.cuda_c(...)")
    return declared


@dataclass
class CaseResult:
    """The verdict on one implementation at one case of the matrix."""

    declared: Declared
    case: str
    mode: str  # "" or the emulated thread order
    ok: bool
    max_ratio: float = 0.0  # worst |err| / tolerance
    max_err: float = 0.0
    worst: str = ""  # output and index of the worst element
    nan: int = 0  # NaN elements of the result where the reference has none
    inf: int = 0
    criterion: str = "elementwise"
    error: str = ""  # the exception, when the call raised

    def line(self) -> str:
        head = f"{'pass' if self.ok else 'FAIL'}  {self.declared}  {self.case}{' ' + self.mode if self.mode else ''}"
        if self.error:
            return f"{head}: {self.error}"
        return (f"{head}: max err {self.max_err:.3g} ({self.max_ratio:.3g}x tolerance, {self.criterion}) at "
                f"{self.worst}, NaN {self.nan}, Inf {self.inf}")

    def as_dict(self) -> dict:
        return {"backend": self.declared.backend, "op": self.declared.op, "variant": self.declared.variant,
                **{k: v for k, v in self.__dict__.items() if k != "declared"}}


def _options_for(fn, state: str) -> dict:
    """The matrix's small blocks for implementations that take launch options (**options or block=)."""
    params = inspect.signature(fn).parameters.values()
    takes = any(p.kind == p.VAR_KEYWORD or p.name == "block" for p in params)
    return dict(cases.SMALL_BLOCKS.get(state, {})) if takes else {}


@contextlib.contextmanager
def _env(name: str, value: str | None):
    """os.environ[name] = value inside the block (nothing changes when value is None)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _judge(d: Declared, case: cases.Case, mode: str, got, args, kwargs, method: str) -> CaseResult:
    verdict = compare.check(d.op, got, args, kwargs, method=method)
    outs = (got,) if OPS[d.op].single else tuple(got)
    _, _, ref, _ = compare.reference(d.op, args, kwargs)
    nan = inf = 0
    for o, r in zip(outs, ref):
        o = compare.to_host(o)
        nan += int(np.count_nonzero(np.isnan(o) & ~np.isnan(r)))
        inf += int(np.count_nonzero(np.isinf(o) & ~np.isinf(r)))
    worst = max(verdict.mismatches, key=lambda m: (m.bad_nonfinite, m.max_ratio))
    return CaseResult(d, str(case), mode, verdict.ok, verdict.max_ratio, verdict.max_err,
                      f"{worst.output}{list(worst.worst_index)}", nan, inf, verdict.criterion)


def check_declared(declared, *, seed=None, sizes: str = "matrix") -> list[CaseResult]:
    """Every declared implementation on every case of the edge-size matrix (`kernels.cases`).

    Outputs are NaN-poisoned; emulated CUDA C runs in forward and in reverse thread order. A call that
    raises is a failed case with the exception. `sizes="one"` checks one mid-size case per op and dtype.
    """
    rng = np.random.default_rng(seed)
    results = []
    poison, backend_module.POISON = backend_module.POISON, True
    try:
        for d in declared:
            state = registry.status(d.backend).state
            b = registry.backend(d.backend)
            method = b.method(d.op, d.variant)
            fn = b.impls[d.op][d.variant]
            fn_call = registry.get(d.op, d.backend, d.variant, **_options_for(fn, state))
            modes = EMULATED_ORDERS if state == "emulated" else ("",)
            todo = cases.cases(d.op, state)
            if sizes == "one":
                todo = [c for c in todo if not c.flip][-4:-2] or todo[:2]
            for case in todo:
                args, kwargs = case.args(rng)
                for mode in modes:
                    with _env("KERNELS_EMU_ORDER", mode or None):
                        try:
                            got = fn_call(*args, **kwargs)
                            results.append(_judge(d, case, mode, got, args, kwargs, method))
                        except Exception as e:  # a crash is that case's failure, not the run's
                            results.append(CaseResult(d, str(case), mode, False, error=f"{type(e).__name__}: {e}"))
    finally:
        backend_module.POISON = poison
    return results
