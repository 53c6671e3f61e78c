"""Step wg_stream of gpu/cupy/ladder.cu (16-byte staging loads in flight, longer slices, more splits) under the
CPU emulator against the float64 reference: the edge-size matrix of the weight gradient in both dtypes and
thread orders, several chunks per split, misaligned inputs (the scalar staging), non-finite values, and the
same bits on every run; and its plan: 64 bytes in flight per thread, slices of 512 bytes where the shared
memory allows, 32 taps per thread in float32 beyond k = 64, a grid of about gpu.launch.STREAM_BLOCKS blocks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import emulated_only

from gpu import launch as plan
from gpu.cupy import ladder as cupy_ladder
from gpu.launch import Launch
from kernels import cases, compare

emulated = emulated_only
stream = cupy_ladder.weight_grad_stream


def matrix():
    for n, k in cases.sizes_for("conv1d_weight_grad", "emulated"):
        for flip in cases.flips("conv1d_weight_grad"):
            yield pytest.param(n, k, flip, id=f"n{n}-k{k}{'-flip' if flip else ''}")


def _check(x, g, k, flip, launch, **options):
    dw = np.full(k, np.nan, x.dtype)
    stream(x, g, dw, launch, flip=flip, **options)
    print(*compare.assert_close("conv1d_weight_grad", dw, (x, g, k), {"flip": flip}))
    return dw


@emulated
@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n, k, flip", list(matrix()))
def test_edge_sizes(n, k, flip, dtype, order, monkeypatch, rng):
    monkeypatch.setenv("KERNELS_EMU_ORDER", order)
    x, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n - k + 1).astype(dtype)
    _check(x, g, k, flip, Launch(block=32))


@emulated
@pytest.mark.parametrize("block, slices, splits", [(32, 1, 3), (64, 2, 2), (128, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [3, 40, 100])
def test_chunks_per_split_and_misaligned_inputs(k, dtype, block, slices, splits, rng):
    """Several j chunks per split, tap tiles grid-strided; then x and g one element into their buffers: not
    16-byte aligned, staged by scalar loads."""
    n = 3000
    wide = cupy_ladder._wide(np.dtype(dtype).name, block, True)  # 32 taps per thread at k = 100 in float32
    slice_len = slices * plan.wg_layout(k, block, np.dtype(dtype).itemsize, wide=wide)[0]
    x, g = rng.standard_normal(n + 1).astype(dtype), rng.standard_normal(n - k + 2).astype(dtype)
    launch = Launch(block=block, max_blocks=1)
    _check(x[:n], g[:n - k + 1], k, True, launch, slice_len=slice_len, splits=splits)
    _check(x[1:], g[1:], k, False, launch, slice_len=slice_len, splits=splits)


@emulated
def test_non_finite_values_propagate(rng):
    n, k = 700, 7
    x, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n - k + 1).astype(np.float32)
    x[-1], g[5] = np.inf, np.nan
    _check(x, g, k, False, Launch(block=32))


@emulated
@pytest.mark.parametrize("k", [3, 100])
def test_repeats_bit_for_bit(k, monkeypatch, rng):
    x = rng.standard_normal(5000).astype(np.float32)
    g = rng.standard_normal(5000 - k + 1).astype(np.float32)
    runs = []
    for order in ("forward", "reverse", "random"):
        monkeypatch.setenv("KERNELS_EMU_ORDER", order)
        runs.append(_check(x, g, k, False, Launch(block=128), slice_len=plan.TP_WIDE))
    assert all(np.array_equal(runs[0], r) for r in runs[1:]), "wg_stream: bits differ between runs"


def test_its_plan_streams_more_and_splits_wider():
    n, launch = 10**8, Launch()
    for k in (3, 511):
        base, wide = plan.wg_shape(n, k, "float32", launch), plan.wg_shape(n, k, "float32", launch, stream=True)
        assert wide["blocks"] >= 8 * base["blocks"] and wide["fmas"] == base["fmas"]
        TP, G, JS = plan.wg_layout(k, launch.block, 4, None, plan.STREAM_SLICE_BYTES)
        assert plan.wg_shared_bytes(launch.block, G, TP, JS, 4) <= plan.SHARED_LIMIT
    assert plan.wg_layout(511, 128, 4, None, plan.STREAM_SLICE_BYTES)[2] == 128  # 512 bytes of j per slice
    assert plan.wg_layout(127, 128, 4, None, plan.STREAM_SLICE_BYTES, wide=True)[:2] == (plan.TP_WIDE, 4)
    assert plan.wg_layout(64, 128, 4, None, plan.STREAM_SLICE_BYTES, wide=True)[0] == plan.TP_LARGE
    assert plan.wg_layout(127, 128, 8, None, plan.STREAM_SLICE_BYTES, wide=True)[0] == plan.TP_LARGE
