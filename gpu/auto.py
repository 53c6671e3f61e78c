"""The `auto` variant of both GPU backends: their best direct step, or an FFT where it is faster and
accurate enough. `step(forward=..., weight_grad=..., table=...)` declares a backend's 1-D auto step over its
direct steps (their engines wrapped by `engines`, gpu/steps.py); `layer_step` its layer auto step, which
chooses by `layer_uses_gemm` between the implicit GEMM and one thread per output.

    auto    the direct step, or an FFT for a valid correlation whose (n, k) lies past the crossover of
            gpu/crossover_<backend>.json AND whose error the accuracy rule of kernels.fft_choice keeps within a
            direct sum's per-output tolerance. The direct forward is chosen by the filter's length k: a
            streaming step up to STREAM_MAX_K taps (cupy: naive, numba_cuda: tiled), the register-window
            step beyond (cupy: vec16, numba_cuda: regwin); the weight gradient is wg_stream in both

Which engine calls may take the FFT (all others, and every one the rule turns down, go direct):

    correlate, offset 0, not periodic      conv1d, conv1d_relu (bias and ReLU applied after the transform)
    correlate, offset -(k-1), no epilogue  conv1d_input_grad: out[k-1+j] = the valid correlation, j <= N-k;
                                           the k-1 outputs at each end (short sums) direct
    weight_grad                            dw = the valid correlation of x with g (reversed when flip)

Periodic correlations and the ReLU gate stay direct.

The FFT (`fft_valid`): y[j] = irfft(rfft(s, P) conj(rfft(f, P)), P)[j] for j < n - k + 1, P >= n a fast
length (no wrap-around reaches a valid output), in the inputs' dtype, on s and f scaled by powers of two
to a largest magnitude in [1/2, 1) (exact), so no transform overflows. The array library is the one of
the arrays: CuPy (cuFFT) for cupy arrays and for numba device arrays on a GPU (zero copy through
__cuda_array_interface__), NumPy for the emulator's and the simulator's arrays; a numba array on a GPU
without CuPy goes direct.

The accuracy rule, as in cpu/auto.py: slack = TOLERANCE_C sqrt(k) lb - FFT_ERROR_C sqrt(log2 N) R(s)
||f||_2, with lb <= min_j (|s| * |f|)[j] the direct correlation of |s| with the LB_TAPS contiguous taps
of largest |f| (rounded down), then R(y) checked after the transform; non-finite inputs go direct.

`Step.wraps` declares the direct choice as data, op -> ((max_k, variant), ..., (None, variant)) in order of
k (`direct_variant` reads it): the model, the crossover tables and the tuner time what auto runs at each k.

The crossover tables gpu/crossover_<backend>.json are written by `python -m plots.model.crossover` from the
static model (labelled a MODEL in the file) until a GPU measures one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gpu.steps import GATE, NONE, NOTES, RELU, Engines, Step, correlation_impls
from kernels import fft_choice

TOOL = "python -m plots.model.crossover"
#: Bytes of device memory an FFT of P points may take per point and byte of dtype: two spectra, their
#: product, the inverse, the scaled inputs and the float64 squares of R(s) (8 bytes a point).
FFT_BYTES_PER_POINT = 12


def path(backend: str) -> Path:
    """The crossover table of `backend`'s auto variant."""
    return Path(__file__).with_name(f"crossover_{backend}.json")


def load(backend: str) -> dict:
    """`backend`'s crossover table; {} (direct everywhere) with one warning when missing or invalid."""
    return fft_choice.read_table(path(backend), TOOL)


def use_fft(table: dict, op: str, n: int, k: int, dtype) -> bool:
    """True when the crossover table puts (op, n, k, dtype) on the FFT side."""
    kx = fft_choice.crossover(op, n, str(np.dtype(dtype)), table)
    return kx != math.inf and k >= math.ceil(kx - 1e-6)


# --- the array library of an array ------------------------------------------------------------------

