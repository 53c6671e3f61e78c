"""Checking a backend's outputs against the float64 reference, with tolerances from the dtype.

For each output element the bound is

    |got - ref| <= atol + rtol * mag,    rtol = C * eps(dtype) * sqrt(L)

where L is the op's reduction length (the longest sum behind one output) and mag is the same op
applied to |inputs| (the sum of |terms|, the scale rounding errors grow with). NaN or Inf where the
reference is finite, and the reverse, are counted separately: they mean an element went unwritten
(outputs are poisoned with NaN) or a value blew up.

An FFT result's error is bounded normwise, not elementwise: an implementation registered with method
"fft" or "auto" that misses the elementwise bound is judged by |got - ref| <= FFT_C * eps * log2(n + k)
* max(mag) instead (the criterion is reported).

The public checker is `check` (one call, a `Verdict`) and `Reference` (one reference shared by several
implementations of the same call); `compare` and `assert_close` give the per-output `Mismatch` list.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from kernels.spec import OPS

C = 4.0  # safety factor over the typical sqrt(L) growth of rounding error
FFT_C = 8.0  # safety factor of the normwise FFT bound


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
    return [compare_output(name, to_host(g), r, mg, rtol, atol)
            for name, g, r, mg in zip(op.outputs, got, ref, mag)]


def compare_output(name, got, ref, mag, rtol, atol) -> Mismatch:
    """One output against its float64 reference `ref`, with bound atol + rtol * mag per element."""
    if got.shape != ref.shape:
        raise AssertionError(f"{name}: expected shape {ref.shape}, got {got.shape}")
    # Where every element of both is finite (the common case) one subtraction and one division decide;
    # any NaN or Inf in either makes the largest ratio non-finite, and the element-wise pass below sorts it out.
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.subtract(got, ref, dtype=np.float64)
        np.abs(err, out=err)
        ratio = np.multiply(mag, rtol, dtype=np.float64)
        ratio += atol
        np.divide(err, ratio, out=ratio)
    worst_ratio = float(ratio.max(initial=0.0))
    if not math.isfinite(worst_ratio):
        return _compare_nonfinite(name, got.astype(np.float64), ref, mag, rtol, atol)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    return Mismatch(name, float(err.max(initial=0.0)), worst_ratio, tuple(int(i) for i in worst), 0,
                    int(ref.size))


def _compare_nonfinite(name, got, ref, mag, rtol, atol) -> Mismatch:
    """`compare_output` where got or ref holds NaN or Inf: those elements count as matching only where both
    are the same non-finite value; the finite ones are compared as usual."""
    finite = np.isfinite(got) & np.isfinite(ref)
    same_nonfinite = ~np.isfinite(ref) & (np.isnan(ref) & np.isnan(got) | (ref == got))
    bad_nonfinite = int(np.count_nonzero(~finite & ~same_nonfinite))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(got - ref), 0.0)
        ratio = err / (atol + rtol * np.where(finite, mag, 0.0))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    return Mismatch(name, float(err.max(initial=0.0)), float(ratio.max(initial=0.0)),
                    tuple(int(i) for i in worst), bad_nonfinite, int(ref.size))


def faults(name: str, got: np.ndarray, ref: np.ndarray) -> dict:
    """Where `got` is non-finite and the reference is not: {unwritten: count of NaN (an output left
    unwritten: outputs are poisoned with NaN), first_unwritten: "name[i]", nonfinite: count of other
    non-finite values (Inf; a NaN the arithmetic made reads as unwritten), first_nonfinite}."""
    got = np.asarray(got)
    out = {}
    for key, bad in (("unwritten", np.isnan(got) & ~np.isnan(ref)),
                     ("nonfinite", ~np.isnan(got) & ~np.isfinite(got) & np.isfinite(ref))):
        count = int(np.count_nonzero(bad))
        out[key] = count
        first = np.unravel_index(int(np.argmax(bad)), bad.shape) if count else None
        out[f"first_{key}"] = f"{name}{list(map(int, first))}" if count else ""
    return out


def assert_close(op_name: str, got, args, kwargs=None):
    """Raise AssertionError listing every output that is off, with its worst element."""
    report = compare(op_name, got, args, kwargs)
    bad = [str(m) for m in report if not m.ok]
    if bad:
        raise AssertionError(f"{op_name} differs from the reference:\n  " + "\n  ".join(bad))
    return report


@dataclass
class Verdict:
    """The checker's judgement of one call: pass/fail, by which criterion, and the worst error."""

    ok: bool
    criterion: str  # "elementwise" or "normwise (fft)"
    max_ratio: float  # worst |err| / tolerance under that criterion (> 1 fails)
    max_err: float
    mismatches: list  # one Mismatch per output (elementwise)
    n: int = 0  # signal length (or L) the check ran at

    @property
    def detail(self) -> str:
        return "; ".join(str(m) for m in self.mismatches if not m.ok)

    def as_dict(self) -> dict:
        d = {"n": self.n, "criterion": self.criterion, "ok": self.ok, "max_ratio": self.max_ratio,
             "max_err": self.max_err}
        return d | ({"detail": self.detail} if not self.ok else {})


