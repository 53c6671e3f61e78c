"""Behaviour both GPU backends (numba_cuda, cupy) share beyond the common matrix: grid-stride loops
and the skipped zero padding of the input gradient. Small blocks, so small inputs span several."""

import numpy as np
import pytest
from conftest import STATE_MARKS, call_args

import kernels
from kernels import compare

SMALL = {"numba_cuda": {"block": 32, "per_thread": 1}, "cupy": {"block": 32}}


def backend_params():
    params = []
    for name in SMALL:
        st = kernels.status(name)
        marks = [pytest.mark.skipif(not st.usable, reason=f"{name}: {st.reason}"),
                 *([STATE_MARKS[st.state]] if st.state in STATE_MARKS else [])]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


# (op, n, k): several times more tiles, blocks, tap tiles and j chunks than the 2 blocks allowed
STRIDE_CASES = [("conv1d", 600, 45), ("conv1d_weight_grad", 1200, 300), ("conv1d_bias_grad", 1200, 1),
                ("circular_correlate", 90, 1)]


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("op_name, n, k", STRIDE_CASES)
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_grid_stride_loops(backend, variant, op_name, n, k, rng):
    """With the grid capped at 2 blocks, each block strides over the rest of the work."""
    args, kwargs = call_args(op_name, rng, np.float32, (n, k))
    got = kernels.get(op_name, backend, variant, max_blocks=2, **SMALL[backend])(*args, **kwargs)
    compare.assert_close(op_name, got, args, kwargs)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_inf_in_the_filter_does_not_touch_the_padding(backend, variant, rng):
    """The input gradient skips the zero padding: an Inf tap gives Inf where the reference has Inf and
    finite values elsewhere (Inf * 0 would put NaN at the edges)."""
    w, g = rng.standard_normal(40), rng.standard_normal(200)
    w[3] = np.inf
    got = kernels.get("conv1d_input_grad", backend, variant, **SMALL[backend])(w, g)
    report = compare.compare("conv1d_input_grad", got, (w, g))
    assert all(m.ok for m in report), report
    assert np.isfinite(got).sum() == 39 and not np.isnan(got).any()
