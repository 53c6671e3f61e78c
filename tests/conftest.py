"""The test matrix: op x backend x variant x dtype x size, generated from the registry.

A test that takes the fixture `impl` runs once per (backend, variant) of the op it asks for through
its `op_name` parameter; unusable backends appear once, skipped with their reason. Sizes depend on
how the backend runs here: the CUDA simulator gets small problems and small blocks.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from dataclasses import dataclass

import numpy as np
import pytest

import kernels
import kernels.backend
from kernels import cases
from kernels.registry import BACKEND_MODULES
from kernels.spec import OPS

#: Idle OpenMP threads (numba's omp threading layer, torch) sleep instead of spinning: read when libgomp loads
#: (at the first parallel call), so set here. On two shared cores, spinning made small calls 10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

kernels.backend.POISON = True  # every output allocated by a backend starts as NaN

#: The GIL switch interval of a test process under numba's CUDA simulator (seconds; Python's default is 5 ms).
SIMULATOR_SWITCH_INTERVAL = 1e-4


def pace_the_simulator():
    """Under numba's CUDA simulator, switch threads every SIMULATOR_SWITCH_INTERVAL, and allocate a block's
    static shared arrays under a lock.

    The simulator runs a block as one Python thread per CUDA thread, and its block manager polls them in a loop
    that keeps the GIL for a whole switch interval while they wait for it: at 0.1 ms instead of 5 ms a
    simulated weight gradient (n = k = 129, block 32) takes 0.7 s instead of 3.8 s. Preempted that often, two
    threads of a block can both miss numba-cuda's FakeCUDAShared.array lookup (a lookup, then a store, with no
    lock) and each make an array of its own, read uninitialised; under the lock a block gets one array per
    source line, as the simulator intends."""
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    dynamic, lock = kernelapi.FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # the dynamic array (one buffer), or the simulator's refusal
            return dynamic(self, shape, dtype, alignment)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            found = self._allocations.get(key)
            if found is None:
                dt = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else np.dtype(dtype)
                found = self._allocations[key] = np.empty(shape, dt)
        return found

    kernelapi.FakeCUDAShared.array = array
    sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL)


if kernels.status("numba_cuda").state == "simulated":
    pace_the_simulator()

DTYPES = list(cases.DTYPES)  # the edge-size matrix itself is kernels.cases, shared with `kernels check`
sizes_for = cases.sizes_for
_keywords = cases.keywords

#: Tests marker per backend status (the tier a test belongs to).
STATE_MARKS = {"real GPU": pytest.mark.gpu, "simulated": pytest.mark.cudasim,
               "emulated": pytest.mark.emulated}
SMALL_BLOCKS = cases.SMALL_BLOCKS
#: The simulated matrix's one size past the edge cases (several blocks and taps past a warp), in make test-all.
SIMULATED_LARGEST = max(cases.SIZES_SIMULATED, key=lambda s: s[0] * s[1])


@dataclass(frozen=True)
class Impl:
    backend: str
    variant: str
    state: str
    options: tuple = ()

    def __call__(self, op_name):
        return kernels.get(op_name, self.backend, self.variant, **dict(self.options))

    def __str__(self):
        return f"{self.backend}-{self.variant}"

    def require(self, *op_names):
        """Skip, naming the reason, when this variant does not implement every op named (a user's kernel
        may implement one op only)."""
        missing = [op for op in op_names if self.variant not in kernels.variants(op, self.backend)]
        if missing:
            pytest.skip(f"{self}: implements no {', '.join(missing)}")


def impl_params(op_name: str):
    """One pytest param per (backend, variant) implementing `op_name`; unusable backends skip."""
    params = []
    for name in BACKEND_MODULES:
        st = kernels.status(name)
        if not st.usable:
            params.append(pytest.param(None, id=f"{name}-unavailable",
                                       marks=pytest.mark.skip(reason=f"{name}: {st.reason}")))
            continue
        marks = [STATE_MARKS[st.state]] if st.state in STATE_MARKS else []
        options = tuple(sorted(SMALL_BLOCKS.get(st.state, {}).items()))
        for variant in kernels.variants(op_name, name):
            impl = Impl(name, variant, st.state, options)
            params.append(pytest.param(impl, id=str(impl), marks=marks))
    return params


def pytest_generate_tests(metafunc):
    """Expand `op_name`, `impl`, `size` and `flip` into the matrix (sizes depend on the backend)."""
    names = metafunc.fixturenames
    if "impl" not in names or "op_name" not in names:
        return
    op_names = getattr(metafunc.function, "op_names", list(OPS))
    params = []
    for op_name in op_names:
        flips = [False, True] if "flip" in _keywords(op_name) else [False]
        for impl_param in impl_params(op_name):
            impl = impl_param.values[0]
            sizes = sizes_for(op_name, impl.state) if impl and "size" in names else [None]
            for size in sizes:
                for flip in (flips if "flip" in names else [False]):
                    values = {"op_name": op_name, "impl": impl, "size": size, "flip": flip}
                    ident = "-".join([op_name, impl_param.id] + ([f"n{size[0]}k{size[1]}"] if size else [])
                                     + (["flip"] if flip else []))
                    params.append(pytest.param(*[values[n] for n in _matrix_args(names)], id=ident,
                                               marks=impl_param.marks))
    metafunc.parametrize(_matrix_args(names), params)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    """A simulated backend's float64 cases (in any test: its matrix or a cudasim-marked test with a float64
    parameter) and its largest size are exhaustive (make test-all): numba's CUDA simulator runs the same Python
    for both dtypes, at up to seconds a case, and the real compile (tests/test_gpu_compile.py) builds every kernel in
    float64 too."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        impl = params.get("impl")
        simulated = (impl.state == "simulated" if isinstance(impl, Impl)
                     else item.get_closest_marker("cudasim") is not None)
        if simulated and (any(map(_is_float64, params.values())) or params.get("size") == SIMULATED_LARGEST):
            item.add_marker(pytest.mark.exhaustive)