def _cupy():
    try:
        import cupy  # optional: only on a GPU
    except ImportError:
        return None
    return cupy


def namespace(a):
    """(xp, view): the array library to compute on `a` with, and `a` as its array (writes reach `a`);
    (None, None) when no FFT library reaches `a`."""
    if isinstance(a, np.ndarray):
        return np, a
    cupy = _cupy()
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy, a
    if hasattr(a, "__cuda_array_interface__"):  # a numba device array on a GPU
        return (cupy, cupy.asarray(a)) if cupy is not None else (None, None)
    if type(a).__name__ == "FakeCUDAArray":  # numba's simulator: a NumPy array inside
        return np, np.asarray(a)
    return None, None


def _views(*arrays):
    """(xp, views) of arrays that share one array library, else (None, None)."""
    pairs = [namespace(a) for a in arrays]
    xp = pairs[0][0]
    if xp is None or any(p[0] is not xp for p in pairs):
        return None, None
    return xp, [p[1] for p in pairs]


def _next_fast_len(xp, n: int) -> int:
    if xp is np:
        import scipy.fft  # heavy: scipy, which this module needs only for an FFT on host arrays

        return scipy.fft.next_fast_len(n, real=True)
    import cupyx.scipy.fft  # optional: CuPy, only on a GPU

    return cupyx.scipy.fft.next_fast_len(n)


def _fits(xp, points: int, itemsize: int) -> bool:
    if xp is np:
        return True  # host memory: the emulator and the simulator run small problems
    free, _ = xp.cuda.runtime.memGetInfo()
    return points * FFT_BYTES_PER_POINT * itemsize <= free // 2


# --- the rule and the transform ---------------------------------------------------------------------

def _max_abs(xp, a) -> float:
    return float(xp.max(xp.abs(a))) if a.size else 0.0


def block_rms(xp, y, block: int) -> float:
    """The largest root-mean-square of y over blocks of `block` samples (float64 sums; the last block
    holds the rest)."""
    sq = xp.square(y.astype(np.float64))
    full = sq.shape[0] // block * block
    top = float(sq[:full].reshape(-1, block).mean(axis=1).max()) if full else 0.0
    if full < sq.shape[0]:
        top = max(top, float(sq[full:].mean()))
    return math.sqrt(top)


def fft_valid(xp, s, f):
    """y[j] = sum_{i<k} s[j+i] f[i] for j < n - k + 1, by FFT in the inputs' dtype."""
    n, k = s.shape[0], f.shape[0]
    P = _next_fast_len(xp, n)
    spectrum = xp.fft.rfft(s, P) * xp.conj(xp.fft.rfft(f, P))
    return xp.fft.irfft(spectrum, P)[: n - k + 1]


def fft_within_rule(xp, s, f, lower_bound):
    """The valid correlation of s with f by FFT, or None when the accuracy rule turns it down.

    `lower_bound(s32, run, m)` is min_j of the direct float32 correlation of s32 with run (m outputs).
    """
    n, k = s.shape[0], f.shape[0]
    if k < fft_choice.MIN_SUM or n < k or not _fits(xp, _next_fast_len(xp, n), s.dtype.itemsize):
        return None
    ms, mf = _max_abs(xp, s), _max_abs(xp, f)
    if not (math.isfinite(ms) and math.isfinite(mf)) or ms == 0 or mf == 0:
        return None  # non-finite: one NaN would reach every output; zeros: direct is exact
    es, ef = fft_choice.exponent(ms), fft_choice.exponent(mf)
    ss, fs = _scaled(xp, s, -es), _scaled(xp, f, -ef)
    r_s = block_rms(xp, ss, k)
    fa = xp.abs(fs.astype(np.float64))
    norm_f = math.sqrt(float(fa @ fa))
    r = min(k, fft_choice.LB_TAPS)
    sums = xp.concatenate((xp.zeros(1), xp.cumsum(fa)))
    a = int(xp.argmax(sums[r:] - sums[:-r]))  # the run of r taps with the largest sum |f|
    m = n - k + 1
    run = (fa[a:a + r] * (1 - 2.0 ** -23)).astype(np.float32)  # rounded down
    lb = lower_bound(xp.ascontiguousarray(xp.abs(ss[a:a + m + r - 1]).astype(np.float32)), run, m)
    lb *= 1 - 4 * r * 2.0 ** -23  # less the rounding of its own sums
    slack = fft_choice.slack(n, k, lb, r_s, norm_f)
    if slack <= 0:
        return None
    y = fft_valid(xp, ss, fs)
    if not fft_choice.within(n, k, block_rms(xp, y, k), slack):
        return None
    return _scaled(xp, y, es + ef)


