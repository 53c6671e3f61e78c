"""out= that overlaps an input gives the same result as the call without out, on every backend.

For every op, every output and every array input, the out is placed in one buffer with the input:
as the very same array when shape and dtype allow, and as views starting at, before and inside the
input (partial overlaps). The kernel must not read what it has already written: the public call
computes into a temporary whenever an out may share memory with an input.
"""

import math

import numpy as np
import pytest
from conftest import call_args

import kernels
import kernels.registry
from kernels.backend import overlaps
from kernels.spec import OPS

#: Small sizes: every (op, output, input, placement) is one call, the simulator included.
SIZE = {"conv1d": (13, 5), "circular": (13, 1), "layer": (13, 3)}
LAYER_KW = {"padding": 1, "stride": 2}


def _args(op_name, rng):
    op = OPS[op_name]
    if op.family == "layer":
        args, kwargs = op.make_args(rng, np.float64, L=SIZE["layer"][0], K=SIZE["layer"][1], **LAYER_KW)
        return args, kwargs
    return call_args(op_name, rng, np.float64, SIZE[op.family])


def _placements(n_in: int, n_out: int):
    """(input offset, out offset) in one buffer, each pair overlapping: same start, out inside the
    input, input inside the out."""
    seen = []
    for pair in ((0, 0), (0, n_in // 2), (n_out // 2, 0), (0, n_in - 1)):
        a, b = pair
        if pair not in seen and a < b + n_out and b < a + n_in:
            seen.append(pair)
    return seen


class Host:
    """NumPy arrays (numpy, numba_cpu, and cupy in emulation)."""

    def put(self, a):
        return a

    def get(self, a):
        return np.asarray(a)


class Device:
    """numba device arrays (numba_cuda, on a GPU or under the simulator)."""

    def __init__(self):
        from numba import cuda

        self.cuda = cuda

    def put(self, a):
        return self.cuda.to_device(a)

    def get(self, a):
        return a.copy_to_host()


class Cupy:
    """cupy.ndarray (the cupy backend on a real GPU)."""

    def __init__(self):
        import cupy

        self.cupy = cupy

    def put(self, a):
        return self.cupy.asarray(a)

    def get(self, a):
        return a.get()


def _kind(backend: str):
    """Arrays of the backend's own kind: on a device, an out and an input can only overlap there."""
    if backend == "numba_cuda":
        return Device()
    if backend == "cupy" and kernels.status("cupy").state == "real GPU":
        return Cupy()
    return Host()


def _cases(op_name, args, outs_shapes, xp):
    """(description, args, out) for each output aliased with each array input in each placement."""
    op = OPS[op_name]
    for j, (name, shape) in enumerate(zip(op.outputs, outs_shapes)):
        n_out = math.prod(shape)
        for i, a in enumerate(args):
            if not isinstance(a, np.ndarray) or a.size == 0:
                continue  # scalars (k, b) and absent arrays
            views = []
            if a.shape == shape:
                same = xp.put(a.copy())
                views.append(("the same array", same, same))
            for off_in, off_out in _placements(a.size, n_out):
                buf = np.full(max(off_in + a.size, off_out + n_out), np.nan, a.dtype)
                buf[off_in:off_in + a.size] = a.ravel()
                buf = xp.put(buf)
                views.append((f"input at {off_in}, out at {off_out}",
                              buf[off_in:off_in + a.size].reshape(a.shape),
                              buf[off_out:off_out + n_out].reshape(shape)))
            for where, inp, o in views:
                outs = [xp.put(np.full(s, np.nan, a.dtype)) for s in outs_shapes]
                outs[j] = o
                call = tuple(inp if k == i else b for k, b in enumerate(args))
                yield f"out ({name}) over input {i} ({where})", call, (outs[0] if op.single else tuple(outs))


ALIAS_BACKENDS = ("numpy", "numba_cpu", "cupy", "numba_cuda")
#: The ops whose simulated aliasing (20-35 placements, a simulated call each) runs in make test-all only; make test
#: keeps conv1d_layer_backward, a multi-output op on device arrays.
SIMULATED_EXHAUSTIVE = ("conv1d_relu_backward", "circular_correlate_backward")


def _impls():
    params = []
    for name in ALIAS_BACKENDS:
        st = kernels.status(name)
        for op_name in OPS:
            if not st.usable:
                params.append(pytest.param(op_name, name, None, marks=pytest.mark.skip(reason=f"{name}: {st.reason}"),
                                           id=f"{op_name}-{name}"))
                continue
            variants = list(kernels.variants(op_name, name)) if name == "numba_cpu" else [None]
            default = kernels.registry.backend(name).defaults.get(op_name)
            slow = st.state == "simulated" and op_name in SIMULATED_EXHAUSTIVE
            for v in variants:  # make test: the defaults; each numba_cpu variant in make test-all
                marks = [] if v in (None, default) and not slow else [pytest.mark.exhaustive]
                params.append(pytest.param(op_name, name, v, id=f"{op_name}-{name}-{v or 'default'}", marks=marks))
    return params


@pytest.mark.parametrize("op_name, backend, variant", _impls())
def test_out_overlapping_an_input_equals_no_out(op_name, backend, variant, rng):
    st = kernels.status(backend)
    options = {"block": 32} if st.state in ("simulated", "emulated") else {}
    f = kernels.get(op_name, backend, variant, **options)
    op = OPS[op_name]
    args, kwargs = _args(op_name, rng)
    expected = f(*args, **kwargs)
    expected = [np.asarray(e) for e in ((expected,) if op.single else expected)]
    p, _ = op.parse(*args, **kwargs)
    xp = _kind(backend)
    failures, count = [], 0
    for what, call, out in _cases(op_name, args, op.out_shapes(p), xp):
        count += 1
        got = f(*call, out=out, **kwargs)
        assert got is out
        got = [xp.get(g) for g in ((got,) if op.single else got)]
        for name, g, e in zip(op.outputs, got, expected):
            if not np.array_equal(g, e):
                failures.append(f"{what}: {name} differs by {np.nanmax(np.abs(g - e)):.3g}")
    print(f"{op_name} {backend}:{variant}: {count} aliasing cases")
    assert count > 0
    assert not failures, "\n".join(failures)


class _DeviceLike:
    """An array known only by its CUDA array interface (pointer, shape, strides in bytes)."""

    def __init__(self, ptr, shape, strides=None, typestr="<f8"):
        self.__cuda_array_interface__ = {"data": (ptr, False), "shape": shape, "strides": strides,
                                         "typestr": typestr, "version": 3}


def test_device_overlap_compares_pointer_ranges():
    a = _DeviceLike(1000, (10,))  # bytes [1000, 1080)
    assert overlaps(a, _DeviceLike(1072, (4,))) and overlaps(_DeviceLike(1072, (4,)), a)
    assert not overlaps(a, _DeviceLike(1080, (4,))) and not overlaps(a, _DeviceLike(968, (4,)))
    assert overlaps(a, _DeviceLike(976, (4,)))  # [976, 1008)
    assert overlaps(a, _DeviceLike(1072 + 80, (12,), (-8,)))  # reversed view over [1064, 1160)
    assert not overlaps(a, _DeviceLike(1152, (9,), (-8,)))  # [1088, 1160)
    assert overlaps(a, _DeviceLike(900, (2, 3), (96, 8), "<f8"))  # rows at 900 and 996: [900, 1020)
    assert not overlaps(a, _DeviceLike(1040, (0,)))  # empty
    assert not overlaps(a, np.zeros(10))  # different memories
