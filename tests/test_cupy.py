"""cupy beyond the common matrix: block sizes, thread orders of the emulator, grid-stride loops, launch
options, determinism of the default reductions and a repeat test of the atomic ones; large n on a real
GPU (`pytest -m gpu`), where every kernel's output is also compared with the emulator's for the same
gpu/conv1d.cu.

In emulation (gpu.emu on the CPU) arrays are NumPy arrays and the sizes stay small, but every input spans
several blocks.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import STATE_MARKS, _keywords, call_args

import kernels
from kernels import compare
from kernels.backend import HostArrays
from kernels.spec import OPS

ROOT = Path(__file__).resolve().parents[1]
STATUS = kernels.status("cupy")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"cupy: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]
gpu_only = pytest.mark.skipif(STATUS.state != "real GPU",
                              reason=f"no CUDA device: cupy is {STATUS.state} ({STATUS.reason})")
emulated_only = pytest.mark.skipif(STATUS.state != "emulated",
                                   reason=f"thread orders are an emulator setting; cupy is {STATUS.state}")

CUPY_OPS = [op for op in OPS if "tiled" in kernels.variants(op, "cupy")]
SMALL = {"block": 32}


def get(op, variant="tiled", **options):
    return kernels.get(op, "cupy", variant, **options)


def test_status_says_where_the_kernels_run():
    assert STATUS.state in ("real GPU", "emulated"), STATUS


def test_every_1d_op_has_naive_and_tiled_and_reductions_an_atomic_variant():
    one_d = [op for op in OPS if OPS[op].family in ("conv1d", "circular")]
    assert set(one_d) <= set(CUPY_OPS)
    for op in one_d:
        sums = op in ("conv1d_weight_grad", "conv1d_bias_grad")
        want = {"naive", "tiled"} | ({"atomic"} if sums else set())
        assert set(kernels.variants(op, "cupy")) == want, op
    assert "NOT deterministic" in kernels.variants("conv1d_weight_grad", "cupy")["atomic"]


def test_import_compiles_nothing():
    """Importing the backend and asking its status neither builds nor loads conv1d.cu."""
    code = ("import gpu.cupy_backend as c; c.status(); "
            "assert c.module.cache_info().currsize == 0; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_unavailable_status_says_why(monkeypatch):
    from gpu import cuda_module, cupy_backend

    reason = "cupy not installed; emulator: g++ not found"
    monkeypatch.setattr(cuda_module, "mode", lambda: ("unavailable", reason))
    st = cupy_backend.status()
    assert st.state == "unavailable" and "g++ not found" in st.reason


# (op, n, k) per block size: correlation tiles (k > 256: several filter chunks), weight-gradient
# splits over several warps, bias sums over several blocks
BLOCK_CASES = [("conv1d", 300, 5), ("conv1d_input_grad", 700, 300), ("conv1d_weight_grad", 1300, 150),
               ("conv1d_bias_grad", 4500, 1), ("circular_correlate_backward", 100, 1)]


@pytest.mark.parametrize("block", [32, 64, 256, 1024])
@pytest.mark.parametrize("op_name, n, k", BLOCK_CASES)
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_block_sizes(variant, op_name, n, k, block, rng):
    """Every block size gives the reference on inputs spanning several blocks (and warps)."""
    args, kwargs = call_args(op_name, rng, np.float64, (n, k), flip="flip" in _keywords(op_name))
    got = get(op_name, variant, block=block)(*args, **kwargs)
    print(*compare.assert_close(op_name, got, args, kwargs))


ORDER_OPS = ["conv1d", "conv1d_relu_backward", "conv1d_weight_grad", "conv1d_bias_grad",
             "circular_correlate_backward"]


@emulated_only
@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
@pytest.mark.parametrize("op_name", ORDER_OPS)
def test_thread_orders(op_name, order, monkeypatch, rng):
    """Between barriers the emulator runs a block's threads forwards, backwards or shuffled: a race
    on shared memory would change the result with the order. The deterministic reductions must even
    agree to the bit across orders."""
    size = (523, 33) if OPS[op_name].family == "conv1d" else (67, 1)
    args, kwargs = call_args(op_name, rng, np.float32, size)
    monkeypatch.setenv("KERNELS_EMU_ORDER", "forward")
    first = get(op_name, **SMALL)(*args, **kwargs)
    monkeypatch.setenv("KERNELS_EMU_ORDER", order)
    monkeypatch.setenv("KERNELS_EMU_SEED", "12345")
    got = get(op_name, **SMALL)(*args, **kwargs)
    compare.assert_close(op_name, got, args, kwargs)
    for a, b in zip(*(((r,) if OPS[op_name].single else r) for r in (first, got)), strict=True):
        assert np.array_equal(a, b), f"{op_name}: result depends on the thread order ({order})"


@pytest.mark.parametrize("op_name", ["conv1d_weight_grad", "conv1d_bias_grad", "conv1d_relu_backward"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_reductions_are_deterministic(op_name, dtype, rng):
    """Two-pass sums with a fixed grid: repeated runs agree to the bit."""
    args, kwargs = call_args(op_name, rng, dtype, (2100, 17))
    runs = [get(op_name, block=64)(*args, **kwargs) for _ in range(3)]
    for r in runs[1:]:
        for a, b in zip(*(((x,) if OPS[op_name].single else x) for x in (runs[0], r)), strict=True):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("op_name", ["conv1d_weight_grad", "conv1d_bias_grad"])
def test_atomic_variant_repeats_within_tolerance(op_name, rng):
    """atomic is not deterministic: every repeat must still match the reference, and each other."""
    args, kwargs = call_args(op_name, rng, np.float32, (2100, 17))
    runs = [get(op_name, "atomic", block=64)(*args, **kwargs) for _ in range(3)]
    for r in runs:
        compare.assert_close(op_name, r, args, kwargs)
    spread = max(float(np.max(np.abs(r - runs[0]))) for r in runs)
    print(f"{op_name}[atomic]: max difference between repeats {spread:.3g}")


def test_out_arrays_are_written(rng):
    args, kwargs = call_args("conv1d_relu_backward", rng, np.float64, (300, 9))
    p, _ = OPS["conv1d_relu_backward"].parse(*args, **kwargs)
    out = tuple(np.full(s, np.nan) for s in OPS["conv1d_relu_backward"].out_shapes(p))
    assert get("conv1d_relu_backward", **SMALL)(*args, out=out, **kwargs) is out
    compare.assert_close("conv1d_relu_backward", out, args, kwargs)


@pytest.mark.parametrize("options, error, words", [
    ({"block": 48}, ValueError, ["block", "power of two", "48"]),
    ({"max_blocks": 0}, ValueError, ["max_blocks", "positive"]),
    ({"per_thread": 2}, TypeError, ["unknown", "per_thread"]),
])
def test_bad_launch_options_are_rejected(options, error, words):
    with pytest.raises(error) as info:
        get("conv1d", **options)(np.ones(10), np.ones(3))
    assert all(w in str(info.value) for w in words), str(info.value)


@emulated_only
def test_a_python_float_for_a_float_parameter_is_refused():
    """The emulator checks scalar dtypes (CuPy would pass a Python float as a double): the backend
    passes explicit NumPy scalars, and a plain float into `fill<float>` is a TypeError."""
    from gpu import cupy_backend

    a = np.zeros(8, np.float32)
    kern = cupy_backend.kernel("fill", np.float32)
    with pytest.raises(TypeError, match="float32"):
        kern((1,), (32,), (a, np.int64(8), 1.5))
    kern((1,), (32,), (a, np.int64(8), np.float32(1.5)))
    assert (a == 1.5).all()


# --- real GPU only (pytest -m gpu) ---------------------------------------------------------------

LARGE = 1_000_003  # prime; the emulator repeats each case for the comparison, so not too large


def large_cases():
    """(op, variant, k, dtype): every variant at k=31 in both dtypes, and tiled at k=257."""
    cases = [(v, 31, d) for v in ("naive", "tiled", "atomic") for d in ("float32", "float64")]
    cases += [("tiled", 257, "float32")]
    return [pytest.param(op, v, k, d, id=f"{op}-{v}-k{k}-{d}") for op in CUPY_OPS
            if OPS[op].family == "conv1d" for v, k, d in cases if v in kernels.variants(op, "cupy")]


def on_emulator(monkeypatch, op_name, variant, args, kwargs):
    """The same op and variant run by gpu.emu on the same gpu/conv1d.cu, with NumPy arrays."""
    from gpu import cupy_backend, emu
    from gpu.cuda_module import declared_names

    problem = emu.toolchain_problem()
    if problem:
        pytest.skip(f"no emulator to compare with: {problem}")
    code = cupy_backend.SOURCE.read_text()
    mod = emu.Module(code, declared_names(code), filename=cupy_backend.SOURCE.name)
    with monkeypatch.context() as m:
        m.setattr(cupy_backend, "module", lambda: mod)
        m.setattr(cupy_backend.backend, "arrays", HostArrays())
        return get(op_name, variant)(*args, **kwargs)


def assert_same_as_emulator(op_name, got, emulated, args, kwargs):
    """GPU and emulator outputs agree within twice the op's tolerance (nvcc fuses a*b+c, g++ does not)."""
    p, _, _, mag = compare.reference(op_name, args, kwargs)
    rtol, atol = compare.tolerance(op_name, p, p.dtype)
    got = (got,) if OPS[op_name].single else got
    emulated = (emulated,) if OPS[op_name].single else emulated
    for name, g, e, mg in zip(OPS[op_name].outputs, got, emulated, mag, strict=True):
        g, e = compare.to_host(g).astype(np.float64), e.astype(np.float64)
        finite = np.isfinite(e)
        assert np.array_equal(np.isfinite(g), finite), f"{name}: non-finite elements differ"
        err = np.abs(g - e)[finite]
        assert (err <= 2 * (atol + rtol * mg[finite])).all(), f"{name}: GPU vs emulator, max diff {err.max()}"


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("op_name, variant, k, dtype", large_cases())
def test_large_n_on_gpu(op_name, variant, k, dtype, rng, monkeypatch):
    import cupy

    args, kwargs = call_args(op_name, rng, np.dtype(dtype), (LARGE, k), flip=op_name != "conv1d_bias_grad")
    dev = tuple(cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    got = get(op_name, variant)(*dev, **kwargs)
    print(*compare.assert_close(op_name, got, args, kwargs))
    emulated = on_emulator(monkeypatch, op_name, variant, args, kwargs)
    assert_same_as_emulator(op_name, got, emulated, args, kwargs)


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("op_name", ["circular_correlate", "circular_correlate_backward"])
@pytest.mark.parametrize("variant", ["naive", "tiled"])
def test_large_circular_on_gpu(variant, op_name, rng, monkeypatch):
    args, kwargs = call_args(op_name, rng, np.float32, (8_191, 1))
    got = get(op_name, variant)(*args)
    print(*compare.assert_close(op_name, got, args, kwargs))
    emulated = on_emulator(monkeypatch, op_name, variant, args, kwargs)
    assert_same_as_emulator(op_name, got, emulated, args, kwargs)
