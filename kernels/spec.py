"""What an op is: its public signature, validation, outputs, counts, reference and test inputs.

An op family module (``kernels/conv1d.py``, ``kernels/circular.py``, ...) declares each op once with
`define`. Backends then supply implementations with the signature

    impl(p, *inputs, *outs) -> None

where ``p`` is the validated problem (sizes, dtype, flags) computed once by the op's ``parse``,
``inputs`` are contiguous arrays of the backend's kind and ``outs`` are preallocated outputs of
``op.out_shapes(p)``. Validation, allocation, poisoning and host/device copies happen in
`kernels.backend.Backend`, never in an implementation.

An op may also have a ``fast`` parse for the common call (contiguous float32/float64 NumPy arrays,
default keywords): it returns what ``parse`` would, or None for anything else, and never raises.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

OPS: dict[str, Op] = {}


@dataclass(frozen=True)
class Op:
    name: str
    parse: Callable  # public (*args, **kwargs) -> (problem, tuple of input arrays)
    outputs: tuple[str, ...]  # names of the outputs, in return order
    out_shapes: Callable  # problem -> tuple of shapes, one per output
    flops: Callable  # problem -> int (2 per multiply-add)
    min_bytes: Callable  # problem -> int (each input read once, each output written once)
    reference: Callable  # (problem, *float64 inputs) -> tuple of float64 outputs
    make_args: Callable  # (rng, dtype, **sizes) -> (args tuple, kwargs dict) for tests and benchmarks
    family: str  # module that defines it, e.g. "conv1d"
    reduction_length: Callable  # problem -> longest sum behind one output (sets tolerances)
    doc: str = ""
    #: (args, kwargs) -> (problem, inputs) as `parse` gives for the common call (contiguous float
    #: NumPy arrays, default keywords), or None for anything else (then `parse` runs and raises).
    fast: Callable | None = None

    @property
    def single(self) -> bool:
        return len(self.outputs) == 1


def define(name, *, parse, outputs, out_shapes, flops, min_bytes, reference, make_args,
           reduction_length, doc="", fast=None):
    """Declare an op; its family is the calling module."""
    family = sys._getframe(1).f_globals["__name__"].rsplit(".", 1)[-1]  # inspect.stack() reads every frame's source
    op = Op(name, parse, tuple(outputs), out_shapes, flops, min_bytes, reference, make_args,
            family, reduction_length, doc.strip(), fast)
    OPS[name] = op
    return op


def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Fresh standard-normal values in `dtype` (never zeros or ones alone)."""
    return rng.standard_normal(shape).astype(dtype)


def dyadic_array(rng: np.random.Generator, shape, dtype, bits: int = 3) -> np.ndarray:
    """Random multiples of 2**-bits in [-2, 2): exact in float32 and float64.

    Sums of their products stay exact, so a ReLU mask computed in float32 equals the float64 one.
    """
    return (rng.integers(-2 << bits, 2 << bits, size=shape) / (1 << bits)).astype(dtype)
