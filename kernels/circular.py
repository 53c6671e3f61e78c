"""Circular cross-correlation of two signals of equal length n, and its gradients.

    z[s]  = sum_{i<n} x[i] y[(i+s) mod n]            (s < n)

Given g = dL/dz,

    dx[i] = sum_{s<n} g[s] y[(i+s) mod n]            (the circular correlation of g with y)
    dy[i] = sum_{s<n} g[s] x[(i-s) mod n]            (the circular convolution of g with x)

The FFT identity z = ifft(conj(fft(x)) * fft(y)) is an independent check of the reference, which
accumulates in float64 with one vectorised pass per lag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import counts, validate
from kernels.spec import define, random_array


@dataclass(frozen=True)
class CircularProblem:
    n: int
    dtype: np.dtype


def _signals(**arrays):
    arrays = {name: validate.float_array(name, a, 1) for name, a in arrays.items()}
    dtype = validate.same_dtype(**arrays)
    first, *rest = arrays
    n = arrays[first].shape[0]
    for name in rest:
        validate.length(name, arrays[name], n, f"len({first}), circular correlation needs equal lengths")
    return CircularProblem(n, dtype), tuple(arrays.values())


def parse_forward(x, y):
    return _signals(x=x, y=y)


def parse_backward(x, y, grad_z):
    return _signals(x=x, y=y, grad_z=grad_z)


_PROBLEMS: dict = {}  # (n, dtype) -> CircularProblem, bounded
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _fast(count):
    """The fast parse of an op on `count` signals: exactly `count` contiguous 1-D float NumPy arrays of
    one dtype and one non-zero length, no keywords; else None (then the parse runs)."""
    def fast(args, kwargs):
        if len(args) != count or kwargs:
            return None
        x = args[0]
        if type(x) is not np.ndarray or (x.dtype is not _F32 and x.dtype is not _F64):
            return None
        dtype, n = x.dtype, x.shape
        for a in args:
            if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != n or not a.flags.c_contiguous:
                return None
        if len(n) != 1 or n[0] < 1:
            return None
        key = (n[0], dtype)
        p = _PROBLEMS.get(key)
        if p is None:
            if len(_PROBLEMS) >= 1024:
                _PROBLEMS.clear()
            p = _PROBLEMS[key] = CircularProblem(n[0], dtype)
        return p, args
    return fast


def correlate(x, y):
    """z[s] = sum_i x[i] y[(i+s) mod n]: y doubled so each lag is a contiguous slice."""
    n = x.shape[0]
    yy = np.concatenate([y, y])
    return np.array([np.dot(x, yy[s:s + n]) for s in range(n)])


def convolve(g, x):
    """d[i] = sum_s g[s] x[(i-s) mod n] = sum_t x[t] g[(i-t) mod n]."""
    return correlate(g[::-1], np.roll(x, -1))


def _bytes(count):
    return lambda p: counts.bytes_moved(p.dtype.itemsize, *[p.n] * count)


def _args(count):
    return lambda rng, dtype, n, k=None: (tuple(random_array(rng, n, dtype) for _ in range(count)), {})


define(
    "circular_correlate", fast=_fast(2), parse=parse_forward, outputs=("z",), out_shapes=lambda p: ((p.n,),),
    flops=lambda p: counts.circular_flops(p.n), min_bytes=_bytes(3),
    reduction_length=lambda p: p.n, make_args=_args(2),
    reference=lambda p, x, y: (correlate(x, y),),
    doc="z[s] = sum_i x[i] y[(i+s) mod n]",
)
define(
    "circular_correlate_backward", fast=_fast(3), parse=parse_backward, outputs=("dx", "dy"),
    out_shapes=lambda p: ((p.n,), (p.n,)),
    flops=lambda p: 2 * counts.circular_flops(p.n), min_bytes=_bytes(5),
    reduction_length=lambda p: p.n, make_args=_args(3),
    reference=lambda p, x, y, g: (correlate(g, y), convolve(g, x)),
    doc="dx[i] = sum_s g[s] y[(i+s) mod n], dy[i] = sum_s g[s] x[(i-s) mod n]",
)
