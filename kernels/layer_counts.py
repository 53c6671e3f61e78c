"""The layer calculator: output shape, trainable parameters and forward-pass operations of a layer.

One source of truth for layer counts: `python -m kernels count`, the `conv1d_layer` ops' ``flops``
(and through them the benchmark harness) all call this module.

Layers: `conv1d`, `conv2d` (shape arithmetic and counts only; there is no 2-D kernel) and `dense`, each
optionally followed by a pointwise nonlinearity (``activation="relu"``, ...). Per spatial dimension,

    L_out = floor((L + 2*padding - dilation*(K-1) - 1) / stride) + 1

and an output element is a dot product over D = (C_in/groups) * prod(K) weights (a dense layer: D = F_in).

Operations are given in two conventions:

* **FLOPs = 2 * MACs**, MACs = outputs * D: every tap counts, padding included (what frameworks report
  and what im2col + GEMM performs). Bias adds and the nonlinearity are not MACs and are left out.
* **exact multiplies + adds**, what a naive loop that skips taps falling into the zero padding performs:
  an output whose dot product has T real terms costs T multiplies and T-1 adds, a bias 1 more add,
  and a nonlinearity 1 operation per output. An output with no real term (it sees only padding) costs
  nothing: it is the bias, or 0. Without padding and with a bias, exact = 2 * MACs (+ nonlinearity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "silu")


@dataclass(frozen=True)
class LayerCount:
    """What one forward pass of a layer costs; ``macs``/``flops`` and ``exact_ops`` are the conventions."""

    kind: str  # "conv1d", "conv2d" or "dense"
    input_shape: tuple
    output_shape: tuple
    weight_shape: tuple
    weights: int  # trainable weights
    biases: int  # trainable biases (0 without bias)
    macs: int  # multiply-accumulates, padding taps included: outputs * D
    multiplies: int  # exact: products of a weight with a real (non-padding) input
    adds: int  # exact: adds inside the dot products plus the bias adds
    nonlinearity: int  # exact: 1 per output when an activation follows, else 0
    activation: str | None = None
    settings: dict = field(default_factory=dict)  # stride, padding, ... for printing

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def outputs(self) -> int:
        return math.prod(self.output_shape)

    @property
    def flops(self) -> int:
        """FLOPs in the 2-per-multiply-accumulate convention."""
        return 2 * self.macs

    @property
    def exact_ops(self) -> int:
        """Multiplies + adds + nonlinearity operations a naive loop performs."""
        return self.multiplies + self.adds + self.nonlinearity

    @property
    def backward_flops(self) -> int:
        """FLOPs (2 per MAC) of dx and dw, each with the forward's MACs (db's adds are not MACs)."""
        return 2 * self.flops


# --- shape arithmetic ----------------------------------------------------------------------------------

def output_length(length: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """L_out = floor((L + 2*padding - dilation*(K-1) - 1) / stride) + 1 (ValueError if nothing fits)."""
    for name, value, low in (("length", length, 1), ("k", k, 1), ("stride", stride, 1),
                             ("padding", padding, 0), ("dilation", dilation, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    span = dilation * (k - 1) + 1
    if span > length + 2 * padding:
        raise ValueError(f"dilated kernel dilation*(K-1)+1 = {span} must be <= L + 2*padding = "
                         f"{length + 2 * padding} (L={length}, K={k}, padding={padding}, "
                         f"dilation={dilation})")
    return (length + 2 * padding - span) // stride + 1


def tap_counts(length: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> tuple[int, int, int]:
    """(L_out, total real taps, positions with a real tap) of one spatial dimension, in O(log) arithmetic.

    Tap t of output position l reads input index l*stride + t*dilation - padding; it is real when that
    index is in [0, L). With G(x) = #{l in [0, L_out): l*stride <= x} = clamp(floor(x/stride) + 1, 0, L_out),
    tap t is real for G(p - t*d + L - 1) - G(p - t*d - 1) positions, so the total is
    S(p + L - 1) - S(p - 1), S(c) = sum_{t<K} G(c - t*d), a floor sum. A position has a real tap iff the
    window [p - l*s, p - l*s + L - 1] holds a multiple t*d with 0 <= t < K: for L < d the window holds at
    most one multiple, so that count is the total; for L >= d it always holds one, so the position counts
    iff the window meets [0, (K-1)*d], i.e. p - (K-1)*d <= l*s <= p + L - 1.
    """
    l_out = output_length(length, k, stride, padding, dilation)
    s, d, p = stride, dilation, padding

    def g(x):
        return min(max(x // s + 1, 0), l_out)

    def taps_sum(c):  # S(c) = sum_{t=0}^{K-1} G(c - t*d)
        full = min(max((c - (l_out - 1) * s) // d + 1, 0), k)  # t with G = L_out
        some = min(max(c // d + 1, 0), k)  # t with G > 0
        # t in [full, some): G = floor((c - t*d)/s) + 1; with t = some-1-i, c - t*d = base + i*d, base >= 0
        return full * l_out + _floor_sum(some - full, s, d, c - (some - 1) * d) + (some - full)

    total = taps_sum(p + length - 1) - taps_sum(p - 1)
    nonempty = total if length < d else g(p + length - 1) - g(p - (k - 1) * d - 1)
    return l_out, total, nonempty


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum_{i=0}^{n-1} floor((a*i + b) / m) for n >= 0, m >= 1, a, b >= 0, in O(log) steps (Euclid-like)."""
    total = 0
    while n > 0:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y = a * n + b
        if y < m:
            break
        n, b, m, a = y // m, y % m, a, m
    return total