def _is_float64(value) -> bool:
    """Whether a test parameter names float64 (np.float64, its dtype, or "float64")."""
    return isinstance(value, (type, np.dtype, str)) and value in (np.float64, np.dtype(np.float64), "float64")


def _matrix_args(names):
    return [n for n in ("op_name", "impl", "size", "flip") if n in names]


def ops_for(*op_names):
    """Restrict a matrix test to some ops: @ops_for("conv1d", ...)."""
    def mark(fn):
        fn.op_names = list(op_names)
        return fn
    return mark


@pytest.fixture
def rng(request):
    """A freshly seeded generator; the seed is printed so that a failure can be replayed."""
    seed = secrets.randbits(32)
    print(f"rng seed = {seed} ({request.node.name})")
    return np.random.default_rng(seed)


def call_args(op_name, rng, dtype, size, flip=False):
    """Fresh inputs for op_name at size (n, k), with flip when the op takes it."""
    n, k = size
    args, kwargs = OPS[op_name].make_args(rng, dtype, n=n, k=k)
    if flip:
        kwargs = {**kwargs, "flip": True}
    return args, kwargs


def assert_engine_result(got, sig, f, *, flip, offset, periodic, bias, epilogue, gate):
    """A correlation engine's output (gpu/steps.py) against a float64 evaluation of
    out[o] = epilogue(sum_i f'[i] s[o+i] + bias), per output within C eps sqrt(L) * magnitude; a gated
    output whose pre-activation is within rounding of 0 may fall on either side."""
    from gpu.steps import GATE, RELU
    from kernels import compare

    N, L, M, dtype = sig.shape[0], f.shape[0], got.shape[0], sig.dtype
    fp, s64 = (f[::-1] if flip else f).astype(np.float64), sig.astype(np.float64)
    t = np.arange(M)[:, None] + np.arange(L)[None, :] + offset
    terms = np.where((t >= 0) & (t < N), s64[np.clip(t, 0, N - 1)], 0.0) if not periodic else s64[t % N]
    ref, mag = terms @ fp + (bias or 0.0), np.abs(terms) @ np.abs(fp) + abs(bias or 0.0)
    if epilogue == RELU:
        ref = np.maximum(ref, 0.0)
    elif epilogue == GATE:
        ref = np.where(ref > 0, gate.astype(np.float64), 0.0)
    rtol = compare.C * np.finfo(dtype).eps * np.sqrt(L)
    err = np.abs(got.astype(np.float64) - ref)
    if epilogue == GATE:
        err = np.where(np.abs(terms @ fp + bias) <= rtol * mag, 0.0, err)
    print(f"max err {err.max():.3g}, max ratio {np.max(err / (rtol * mag + np.finfo(dtype).tiny)):.3g}")
    assert np.all(err <= rtol * mag + np.finfo(dtype).tiny)


def _cuda_c_mode():
    from gpu.cupy import loader

    return loader.mode()


def _nvrtc_problem():
    from gpu.cupy import nvrtc

    return nvrtc.nvrtc_problem()


#: Tests that pass NumPy arrays straight to the CUDA C launchers, which only the emulator takes.
emulated_only = pytest.mark.skipif(_cuda_c_mode()[0] != "emulated",
                                   reason=f"these tests pass NumPy arrays to the emulator; CUDA C runs "
                                          f"{_cuda_c_mode()}")
#: Tests that compile CUDA C with NVRTC.
needs_nvrtc = pytest.mark.skipif(_nvrtc_problem() is not None, reason=f"NVRTC: {_nvrtc_problem()}")
