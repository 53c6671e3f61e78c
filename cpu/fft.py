"""FFT correlation with scipy.signal, for the `fft` and `auto` variants of the numba_cpu backend.

Correlating with w is convolving with w reversed, so with wr = w[::-1] (after `flip`)

    conv1d              y  = convolve(x, wr, "valid")     oaconvolve (overlap-add) while k << n
    conv1d_weight_grad  dw = convolve(x, g[::-1], "valid")  fftconvolve (g is almost as long as x)
    conv1d_input_grad   dx = convolve(g, w, "full")
    circular_correlate  z  = irfft(conj(rfft(x)) rfft(y)),  and its backward pass likewise

and the ops built from these (the fused ReLU ones) follow; the bias gradient, a plain sum, is
direct.

An FFT costs O(n log n) whatever k is, against 2 k m multiply-adds directly, which is why it wins at
large k (cpu/crossover.json says where, on this machine). Two things keep the direct kernel:

- non-finite inputs: an FFT mixes every input into every output, so one NaN or Inf would reach all
  outputs, where direct sums (and the reference) keep it to the outputs it touches;
- short sums (fewer than MIN_SUM terms behind an output): an FFT's rounding error is relative to
  the norm of the whole signal, not to each output's own terms as direct sums are (and as the
  checker's tolerance is), and direct is faster there anyway. The full convolution's first and
  last MIN_SUM outputs are such sums, so they are redone directly.
"""

import numpy as np
import scipy.fft
from scipy import signal

from cpu import blocked, loops

#: Shortest sum (k for the forward pass, m for the weight gradient) done by FFT.
MIN_SUM = 32


def _finite(*arrays) -> bool:
    return all(np.isfinite(a).all() for a in arrays)


def correlate(x, w, y, zero, bias, relu):
    """y[j] = sum_i x[j+i] w[i] + bias by FFT (then max(0, y) when relu; direct for short w or
    non-finite inputs)."""
    n, k = x.shape[0], w.shape[0]
    if k < MIN_SUM or not _finite(x, w):
        blocked.correlate(x, w, y, zero, bias, relu)
        return
    conv = signal.oaconvolve if 4 * k <= n else signal.fftconvolve
    y[:] = conv(x, w[::-1], mode="valid")
    if relu or bias != zero:
        blocked.bias_relu(y, 0, y.shape[0], bias, zero, relu)


def weight_grad(x, g, dw, zero):
    """dw[i] = sum_j g[j] x[j+i] by FFT (direct for short g or non-finite inputs)."""
    if g.shape[0] < MIN_SUM or not _finite(x, g):
        blocked.weight_grad(x, g, dw, zero)
        return
    dw[:] = signal.fftconvolve(x, g[::-1], mode="valid")


def full_convolve(w, g, dx, zero):
    """dx[t] = sum_i g[t-i] w[i] by FFT (direct for short w or non-finite inputs)."""
    m, k = g.shape[0], w.shape[0]
    if k < MIN_SUM or not _finite(w, g):
        blocked.full_convolve(w, g, dx, zero)
        return
    conv = signal.oaconvolve if 4 * k <= m else signal.fftconvolve
    dx[:] = conv(g, w, mode="full")
    # the first and last outputs are short sums (dx[0] = g[0] w[0]): redo them directly
    n = dx.shape[0]
    loops.full_convolve_rows(w, g, dx, 0, min(n, MIN_SUM), zero)
    loops.full_convolve_rows(w, g, dx, max(0, n - MIN_SUM), n, zero)


def circular(x, y, z, zero):
    """z[s] = sum_i x[i] y[(i+s) mod n] = irfft(conj(X) Y) (direct for short or non-finite inputs)."""
    n = x.shape[0]
    if n < MIN_SUM or not _finite(x, y):
        blocked.circular(x, y, z, zero)
        return
    z[:] = scipy.fft.irfft(np.conj(scipy.fft.rfft(x)) * scipy.fft.rfft(y), n)


def circular_convolve(g, x, d, zero):
    """d[i] = sum_s g[s] x[(i-s) mod n] = irfft(G X) (direct for short or non-finite inputs)."""
    n = g.shape[0]
    if n < MIN_SUM or not _finite(g, x):
        blocked.circular_convolve(g, x, d, zero)
        return
    d[:] = scipy.fft.irfft(scipy.fft.rfft(g) * scipy.fft.rfft(x), n)
