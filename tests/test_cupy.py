"""cupy beyond the common matrix and tests/test_gpu_backends.py (the tests it shares with numba_cuda):
nothing compiled at import, thread orders of the emulator, `out=` arrays, scalar dtypes, and the CUDA C
tunables, defined once in gpu/cupy/tunables.py and compiled in with -D.

In emulation (gpu.emu on the CPU) arrays are NumPy arrays and the sizes stay small, but every input spans
several blocks.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import STATE_MARKS, call_args

import kernels
from kernels import compare
from kernels.spec import OPS

ROOT = Path(__file__).resolve().parents[1]
STATUS = kernels.status("cupy")
pytestmark = [pytest.mark.skipif(not STATUS.usable, reason=f"cupy: {STATUS.reason}"),
              *([STATE_MARKS[STATUS.state]] if STATUS.state in STATE_MARKS else [])]
emulated_only = pytest.mark.skipif(STATUS.state != "emulated",
                                   reason=f"tests the emulator build; cupy is {STATUS.state} here")

SMALL = {"block": 32}


def get(op, variant="tiled", **options):
    return kernels.get(op, "cupy", variant, **options)


def test_import_compiles_nothing():
    """Importing the backend and asking its status neither builds nor loads correlate.cu."""
    code = ("import gpu.cupy.backend as c; c.status(); "
            "assert not any(m.MODULE.loaded for m in c.KERNEL_MODULES); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_unavailable_status_says_why(monkeypatch):
    from gpu.cupy import backend as cupy_backend
    from gpu.cupy import loader

    reason = "cupy not installed; emulator: g++ not found"
    monkeypatch.setattr(loader, "mode", lambda: ("unavailable", reason))
    st = cupy_backend.status()
    assert st.state == "unavailable" and "g++ not found" in st.reason


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


def test_out_arrays_are_written(rng):
    args, kwargs = call_args("conv1d_relu_backward", rng, np.float64, (300, 9))
    p, _ = OPS["conv1d_relu_backward"].parse(*args, **kwargs)
    out = tuple(np.full(s, np.nan) for s in OPS["conv1d_relu_backward"].out_shapes(p))
    assert get("conv1d_relu_backward", **SMALL)(*args, out=out, **kwargs) is out
    compare.assert_close("conv1d_relu_backward", out, args, kwargs)


@emulated_only
def test_a_python_float_for_a_float_parameter_is_refused():
    """The emulator checks scalar dtypes (CuPy would pass a Python float as a double): the backend
    passes explicit NumPy scalars, and a plain float into `fill<float>` is a TypeError."""
    from gpu.cupy import correlate

    a = np.zeros(8, np.float32)
    kern = correlate.kernel("fill", np.float32)
    with pytest.raises(TypeError, match="float32"):
        kern((1,), (32,), (a, np.int64(8), 1.5))
    kern((1,), (32,), (a, np.int64(8), np.float32(1.5)))
    assert (a == 1.5).all()


@emulated_only
def test_the_kernels_need_their_tunables():
    """correlate.cu has no defaults for its tunables: without the -D options of gpu/cupy/tunables.py it
    does not compile, and the error says where they come from."""
    from gpu import emu
    from gpu.cupy import correlate, tunables

    code = correlate.SOURCE.read_text()
    with pytest.raises(emu.CompileError, match="gpu/cupy/tunables.py"):
        emu.Module(code, correlate.NAMES, (f"-I{tunables.FOLDER}",), filename=correlate.SOURCE.name)


@emulated_only
def test_a_tunable_changed_in_python_reaches_the_kernel_and_its_shared_memory(monkeypatch, rng):
    """CORR_TAPS = 32 instead of 256, set in gpu/cupy/tunables.py only: the module is built again with
    -DCORR_TAPS=32 and the backend sizes the shared memory from it; k = 100 then takes 4 filter chunks,
    and the result is still the reference's."""
    from gpu.cupy import correlate, loader, tunables

    default_build = correlate.MODULE.module().path
    args, kwargs = call_args("conv1d", rng, np.float32, (700, 100))
    defines = {**tunables.DEFINES["correlate.cu"], "CORR_TAPS": 32}
    monkeypatch.setattr(tunables, "CORR_TAPS", 32)
    monkeypatch.setitem(tunables.DEFINES, "correlate.cu", defines)
    monkeypatch.setattr(correlate, "MODULE", loader.Source(correlate.SOURCE, correlate.NAMES))
    got = get("conv1d", **SMALL)(*args, **kwargs)
    compare.assert_close("conv1d", got, args, kwargs)
    assert correlate.MODULE.module().path != default_build
