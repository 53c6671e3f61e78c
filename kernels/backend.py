"""A backend: named implementations of the ops, and how its arrays move in and out.

A backend module creates one `Backend` and registers implementations with `@backend.impl(op,
variant)`. `Backend.function` turns an implementation into the public op: it validates the
arguments through the op's ``parse`` (the one validation path), moves inputs to the backend's
memory, allocates the outputs (poisoned with NaN while `POISON` is set, so unwritten elements
show), calls the implementation, and hands results back in the kind of array it was given.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kernels.spec import OPS

#: Fill freshly allocated outputs with NaN before the kernel runs (tests switch it on).
POISON = os.environ.get("KERNELS_POISON", "0") == "1"

#: How an implementation computes its op, declared where it is registered (benchmarks and plots read it).
METHODS = ("direct", "fft", "auto")


@dataclass(frozen=True)
class Status:
    state: str  # "available", "real GPU", "simulated", "emulated" or "unavailable"
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.state != "unavailable"


class HostArrays:
    """NumPy arrays in host memory: the array kind of the CPU backends."""

    name = "numpy.ndarray"

    def owns(self, a) -> bool:
        return isinstance(a, np.ndarray)

    def prepare(self, a):
        """A contiguous array of this kind holding `a` (no copy when it already is one)."""
        return np.ascontiguousarray(a)

    def writable_in_place(self, a) -> bool:
        """True when a kernel can write into `a` directly (own kind, C-contiguous)."""
        return isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def fill_nan(self, a):
        a.fill(np.nan)

    def to_host(self, a) -> np.ndarray:
        return a

    def copy_into(self, dst, src):
        """dst[...] = src where dst may be a host array and src one of this kind."""
        dst[...] = self.to_host(src)


@dataclass
class Backend:
    name: str
    doc: str
    status: Callable[[], Status] = lambda: Status("available")
    arrays: HostArrays = field(default_factory=HostArrays)
    impls: dict = field(default_factory=dict)  # op -> {variant: implementation}
    defaults: dict = field(default_factory=dict)  # op -> default variant
    methods: dict = field(default_factory=dict)  # (op, variant) -> "direct", "fft" or "auto"

    def impl(self, op: str, variant: str, *, default: bool = False, method: str = "direct"):
        """Register `fn(p, *inputs, *outs, **options)` as `variant` of `op`, computed by `method`.

        The first line of its docstring is the variant's one-line note.
        """
        if op not in OPS:
            raise KeyError(f"unknown op {op!r}")
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")

        def register(fn):
            self.impls.setdefault(op, {})[variant] = fn
            self.methods[op, variant] = method
            if default or op not in self.defaults:
                self.defaults[op] = variant
            return fn

        return register

    def method(self, op: str, variant: str) -> str:
        """"direct", "fft" or "auto": how `variant` of `op` computes, as declared at registration."""
        return self.methods[op, variant]

    def variants(self, op: str) -> dict[str, str]:
        """Variant name -> one-line note, for `op`."""
        return {v: (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
                for v, fn in self.impls.get(op, {}).items()}

    def function(self, op_name: str, variant: str | None = None, **options) -> Callable:
        """The public op `op_name` computed by `variant` (default: the backend's default)."""
        op = OPS[op_name]
        if op_name not in self.impls:
            raise KeyError(f"backend {self.name!r} does not implement {op_name!r}")
        variant = variant or self.defaults[op_name]
        try:
            impl = self.impls[op_name][variant]
        except KeyError:
            raise KeyError(f"backend {self.name!r} has no variant {variant!r} of {op_name!r}; "
                           f"it has {sorted(self.impls[op_name])}") from None
        arrays = self.arrays

        @functools.wraps(op.parse)
        def call(*args, out=None, **kwargs):
            p, inputs = op.parse(*args, **kwargs)
            native = arrays.name != HostArrays.name and any(arrays.owns(a) for a in inputs)
            inputs = tuple(arrays.prepare(a) for a in inputs)
            shapes = op.out_shapes(p)
            given = _check_out(op, p, shapes, out)
            outs = tuple(g if g is not None and arrays.writable_in_place(g) else arrays.empty(s, p.dtype)
                         for g, s in zip(given, shapes))
            if POISON:
                for g, o in zip(given, outs):
                    if g is None:
                        arrays.fill_nan(o)
            impl(p, *inputs, *outs, **options)
            if out is not None:
                for g, o in zip(given, outs):
                    if g is not o:
                        arrays.copy_into(g, o)
                return out
            if not native:
                outs = tuple(arrays.to_host(o) for o in outs)
            return outs[0] if op.single else outs

        call.op, call.backend, call.variant = op, self, variant
        call.__name__ = f"{op_name}[{self.name}:{variant}]"
        return call


def _check_out(op, p, shapes, out) -> tuple:
    """The user's `out` arrays (one per output, or Nones), checked against the op's outputs."""
    if out is None:
        return (None,) * len(shapes)
    targets = (out,) if op.single else tuple(out)
    if len(targets) != len(shapes):
        raise ValueError(f"out: expected {len(shapes)} arrays {op.outputs}, got {len(targets)}")
    for name, t, s in zip(op.outputs, targets, shapes):
        if tuple(getattr(t, "shape", ())) != s or np.dtype(getattr(t, "dtype", object)) != p.dtype:
            raise ValueError(f"out ({name}): expected an array of shape {s} and dtype {p.dtype}, "
                             f"got {getattr(t, 'shape', type(t).__name__)} {getattr(t, 'dtype', '')}")
    return targets