def _pairs(name, value, dims):
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    if len(values) != dims:
        raise ValueError(f"{name}: expected 1 or {dims} values, got {len(values)}")
    return values


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _activation(activation):
    if activation in (None, "none"):
        return None
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS} or None, got {activation!r}")
    return activation


# --- the layers ------------------------------------------------------------------------------------

def conv(batch: int, c_in: int, c_out: int, size, k, *, stride=1, padding=0, dilation=1, groups: int = 1,
         bias: bool = True, activation: str | None = None) -> LayerCount:
    """A convolution layer over len(size) spatial dimensions (torch.nn.Conv1d/Conv2d semantics).

    `size`, `k`, `stride`, `padding`, `dilation` are per spatial dimension (an int applies to all).
    """
    size = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    dims = len(size)
    kind = f"conv{dims}d"
    batch, c_in, c_out, groups = (_positive(n, v) for n, v in
                                  (("batch", batch), ("c_in", c_in), ("c_out", c_out), ("groups", groups)))
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups: must divide c_in={c_in} and c_out={c_out}, got {groups}")
    ks, strides, pads, dils = (_pairs(n, v, dims) for n, v in
                               (("k", k), ("stride", stride), ("padding", padding), ("dilation", dilation)))
    taps = [tap_counts(*args) for args in zip(size, ks, strides, pads, dils, strict=True)]
    out_size = tuple(t[0] for t in taps)
    activation = _activation(activation)
    c_in_g = c_in // groups
    dot = c_in_g * math.prod(ks)  # D: the dense dot-product length
    outputs = batch * c_out * math.prod(out_size)
    # Real terms of one output: C_in/groups * prod_d taps_d(l_d); the positions factor per dimension.
    real = batch * c_out * c_in_g * math.prod(t[1] for t in taps)
    nonempty = batch * c_out * math.prod(t[2] for t in taps)
    return LayerCount(
        kind=kind, input_shape=(batch, c_in, *size), output_shape=(batch, c_out, *out_size),
        weight_shape=(c_out, c_in_g, *ks), weights=c_out * dot, biases=c_out if bias else 0,
        macs=outputs * dot, multiplies=real, adds=real - nonempty + (nonempty if bias else 0),
        nonlinearity=outputs if activation else 0, activation=activation,
        settings={"kernel": ks, "stride": strides, "padding": pads, "dilation": dils, "groups": groups,
                  "bias": bool(bias)})


