"""The GPU run's bounded set of real-GPU tests (`make gpu-report`, step "tests"): a few minutes on one device,
rather than the whole matrix. Everything here skips, naming the reason, where a backend is not on a real GPU.

    status        both GPU backends say "real GPU" (a tiny kernel compiled, ran and read back)
    defaults      every op x GPU backend, default variant, at 2-3 sizes up to n = 1e8 (1e8: the ops whose
                  reference goes by windows or chunks, plots/gpurun/windows.py; the O(n^2) circular ops and
                  the composite ReLU backward stop at 1e6 and 8e3)
    shuffles      the weight gradient's warp-shuffle tree (the simulator runs a shared-memory stand-in) at k
                  around its tap tiles and every block size class
    past 2^31     n > 2^31 elements for every default kernel (forward, input and weight gradient, the layer):
                  inputs zero but for windows at the start, across 2^31 and at the end, checked there; run
                  serially (each needs 17+ GB of device memory)
"""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels import compare
from kernels.spec import OPS
from plots.bench.sweeps import LAYER_SHAPES
from plots.gpurun import windows

BACKENDS = ("numba_cuda", "cupy")
ONE_D = [op for op in OPS if OPS[op].family in ("conv1d", "circular")]
LAYER = [op for op in OPS if OPS[op].family == "layer"]
SIZES = ((4_099, 257), (1_000_003, 31), (100_000_007, 3))
SIZES_CIRCULAR = ((1_009, 1), (8_191, 1))
LARGE = (1 << 31) + (1 << 16)  # elements of the longest array past 2^31
W = 1 << 16  # width of the nonzero windows of the inputs past 2^31
LAYER_SMALL = dict(N=2, C_in=3, C_out=4, L=1000, K=5, padding=2)


def on_gpu(backend):
    st = kernels.status(backend)
    return pytest.mark.skipif(st.state != "real GPU", reason=f"no real GPU for {backend}: {st.state} ({st.reason})")


def params(cases):
    """(backend, *case) for each backend and case, skipped where that backend is not on a real GPU."""
    return [pytest.param(b, *c, marks=[on_gpu(b), pytest.mark.gpu], id="-".join(map(str, (b, *c))))
            for b in BACKENDS for c in cases]


def sizes(op):
    if OPS[op].family == "circular":
        return SIZES_CIRCULAR
    return SIZES if op in windows.SLIDING + windows.SUMS else SIZES[:2]


@pytest.fixture(autouse=True)
def free_device_memory():
    yield
    from plots.bench.sessions import release_gpu_pools

    release_gpu_pools()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BACKENDS)
def test_status_says_real_gpu_only_after_a_kernel_ran(backend):
    from kernels._env import cuda_driver_present

    if not cuda_driver_present():
        pytest.skip("no CUDA device or driver here")
    st = kernels.status(backend)
    assert st.state == "real GPU", f"{backend}: {st.state}: {st.reason}"


@pytest.mark.parametrize("backend, op, n, k", params([(op, n, k) for op in ONE_D for n, k in sizes(op)]))
def test_default_variant(backend, op, n, k, rng):
    args, kwargs = OPS[op].make_args(rng, np.float32, n=n, k=k)
    got = kernels.get(op, backend)(*args, **kwargs)
    if n > 10**7:
        print(windows.check(op, got, args, kwargs))
    else:
        print(*compare.assert_close(op, got, args, kwargs))


@pytest.mark.parametrize("backend, op, shape", params([(op, s) for op in LAYER for s in (0, 1)]))
def test_default_layer_variant(backend, op, shape, rng):
    args, kwargs = OPS[op].make_args(rng, np.float32, **(LAYER_SMALL if shape == 0 else LAYER_SHAPES[0]))
    print(*compare.assert_close(op, kernels.get(op, backend)(*args, **kwargs), args, kwargs))


