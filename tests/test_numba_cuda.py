"""numba_cuda beyond the common matrix and tests/test_gpu_backends.py (the tests it shares with cupy):
device arrays in and out, concurrent calls from Python threads; indices past 2**31 on a real GPU
(`pytest -m gpu`).

Under the simulator (NUMBA_ENABLE_CUDASIM=1) the sizes are small, but every input spans several blocks.
"""

import threading

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

cuda = None  # numba.cuda: the test that launches its own kernel imports it
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


def test_status_reports_a_missing_package(monkeypatch):
    """Without the numba-cuda package the backend module refuses to load, and the registry says why."""
    import importlib.util
    import sys

    from kernels import registry

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    monkeypatch.delitem(sys.modules, "gpu.numba_cuda.backend")
    registry.backend.cache_clear()
    registry.status.cache_clear()
    try:
        st = registry.status("numba_cuda")
    finally:
        registry.backend.cache_clear()
        registry.status.cache_clear()
    assert st.state == "unavailable" and "the numba-cuda package is not installed" in st.reason, st


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


@pytest.mark.parametrize("n", [1, 31, 33, 129, 300])
def test_fill_and_copy_cover_every_element_with_a_block_fitted_to_the_array(n, rng):
    """The utility kernels launch a block no larger than the array (a warp at least), and stride over the rest
    of a capped grid."""
    from numba import cuda

    from gpu.launch import NumbaCudaLaunch
    from gpu.numba_cuda import common

    assert [common.fitted_block(NumbaCudaLaunch(block=128), m) for m in (1, 32, 33, 100, 129, 5000)] == \
        [32, 32, 64, 128, 128, 128]
    capped = NumbaCudaLaunch(block=64, max_blocks=2)
    a = cuda.to_device(rng.standard_normal(n))
    common.fill(a, 2.5, capped)
    assert (a.copy_to_host() == 2.5).all()
    src = cuda.to_device(np.repeat(rng.standard_normal(n), 2))[::2]
    common.copy(src, a, capped)
    np.testing.assert_array_equal(a.copy_to_host(), src.copy_to_host())


@pytest.mark.parametrize("threads", [2, 4])
def test_concurrent_calls_from_threads(threads, rng):
    """Calls from several Python threads at once all give the reference. numba's simulator is not
    thread-safe (its launches share module state), so the backend serialises them there."""
    cases = []
    for i in range(2 * threads):
        op_name = ("conv1d", "conv1d_weight_grad", "conv1d_layer", "conv1d_input_grad")[i % 4]
        if op_name == "conv1d_layer":
            cases.append((op_name, *OPS[op_name].make_args(rng, np.float32, N=1, C_in=2, C_out=2, L=20, K=3)))
        else:
            cases.append((op_name, *call_args(op_name, rng, np.float32, (90, 5))))
    results, errors = [None] * len(cases), []
    barrier = threading.Barrier(threads)

    def work(t):
        barrier.wait()  # start together
        for i in range(t, len(cases), threads):
            op_name, args, kwargs = cases[i]
            try:
                results[i] = kernels.get(op_name, "numba_cuda", **SMALL)(*args, **kwargs)
            except Exception as e:  # noqa: BLE001  (reported below, with the call)
                errors.append(f"{op_name}: {type(e).__name__}: {e}")

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    for (op_name, args, kwargs), got in zip(cases, results, strict=True):
        compare.assert_close(op_name, got, args, kwargs)


# --- real GPU only (pytest -m gpu) ---------------------------------------------------------------

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


@pytest.mark.skipif(STATUS.state != "simulated", reason=f"numba_cuda is {STATUS.state}, not simulated")
def test_the_simulated_block_shares_one_static_array_at_the_short_switch_interval():
    """conftest.pace_the_simulator: threads preempted every 0.1 ms still share one static shared array per
    source line (numba-cuda's own allocation, a lookup then a store, can give a thread an array of its own)."""
    import sys

    from conftest import SIMULATOR_SWITCH_INTERVAL

    global cuda  # the simulator gives a kernel its own `cuda` by swapping the module's globals
    from numba import cuda

    @cuda.jit
    def block_sums(out):
        cuda.syncthreads()  # every thread reaches the allocations at once
        a = cuda.shared.array(256, np.float64)
        b = cuda.shared.array(256, np.float64)
        c = cuda.shared.array(256, np.float64)
        t = cuda.threadIdx.x
        a[t], b[t], c[t] = t + 1.0, 2.0 * t, 3.0
        cuda.syncthreads()
        if t == 0:
            total = 0.0
            for i in range(256):
                total += a[i] + b[i] + c[i]
            out[cuda.blockIdx.x] = total

    assert sys.getswitchinterval() == pytest.approx(SIMULATOR_SWITCH_INTERVAL, rel=1e-3)
    want = 256 * 257 / 2 + 256 * 255 + 3 * 256
    for _ in range(8):
        out = np.full(2, np.nan)
        block_sums[2, 256](out)
        assert np.array_equal(out, np.full(2, want)), out