def conv1d(batch: int, c_in: int, c_out: int, length: int, k: int, *, stride: int = 1, padding: int = 0,
           dilation: int = 1, groups: int = 1, bias: bool = True,
           activation: str | None = None) -> LayerCount:
    """torch.nn.Conv1d(c_in, c_out, k, stride, padding, dilation, groups, bias) on x (batch, c_in, length)."""
    return conv(batch, c_in, c_out, (length,), (k,), stride=stride, padding=padding, dilation=dilation,
                groups=groups, bias=bias, activation=activation)


def conv2d(batch: int, c_in: int, c_out: int, size, k, *, stride=1, padding=0, dilation=1, groups: int = 1,
           bias: bool = True, activation: str | None = None) -> LayerCount:
    """torch.nn.Conv2d on x of shape (batch, c_in, H, W); size = (H, W), k/stride/... an int or a pair."""
    return conv(batch, c_in, c_out, tuple(_pairs("size", size, 2)), k, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=bias, activation=activation)


def dense(batch: int, in_features: int, out_features: int, *, bias: bool = True,
          activation: str | None = None) -> LayerCount:
    """torch.nn.Linear(in_features, out_features, bias) on x of shape (batch, in_features)."""
    batch, fin, fout = (_positive(n, v) for n, v in
                        (("batch", batch), ("in_features", in_features), ("out_features", out_features)))
    activation = _activation(activation)
    outputs = batch * fout
    return LayerCount(
        kind="dense", input_shape=(batch, fin), output_shape=(batch, fout), weight_shape=(fout, fin),
        weights=fin * fout, biases=fout if bias else 0, macs=outputs * fin, multiplies=outputs * fin,
        adds=outputs * (fin - 1 + (1 if bias else 0)), nonlinearity=outputs if activation else 0,
        activation=activation, settings={"bias": bool(bias)})


# --- printing --------------------------------------------------------------------------------------

def _si(value: int) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return str(value)


def _shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _setting(values) -> str:
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def describe(c: LayerCount) -> str:
    """A multi-line summary of `c` with both operation conventions (what `python -m kernels count` prints)."""
    s = c.settings
    if c.kind == "dense":
        head = f"dense layer: {c.input_shape[1]} -> {c.output_shape[1]} features"
    else:
        head = (f"{c.kind} layer: kernel {_setting(s['kernel'])}, stride {_setting(s['stride'])}, "
                f"padding {_setting(s['padding'])}, dilation {_setting(s['dilation'])}, groups {s['groups']}")
    head += (", bias" if c.biases else ", no bias") + (f", {c.activation}" if c.activation else "")
    dot = c.weights // c.weight_shape[0]
    w = "*".join(str(d) for d in c.weight_shape)
    rows = [
        ("input", _shape(c.input_shape), ""),
        ("output", _shape(c.output_shape), f"{c.outputs:,} values"),
        ("parameters", f"{c.params:,}", f"weights {w} = {c.weights:,} + biases {c.biases:,}"),
        ("MACs", f"{c.macs:,}", f"{c.outputs:,} outputs x {dot:,}-term dot products"),
        ("FLOPs (2/MAC)", f"{c.flops:,}", f"{_si(c.flops)}FLOP (2 per MAC; bias, nonlinearity not counted)"),
        ("exact ops", f"{c.exact_ops:,}", f"{c.multiplies:,} mul + {c.adds:,} add"
         + (f" + {c.nonlinearity:,} {c.activation}" if c.activation else "")),
    ]
    width = max(len(v) for _, v, _ in rows)
    lines = [head] + [f"  {name:<14}{value:>{width}}   {note}".rstrip() for name, value, note in rows]
    lines.append("  (MACs count every tap, padding too; exact ops skip padding taps: a T-term dot product is"
                 " T mul + T-1 add,\n   a bias 1 add, a nonlinearity 1 op per output)")
    return "\n".join(lines)
