"""Adjoint identities and algebraic properties, on every backend."""

import numpy as np
import pytest
from conftest import call_args, ops_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernels
from kernels import compare

SIZE = (131, 17)


def dot(a, b):
    return float(np.dot(compare.to_host(a).astype(np.float64), compare.to_host(b).astype(np.float64)))


def assert_adjoint(lhs, rhs, scale, dtype, length):
    """<a, Ab> == <A^T a, b> up to rounding of sums of `length` terms of size `scale`."""
    tol = 8 * np.finfo(dtype).eps * np.sqrt(length) * scale
    assert abs(lhs - rhs) <= tol, f"<g, Ax> = {lhs!r} but <A^T g, x> = {rhs!r} (tolerance {tol:.3g})"


@ops_for("conv1d")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv1d_adjoints(op_name, impl, flip, dtype, rng):
    """<g, conv1d(x, w)> = <conv1d_weight_grad(x, g, k), w> = <x, conv1d_input_grad(w, g)>."""
    impl.require("conv1d_weight_grad", "conv1d_input_grad")
    n, k = SIZE
    x, w, g = (rng.standard_normal(s).astype(dtype) for s in (n, k, n - k + 1))
    y = impl("conv1d")(x, w, flip=flip)
    dw = impl("conv1d_weight_grad")(x, g, k, flip=flip)
    dx = impl("conv1d_input_grad")(w, g, flip=flip)
    scale = float(np.abs(g) @ np.correlate(np.abs(x.astype(float)), np.abs(w.astype(float)), "valid"))
    assert_adjoint(dot(g, y), dot(dw, w), scale, dtype, n * k)
    assert_adjoint(dot(g, y), dot(x, dx), scale, dtype, n * k)


@ops_for("circular_correlate")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_circular_adjoints(op_name, impl, dtype, rng):
    """<g, z(x, y)> = <dx, x> = <dy, y>."""
    n = 67
    x, y, g = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    z = impl("circular_correlate")(x, y)
    dx, dy = impl("circular_correlate_backward")(x, y, g)
    scale = float(np.abs(g).sum() * np.abs(x).sum() * np.abs(y).max())
    assert_adjoint(dot(g, z), dot(dx, x), scale, dtype, n * n)
    assert_adjoint(dot(g, z), dot(dy, y), scale, dtype, n * n)


@ops_for("conv1d")
def test_shift_and_flip_properties(op_name, impl, rng):
    """len(y) = n-k+1; shifting x by s shifts y by s; flip=True equals flip=False with w reversed."""
    n, k, s = 200, 9, 5
    x, w = rng.standard_normal(n), rng.standard_normal(k)
    conv = impl("conv1d")
    y = compare.to_host(conv(x, w))
    assert y.shape == (n - k + 1,)
    np.testing.assert_allclose(compare.to_host(conv(x[s:], w)), y[s:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(compare.to_host(conv(x, w, flip=True)),
                               compare.to_host(conv(x, w[::-1].copy())), rtol=1e-12, atol=1e-12)


@ops_for("conv1d_relu_backward")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dead_relu_gives_exactly_zero_filter_gradients(op_name, impl, dtype, rng):
    """A bias below every response masks all of grad_y: dw and db are exactly 0, and so is dx."""
    args, _ = call_args(op_name, rng, dtype, SIZE)
    x, w, _, g = args
    b = -float(np.abs(x).sum() * np.abs(w).max()) - 1.0
    dx, dw, db = (compare.to_host(a) for a in impl(op_name)(x, w, b, g))
    assert not np.any(dw) and not np.any(db) and not np.any(dx)
    assert not np.any(compare.to_host(impl("conv1d_relu")(x, w, b)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), data=st.data(), flip=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_random_shapes_on_cpu(n, data, flip, dtype):
    """Hypothesis: any n, k <= n, either dtype, either flip; numba_cpu agrees with the reference."""
    k = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    for op in ("conv1d", "conv1d_weight_grad", "conv1d_input_grad", "conv1d_relu_backward"):
        args, kwargs = call_args(op, rng, dtype, (n, k), flip)
        got = kernels.get(op, "numba_cpu")(*args, **kwargs)
        compare.assert_close(op, got, args, kwargs)
        assert compare.to_host(got if op != "conv1d_relu_backward" else got[0]).shape[0] == \
            {"conv1d": n - k + 1, "conv1d_weight_grad": k}.get(op, n)