class Reference:
    """The float64 reference of one call op(*args, **kwargs), computed on first use, shared by checks."""

    def __init__(self, op_name: str, args, kwargs=None):
        self.op_name, self.args, self.kwargs, self._ref = op_name, tuple(args), dict(kwargs or {}), None

    def compute(self) -> Reference:
        """Compute the reference now (before the call it judges, which might change the inputs)."""
        if self._ref is None:
            self._ref = reference(self.op_name, self.args, self.kwargs)
        return self

    def scaled(self, factor: float, args) -> Reference:
        """The reference of the same op on `args`, which are this call's inputs with every output scaled by
        `factor` (a power of two: exact); computed from this one at no cost."""
        p, inputs, ref, mag = self.compute()._ref
        out = Reference(self.op_name, args, self.kwargs)
        out._ref = (p, inputs, tuple(r * factor for r in ref), tuple(m * abs(factor) for m in mag))
        return out

    @property
    def outputs(self) -> tuple:
        """The float64 reference outputs."""
        return self.compute()._ref[2]

    def check(self, got, method: str = "direct") -> Verdict:
        """Judge `got` (array or tuple of arrays) for an implementation computing by `method`."""
        p, _, ref, mag = self.compute()._ref
        op = OPS[self.op_name]
        got = (got,) if op.single else tuple(got)
        if len(got) != len(ref):
            raise AssertionError(f"{self.op_name}: expected {len(ref)} outputs {op.outputs}, got {len(got)}")
        rtol, atol = tolerance(self.op_name, p, p.dtype)
        report = [compare_output(name, to_host(g), r, m, rtol, atol)
                  for name, g, r, m in zip(op.outputs, got, ref, mag)]
        n = getattr(p, "n", getattr(p, "L", 0))
        verdict = Verdict(all(m.ok for m in report), "elementwise", max(m.max_ratio for m in report),
                          max(m.max_err for m in report), report, n)
        if not verdict.ok and method in ("fft", "auto") and all(m.bad_nonfinite == 0 for m in report):
            length = n + getattr(p, "k", 0)
            tol = FFT_C * float(np.finfo(p.dtype).eps) * math.log2(max(2, length)) * max(
                float(np.max(m_, initial=0.0)) for m_ in mag)
            verdict.criterion, verdict.max_ratio = "normwise (fft)", verdict.max_err / tol
            verdict.ok = verdict.max_err <= tol
        return verdict


def check(op_name: str, got, args, kwargs=None, *, method: str = "direct") -> Verdict:
    """Judge a backend's result `got` for op_name(*args, **kwargs) against the float64 reference."""
    return Reference(op_name, args, kwargs).check(got, method)
