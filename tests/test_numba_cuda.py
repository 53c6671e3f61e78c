"""numba_cuda beyond the common matrix: device arrays in and out, block sizes, grid-stride loops, launch
options, determinism of the default reductions and a repeat test of the atomic ones; large n on a real
GPU (`pytest -m gpu`).

Under the simulator (NUMBA_ENABLE_CUDASIM=1) the sizes are small, but every input spans several blocks.
"""

import numpy as np
import pytest
from conftest import STATE_MARKS, call_args

import kernels
from kernels import compare
from kernels.spec import OPS

STATUS = kernels.status("numba_cuda")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"numba_cuda: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]
gpu_only = pytest.mark.skipif(STATUS.state != "real GPU",
                              reason=f"no CUDA device: numba_cuda is {STATUS.state} ({STATUS.reason})")

NUMBA_CUDA_OPS = [op for op in OPS if "tiled" in kernels.variants(op, "numba_cuda")]
SMALL = {"block": 32, "per_thread": 1}  # 32-output tiles: small inputs span several blocks


def get(op, variant="tiled", **options):
    return kernels.get(op, "numba_cuda", variant, **options)


def to_device(args):
    from numba import cuda

    return tuple(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args)


def is_device_array(a):
    from numba.cuda.cudadrv import devicearray

    return devicearray.is_cuda_ndarray(a)


def test_status_says_where_the_kernels_run():
    assert STATUS.state in ("real GPU", "simulated") and "numba-cuda" in STATUS.reason


def test_status_reports_a_missing_package(monkeypatch):
    from gpu import numba_cuda

    reason = "the numba-cuda package is not installed"
    monkeypatch.setattr(numba_cuda, "MISSING", reason)
    assert numba_cuda.status() == kernels.backend.Status("unavailable", reason)


@pytest.mark.parametrize("op_name", NUMBA_CUDA_OPS)
def test_device_arrays_in_device_arrays_out(op_name, rng):
    """Device inputs give device outputs; device `out=` arrays are written in place and returned."""
    args, kwargs = call_args(op_name, rng, np.float32, (75, 6))
    dev = to_device(args)
    got = get(op_name, **SMALL)(*dev, **kwargs)
    outs = (got,) if OPS[op_name].single else got
    assert all(is_device_array(o) for o in outs), [type(o) for o in outs]
    compare.assert_close(op_name, got, args, kwargs)

    out = tuple(np.full(o.shape, np.nan, np.float32) for o in outs)
    out_dev = to_device(out)
    given = out_dev[0] if OPS[op_name].single else out_dev
    assert get(op_name, **SMALL)(*dev, out=given, **kwargs) is given
    compare.assert_close(op_name, given, args, kwargs)


def test_strided_device_arrays_are_accepted(rng):
    """A non-contiguous device view (every other element) is copied to a dense one on the device."""
    from numba import cuda

    x, w = rng.standard_normal(301), rng.standard_normal(7)
    big = cuda.to_device(np.repeat(x, 2))
    assert not big[::2].is_c_contiguous()
    y = get("conv1d", **SMALL)(big[::2], cuda.to_device(w))
    assert is_device_array(y)
    compare.assert_close("conv1d", y, (x, w))


# (op, n, k) per block size: conv1d tiles and weight-gradient splits at several blocks and warps
BLOCK_CASES = [("conv1d", 300, 5), ("conv1d_input_grad", 300, 40), ("conv1d_weight_grad", 700, 20),
               ("conv1d_bias_grad", 4500, 1)]


@pytest.mark.parametrize("block", [32, 64, 128])
@pytest.mark.parametrize("op_name, n, k", BLOCK_CASES)
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_block_sizes(variant, op_name, n, k, block, rng):
    """Every block size gives the reference on inputs spanning several blocks (and warps)."""
    args, kwargs = call_args(op_name, rng, np.float64, (n, k), flip=op_name != "conv1d_bias_grad")
    got = get(op_name, variant, block=block, per_thread=1)(*args, **kwargs)
    print(*compare.assert_close(op_name, got, args, kwargs))


