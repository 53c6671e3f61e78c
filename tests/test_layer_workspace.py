"""The BLAS layer variants' workspace grows with the output, not with the stride, the padding or the dilation.

A stride far beyond L leaves one output position; a dilation of 10**6 (with the padding it needs) leaves
the output as long as the input. Copying the whole padded, phase-split input for them would take
gigabytes (38 GiB at stride 10**7); the copies of the tap windows take kilobytes. Measured with
tracemalloc (NumPy reports its allocations to it), after a first call compiled the kernels.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import kernels
from cpu import layer_gemm
from kernels import compare

VARIANTS = ("gemm", "gemm_folded", "gemm_numpy", "gemm_packed", "blocked", "auto")
PEAK_BYTES = 16 << 20
#: (x shape, w shape, settings): torch answers these at once.
EXTREMES = {
    "stride 1e7": ((8, 64, 20), (128, 64, 3), dict(stride=10**7)),
    "dilation 1e6": ((2, 4, 20), (8, 4, 3), dict(dilation=10**6, padding=10**6)),
    "padding 1e6, stride 1e6": ((2, 4, 20), (8, 4, 3), dict(padding=10**6, stride=10**6)),
}


def _peak(fn) -> int:
    fn()  # compiles
    layer_gemm._WORKSPACE.__dict__.clear()  # the scratch arrays kept between calls count too
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", list(EXTREMES))
def test_workspace_does_not_grow_with_stride_padding_or_dilation(variant, case, rng):
    xs, ws, settings = EXTREMES[case]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    forward = kernels.get("conv1d_layer", "numba_cpu", variant)
    backward = kernels.get("conv1d_layer_backward", "numba_cpu", variant)
    y = forward(x, w, b, **settings)
    g = rng.standard_normal(y.shape).astype(np.float32)
    peak = max(_peak(lambda: forward(x, w, b, **settings)), _peak(lambda: backward(x, w, g, **settings)))
    assert peak < PEAK_BYTES, f"{case}: {peak / 2**20:.0f} MiB at peak"
    if case == "stride 1e7":  # the reference pads nothing here: cheap
        compare.assert_close("conv1d_layer", y, (x, w, b), settings)
        compare.assert_close("conv1d_layer_backward", backward(x, w, g, **settings), (x, w, g), settings)


@pytest.mark.parametrize("settings", [dict(stride=1), dict(stride=2, padding=3), dict(dilation=15, padding=2),
                                      dict(stride=3, dilation=7, padding=5), dict(dilation=9)])
def test_windows_cover_every_tap_and_stay_within_the_padded_row(settings):
    """Each tap's window lies in its slot; slots of one phase are disjoint; W never exceeds the phase length."""
    from kernels.layer import LayerProblem

    p = LayerProblem(2, 3, 4, 64, 5, np.dtype(np.float32), **settings)
    win = layer_gemm.Windows(p)
    for t, i, off in win.taps:
        q = (t * p.dilation) % p.stride
        assert (win.starts[i] + p.padding - q) % p.stride == 0, "the slot is of the tap's phase"
        assert 0 <= off and off + p.L_out <= win.widths[i] <= win.W
        assert win.starts[i] + off * p.stride == t * p.dilation - p.padding, "window t starts at tap t's input"
    own = [set(range(s, s + w * p.stride, p.stride)) for s, w in zip(win.starts, win.widths)]
    assert sum(map(len, own)) == len(set().union(*own)), "the slots' own columns are disjoint"
    assert win.W <= -(-p.L_pad // p.stride)
