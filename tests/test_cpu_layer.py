"""The numba_cpu conv1d layer variants (cpu/layer.py) on the awkward cases: taps that reach no real
input (empty tap ranges), random small configurations against the reference and torch, and zero
padding with NaN/Inf (torch's meaning: a padded zero multiplies like a real zero)."""

# ruff: noqa: E741  (l is the output position, as in the formulas)
from __future__ import annotations

import numpy as np
import pytest

import kernels
from cpu import layer
from kernels import compare
from kernels.layer import LayerProblem
from kernels.spec import OPS

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
VARIANTS = sorted(kernels.variants(FORWARD, "numba_cpu"))


def _variant_ids():
    return [pytest.param(v, id=v) for v in VARIANTS]


def test_every_layer_variant_is_in_both_ops():
    assert VARIANTS == sorted(kernels.variants(BACKWARD, "numba_cpu")) and {"naive", "direct"} <= set(VARIANTS)


# --- taps that reach only padding -------------------------------------------------------------------

@pytest.mark.parametrize("variant", _variant_ids())
def test_backward_reads_nothing_past_grad_out(variant):
    """stride 3, padding 2, dilation 5: tap 1 reaches no real input (an empty tap range). grad_out is a
    view of a longer buffer whose next element is a sentinel: dx must not pick it up."""
    x, w = np.ones((1, 1, 3)), np.ones((1, 1, 2))
    buf = np.array([1.0, 12345.0])
    g = buf[:1].reshape(1, 1, 1)
    f = kernels.get(BACKWARD, "numba_cpu", variant)
    dx, dw, _ = f(x, w, g, stride=3, padding=2, dilation=5, has_bias=False)
    np.testing.assert_array_equal(dx, np.zeros((1, 1, 3)))
    compare.assert_close(BACKWARD, (dx, dw, np.zeros(0)), (x, w, g),
                         dict(stride=3, padding=2, dilation=5, has_bias=False))


@pytest.mark.parametrize("variant", _variant_ids())
def test_depthwise_strided_dilated_case(variant, rng):
    """N=1, C_in=C_out=3, L=5, K=5, stride 3, padding 2, dilation 2, groups 3."""
    sizes = dict(N=1, C_in=3, C_out=3, L=5, K=5, stride=3, padding=2, dilation=2, groups=3, bias=True)
    for op in (FORWARD, BACKWARD):
        args, kwargs = OPS[op].make_args(rng, np.float64, **sizes)
        compare.assert_close(op, kernels.get(op, "numba_cpu", variant)(*args, **kwargs), args, kwargs)


def test_tap_range_is_clamped_and_exact():
    """tap_range(t) = exactly the l whose tap t is on real input, with 0 <= lo <= hi <= L_out,
    over every small (L, K, stride, padding, dilation)."""
    for L in range(1, 7):
        for K in range(1, 5):
            for stride in range(1, 5):
                for padding in range(0, 5):
                    for dilation in range(1, 6):
                        if dilation * (K - 1) + 1 > L + 2 * padding:
                            continue
                        p = LayerProblem(1, 1, 1, L, K, np.dtype(np.float64), stride, padding, dilation)
                        for t in range(K):
                            lo, hi = layer.tap_range(t, L, p.L_out, stride, padding, dilation)
                            inside = [l for l in range(p.L_out) if 0 <= l * stride + t * dilation - padding < L]
                            assert 0 <= lo <= hi <= p.L_out
                            assert list(range(lo, hi)) == inside, (L, K, stride, padding, dilation, t)


def _random_layer(rng):
    """Random small (N, C_in, C_out, L, K, stride, padding, dilation, groups, bias), often with taps on
    padding only (padding and dilation large against L)."""
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        C_in, C_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        L, K = int(rng.integers(1, 12)), int(rng.integers(1, 6))
        stride, padding, dilation = int(rng.integers(1, 5)), int(rng.integers(0, 6)), int(rng.integers(1, 6))
        if dilation * (K - 1) + 1 <= L + 2 * padding:
            return dict(N=int(rng.integers(1, 3)), C_in=C_in, C_out=C_out, L=L, K=K, stride=stride,
                        padding=padding, dilation=dilation, groups=groups, bias=bool(rng.integers(0, 2)))


def _torch_layer(x, w, b, g, kwargs):
    """(y, dx, dw, db) from torch in float64 (db None without a bias)."""
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in (x, w) + ((b,) if b is not None else ())]
    y = torch.nn.functional.conv1d(*tensors, **kwargs)
    y.backward(torch.tensor(g))
    grads = [t.grad.numpy() for t in tensors]
    return y.detach().numpy(), grads[0], grads[1], grads[2] if b is not None else None


