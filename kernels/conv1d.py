"""Valid 1-D correlation/convolution of one signal with one filter, and its gradients.

Shapes: x has length n, w has length k with 1 <= k <= n, and y has length m = n - k + 1.

    flip=False (deep-learning "convolution", i.e. cross-correlation):
        y[j]  = sum_{i<k} x[j+i] w[i]
    flip=True (true convolution, equal to np.convolve(x, w, "valid")):
        y[j]  = sum_{i<k} w[i] x[j+k-1-i]

Given g = dL/dy (length m), the gradients of L are, for flip=False,

    dw[i] = sum_{j<m} g[j] x[j+i]              (i < k; g times the Hankel Jacobian dy/dw)
    db    = sum_{j<m} g[j]                      (shape (1,): one filter, one bias)
    dx[t] = sum_{i<k, 0<=t-i<m} g[t-i] w[i]     (t < n; the full convolution of g with w)

and for flip=True the filter is reversed: dw comes out reversed, dx uses w[::-1].

conv1d_relu fuses a bias and a ReLU: y = max(0, conv1d(x, w) + b). Its backward pass masks g where
the pre-activation is <= 0, so a filter whose responses are all negative gets exactly zero dw, db.

The reference accumulates in float64 with one vectorised pass per filter tap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import counts, validate
from kernels.spec import define, dyadic_array, random_array


@dataclass(frozen=True)
class Conv1dProblem:
    """Sizes and flags of one call, shared by the forward op and its gradients."""

    n: int  # signal length
    k: int  # filter length
    dtype: np.dtype
    flip: bool = False
    b: np.generic | None = None  # bias of the fused ReLU ops

    @property
    def m(self) -> int:
        return counts.valid_length(self.n, self.k)


# --- validation: public arguments -> (problem, inputs) -------------------------------------------

_NO_BIAS = object()  # the ops without a bias (None is a bad bias: b is required where it is taken)


def _signal_and_filter(x, w, flip, b=_NO_BIAS):
    x = validate.float_array("x", x, 1)
    w = validate.float_array("w", w, 1)
    dtype = validate.same_dtype(x=x, w=w)
    n = x.shape[0]
    k = validate.filter_length(w.shape[0], n, name="w (filter length)")
    b = None if b is _NO_BIAS else validate.real_scalar("b", b, dtype)
    return Conv1dProblem(n, k, dtype, validate.flag("flip", flip), b), x, w


def _grad_y(grad_y, p: Conv1dProblem, **others):
    grad_y = validate.float_array("grad_y", grad_y, 1)
    validate.same_dtype(**others, grad_y=grad_y)
    validate.length("grad_y", grad_y, p.m, "m = n - k + 1, the output length")
    return grad_y


def parse_forward(x, w, *, flip=False):
    p, x, w = _signal_and_filter(x, w, flip)
    return p, (x, w)


def parse_weight_grad(x, grad_y, k, *, flip=False):
    x = validate.float_array("x", x, 1)
    p = Conv1dProblem(x.shape[0], validate.filter_length(k, x.shape[0]), np.dtype(x.dtype),
                      validate.flag("flip", flip))
    return p, (x, _grad_y(grad_y, p, x=x))


def parse_bias_grad(grad_y):
    grad_y = validate.float_array("grad_y", grad_y, 1)
    return Conv1dProblem(grad_y.shape[0], 1, np.dtype(grad_y.dtype)), (grad_y,)


def parse_input_grad(w, grad_y, *, flip=False):
    w = validate.float_array("w", w, 1)
    grad_y = validate.float_array("grad_y", grad_y, 1)
    dtype = validate.same_dtype(w=w, grad_y=grad_y)
    k, m = w.shape[0], grad_y.shape[0]
    return Conv1dProblem(m + k - 1, k, dtype, validate.flag("flip", flip)), (w, grad_y)


def parse_relu(x, w, b, *, flip=False):
    p, x, w = _signal_and_filter(x, w, flip, b)
    return p, (x, w)


def parse_relu_backward(x, w, b, grad_y, *, flip=False):
    p, x, w = _signal_and_filter(x, w, flip, b)
    return p, (x, w, _grad_y(grad_y, p, x=x))


# --- fast parses: the same checks for the common call, or None ------------------------------------
# Accepted: exactly the positional arguments, flip (if any) a Python bool, arrays exactly np.ndarray,
# 1-D, C-contiguous, all float32 or all float64, with valid lengths; b a float or NumPy float (not 0,
# whose sign a cache key would lose). Anything else returns None and the parse above runs.

_ND, _F32, _F64 = np.ndarray, np.dtype(np.float32), np.dtype(np.float64)
_PROBLEMS: dict = {}  # (n, k, dtype, flip, b) -> Conv1dProblem, bounded


def _problem(n, k, dtype, flip, b=None) -> Conv1dProblem:
    """The problem of the fast parses, cached in _PROBLEMS under (n, k, dtype, flip, b)."""
    p = _PROBLEMS.get((n, k, dtype, flip, b))
    if p is None:
        if len(_PROBLEMS) >= 1024:
            _PROBLEMS.clear()
        p = _PROBLEMS[n, k, dtype, flip, b] = Conv1dProblem(n, k, dtype, flip, None if b is None else dtype.type(b))
    return p


def _flip(kwargs):
    """flip from keywords that hold at most flip, a Python bool; None for anything else."""
    flip = kwargs.get("flip")
    return flip if len(kwargs) == 1 and (flip is True or flip is False) else None


def _dtype(arrays):
    """The dtype of `arrays` if all are C-contiguous 1-D np.ndarrays of float32 or of float64, else None."""
    d = arrays[0].dtype if type(arrays[0]) is _ND else None
    if d is not _F32 and d is not _F64:
        return None
    for a in arrays:
        if type(a) is not _ND or a.dtype is not d or a.ndim != 1 or not a.flags.c_contiguous:
            return None
    return d


def _bias(b) -> bool:
    return (type(b) is float or type(b) is np.float64 or type(b) is np.float32) and b != 0 and b == b


def fast_forward(args, kwargs):
    flip = _flip(kwargs) if kwargs else False
    d = _dtype(args) if len(args) == 2 and flip is not None else None
    if d is None:
        return None
    n, k = args[0].shape[0], args[1].shape[0]
    if not 1 <= k <= n:
        return None
    return _problem(n, k, d, flip), args


def fast_weight_grad(args, kwargs):
    flip = _flip(kwargs) if kwargs else False
    if len(args) != 3 or flip is None:
        return None
    x, g, k = args
    d = _dtype((x, g))
    if d is None or type(k) is not int:
        return None
    n = x.shape[0]
    if not 1 <= k <= n or g.shape[0] != n - k + 1:
        return None
    return _problem(n, k, d, flip), (x, g)


def fast_bias_grad(args, kwargs):
    d = _dtype(args) if len(args) == 1 and not kwargs else None
    if d is None or args[0].shape[0] < 1:
        return None
    m = args[0].shape[0]
    return _problem(m, 1, d, False), args


def fast_input_grad(args, kwargs):
    flip = _flip(kwargs) if kwargs else False
    d = _dtype(args) if len(args) == 2 and flip is not None else None
    if d is None:
        return None
    k, m = args[0].shape[0], args[1].shape[0]
    if k < 1 or m < 1:
        return None
    return _problem(m + k - 1, k, d, flip), args


def fast_relu(args, kwargs):
    flip = _flip(kwargs) if kwargs else False
    if len(args) != 3 or flip is None:
        return None
    x, w, b = args
    d = _dtype((x, w))
    if d is None or not _bias(b):
        return None
    n, k = x.shape[0], w.shape[0]
    if not 1 <= k <= n:
        return None
    return _problem(n, k, d, flip, b), (x, w)


def fast_relu_backward(args, kwargs):
    flip = _flip(kwargs) if kwargs else False
    if len(args) != 4 or flip is None:
        return None
    x, w, b, g = args
    d = _dtype((x, w, g))
    if d is None or not _bias(b):
        return None
    n, k = x.shape[0], w.shape[0]
    if not 1 <= k <= n or g.shape[0] != n - k + 1:
        return None
    return _problem(n, k, d, flip, b), (x, w, g)


# --- reference (float64) ---------------------------------------------------------------------------

def correlate(x, w, flip=False):
    """y[j] = sum_i x[j+i] w[i] (w reversed first when flip): one pass over x per tap."""
    w = w[::-1] if flip else w
    m = x.shape[0] - w.shape[0] + 1
    y = np.zeros(m)
    for i in range(w.shape[0]):
        y += w[i] * x[i:i + m]
    return y


def weight_grad(x, g, k, flip=False):
    """dw[i] = sum_j g[j] x[j+i]: one dot product of length m per tap."""
    m = g.shape[0]
    dw = np.array([np.dot(g, x[i:i + m]) for i in range(k)])
    return dw[::-1].copy() if flip else dw


def input_grad(w, g, flip=False):
    """dx[i+j] += w[i] g[j]: one shifted add of g per tap."""
    w = w[::-1] if flip else w
    k, m = w.shape[0], g.shape[0]
    dx = np.zeros(m + k - 1)
    for i in range(k):
        dx[i:i + m] += w[i] * g
    return dx


def _relu_mask(p, x, w):
    return correlate(x, w, p.flip) + float(p.b) > 0


def _ref_relu_backward(p, x, w, g):
    g = np.where(_relu_mask(p, x, w), g, 0.0)
    return input_grad(w, g, p.flip), weight_grad(x, g, p.k, p.flip), np.array([g.sum()])


# --- counts ---------------------------------------------------------------------------------------

def _corr_flops(p):
    return counts.correlation_flops(p.n, p.k)


def _bytes(*lengths):
    """min_bytes for arrays of the given lengths (functions of the problem)."""
    return lambda p: counts.bytes_moved(p.dtype.itemsize, *(f(p) for f in lengths))


N, K, M, ONE = (lambda p: p.n), (lambda p: p.k), (lambda p: p.m), (lambda p: 1)


# --- test inputs ----------------------------------------------------------------------------------

def _args_forward(rng, dtype, n, k):
    return (random_array(rng, n, dtype), random_array(rng, k, dtype)), {}


def _args_weight_grad(rng, dtype, n, k):
    return (random_array(rng, n, dtype), random_array(rng, n - k + 1, dtype), k), {}


def _args_bias_grad(rng, dtype, n, k):
    return (random_array(rng, n - k + 1, dtype),), {}


def _args_input_grad(rng, dtype, n, k):
    return (random_array(rng, k, dtype), random_array(rng, n - k + 1, dtype)), {}


def _relu_bias(rng, dtype):
    """A bias that never lets an exact (dyadic) pre-activation hit 0: an odd multiple of 2**-7."""
    return dtype.type((2 * int(rng.integers(-64, 64)) + 1) / 128)


def _args_relu(rng, dtype, n, k):
    dtype = np.dtype(dtype)
    return (dyadic_array(rng, n, dtype), dyadic_array(rng, k, dtype), _relu_bias(rng, dtype)), {}


def _args_relu_backward(rng, dtype, n, k):
    (x, w, b), _ = _args_relu(rng, dtype, n, k)
    return (x, w, b, random_array(rng, n - k + 1, dtype)), {}


# --- the ops --------------------------------------------------------------------------------------

define(
    "conv1d", fast=fast_forward, parse=parse_forward, outputs=("y",), out_shapes=lambda p: ((p.m,),),
    flops=_corr_flops, min_bytes=_bytes(N, K, M), reduction_length=K, make_args=_args_forward,
    reference=lambda p, x, w: (correlate(x, w, p.flip),),
    doc="y[j] = sum_i x[j+i] w[i]  (flip: w reversed, = np.convolve valid)",
)
define(
    "conv1d_weight_grad", fast=fast_weight_grad, parse=parse_weight_grad, outputs=("dw",),
    out_shapes=lambda p: ((p.k,),),
    flops=_corr_flops, min_bytes=_bytes(N, M, K), reduction_length=M, make_args=_args_weight_grad,
    reference=lambda p, x, g: (weight_grad(x, g, p.k, p.flip),),
    doc="dw[i] = sum_j grad_y[j] x[j+i]  (flip: reversed)",
)
define(
    "conv1d_bias_grad", fast=fast_bias_grad, parse=parse_bias_grad, outputs=("db",), out_shapes=lambda p: ((1,),),
    flops=M, min_bytes=_bytes(M, ONE), reduction_length=M, make_args=_args_bias_grad,
    reference=lambda p, g: (np.array([g.sum()]),),
    doc="db = sum_j grad_y[j]",
)
define(
    "conv1d_input_grad", fast=fast_input_grad, parse=parse_input_grad, outputs=("dx",), out_shapes=lambda p: ((p.n,),),
    flops=_corr_flops, min_bytes=_bytes(K, M, N), reduction_length=lambda p: min(p.k, p.m),
    make_args=_args_input_grad, reference=lambda p, w, g: (input_grad(w, g, p.flip),),
    doc="dx[t] = sum_i grad_y[t-i] w[i]  (full convolution of grad_y with w)",
)
define(
    "conv1d_relu", fast=fast_relu, parse=parse_relu, outputs=("y",), out_shapes=lambda p: ((p.m,),),
    flops=lambda p: _corr_flops(p) + 2 * p.m, min_bytes=_bytes(N, K, M), reduction_length=K,
    make_args=_args_relu,
    reference=lambda p, x, w: (np.maximum(correlate(x, w, p.flip) + float(p.b), 0.0),),
    doc="y = max(0, conv1d(x, w) + b)",
)
define(
    "conv1d_relu_backward", fast=fast_relu_backward, parse=parse_relu_backward, outputs=("dx", "dw", "db"),
    out_shapes=lambda p: ((p.n,), (p.k,), (1,)),
    flops=lambda p: 3 * _corr_flops(p) + 4 * p.m, min_bytes=_bytes(N, K, M, N, K, ONE),
    reduction_length=lambda p: max(p.k, p.m), make_args=_args_relu_backward,
    reference=_ref_relu_backward,
    doc="(dx, dw, db) of conv1d_relu, grad_y masked where conv1d(x, w) + b <= 0",
)
