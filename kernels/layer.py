"""The batched multi-channel 1-D convolution layer (torch.nn.functional.conv1d) and its gradients.

Shapes (`LayerProblem` holds them, shared by the forward op and its backward):

    x  (N, C_in, L)            w  (C_out, C_in/groups, K)        b  (C_out,)  or absent
    y  (N, C_out, L_out)       L_out = floor((L + 2*padding - dilation*(K-1) - 1) / stride) + 1

with stride >= 1, padding >= 0, dilation >= 1, groups dividing C_in and C_out, and the dilated filter
fitting in the padded input: dilation*(K-1) + 1 <= L + 2*padding (else there is no output position).

Write xpad[n, ci, j] = x[n, ci, j - padding] for 0 <= j - padding < L and 0 elsewhere (zero padding),
and let channel co belong to group G(co) = co // (C_out/groups), whose input channels are
ci = G(co) * (C_in/groups) + c for c < C_in/groups. The forward pass is a cross-correlation,

    y[n, co, l] = b[co] + sum_{c < C_in/groups, t < K} w[co, c, t] * xpad[n, ci, l*stride + t*dilation]

Given g = dL/dy of shape (N, C_out, L_out), the gradients are, for ci = G*C_in/groups + c,

    dw[co, c, t] = sum_{n < N, l < L_out} g[n, co, l] * xpad[n, ci, l*stride + t*dilation]
    db[co]       = sum_{n < N, l < L_out} g[n, co, l]
    dx[n, ci, j] = sum_{co in group G, t < K, l < L_out : l*stride + t*dilation - padding = j}
                       g[n, co, l] * w[co, c, t]

dx is the transposed convolution: each product g[n, co, l] * w[co, c, t] lands on dx[n, ci, j] at
j = l*stride + t*dilation - padding (products landing in the padding are dropped). Read as a gather
(one thread per dx element, no races), the sum runs over the t with (j + padding - t*dilation)
divisible by stride and l = (j + padding - t*dilation) / stride in [0, L_out).

The bias is optional, and its absence is an empty vector everywhere, so that every backend sees the
same fixed inputs and outputs: `conv1d_layer(x, w)` passes b of shape (0,) to the implementations
(``p.has_bias`` is False), and `conv1d_layer_backward(..., has_bias=False)` returns db of shape (0,),
the gradient with respect to a bias that has no elements. A zero-filled (C_out,) db would claim a
gradient for parameters that do not exist, and None would break the fixed outputs tuple (and `out=`).

Counts come from `kernels.layer_counts` (the one source of truth); the reference accumulates in
float64 with one batched matrix product per tap ("convolution as K matrix products").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import layer_counts, validate
from kernels.spec import define, random_array

X_LAYOUT, W_LAYOUT, B_LAYOUT, Y_LAYOUT = "(N, C_in, L)", "(C_out, C_in/groups, K)", "(C_out,)", \
    "(N, C_out, L_out)"


def real_range(start: int, step: int, count: int, L: int) -> tuple[int, int]:
    """[lo, hi), 0 <= lo <= hi <= count: the i < count with 0 <= start + i*step < L (step >= 1), the indices
    that land on the input, not on its zero padding. The taps of output l: real_range(l*stride - padding,
    dilation, K, L); the outputs of tap t: real_range(t*dilation - padding, stride, L_out, L).

    Plain integer arithmetic, so that numba compiles the same function for the CPU (cpu/layer.py) and the GPU
    (gpu/numba_cuda/layer.py); the CUDA C twin is gpu/cupy/layer.cu's real_range."""
    lo = min(count, max(0, -(start // step)))  # ceil(-start / step), within [0, count]
    hi = min(count, (L - 1 - start) // step + 1)  # floor((L - 1 - start) / step) + 1
    return lo, max(lo, hi)


@dataclass(frozen=True)
class LayerProblem:
    """Sizes and settings of one layer call, computed once and shared by forward and backward."""

    N: int  # batch size
    C_in: int  # input channels
    C_out: int  # output channels
    L: int  # input length (before padding)
    K: int  # filter taps
    dtype: np.dtype
    stride: int = 1
    padding: int = 0  # zeros added at each end of every input row
    dilation: int = 1  # distance between taps
    groups: int = 1
    has_bias: bool = True

    @property
    def L_out(self) -> int:
        return layer_counts.output_length(self.L, self.K, self.stride, self.padding, self.dilation)

    @property
    def L_pad(self) -> int:
        """Length of a padded input row, L + 2*padding."""
        return self.L + 2 * self.padding

    @property
    def K_span(self) -> int:
        """Width of the dilated filter, dilation*(K-1) + 1."""
        return self.dilation * (self.K - 1) + 1

    @property
    def C_in_g(self) -> int:
        """Input channels per group (w.shape[1])."""
        return self.C_in // self.groups

    @property
    def C_out_g(self) -> int:
        """Output channels per group."""
        return self.C_out // self.groups

    @property
    def x_shape(self):
        return (self.N, self.C_in, self.L)

    @property
    def w_shape(self):
        return (self.C_out, self.C_in_g, self.K)

    @property
    def b_shape(self):
        """(C_out,) with a bias, (0,) without."""
        return (self.C_out if self.has_bias else 0,)

    @property
    def y_shape(self):
        return (self.N, self.C_out, self.L_out)

    def count(self, activation=None) -> layer_counts.LayerCount:
        """Shapes, parameters and forward operations of this layer (`kernels.layer_counts`)."""
        return layer_counts.conv1d(self.N, self.C_in, self.C_out, self.L, self.K, stride=self.stride,
                                   padding=self.padding, dilation=self.dilation, groups=self.groups,
                                   bias=self.has_bias, activation=activation)

    def tap_range(self, t: int) -> tuple[int, int]:
        """[lo, hi): the output positions l whose tap t reads the input, not the padding:
        0 <= l*stride + t*dilation - padding < L, with 0 <= l < L_out."""
        return real_range(t * self.dilation - self.padding, self.stride, self.L_out, self.L)


# --- validation: public arguments -> (problem, inputs) -------------------------------------------

def _problem(x, w, dtype, stride, padding, dilation, groups, has_bias) -> LayerProblem:
    stride = validate.integer("stride", stride, low=1)
    padding = validate.integer("padding", padding, low=0)
    dilation = validate.integer("dilation", dilation, low=1)
    groups = validate.integer("groups", groups, low=1)
    N, C_in, L = (int(s) for s in x.shape)
    C_out, _, K = (int(s) for s in w.shape)
    validate.divides("groups", groups, **{"C_in (x.shape[1])": C_in, "C_out (w.shape[0])": C_out})
    validate.axis_size("w", w, 1, C_in // groups,
                       f"C_in/groups = {C_in}/{groups}, the input channels of x per group")
    validate.dilated_filter_fits(K, dilation, L, padding)
    return LayerProblem(N, C_in, C_out, L, K, dtype, stride, padding, dilation, groups, has_bias)


def parse_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    x = validate.float_tensor("x", x, X_LAYOUT)
    w = validate.float_tensor("w", w, W_LAYOUT)
    arrays = {"x": x, "w": w}
    if b is not None:
        arrays["b"] = b = validate.float_tensor("b", b, B_LAYOUT)
    dtype = validate.same_dtype(**arrays)
    p = _problem(x, w, dtype, stride, padding, dilation, groups, has_bias=b is not None)
    if b is None:
        b = np.empty(0, dtype)  # no bias: an empty vector, so that implementations get fixed inputs
    else:
        validate.length("b", b, p.C_out, "C_out, the output channels of w")
    return p, (x, w, b)


def parse_backward(x, w, grad_out, *, stride=1, padding=0, dilation=1, groups=1, has_bias=True):
    x = validate.float_tensor("x", x, X_LAYOUT)
    w = validate.float_tensor("w", w, W_LAYOUT)
    grad_out = validate.float_tensor("grad_out", grad_out, Y_LAYOUT)
    dtype = validate.same_dtype(x=x, w=w, grad_out=grad_out)
    p = _problem(x, w, dtype, stride, padding, dilation, groups, validate.flag("has_bias", has_bias))
    validate.shape("grad_out", grad_out, p.y_shape, "(N, C_out, L_out), the shape of the forward output")
    return p, (x, w, grad_out)


# --- reference (float64) ---------------------------------------------------------------------------

def _window(p: LayerProblem, xpad, t):
    """xpad[..., l*stride + t*dilation] for l < L_out: the inputs tap t meets (a strided view)."""
    start = t * p.dilation
    return xpad[..., start:start + (p.L_out - 1) * p.stride + 1:p.stride]


def _grouped(p: LayerProblem, x, w):
    """x as (N, groups, C_in/groups, L_pad) zero-padded, w as (groups, C_out/groups, C_in/groups, K)."""
    xpad = np.pad(x, ((0, 0), (0, 0), (p.padding, p.padding))).reshape(p.N, p.groups, p.C_in_g, p.L_pad)
    return xpad, w.reshape(p.groups, p.C_out_g, p.C_in_g, p.K)


def forward(p: LayerProblem, x, w, b):
    """y = b + sum_t w[:, :, t] @ xpad[..., t*dilation::stride], per group: one matrix product per tap."""
    xpad, wg = _grouped(p, x, w)
    y = np.zeros((p.N, p.groups, p.C_out_g, p.L_out))
    for t in range(p.K):
        y += wg[..., t] @ _window(p, xpad, t)  # (G, Og, Cg) @ (N, G, Cg, L_out)
    y = y.reshape(p.y_shape)
    if p.has_bias:
        y += b[None, :, None]
    return y


def backward(p: LayerProblem, x, w, g):
    """(dx, dw, db): per tap, dw[..., t] = sum_n g @ window^T and window(dxpad) += w[..., t]^T @ g."""
    xpad, wg = _grouped(p, x, w)
    g4 = g.reshape(p.N, p.groups, p.C_out_g, p.L_out)
    dxpad = np.zeros_like(xpad)
    dw = np.empty((p.groups, p.C_out_g, p.C_in_g, p.K))
    for t in range(p.K):
        dw[..., t] = (g4 @ _window(p, xpad, t).swapaxes(-1, -2)).sum(axis=0)  # (N, G, Og, Cg) summed over n
        _window(p, dxpad, t)[...] += wg[..., t].swapaxes(-1, -2) @ g4  # (G, Cg, Og) @ (N, G, Og, L_out)
    dx = dxpad.reshape(p.N, p.C_in, p.L_pad)[:, :, p.padding:p.padding + p.L]
    db = g.sum(axis=(0, 2)) if p.has_bias else np.zeros(0)
    return dx, dw.reshape(p.w_shape), db


# --- counts: all from kernels.layer_counts --------------------------------------------------------

def _forward_bytes(p: LayerProblem) -> int:
    """x, w and b read once, y written once."""
    sizes = (p.x_shape, p.w_shape, p.b_shape, p.y_shape)
    return p.dtype.itemsize * sum(int(np.prod(s)) for s in sizes)


def _backward_bytes(p: LayerProblem) -> int:
    """x, w, grad_out read once; dx, dw, db written once."""
    sizes = (p.x_shape, p.w_shape, p.y_shape, p.x_shape, p.w_shape, p.b_shape)
    return p.dtype.itemsize * sum(int(np.prod(s)) for s in sizes)


# --- test and benchmark inputs ------------------------------------------------------------------------

def _sizes(n, k, N, C_in, C_out, L, K, groups):
    """Layer sizes; n and k (the 1-D matrix's signal and filter lengths) stand for L and K."""
    L = L if L is not None else (n if n is not None else 64)
    K = K if K is not None else (k if k is not None else 3)
    if C_in % groups or C_out % groups:
        raise ValueError(f"make_args: groups={groups} must divide C_in={C_in} and C_out={C_out}")
    return N, C_in, C_out, L, K


def make_forward_args(rng, dtype, n=None, k=None, *, N=2, C_in=3, C_out=4, L=None, K=None, stride=1,
                      padding=0, dilation=1, groups=1, bias=True):
    """(x, w[, b]) and the settings, for a layer of the given sizes (standard normal values)."""
    N, C_in, C_out, L, K = _sizes(n, k, N, C_in, C_out, L, K, groups)
    args = (random_array(rng, (N, C_in, L), dtype), random_array(rng, (C_out, C_in // groups, K), dtype))
    if bias:
        args += (random_array(rng, C_out, dtype),)
    return args, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def make_backward_args(rng, dtype, n=None, k=None, *, N=2, C_in=3, C_out=4, L=None, K=None, stride=1,
                       padding=0, dilation=1, groups=1, bias=True):
    """(x, w, grad_out) and the settings (has_bias=bias), for a layer of the given sizes."""
    (x, w, *_), kwargs = make_forward_args(rng, dtype, n, k, N=N, C_in=C_in, C_out=C_out, L=L, K=K,
                                           stride=stride, padding=padding, dilation=dilation,
                                           groups=groups, bias=False)
    L_out = layer_counts.output_length(x.shape[2], w.shape[2], stride, padding, dilation)
    grad_out = random_array(rng, (x.shape[0], w.shape[0], L_out), dtype)
    return (x, w, grad_out), {**kwargs, "has_bias": bias}


# --- the ops --------------------------------------------------------------------------------------

define(
    "conv1d_layer", parse=parse_forward, outputs=("y",), out_shapes=lambda p: (p.y_shape,),
    flops=lambda p: p.count().flops, min_bytes=_forward_bytes,
    reduction_length=lambda p: p.C_in_g * p.K, make_args=make_forward_args,
    reference=lambda p, x, w, b: (forward(p, x, w, b),),
    doc="y[n,co,l] = b[co] + sum_{c,t} w[co,c,t] xpad[n,G(co)*C_in/groups+c, l*stride+t*dilation]",
)
define(
    "conv1d_layer_backward", parse=parse_backward, outputs=("dx", "dw", "db"),
    out_shapes=lambda p: (p.x_shape, p.w_shape, p.b_shape),
    flops=lambda p: p.count().backward_flops, min_bytes=_backward_bytes,
    reduction_length=lambda p: max(p.C_out_g * p.K, p.N * p.L_out), make_args=make_backward_args,
    reference=backward,
    doc="(dx, dw, db) of conv1d_layer; db has shape (0,) when has_bias=False",
)
