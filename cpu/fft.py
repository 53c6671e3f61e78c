"""FFT correlation with scipy, the `fft` variant of the numba_cpu backend (and `auto`'s FFT side).

Variants, against the direct kernel (`blocked`):

    fft     scipy FFT convolution: O(n log n) whatever k is, against 2 k m multiply-adds directly,
            so it wins from some k on (cpu/crossover.json says where, on this machine); direct for
            sums shorter than MIN_SUM, non-finite inputs and the bias sum

Correlating with w is convolving with w reversed, so with wr = w[::-1] (after `flip`)

    conv1d              y  = convolve(x, wr, "valid")     oaconvolve (overlap-add) while k << n
    conv1d_weight_grad  dw = convolve(x, g[::-1], "valid")  fftconvolve (g is almost as long as x)
    conv1d_input_grad   dx = convolve(g, w, "full")
    circular_correlate  z  = irfft(conj(rfft(x)) rfft(y)),  and its backward pass likewise

and the ops built from these (the fused ReLU ones) follow; the bias gradient, a plain sum, is
direct.

Error. An FFT's rounding error is bounded normwise, not per output: every input reaches every
output, so an output's error is relative to the norms of the whole (block of) signal and filter,
not to that output's own terms as a direct sum's is. For a correlation of s (length n) with f
(length k) in a dtype of machine epsilon eps, with N = n + k,

    |y_fft[j] - y[j]| <= 8 * eps * log2(N) * max_j (|s| * |f|)[j]      (the normwise bound)

which the checker (`kernels.compare.FFT_C` = 8, method "fft") applies to this variant. Measured errors follow
the finer estimate c * eps * sqrt(log2 N) * (R(s) ||f||_2 + R(y)) with c < 2,
R the largest root-mean-square over blocks of k samples. `auto` uses that estimate to take the FFT
only where it meets the per-output tolerance (cpu/auto.py).

Range. The inputs are scaled by powers of two (exact) before the transform when their magnitudes
could overflow (or underflow) the dtype inside it, so a finite true result does not come back Inf
or NaN: float32 x = +-1e35 with k = 64 is finite.

Memory. The transforms' temporaries (about `TEMP_FACTOR` elements per input element) are checked
against the available memory before anything is allocated: MemoryError naming the sizes.

Two cases keep the direct kernel:

- non-finite inputs: an FFT mixes every input into every output, so one NaN or Inf would reach all
  outputs, where direct sums (and the reference) keep it to the outputs it touches;
- short sums (fewer than MIN_SUM terms behind an output): direct is more accurate per output there,
  and faster. The full convolution's first and last MIN_SUM outputs are such sums, so they are
  redone directly.
"""

import math
import os

import numpy as np
import scipy.fft  # and scipy.signal, which scipy imports at its first use: 0.5-0.7 s (scipy.stats with it)

from cpu import blocked, loops
from kernels.fft_choice import MIN_SUM, exponent  # noqa: F401 (MIN_SUM: public here too)

#: Temporary elements per input element of a transform of inputs of total length n1 + n2:
#: spectra, their product, the inverse and scipy's padded copies of blocks up to twice the length.
TEMP_FACTOR = 13


# --- memory ----------------------------------------------------------------------------------------

def available_memory() -> int:
    """Bytes of memory available now: psutil if installed, else /proc/meminfo, else physical memory."""
    try:
        import psutil  # optional: not a dependency; /proc/meminfo otherwise

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def temp_bytes(n1: int, n2: int, dtype) -> int:
    """Bytes of temporaries a transform of inputs of lengths n1 and n2 needs (an upper estimate)."""
    return TEMP_FACTOR * (n1 + n2) * np.dtype(dtype).itemsize


def fits(n1: int, n2: int, dtype) -> bool:
    return temp_bytes(n1, n2, dtype) <= available_memory()


def check_memory(what: str, n1: int, n2: int, dtype):
    """MemoryError naming the sizes when the transform's temporaries would not fit in memory."""
    need, have = temp_bytes(n1, n2, dtype), available_memory()
    if need > have:
        raise MemoryError(f"fft {what}: lengths {n1} and {n2} ({np.dtype(dtype).name}) need about "
                          f"{need / 2**30:.1f} GiB of temporaries, {have / 2**30:.1f} GiB available")


# --- range: magnitudes, power-of-two scaling -------------------------------------------------------

def max_abs(a) -> float:
    """max_i |a[i]| as a float; NaN or Inf when some a[i] is (NumPy's max and min propagate NaN)."""
    return float(max(a.max(), -a.min())) if a.size else 0.0


