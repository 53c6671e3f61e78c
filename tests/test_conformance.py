"""Every backend and variant against the float64 reference, over the whole matrix."""

import numpy as np
import pytest
from conftest import DTYPES, call_args, ops_for

from kernels import compare
from kernels.spec import OPS


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(op_name, impl, size, flip, dtype, rng):
    args, kwargs = call_args(op_name, rng, dtype, size, flip)
    got = impl(op_name)(*args, **kwargs)
    outs = (got,) if OPS[op_name].single else got
    assert all(np.dtype(o.dtype) == np.dtype(dtype) for o in outs), "outputs keep the input dtype"
    report = compare.assert_close(op_name, got, args, kwargs)
    print(*report, sep="\n")


@ops_for("conv1d", "conv1d_weight_grad", "conv1d_input_grad", "conv1d_relu_backward",
         "circular_correlate_backward")
def test_strided_inputs(op_name, impl, rng):
    """Non-contiguous views (every other element of a larger array) give the same result."""
    args, kwargs = call_args(op_name, rng, np.float32, (131, 17))
    strided = tuple(_every_other(a, rng) for a in args)
    for a, s in zip(args, strided):
        if isinstance(a, np.ndarray):
            assert not s.flags.c_contiguous and np.array_equal(a, s)
    compare.assert_close(op_name, impl(op_name)(*strided, **kwargs), args, kwargs)


def _every_other(a, rng):
    if not isinstance(a, np.ndarray):
        return a
    big = rng.standard_normal(2 * a.shape[0]).astype(a.dtype)
    big[::2] = a
    return big[::2]


@ops_for("conv1d", "conv1d_relu_backward", "circular_correlate_backward")
def test_out_arguments(op_name, impl, rng):
    """out= receives the result (written in place) and is what the call returns."""
    args, kwargs = call_args(op_name, rng, np.float64, (129, 3))
    op = OPS[op_name]
    p, _ = op.parse(*args, **kwargs)
    outs = tuple(np.full(s, np.nan) for s in op.out_shapes(p))
    out = outs[0] if op.single else outs
    assert impl(op_name)(*args, out=out, **kwargs) is out
    compare.assert_close(op_name, out, args, kwargs)


@ops_for("conv1d", "conv1d_weight_grad", "circular_correlate")
def test_nonfinite_values_propagate(op_name, impl, rng):
    """NaN and Inf inputs are accepted and propagate to the outputs they touch (IEEE semantics)."""
    args, kwargs = call_args(op_name, rng, np.float64, (129, 3))
    x = args[0].copy()
    x[5], x[60] = np.nan, np.inf
    args = (x, *args[1:])
    got = impl(op_name)(*args, **kwargs)
    report = compare.compare(op_name, got, args, kwargs)
    assert all(m.ok for m in report), report
    assert not np.isfinite(compare.to_host(got)).all()
