"""Outliers and near-overflow inputs through the DEFAULT variant of every op on every backend.

The default (`kernels.get(op, backend)`, no variant) must meet the per-output (elementwise) tolerance
of `kernels.compare`, |got - ref| <= atol + rtol * mag with mag = the op applied to |inputs|, for every
finite input, whatever method it picks inside (numba_cpu's `auto` may take the FFT, whose error is only
bounded normwise: by max(mag), which a single outlier makes large for every output). Cases:

    outlier   one 1e8 (float32) or 1e20 (float64) in the signal, standard normal elsewhere, at sizes
              where numba_cpu's auto picks the FFT (n = 1e5 and k = 1300 in float32, k = 400 in
              float64); outputs far from the outlier keep their small tolerance
    overflow  the signal +-1e35 in float32, k = 64 (n = 2000), and k = 1300 (n = 1e5, where auto picks the
              FFT; only ops whose sums have k terms): every true result is finite in float32

The signal is x, or grad_y for the ops that take no x (bias and input gradients). The simulated and
emulated GPU backends run the same cases at small sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import STATE_MARKS

import kernels
from kernels import compare
from kernels.spec import OPS

#: (dtype, value of the outlier or of every signal element, CPU sizes, GPU sizes); sizes (n, k).
CASES = {
    "outlier-f32": (np.float32, 1e8, (100_000, 1300), (300, 33)),
    "outlier-f64": (np.float64, 1e20, (100_000, 400), (300, 33)),  # auto: the FFT from k = 370
    "overflow-f32": (np.float32, 1e35, (2000, 64), (300, 64)),
    "overflow-f32-long": (np.float32, 1e35, (100_000, 1300), None),  # numba_cpu auto: the FFT
}
#: Ops left out of a case: their sums of |terms| would exceed float32's largest value (m = 98701 terms).
UNFAIR = {"overflow-f32-long": ("conv1d_weight_grad", "conv1d_bias_grad", "conv1d_relu_backward")}
#: Circular correlation is O(n^2) directly: shorter signals (and sum |y| * 1e35 stays below float32's max).
CIRCULAR_N = {"large": 2048, "small": 256}
LAYER_SIZES = {"large": dict(N=2, C_in=3, C_out=4, L=1000, K=65, padding=32),
               "small": dict(N=2, C_in=3, C_out=4, L=100, K=7, padding=3)}
#: Ops whose signal is their grad_y argument (index in args), not x.
SIGNAL_ARG = {"conv1d_bias_grad": 0, "conv1d_input_grad": 1}
#: The fused ReLU ops get dyadic inputs (exact sums, so that the ReLU mask is exact); their signal is
#: scaled by, or gets one element of, a power of two near the case's value, which keeps the sums exact.
RELU_OPS = ("conv1d_relu", "conv1d_relu_backward")

#: (backend, op, case) -> a strict xfail mark for a known defect; none is known.
KNOWN_FAILURES = {}


def sizes_of(backend):
    """The numba_cpu backend runs the large cases; the reference (numpy) and the GPU stand-ins small ones."""
    return "large" if backend == "numba_cpu" else "small"


def default_params():
    """pytest params (backend, op, case) for every usable backend's default of every op."""
    params = []
    for backend, st in kernels.backends().items():
        if not st.usable:
            params.append(pytest.param(backend, None, None, id=f"{backend}-unavailable",
                                       marks=pytest.mark.skip(reason=f"{backend}: {st.reason}")))
            continue
        marks = [STATE_MARKS[st.state]] if st.state in STATE_MARKS else []
        for op in OPS:
            for case, (_, _, _, small) in CASES.items():
                if op in UNFAIR.get(case, ()) or (small is None and sizes_of(backend) == "small"):
                    continue
                known = KNOWN_FAILURES.get((backend, op, case))
                params.append(pytest.param(backend, op, case, id=f"{backend}-{op}-{case}",
                                           marks=marks + ([known] if known else [])))
    return params


def make_case(op, case, sizes, rng):
    """(args, kwargs) for `op` under `case`: the op's own random inputs, with the signal replaced."""
    dtype, value, large, small = CASES[case]
    n, k = large if sizes == "large" else small
    if OPS[op].family == "circular":
        args, kwargs = OPS[op].make_args(rng, dtype, n=CIRCULAR_N[sizes])
    elif OPS[op].family == "layer":
        args, kwargs = OPS[op].make_args(rng, dtype, **LAYER_SIZES[sizes])
    else:
        args, kwargs = OPS[op].make_args(rng, dtype, n=n, k=k)
    args = list(args)
    i = SIGNAL_ARG.get(op, 0)
    overflow = case.startswith("overflow")
    if op in RELU_OPS:
        s, power = args[i].copy(), dtype(2.0 ** round(math.log2(value)))
        if overflow:
            s *= power
        else:
            s[s.size // 2] = power
    elif overflow:
        s = (rng.choice([-1.0, 1.0], size=np.shape(args[i])) * value).astype(dtype)
    else:
        s = rng.standard_normal(np.shape(args[i])).astype(dtype)
        s.reshape(-1)[s.size // 2] = value
    args[i] = s
    return tuple(args), kwargs


@pytest.mark.parametrize("backend,op,case", default_params())
def test_default_variant_meets_the_elementwise_tolerance(backend, op, case, rng):
    """kernels.get(op, backend) (the default variant) is within the per-output tolerance everywhere."""
    args, kwargs = make_case(op, case, sizes_of(backend), rng)
    got = kernels.get(op, backend)(*args, **kwargs)
    report = compare.compare(op, got, args, kwargs)
    print(*report, sep="\n")
    bad = [str(m) for m in report if not m.ok]
    assert not bad, f"{op} [{backend} default] off under {case}:\n  " + "\n  ".join(bad)


def overflow_params():
    return [(op, case, sizes) for case, (_, _, large, small) in CASES.items() if case.startswith("overflow")
            for op in OPS if op not in UNFAIR.get(case, ())
            for sizes, given in (("large", large), ("small", small)) if given]


@pytest.mark.parametrize("op,case,sizes", overflow_params())
def test_overflow_cases_have_finite_float32_sums(op, case, sizes, rng):
    """The near-overflow cases are fair: every sum of |terms| (mag) stays below float32's largest value."""
    args, kwargs = make_case(op, case, sizes, rng)
    _, _, _, mags = compare.reference(op, args, kwargs)
    assert max(float(np.max(m, initial=0.0)) for m in mags) < np.finfo(np.float32).max