@pytest.mark.parametrize("op_name", ["conv1d_weight_grad", "conv1d_bias_grad"])
def test_tiled_reductions_are_deterministic(op_name, rng):
    """Two-stage sums with a fixed grid: repeated runs agree to the bit."""
    args, kwargs = call_args(op_name, rng, np.float32, (1100, 17))
    runs = [get(op_name, block=64)(*args, **kwargs) for _ in range(3)]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("op_name", ["conv1d_weight_grad", "conv1d_bias_grad"])
def test_atomic_variant_repeats_within_tolerance(op_name, rng):
    """atomic is not deterministic: every repeat must still match the reference, and each other."""
    args, kwargs = call_args(op_name, rng, np.float32, (1100, 17))
    runs = [get(op_name, "atomic", block=64)(*args, **kwargs) for _ in range(3)]
    for r in runs:
        compare.assert_close(op_name, r, args, kwargs)
    spread = max(float(np.max(np.abs(r - runs[0]))) for r in runs)
    print(f"{op_name}[atomic]: max difference between repeats {spread:.3g}")


@pytest.mark.parametrize("options, error, words", [
    ({"block": 48}, ValueError, ["block", "power of two", "48"]),
    ({"per_thread": 0}, ValueError, ["per_thread", "positive"]),
    ({"blocks": 2}, TypeError, ["unknown", "blocks"]),
    ({"block": 1024, "per_thread": 8}, ValueError, ["shared memory", "block=1024"]),
])
def test_bad_launch_options_are_rejected(options, error, words):
    with pytest.raises(error) as info:
        get("conv1d", **options)(np.ones(10), np.ones(3))
    assert all(w in str(info.value) for w in words), str(info.value)


# --- real GPU only (pytest -m gpu) ---------------------------------------------------------------

LARGE = 10_000_019  # > 1e7, prime


def large_cases():
    """(op, variant, k, dtype): every variant at k=31 in both dtypes, and tiled at k=257."""
    cases = [(v, 31, d) for v in ("naive", "tiled", "atomic") for d in ("float32", "float64")]
    cases += [("tiled", 257, "float32")]
    return [pytest.param(op, v, k, d, id=f"{op}-{v}-k{k}-{d}") for op in NUMBA_CUDA_OPS
            if OPS[op].family == "conv1d" for v, k, d in cases if v in kernels.variants(op, "numba_cuda")]


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("op_name, variant, k, dtype", large_cases())
def test_large_n_on_gpu(op_name, variant, k, dtype, rng):
    args, kwargs = call_args(op_name, rng, np.dtype(dtype), (LARGE, k), flip=op_name != "conv1d_bias_grad")
    got = get(op_name, variant)(*to_device(args), **kwargs)
    print(*compare.assert_close(op_name, got, args, kwargs))


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("op_name", ["circular_correlate", "circular_correlate_backward"])
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_large_circular_on_gpu(variant, op_name, rng):
    args, kwargs = call_args(op_name, rng, np.float32, (32_771, 1))
    print(*compare.assert_close(op_name, get(op_name, variant)(*to_device(args)), args, kwargs))


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("op_name", ["conv1d", "conv1d_input_grad"])
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_indices_past_2_31_on_gpu(variant, op_name, rng):
    """n > 2**31: the last outputs (whose indices need 64 bits) match the reference on the tail."""
    from numba import cuda

    from kernels.conv1d import correlate, input_grad

    n, k, tail = (1 << 31) + 1000, 3, 1000
    w = rng.standard_normal(k).astype(np.float32)
    long = cuda.device_array(n if op_name == "conv1d" else n - k + 1, np.float32)  # x, or grad_y
    host_tail = rng.standard_normal(tail + k - 1 if op_name == "conv1d" else tail).astype(np.float32)
    long[long.shape[0] - host_tail.shape[0]:].copy_to_device(host_tail)
    args = (long, cuda.to_device(w)) if op_name == "conv1d" else (cuda.to_device(w), long)
    got = get(op_name, variant)(*args)
    ref = correlate(host_tail.astype(float), w.astype(float)) if op_name == "conv1d" else \
        input_grad(w.astype(float), host_tail.astype(float))[-tail:]
    np.testing.assert_allclose(got[got.shape[0] - tail:].copy_to_host(), ref, rtol=1e-5, atol=1e-5)
