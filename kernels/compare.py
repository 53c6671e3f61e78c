"""Checking a backend's outputs against the float64 reference, with tolerances from the dtype.

For each output element the bound is

    |got - ref| <= atol + rtol * mag,    rtol = C * eps(dtype) * sqrt(L)

where L is the op's reduction length (the longest sum behind one output) and mag is the same op
applied to |inputs| (the sum of |terms|, the scale rounding errors grow with). NaN or Inf where the
reference is finite, and the reverse, are counted separately: they mean an element went unwritten
(outputs are poisoned with NaN) or a value blew up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from kernels.spec import OPS

C = 4.0  # safety factor over the typical sqrt(L) growth of rounding error


@dataclass
class Mismatch:
    output: str
    max_err: float  # max |got - ref| over finite elements
    max_ratio: float  # max |got - ref| / tolerance (> 1 fails)
    worst_index: tuple
    bad_nonfinite: int  # elements non-finite in exactly one of got/ref, or differently so
    size: int

    @property
    def ok(self) -> bool:
        return self.bad_nonfinite == 0 and self.max_ratio <= 1.0

    def __str__(self):
        return (f"{self.output}: max err {self.max_err:.3g} at {self.worst_index} "
                f"({self.max_ratio:.3g}x tolerance), non-finite mismatches {self.bad_nonfinite}/{self.size}")


def to_host(a) -> np.ndarray:
    """A NumPy copy of a NumPy, CuPy or numba device array."""
    for attr in ("get", "copy_to_host"):
        if hasattr(a, attr) and not isinstance(a, np.ndarray):
            return getattr(a, attr)()
    return np.asarray(a)


def reference(op_name: str, args, kwargs=None):
    """(problem, float64 inputs, float64 reference outputs, magnitudes) for one call."""
    op = OPS[op_name]
    p, inputs = op.parse(*args, **(kwargs or {}))
    inputs = tuple(to_host(a).astype(np.float64) for a in inputs)
    ref = op.reference(p, *inputs)
    abs_p = dataclasses.replace(p, b=abs(p.b)) if getattr(p, "b", None) is not None else p
    mag = op.reference(abs_p, *(np.abs(a) for a in inputs))
    return p, inputs, ref, mag


def tolerance(op_name: str, p, dtype) -> tuple[float, float]:
    """(rtol, atol) for outputs of `op_name` computed in `dtype`."""
    info = np.finfo(dtype)
    L = max(1, OPS[op_name].reduction_length(p))
    return C * float(info.eps) * math.sqrt(L), float(info.tiny)


def compare(op_name: str, got, args, kwargs=None) -> list[Mismatch]:
    """Compare a backend's result `got` (array or tuple) for op(*args, **kwargs) with the reference."""
    op = OPS[op_name]
    p, _, ref, mag = reference(op_name, args, kwargs)
    got = (got,) if op.single else tuple(got)
    if len(got) != len(ref):
        raise AssertionError(f"{op_name}: expected {len(ref)} outputs {op.outputs}, got {len(got)}")
    rtol, atol = tolerance(op_name, p, p.dtype)
    return [_compare_one(name, to_host(g), r, mg, rtol, atol)
            for name, g, r, mg in zip(op.outputs, got, ref, mag)]


def _compare_one(name, got, ref, mag, rtol, atol) -> Mismatch:
    if got.shape != ref.shape:
        raise AssertionError(f"{name}: expected shape {ref.shape}, got {got.shape}")
    got = got.astype(np.float64)
    finite = np.isfinite(got) & np.isfinite(ref)
    same_nonfinite = ~np.isfinite(ref) & (np.isnan(ref) & np.isnan(got) | (ref == got))
    bad_nonfinite = int(np.count_nonzero(~finite & ~same_nonfinite))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(got - ref), 0.0)
        ratio = err / (atol + rtol * np.where(finite, mag, 0.0))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    return Mismatch(name, float(err.max(initial=0.0)), float(ratio.max(initial=0.0)),
                    tuple(int(i) for i in worst), bad_nonfinite, int(ref.size))


def assert_close(op_name: str, got, args, kwargs=None):
    """Raise AssertionError listing every output that is off, with its worst element."""
    report = compare(op_name, got, args, kwargs)
    bad = [str(m) for m in report if not m.ok]
    if bad:
        raise AssertionError(f"{op_name} differs from the reference:\n  " + "\n  ".join(bad))
    return report