@pytest.mark.parametrize("backend, k, block", params([(k, b) for k in (1, 2, 3, 31, 32, 33, 127, 257, 1023)
                                                      for b in (32, 128, 1024)]))
def test_weight_grad_shuffle_tree(backend, k, block, rng):
    args, kwargs = OPS["conv1d_weight_grad"].make_args(rng, np.float32, n=100_003, k=k)
    got = kernels.get("conv1d_weight_grad", backend, "wg_regwin", block=block)(*args, **kwargs)
    print(*compare.assert_close("conv1d_weight_grad", got, args, kwargs))


# --- past 2^31 elements -----------------------------------------------------------------------------------

def device_zeros(backend, size):
    """A float32 device array of zeros that `backend` takes (CuPy allocates; numba views it)."""
    import cupy  # optional: only on a GPU

    a = cupy.zeros(size, dtype=cupy.float32)
    if backend == "numba_cuda":
        from numba import cuda  # heavy: only on a GPU

        return cuda.as_cuda_array(a)
    return a


def put(a, start, values):
    """a[start : start+len(values)] = values, on the device."""
    import cupy  # optional: only on a GPU

    cupy.asarray(a)[start:start + values.shape[0]] = cupy.asarray(values)


def spans(size):
    """The nonzero windows of an input of `size` elements: its start, across 2^31, its end."""
    return [(0, W), ((1 << 31) - W // 2, (1 << 31) + W // 2), (size - W, size)]


def sparse(backend, size, rng):
    a = device_zeros(backend, size)
    for lo, hi in spans(size):
        put(a, lo, rng.standard_normal(hi - lo).astype(np.float32))
    return a


@pytest.mark.parametrize("backend, op, k", params([("conv1d", 3), ("conv1d", 511), ("conv1d_input_grad", 31),
                                                   ("conv1d_weight_grad", 31)]))
def test_default_kernels_past_2_31(backend, op, k, rng):
    w = rng.standard_normal(k).astype(np.float32)
    m = LARGE - k + 1
    if op == "conv1d":
        args = (sparse(backend, LARGE, rng), w)
        checked = [(lo, min(hi, m)) for lo, hi in spans(LARGE)]
    elif op == "conv1d_input_grad":
        args = (w, sparse(backend, m, rng))
        checked = [(lo, min(hi + k - 1, LARGE)) for lo, hi in spans(m)]
    else:
        x = sparse(backend, LARGE, rng)
        g = device_zeros(backend, m)
        for lo, hi in spans(LARGE):  # g nonzero where x is, so that every nonzero term lies in a window
            put(g, lo, rng.standard_normal(min(hi, m) - lo).astype(np.float32))
        args = (x, g, k)
        checked = [(lo, min(hi, m)) for lo, hi in spans(LARGE)]
    got = kernels.get(op, backend)(*args)
    print(windows.check(op, got, args, windows=checked))


@pytest.mark.parametrize("backend, what", params([("layer",)]))
def test_layer_forward_past_2_31(backend, what, rng):
    """The default layer step on an input of 2 x (2^30 + 4099) elements: x zero but for its last W positions per
    channel, so the outputs there equal those of the small problem made of that tail."""
    import cupy  # optional: only on a GPU

    L, K = (1 << 30) + 4099, 3
    x = cupy.zeros((1, 2, L), dtype=cupy.float32)
    tail = rng.standard_normal((1, 2, W)).astype(np.float32)
    x[:, :, L - W:] = cupy.asarray(tail)
    w, b = rng.standard_normal((2, 2, K)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    if backend == "numba_cuda":
        from numba import cuda  # heavy: only on a GPU

        x = cuda.as_cuda_array(x)
    got = compare.to_host(kernels.get("conv1d_layer", backend)(x, w, b, padding=1))[:, :, L - W:]
    report = compare.compare("conv1d_layer", got, (tail, w, b), {"padding": 1})
    assert all(r.ok for r in report), [str(r) for r in report]