def _needs_scaling(mx: float, mw: float, n: int, k: int, dtype) -> bool:
    """True when a transform of inputs bounded by mx and mw could overflow or underflow `dtype`:
    spectra reach n*mx and k*mw, their products n*k*mx*mw."""
    info = np.finfo(dtype)
    product = mx * mw * n * k
    return not (float(info.tiny) ** 0.5 < mx * mw and product < float(info.max) / 16)


def _scaled(a, e):
    """a * 2**-e (exact; a itself when e == 0)."""
    return a if e == 0 else np.ldexp(a, -e).astype(a.dtype, copy=False)


def _unscale(y, e):
    if e != 0:
        y[:] = np.ldexp(y, e)


def _prepared(s, f):
    """(s', f', e): s and f scaled by powers of two when the transform could leave the dtype's range,
    and the exponent e to scale the result back by (y = y' * 2**e); None when an input is not finite."""
    ms, mf = max_abs(s), max_abs(f)
    if not (math.isfinite(ms) and math.isfinite(mf)):
        return None
    if not _needs_scaling(ms, mf, s.shape[0], f.shape[0], s.dtype):
        return s, f, 0
    es, ef = exponent(ms), exponent(mf)
    return _scaled(s, es), _scaled(f, ef), es + ef


# --- the ops -----------------------------------------------------------------------------------------

def _convolve(a, b, mode):
    """convolve(a, b, mode), overlap-add while the shorter is much shorter."""
    conv = scipy.signal.oaconvolve if 4 * min(a.shape[0], b.shape[0]) <= max(a.shape[0], b.shape[0]) \
        else scipy.signal.fftconvolve
    return conv(a, b, mode=mode)


def correlate(x, w, y, zero, bias, relu):
    """y[j] = sum_i x[j+i] w[i] + bias by FFT (then max(0, y) when relu; direct for short w or
    non-finite inputs)."""
    k = w.shape[0]
    prepared = _prepared(x, w) if k >= MIN_SUM else None
    if prepared is None:
        blocked.correlate(x, w, y, zero, bias, relu)
        return
    check_memory("correlate", x.shape[0], k, y.dtype)
    xs, ws, e = prepared
    y[:] = _convolve(xs, ws[::-1], "valid")
    _unscale(y, e)
    if relu or bias != zero:
        blocked.bias_relu(y, 0, y.shape[0], bias, zero, relu)


def weight_grad(x, g, dw, zero):
    """dw[i] = sum_j g[j] x[j+i] by FFT (direct for short g or non-finite inputs)."""
    prepared = _prepared(x, g) if g.shape[0] >= MIN_SUM else None
    if prepared is None:
        blocked.weight_grad(x, g, dw, zero)
        return
    check_memory("weight_grad", x.shape[0], g.shape[0], dw.dtype)
    xs, gs, e = prepared
    dw[:] = scipy.signal.fftconvolve(xs, gs[::-1], mode="valid")
    _unscale(dw, e)


def full_convolve(w, g, dx, zero):
    """dx[t] = sum_i g[t-i] w[i] by FFT (direct for short w or non-finite inputs)."""
    k = w.shape[0]
    prepared = _prepared(g, w) if k >= MIN_SUM else None
    if prepared is None:
        blocked.full_convolve(w, g, dx, zero)
        return
    check_memory("full_convolve", g.shape[0], k, dx.dtype)
    gs, ws, e = prepared
    dx[:] = _convolve(gs, ws, "full")
    _unscale(dx, e)
    # the first and last outputs are short sums (dx[0] = g[0] w[0]): redo them directly
    n = dx.shape[0]
    loops.full_convolve_rows(w, g, dx, 0, min(n, MIN_SUM), zero)
    loops.full_convolve_rows(w, g, dx, max(0, n - MIN_SUM), n, zero)


def circular(x, y, z, zero):
    """z[s] = sum_i x[i] y[(i+s) mod n] = irfft(conj(X) Y) (direct for short or non-finite inputs)."""
    n = x.shape[0]
    prepared = _prepared(x, y) if n >= MIN_SUM else None
    if prepared is None:
        blocked.circular(x, y, z, zero)
        return
    check_memory("circular", n, n, z.dtype)
    xs, ys, e = prepared
    z[:] = scipy.fft.irfft(np.conj(scipy.fft.rfft(xs)) * scipy.fft.rfft(ys), n)
    _unscale(z, e)


def circular_convolve(g, x, d, zero):
    """d[i] = sum_s g[s] x[(i-s) mod n] = irfft(G X) (direct for short or non-finite inputs)."""
    n = g.shape[0]
    prepared = _prepared(g, x) if n >= MIN_SUM else None
    if prepared is None:
        blocked.circular_convolve(g, x, d, zero)
        return
    check_memory("circular_convolve", n, n, d.dtype)
    gs, xs, e = prepared
    d[:] = scipy.fft.irfft(scipy.fft.rfft(gs) * scipy.fft.rfft(xs), n)
    _unscale(d, e)
