"""The `numba_cpu` backend: @njit loops on the CPU. Variants, never renumbered:

    naive     serial loop, one output at a time (cpu/loops.py)
    parallel  the same loop, prange over one contiguous chunk of outputs per task
    blocked   register-blocked rows of vector accumulators, taps in the inner loop, explicit
              AVX/AVX-512 FMAs (cpu/blocked.py, cpu/simd.py); every op reduces to its correlation
    fft       scipy FFT convolution (cpu/fft.py); short sums and non-finite inputs go direct
    auto      blocked or fft per (op, n, k, dtype) from the crossover measured here
              (cpu/crossover.json, `python -m plots.bench.tune`); the default

Every op is written once in terms of six loop kernels (`Loops`); a variant is a choice of loops.
flip=True reverses the filter before the loop (forward, input gradient) or the result after it
(weight gradient), as in the math of `kernels.conv1d`. cpu/PERFORMANCE.md has the measurements.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cpu import auto, blocked, fft, loops
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
)
FFT = Loops(correlate=fft.correlate, full_convolve=fft.full_convolve, weight_grad=fft.weight_grad,
            total=loops.sum_parallel, circular=fft.circular, circular_convolve=fft.circular_convolve)


AUTO = Loops(correlate=auto.correlate, full_convolve=auto.full_convolve, weight_grad=auto.weight_grad,
             total=loops.sum_parallel, circular=auto.circular, circular_convolve=auto.circular_convolve)


def _oriented(w, flip):
    return np.ascontiguousarray(w[::-1]) if flip else w


def register(variant: str, L: Loops, note: str, default: bool = False, method: str = "direct"):
    """Register every op for `variant`, computed with the loops `L` (`method`: direct, fft or auto)."""
    def impl(op):
        def decorate(fn):
            fn.__doc__ = note
            return backend.impl(op, variant, default=default,
                                method="direct" if op == "conv1d_bias_grad" else method)(fn)
        return decorate

    @impl("conv1d")
    def conv1d(p, x, w, y):
        zero = p.dtype.type(0)
        L.correlate(x, _oriented(w, p.flip), y, zero, zero, False)

    @impl("conv1d_weight_grad")
    def weight_grad(p, x, g, dw):
        L.weight_grad(x, g, dw, p.dtype.type(0))
        if p.flip:
            dw[:] = dw[::-1].copy()

    @impl("conv1d_bias_grad")
    def bias_grad(p, g, db):
        L.total(g, db, p.dtype.type(0))

    @impl("conv1d_input_grad")
    def input_grad(p, w, g, dx):
        L.full_convolve(_oriented(w, p.flip), g, dx, p.dtype.type(0))

    @impl("conv1d_relu")
    def conv1d_relu(p, x, w, y):
        L.correlate(x, _oriented(w, p.flip), y, p.dtype.type(0), p.b, True)

    @impl("conv1d_relu_backward")
    def conv1d_relu_backward(p, x, w, g, dx, dw, db):
        zero = p.dtype.type(0)
        pre = np.empty(p.m, p.dtype)
        L.correlate(x, _oriented(w, p.flip), pre, zero, p.b, False)
        g = np.where(pre > 0, g, zero)
        input_grad(p, w, g, dx)
        weight_grad(p, x, g, dw)
        L.total(g, db, zero)

    @impl("circular_correlate")
    def circular(p, x, y, z):
        L.circular(x, y, z, p.dtype.type(0))

    @impl("circular_correlate_backward")
    def circular_backward(p, x, y, g, dx, dy):
        zero = p.dtype.type(0)
        L.circular(g, y, dx, zero)
        L.circular_convolve(g, x, dy, zero)


register("naive", NAIVE, "serial loop, one output at a time")
register("parallel", PARALLEL, "prange over contiguous chunks of outputs (two-stage sums for reductions)")
register("blocked", BLOCKED, "rows of 8 vector accumulators, taps in the inner loop, two taps per load "
         "(explicit FMAs); every op as a correlation")
register("fft", FFT, "scipy FFT convolution (direct: sums shorter than 32, non-finite inputs, the bias sum)",
         method="fft")
register("auto", AUTO, "blocked or fft per (op, n, k, dtype), from the crossover in cpu/crossover.json",
         default=True, method="auto")

import cpu.layer  # noqa: E402, F401, I001  (registers the conv1d layer variants on this backend)

# --- the conv1d layer as shifted BLAS products (cpu/layer_gemm.py); auto is the layer's default ---------
from cpu import layer_gemm  # noqa: E402, I001

backend.impl("conv1d_layer", "gemm", method="direct")(layer_gemm.forward)
backend.impl("conv1d_layer_backward", "gemm", method="direct")(layer_gemm.backward)
backend.impl("conv1d_layer", "gemm_numpy", method="direct")(layer_gemm.forward_numpy)
backend.impl("conv1d_layer_backward", "gemm_numpy", method="direct")(layer_gemm.backward_numpy)
backend.impl("conv1d_layer", "auto", default=True, method="auto")(layer_gemm.forward_auto)
backend.impl("conv1d_layer_backward", "auto", default=True, method="auto")(layer_gemm.backward_auto)
backend.impl("conv1d_layer", "gemm_folded", method="direct")(layer_gemm.forward_folded)
backend.impl("conv1d_layer_backward", "gemm_folded", method="direct")(layer_gemm.backward_folded)