def _scaled(xp, a, e: int):
    """a * 2**e, exact unless the result leaves the dtype's range: ldexp makes no power of two that could
    overflow or underflow on its own (2**1074 for a subnormal float64 input)."""
    return xp.ldexp(a, e).astype(a.dtype, copy=False)


# --- the direct forward by k ---------------------------------------------------------------------------

#: The longest filter auto's forward runs on a backend's streaming step (cupy naive, numba_cuda tiled: one or a
#: few outputs per thread, the loads of many threads in flight, little code per output) rather than on its
#: register-window step (cupy vec16, numba_cuda regwin: R outputs per thread, whose per-tile code, a staged
#: window and filter chunk, two barriers and the epilogue of R outputs, costs more than it saves at few taps).
#: A MODEL value until a GPU measures it: python -m plots.model.oned (n = 1e8, H100 SXM; its numbers are in
#: targets.md) puts the streaming steps at the HBM copy ceiling up to k = 15 in both dtypes and behind the window
#: steps from k = 19 (their loads or instructions per output grow with k; the window's FMAs per loaded value do
#: not).
STREAM_MAX_K = 15


def direct_variant(wraps: Mapping, op: str, k: int) -> str | None:
    """The variant of the direct step `auto` runs for `op` at a k-tap filter, from its `wraps` (op -> ((max_k,
    variant), ..., (None, variant))); None for an op auto does not wrap."""
    for max_k, variant in wraps.get(op, ()):
        if max_k is None or k <= max_k:
            return variant
    return None


# --- the layer ---------------------------------------------------------------------------------------

#: The layer's implicit GEMM (variant gemm) pays where each group's GEMM is wide enough: its reduction
#: (C_in/groups) * K and its rows C_out/groups. The thresholds are where the static model (python -m
#: plots.model.layer, N = 8, L = 4096, K = 3) puts gemm ahead of direct as the groups grow at 64 -> 128
#: channels: up to 8 -> 16 channels per group; direct from 4 -> 8 per group on.
GEMM_MIN_REDUCTION, GEMM_MIN_ROWS = 24, 16


def layer_uses_gemm(p) -> bool:
    """True when the layer problem p goes to the implicit GEMM rather than one thread per output."""
    return p.C_in // p.groups * p.K >= GEMM_MIN_REDUCTION and p.C_out // p.groups >= GEMM_MIN_ROWS


# --- the engines ------------------------------------------------------------------------------------

