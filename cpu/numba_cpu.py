"""The `numba_cpu` backend: @njit loops on the CPU. This module imports the kernel modules and registers
them; they never import it. A variant is one row of `VARIANTS_1D` (a choice of `Loops`) or of `LAYER_VARIANTS`
(a forward and a backward); its note is the row's text (1-D) or the implementation's docstring (the layer).

1-D ops (correlations and their gradients), variants never renumbered, each against the one before:

    naive     serial loop, one output at a time (cpu/loops.py): the baseline
    parallel  the same loop, prange over one contiguous chunk of outputs per task: x the threads
    blocked   register-blocked rows of vector accumulators, taps in the inner loop, explicit FMAs
              (cpu/blocked.py, cpu/simd.py); every op reduces to its correlation
    fft       scipy FFT convolution (cpu/fft.py): O(n log n) whatever k, faster than blocked from the
              measured crossover k on; short sums and non-finite inputs go direct
    auto      blocked or fft per (op, n, k, dtype) from the crossover measured here (cpu/auto.py,
              cpu/crossover.json), fft only where its error stays within the per-output tolerance:
              the default

The conv1d layer (cpu/layer.py, cpu/layer_gemm.py, cpu/layer_packed.py, cpu/layer_blocked.py; their headers have
the ladder): naive, direct, im2col, gemm, gemm_numpy, gemm_folded, gemm_packed, blocked, and auto (the default,
cpu/layer_auto.py: per shape the variant measured fastest here on the nearest measured shape).

Every 1-D op is written once in terms of six loop kernels (`Loops`). flip=True reverses the filter before
the loop (forward, input gradient) or the result after it (weight gradient), as in the math of
`kernels.conv1d`. cpu/PERFORMANCE.md has the measurements.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cpu import auto, blocked, fft, layer, layer_auto, layer_blocked, layer_gemm, layer_packed, loops
from kernels.backend import Backend

backend = Backend("numba_cpu", "numba @njit kernels on the CPU")


@dataclass(frozen=True)
class Loops:
    correlate: Callable  # (x, w, y, zero, bias, relu): y[j] = relu?(sum_i x[j+i] w[i] + bias)
    full_convolve: Callable  # (w, g, dx, zero): dx[t] = sum_i g[t-i] w[i]
    weight_grad: Callable  # (x, g, dw, zero): dw[i] = sum_j g[j] x[j+i]
    total: Callable  # (g, out, zero): out[0] = sum_j g[j]
    circular: Callable  # (x, y, z, zero): z[s] = sum_i x[i] y[(i+s) mod n]
    circular_convolve: Callable  # (g, x, d, zero): d[i] = sum_s g[s] x[(i-s) mod n]
    #: (x, w) -> y: a whole small conv1d call compiled in one (kernels.backend `whole_call`), or None
    conv1d_whole: Callable | None = None


def _whole(rows):
    """Run a row kernel over its whole output range."""
    return lambda a, b, out, zero, *extra: rows(a, b, out, 0, out.shape[0], zero, *extra)


NAIVE = Loops(
    correlate=_whole(loops.correlate_rows),
    full_convolve=_whole(loops.full_convolve_rows),
    weight_grad=lambda x, g, dw, zero: loops.weight_grad_rows(x, g, dw, 0, g.shape[0], zero),
    total=lambda g, out, zero: loops.sum_rows(g, out, 0, g.shape[0], zero),
    circular=_whole(loops.circular_rows),
    circular_convolve=_whole(loops.circular_convolve_rows),
)
PARALLEL = Loops(
    correlate=loops.correlate_parallel,
    full_convolve=loops.full_convolve_parallel,
    weight_grad=loops.weight_grad_parallel,
    total=loops.sum_parallel,
    circular=loops.circular_parallel,
    circular_convolve=loops.circular_convolve_parallel,
)
BLOCKED = Loops(
    correlate=blocked.correlate,
    full_convolve=blocked.full_convolve,
    weight_grad=blocked.weight_grad,
    total=loops.sum_parallel,
    circular=blocked.circular,
    circular_convolve=blocked.circular_convolve,
    conv1d_whole=blocked.conv1d_whole,
)
FFT = Loops(correlate=fft.correlate, full_convolve=fft.full_convolve, weight_grad=fft.weight_grad,
              total=loops.sum_parallel, circular=fft.circular, circular_convolve=fft.circular_convolve)
AUTO = Loops(correlate=auto.correlate, full_convolve=auto.full_convolve, weight_grad=auto.weight_grad,
             total=loops.sum_parallel, circular=auto.circular, circular_convolve=auto.circular_convolve,
             conv1d_whole=blocked.conv1d_whole)

#: 1-D variants: (name, loop kernels, note, method, default)
VARIANTS_1D = (
    ("naive", NAIVE, "serial loop, one output at a time", "direct", False),
    ("parallel", PARALLEL, "prange over contiguous chunks of outputs (two-stage sums for reductions)",
     "direct", False),
    ("blocked", BLOCKED, "rows of 8 vector accumulators, taps in the inner loop, two taps per load "
     "(explicit FMAs); every op as a correlation", "direct", False),
    ("fft", FFT, "scipy FFT convolution (direct: sums shorter than 32, non-finite inputs, the bias sum); "
     "error bounded normwise", "fft", False),
    ("auto", AUTO, "blocked or fft per (op, n, k, dtype), from the crossover in cpu/crossover.json; fft only "
     "within the per-output tolerance", "auto", True),
)

#: conv1d layer variants: (name, forward, backward, method, default); each docstring is the note
LAYER_VARIANTS = (
    ("naive", layer.naive_forward, layer.naive_backward, "direct", False),
    ("direct", layer.direct_forward, layer.direct_backward, "direct", False),
    ("im2col", layer.im2col_forward, layer.im2col_backward, "direct", False),
    ("gemm", layer_gemm.forward, layer_gemm.backward, "direct", False),
    ("gemm_numpy", layer_gemm.forward_numpy, layer_gemm.backward_numpy, "direct", False),
    ("gemm_folded", layer_gemm.forward_folded, layer_gemm.backward_folded, "direct", False),
    ("gemm_packed", layer_packed.forward, layer_packed.backward, "direct", False),
    ("blocked", layer_blocked.forward, layer_blocked.backward, "direct", False),
    ("auto", layer_auto.forward, layer_auto.backward, "auto", True),
)


def _oriented(w, flip):
    return np.ascontiguousarray(w[::-1]) if flip else w


def register_loops(variant: str, E: Loops, note: str, method: str = "direct", default: bool = False):
    """Register every 1-D op for `variant`, computed with the loop kernels `E` (`method`: direct, fft or auto)."""
    def impl(op):
        def decorate(fn):
            fn.__doc__ = note
            return backend.impl(op, variant, default=default,
                                method="direct" if op == "conv1d_bias_grad" else method)(fn)
        return decorate

    @impl("conv1d")
    def conv1d(p, x, w, y):
        zero = p.dtype.type(0)
        E.correlate(x, _oriented(w, p.flip), y, zero, zero, False)

    if E.conv1d_whole is not None:
        conv1d.whole_call = E.conv1d_whole

    @impl("conv1d_weight_grad")
    def weight_grad(p, x, g, dw):
        E.weight_grad(x, g, dw, p.dtype.type(0))
        if p.flip:
            dw[:] = dw[::-1].copy()

    @impl("conv1d_bias_grad")
    def bias_grad(p, g, db):
        E.total(g, db, p.dtype.type(0))

    @impl("conv1d_input_grad")
    def input_grad(p, w, g, dx):
        E.full_convolve(_oriented(w, p.flip), g, dx, p.dtype.type(0))

    @impl("conv1d_relu")
    def conv1d_relu(p, x, w, y):
        E.correlate(x, _oriented(w, p.flip), y, p.dtype.type(0), p.b, True)

    @impl("conv1d_relu_backward")
    def conv1d_relu_backward(p, x, w, g, dx, dw, db):
        zero = p.dtype.type(0)
        pre = np.empty(p.m, p.dtype)
        E.correlate(x, _oriented(w, p.flip), pre, zero, p.b, False)
        g = np.where(pre > 0, g, zero)
        input_grad(p, w, g, dx)
        weight_grad(p, x, g, dw)
        E.total(g, db, zero)

    @impl("circular_correlate")
    def circular(p, x, y, z):
        E.circular(x, y, z, p.dtype.type(0))

    @impl("circular_correlate_backward")
    def circular_backward(p, x, y, g, dx, dy):
        zero = p.dtype.type(0)
        E.circular(g, y, dx, zero)
        E.circular_convolve(g, x, dy, zero)


def register_layer(variant: str, forward: Callable, backward: Callable, method: str = "direct",
                   default: bool = False):
    """Register `forward` as `variant` of conv1d_layer and `backward` of conv1d_layer_backward."""
    backend.impl("conv1d_layer", variant, default=default, method=method)(forward)
    backend.impl("conv1d_layer_backward", variant, default=default, method=method)(backward)


for _name, _loops, _note, _method, _default in VARIANTS_1D:
    register_loops(_name, _loops, _note, _method, _default)
for _name, _forward, _backward, _method, _default in LAYER_VARIANTS:
    register_layer(_name, _forward, _backward, _method, _default)