@pytest.mark.parametrize("variant", _variant_ids())
def test_random_small_layers_match_the_reference_and_torch(variant):
    """200 random small configurations in float64 (seeded), forward and backward, against the
    reference, and against torch when it is importable. grad_out sits at the start of a longer
    buffer of large values, so an out-of-bounds read shows."""
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    rng = np.random.default_rng(11)
    fwd, bwd = kernels.get(FORWARD, "numba_cpu", variant), kernels.get(BACKWARD, "numba_cpu", variant)
    for case in range(200):
        sizes = _random_layer(rng)
        (x, w, *bs), kwargs = OPS[FORWARD].make_args(rng, np.float64, **sizes)
        p, _ = OPS[FORWARD].parse(x, w, *bs, **kwargs)
        buf = np.full(int(np.prod(p.y_shape)) + 8, 1e30)
        buf[:-8] = rng.standard_normal(buf.size - 8)
        g = buf[:-8].reshape(p.y_shape)
        y = fwd(x, w, *bs, **kwargs)
        grads = bwd(x, w, g, **kwargs, has_bias=sizes["bias"])
        where = f"case {case}: {sizes}"
        for op, got, args, kw in ((FORWARD, y, (x, w, *bs), kwargs),
                                  (BACKWARD, grads, (x, w, g), {**kwargs, "has_bias": sizes["bias"]})):
            bad = [str(m) for m in compare.compare(op, got, args, kw) if not m.ok]
            assert not bad, f"{where} {op}: {bad}"
        if have_torch:
            ty, tdx, tdw, tdb = _torch_layer(x, w, bs[0] if bs else None, g, kwargs)
            for name, a, t in (("y", y, ty), ("dx", grads[0], tdx), ("dw", grads[1], tdw), ("db", grads[2], tdb)):
                if t is not None:
                    np.testing.assert_allclose(a, t, rtol=1e-12, atol=1e-12, err_msg=f"{where} {name} vs torch")


# --- zero padding and IEEE values ---------------------------------------------------------------------

LAYER = dict(N=2, C_in=3, C_out=4, L=9, K=3, stride=2, padding=2, dilation=1, groups=1, bias=True)


def _nonfinite_cases(rng, dtype):
    """(what, forward args, backward args, kwargs): Inf or NaN in w, Inf or NaN in grad_out."""
    (x, w, b), kwargs = OPS[FORWARD].make_args(rng, dtype, **LAYER)
    p, _ = OPS[FORWARD].parse(x, w, b, **kwargs)
    g = rng.standard_normal(p.y_shape).astype(dtype)
    cases = []
    for value in (np.inf, -np.inf, np.nan):
        wv = w.copy()
        wv[1, 2, 0] = value  # tap 0 lies in the padding for the first output
        gv = g.copy()
        gv[1, 3, -1] = value  # the last output's taps reach the padding on the right
        cases.append((f"w={value}", (x, wv, b), (x, wv, g)))
        cases.append((f"grad_out={value}", (x, w, b), (x, w, gv)))
    return cases, kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", _variant_ids())
def test_padded_zeros_multiply_like_real_zeros(variant, dtype, rng):
    """0 * Inf = 0 * NaN = NaN in the padding, as in torch and the reference: NaN/Inf positions and
    values of every output equal the reference's (compare counts non-finite mismatches)."""
    cases, kwargs = _nonfinite_cases(rng, dtype)
    fwd, bwd = kernels.get(FORWARD, "numba_cpu", variant), kernels.get(BACKWARD, "numba_cpu", variant)
    for what, fargs, bargs in cases:
        with np.errstate(invalid="ignore", over="ignore"):
            y = fwd(*fargs, **kwargs)
            grads = bwd(*bargs, **kwargs)
            for op, got, args, kw in ((FORWARD, y, fargs, kwargs), (BACKWARD, grads, bargs, kwargs)):
                report = compare.compare(op, got, args, kw)
                bad = [str(m) for m in report if not m.ok]
                assert not bad, f"{what} {op}: {bad}"
        if what.startswith("w="):
            assert np.isnan(y[:, 1, 0]).all(), f"{what}: the padded term 0 * w must make y[:, 1, 0] NaN"
        else:
            assert np.isnan(grads[1][3]).any(), f"{what}: the padded term 0 * g must reach dw[3]"