def engines(E: Engines, backend: str, table=None) -> Engines:
    """The `auto` engine bundle over the direct bundle `E` (the same signatures), choosing by `backend`'s
    crossover table (or `table`, a function returning one: read at the call, so a new file counts)."""
    table = table or (lambda: load(backend))  # looked up at the call

    def lower_bound(launch):
        def bound(s, f, m):  # into a backend array: numba's simulator does not write back to NumPy arrays
            out = E.empty((m,), np.float32)
            E.correlate(s, f, out, launch)
            return float(namespace(out)[1].min())
        return bound

    def correlate(sig, f, out, launch, *, flip=False, offset=0, periodic=False, bias=None, epilogue=NONE,
                  gate=None):
        N, L, M = sig.shape[0], f.shape[0], out.shape[0]
        xp, views = _views(sig, f, out)
        if xp is not None and not periodic and epilogue != GATE and N >= L:
            s, w, o = views
            w = w[::-1] if flip else w
            if offset == 0 and M == N - L + 1 and use_fft(table(), "conv1d", N, L, out.dtype):
                y = fft_within_rule(xp, s, w, lower_bound(launch))
                if y is not None:
                    if bias is not None:
                        y += y.dtype.type(bias)
                    o[...] = xp.maximum(y, 0) if epilogue == RELU else y
                    return
            if (offset == -(L - 1) and M == N + L - 1 and epilogue == NONE and bias is None
                    and use_fft(table(), "conv1d_input_grad", N, L, out.dtype)):
                y = fft_within_rule(xp, s, w, lower_bound(launch))
                if y is not None:
                    o[L - 1:N] = y
                    if L > 1:  # the short sums at each end, on the backend's own arrays
                        E.correlate(sig[:L - 1], f, out[:L - 1], launch, flip=flip, offset=-(L - 1))
                        E.correlate(sig[N - L + 1:], f, out[N:], launch, flip=flip)
                    return
        E.correlate(sig, f, out, launch, flip=flip, offset=offset, periodic=periodic, bias=bias,
                    epilogue=epilogue, gate=gate)

    def weight_grad(x, g, dw, launch, *, flip=False):
        xp, views = _views(x, g, dw)
        if xp is not None and use_fft(table(), "conv1d_weight_grad", x.shape[0], dw.shape[0], dw.dtype):
            xv, gv, dv = views
            y = fft_within_rule(xp, xv, gv, lower_bound(launch))
            if y is not None:
                dv[...] = y[::-1] if flip else y
                return
        E.weight_grad(x, g, dw, launch, flip=flip)

    return Engines(functools.wraps(E.correlate)(correlate), functools.wraps(E.weight_grad)(weight_grad),
                   E.total, empty=E.empty, launch_of=E.launch_of)


# --- the steps ------------------------------------------------------------------------------------------

def step(*, stream: Step, forward: Step, weight_grad: Step, table: str) -> Step:
    """A backend's 1-D `auto` step (the default): the correlation of `stream` for filters of up to STREAM_MAX_K
    taps and of `forward` beyond, `forward`'s bias sum and `weight_grad`'s weight gradient, each replaced by an
    FFT where the crossover table of backend `table` and the accuracy rule allow it."""
    short, wide = stream.engines.correlate, forward.engines.correlate

    def correlate(sig, f, out, launch, **options):  # f: the filter (the whole signal when periodic)
        (short if f.shape[0] <= STREAM_MAX_K else wide)(sig, f, out, launch, **options)

    direct = Engines(correlate, weight_grad.engines.weight_grad, forward.engines.total,
                     empty=forward.engines.empty, launch_of=forward.engines.launch_of)
    E = engines(direct, table)
    return Step("auto", correlation_impls(E), NOTES["auto"], method="auto", default=True,
                wraps={"conv1d": ((STREAM_MAX_K, stream.variant), (None, forward.variant)),
                       "conv1d_weight_grad": ((None, weight_grad.variant),)}, engines=E)


def layer_step(gemm: Step, direct: Step, accepts, launch_of) -> Step:
    """A backend's layer `auto` step (the default): `gemm` where each group's GEMM is wide enough
    (`layer_uses_gemm`) and the gemm kernels take the launch (`accepts(p, launch_of(options))`), else `direct`."""
    def pick(op):
        def impl(p, *arrays, **options):
            use = layer_uses_gemm(p) and accepts(p, launch_of(options))
            return (gemm if use else direct).impls[op](p, *arrays, **options)
        impl.__name__ = op
        return impl

    note = "gemm where each group's GEMM is wide enough and the gemm kernels take the launch, else direct"
    return Step("auto", {op: pick(op) for op in ("conv1d_layer", "conv1d_layer_backward")}, {"": note},
                method="auto", default=True)
