"""numba_cuda layer ops beyond tests/test_layer.py and tests/test_gpu_backends.py (bitwise-deterministic dw
and db, zero padding with Inf and NaN, for both GPU backends): device arrays in and out (strided ones too),
block sizes and outputs per thread, grid-stride loops, the tiled kernel's shared-memory limits; large layers
and indices past 2**31 on a real GPU (`pytest -m gpu`).

Under the simulator the layers are tiny, but with block=32 and per_thread=1 they span several blocks.
"""

import numpy as np
import pytest
from conftest import STATE_MARKS

import kernels
from kernels import compare
from kernels.spec import OPS

STATUS = kernels.status("numba_cuda")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"numba_cuda: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]
gpu_only = pytest.mark.skipif(STATUS.state != "real GPU",
                              reason=f"no CUDA device: numba_cuda is {STATUS.state} ({STATUS.reason})")

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
VARIANTS = ["direct", "tiled"]
SMALL = {"block": 32, "per_thread": 1}
#: Several blocks of y, dx and (chunk, column) pairs at block=32; stride, padding, dilation and groups.
LAYER = dict(N=2, C_in=4, C_out=6, L=40, K=3, stride=2, padding=2, dilation=2, groups=2)


def get(op, variant, **options):
    return kernels.get(op, "numba_cuda", variant, **options)


def device(a):
    from numba import cuda

    return cuda.to_device(a)


def is_device_array(a):
    from numba.cuda.cudadrv import devicearray

    return devicearray.is_cuda_ndarray(a)


def outputs(op_name, got):
    return (got,) if OPS[op_name].single else tuple(got)


def strided_device_view(a):
    """`a` on the device as a view of every other element along every axis (not contiguous)."""
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    view = device(big)[tuple(slice(None, None, 2) for _ in a.shape)]
    assert not view.is_c_contiguous()
    return view


@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
@pytest.mark.parametrize("variant", VARIANTS)
def test_device_arrays_in_device_arrays_out(variant, op_name, rng):
    """Device inputs, contiguous or strided, give device outputs; device `out=` arrays, contiguous or
    strided, are written and returned."""
    args, kwargs = OPS[op_name].make_args(rng, np.float32, **LAYER)
    fn = get(op_name, variant, **SMALL)
    p, _ = OPS[op_name].parse(*args, **kwargs)
    for inputs in (tuple(device(a) for a in args), tuple(strided_device_view(a) for a in args)):
        got = fn(*inputs, **kwargs)
        assert all(is_device_array(o) for o in outputs(op_name, got))
        compare.assert_close(op_name, got, args, kwargs)
    for make_out in (device, strided_device_view):
        out = tuple(make_out(np.full(s, np.nan, np.float32)) for s in OPS[op_name].out_shapes(p))
        given = out[0] if OPS[op_name].single else out
        assert fn(*args, out=given, **kwargs) is given
        compare.assert_close(op_name, given, args, kwargs)


@pytest.mark.parametrize("options", [{"block": 32}, {"block": 64}, {"block": 128, "per_thread": 1},
                                     {"block": 32, "per_thread": 2}, {"block": 32, "max_blocks": 2}],
                         ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
@pytest.mark.parametrize("variant", VARIANTS)
def test_launch_shapes(variant, op_name, options, rng):
    """Block sizes, outputs per thread, and a grid capped at 2 blocks (every kernel strides over the rest
    of its work) give the reference."""
    args, kwargs = OPS[op_name].make_args(rng, np.float64, **{**LAYER, "L": 80, "stride": 1})
    print(*compare.assert_close(op_name, get(op_name, variant, **options)(*args, **kwargs), args, kwargs),
          sep="\n")


def test_tiled_takes_one_tap_per_chunk_when_the_dilated_window_is_too_wide(rng):
    """A dilation whose K_TILE-tap window overflows shared memory falls back to one tap per chunk."""
    from gpu.numba_cuda import layer as numba_cuda_layer

    dilation = 4 * numba_cuda_layer.SHARED_LIMIT // 8  # float64: a 2-tap window is 4x shared memory
    args, kwargs = OPS[FORWARD].make_args(rng, np.float64, N=1, C_in=1, C_out=2, L=2 * dilation + 5, K=3,
                                          dilation=dilation)
    compare.assert_close(FORWARD, get(FORWARD, "tiled", **SMALL)(*args, **kwargs), args, kwargs)


def test_tiled_rejects_a_stride_too_wide_for_shared_memory():
    with pytest.raises(ValueError, match="shared memory") as info:
        get(FORWARD, "tiled", block=1024, per_thread=8)(np.ones((1, 1, 100)), np.ones((1, 1, 3)), stride=8)
    assert "block=1024" in str(info.value)


# --- real GPU only (pytest -m gpu) ---------------------------------------------------------------

@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("op_name", [FORWARD, BACKWARD])
@pytest.mark.parametrize("K", [3, 31])
@pytest.mark.parametrize("variant", VARIANTS)
def test_benchmark_layers_on_gpu(variant, K, op_name, rng):
    """The benchmark preset (N=8, C_in=64, C_out=128, L=4096, 'same' padding), and a strided, dilated,
    grouped one."""
    for sizes in (dict(N=8, C_in=64, C_out=128, L=4096, K=K, padding=K // 2),
                  dict(N=4, C_in=64, C_out=64, L=10_007, K=K, stride=3, padding=5, dilation=2, groups=4)):
        args, kwargs = OPS[op_name].make_args(rng, np.float32, **sizes)
        got = get(op_name, variant)(*(device(a) for a in args), **kwargs)
        print(*compare.assert_close(op_name, got, args, kwargs), sep="\n")


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("variant", VARIANTS)
def test_indices_past_2_31_on_gpu(variant, rng):
    """One channel of length L > 2**31: the last elements of y and of dx, whose flat indices need 64
    bits, match the reference on the tail (the rest of x and g is left unset)."""
    from numba import cuda

    L, K, tail = (1 << 31) + 1000, 3, 1000
    w = rng.standard_normal((1, 1, K)).astype(np.float32)
    x = cuda.device_array((1, 1, L), np.float32)
    x_tail = rng.standard_normal(tail + K - 1).astype(np.float32)
    x[0, 0, L - x_tail.shape[0]:].copy_to_device(x_tail)
    y = get(FORWARD, variant)(x, device(w))
    np.testing.assert_allclose(y[0, 0, y.shape[2] - tail:].copy_to_host(),
                               np.correlate(x_tail.astype(float), w[0, 0].astype(float), "valid"),
                               rtol=1e-5, atol=1e-5)
    del y
    g = cuda.device_array((1, 1, L - K + 1), np.float32)
    g_tail = rng.standard_normal(tail).astype(np.float32)
    g[0, 0, g.shape[2] - tail:].copy_to_device(g_tail)
    dx = get(BACKWARD, variant)(x, device(w), g, has_bias=False)[0]  # dx[j] = sum_t g[j-t] w[t]
    np.testing.assert_allclose(dx[0, 0, L - tail:].copy_to_host(),
                               np.convolve(g_tail.astype(float), w[0, 0].astype(float))[K - 1:],
                               rtol=1e-5, atol=1e-5)
