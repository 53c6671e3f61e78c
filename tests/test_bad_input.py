"""Bad input gets a clear TypeError/ValueError naming the argument, on every backend."""

import numpy as np
import pytest
from conftest import ops_for

import kernels
from kernels.backend import Backend

f32, f64 = np.float32, np.float64
x10 = np.linspace(-1, 1, 10)

# (op, args, kwargs, exception, words the message must contain)
CASES = {
    "x 2-D": ("conv1d", (np.ones((4, 4)), np.ones(3)), {}, ValueError, ["x", "1-D", "ndim=2"]),
    "w 0-D": ("conv1d", (x10, np.float64(1.0)), {}, ValueError, ["w", "1-D"]),
    "k > n": ("conv1d", (x10[:3], x10[:5]), {}, ValueError, ["w", "<= signal length n=3", "5"]),
    "empty x": ("conv1d", (np.ones(0), np.ones(1)), {}, ValueError, ["x", "non-empty"]),
    "int dtype": ("conv1d", (np.arange(10), x10[:3]), {}, TypeError, ["x", "float32 or float64", "int"]),
    "complex dtype": ("conv1d", (x10, np.ones(3, complex)), {}, TypeError, ["w", "complex"]),
    "bool dtype": ("conv1d", (x10 > 0, x10[:3]), {}, TypeError, ["x", "bool"]),
    "object dtype": ("conv1d", (x10.astype(object), x10[:3]), {}, TypeError, ["x", "object"]),
    "mixed dtypes": ("conv1d", (x10.astype(f32), x10[:3]), {}, TypeError, ["mixed", "x=float32", "w=float64"]),
    "flip not bool": ("conv1d", (x10, x10[:3]), {"flip": "yes"}, TypeError, ["flip", "True or False"]),
    "k < 1": ("conv1d_weight_grad", (x10, x10), {"k": 0}, ValueError, ["k", ">= 1", "0"]),
    "k > n (weight grad)": ("conv1d_weight_grad", (x10, x10[:1], 11), {}, ValueError, ["k", "n=10"]),
    "k not int": ("conv1d_weight_grad", (x10, x10[:8], 3.0), {}, TypeError, ["k", "integer"]),
    "grad_y length": ("conv1d_weight_grad", (x10, x10[:7], 3), {}, ValueError, ["grad_y", "length 8", "7"]),
    "grad_y dtype": ("conv1d_weight_grad", (x10, x10[:8].astype(f32), 3), {}, TypeError, ["grad_y", "float32"]),
    "bias grad empty": ("conv1d_bias_grad", (np.ones(0),), {}, ValueError, ["grad_y", "non-empty"]),
    "input grad 2-D": ("conv1d_input_grad", (x10[:3], np.ones((2, 2))), {}, ValueError, ["grad_y", "1-D"]),
    "relu b array": ("conv1d_relu", (x10, x10[:3], np.ones(2)), {}, ValueError, ["b", "scalar"]),
    "relu b str": ("conv1d_relu", (x10, x10[:3], "1"), {}, TypeError, ["b", "real number"]),
    "relu backward grad_y": ("conv1d_relu_backward", (x10, x10[:3], 0.5, x10[:9]), {}, ValueError,
                             ["grad_y", "length 8"]),
    "circular lengths": ("circular_correlate", (x10, x10[:9]), {}, ValueError, ["y", "length 10", "9"]),
    "circular grad_z": ("circular_correlate_backward", (x10, x10, x10[:4]), {}, ValueError, ["grad_z"]),
    "circular dtype": ("circular_correlate", (x10, x10.astype(f32)), {}, TypeError, ["mixed"]),
    "none": ("conv1d", (None, x10), {}, TypeError, ["x", "None"]),
}


@ops_for("conv1d")
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_rejected(op_name, impl, case, cases=CASES):
    op, args, kwargs, exc, words = cases[case]
    impl.require(op)
    with pytest.raises(exc) as info:
        impl(op)(*args, **kwargs)
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message {message!r} lacks {missing}"


@ops_for("conv1d")
def test_out_of_wrong_shape_is_rejected(op_name, impl):
    with pytest.raises(ValueError, match=r"out \(y\): expected an array of shape \(8,\)"):
        impl("conv1d")(x10, x10[:3], out=np.empty(9))


# --- more argument checks: b required, integers bounded for int64 index arithmetic ----------------

MORE_CASES = {
    "relu b None": ("conv1d_relu", (x10, x10[:3], None), {}, TypeError, ["b: expected a real number, got NoneType"]),
    "relu backward b None": ("conv1d_relu_backward", (x10, x10[:3], None, x10[:8]), {}, TypeError,
                             ["b: expected a real number, got NoneType"]),
    "relu b huge int": ("conv1d_relu", (x10, x10[:3], 10**400), {}, ValueError, ["b", "representable"]),
    "k 2**64": ("conv1d_weight_grad", (x10, x10[:8], 2**64), {}, ValueError, ["k"]),
    "k uint64": ("conv1d_weight_grad", (x10, x10[:8], np.uint64(2**64 - 1)), {}, ValueError, ["k"]),
}


@ops_for("conv1d")
@pytest.mark.parametrize("case", MORE_CASES)
def test_more_bad_input_is_rejected(op_name, impl, case):
    test_bad_input_is_rejected(op_name, impl, case, cases=MORE_CASES)


_rng = np.random.default_rng(1)
X3, W3, G3 = _rng.standard_normal((2, 3, 13)), _rng.standard_normal((4, 3, 3)), _rng.standard_normal((2, 4, 11))

LAYER_CASES = {
    f"{name} {value!r}": (op, args, {name: value}, ValueError, [name, "2**60"])
    for name in ("stride", "padding", "dilation", "groups")
    for value in (2**64, 2**61, np.uint64(2**64 - 1))
    for op, args in (("conv1d_layer", (X3, W3)), ("conv1d_layer_backward", (X3, W3, G3)))
}


@ops_for("conv1d_layer")
@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_integers_beyond_int64_arithmetic_are_rejected(op_name, impl, case):
    test_bad_input_is_rejected(op_name, impl, case, cases=LAYER_CASES)


# --- out= checked before any work ------------------------------------------------------------------

def _nan(*shape):
    return np.full(shape, np.nan)


def _read_only(a):
    a.flags.writeable = False
    return a


@ops_for("conv1d")
def test_read_only_out_is_rejected_before_any_write(op_name, impl):
    x, w, g = x10, x10[:3] * 0.5, x10[:8]
    with pytest.raises(ValueError, match=r"out \(y\): read-only"):
        impl("conv1d")(x, w, out=_read_only(_nan(8)))
    dx, dw, db = _nan(10), _nan(3), _read_only(_nan(1))
    with pytest.raises(ValueError, match=r"out \(db\): read-only"):
        impl("conv1d_relu_backward")(x, w, 0.25, g, out=(dx, dw, db))
    assert np.isnan(dx).all() and np.isnan(dw).all(), "the other outs were written before the check"


@ops_for("conv1d")
def test_broadcast_out_is_rejected(op_name, impl):
    with pytest.raises(ValueError, match=r"out \(y\): read-only"):  # NumPy's broadcast views are read-only
        impl("conv1d")(x10, x10[:3], out=np.broadcast_to(np.float64(np.nan), (8,)))
    writable = np.lib.stride_tricks.as_strided(_nan(1), (8,), (0,), writeable=True)
    with pytest.raises(ValueError, match=r"out \(y\): several elements share memory"):
        impl("conv1d")(x10, x10[:3], out=writable)


@ops_for("conv1d")
def test_out_generator_and_repeated_arrays_are_rejected(op_name, impl):
    x, y, g = x10, x10[::-1].copy(), x10 * 2
    with pytest.raises(TypeError, match=r"out: expected a tuple of 2 arrays \('dx', 'dy'\), got generator"):
        impl("circular_correlate_backward")(x, y, g, out=(_nan(10) for _ in range(2)))
    a = _nan(10)
    with pytest.raises(ValueError, match=r"out \(dx\) and out \(dy\): share memory"):
        impl("circular_correlate_backward")(x, y, g, out=(a, a))
    buf = _nan(15)
    with pytest.raises(ValueError, match=r"out \(dx\) and out \(dy\): share memory"):
        impl("circular_correlate_backward")(x, y, g, out=(buf[:10], buf[5:]))
    with pytest.raises(TypeError, match=r"out \(y\): expected an array of shape \(8,\)"):
        impl("conv1d")(x10, x10[:3], out=[0.0] * 8)
    assert np.isnan(a).all() and np.isnan(buf).all()


# --- torch tensors: read through NumPy, written through DLPack, or a named TypeError ----------------

@ops_for("conv1d")
def test_torch_tensors(op_name, impl):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    f = impl("conv1d")
    x, w = torch.randn(10, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    expected = f(x.numpy(), w.numpy())
    assert np.array_equal(f(x, w), expected), "torch CPU tensors are read like NumPy arrays"
    y = torch.full((8,), float("nan"), dtype=torch.float64)
    assert f(x, w, out=y) is y and np.array_equal(y.numpy(), expected), "a torch out is written in place"
    with pytest.raises(TypeError, match=r"^x: cannot be converted to a NumPy array \(Tensor: .*requires grad"):
        f(x.requires_grad_(), w)
    with pytest.raises(TypeError, match=r"^out \(y\): cannot be written"):
        f(x.detach(), w, out=torch.zeros(8, dtype=torch.float64, requires_grad=True))
    with pytest.raises(TypeError, match=r"^w: expected dtype float32 or float64, got float16"):
        f(x.detach(), w.half())
    with pytest.raises(ValueError, match=r"^out \(y\): expected an array of shape \(8,\) and dtype float64, "
                                         r"got \(8,\) float32"):
        f(x.detach(), w, out=torch.zeros(8))


# --- options are checked at get; unknown names are KeyErrors listing the choices ---------------------

def test_options_are_checked_at_get():
    with pytest.raises(TypeError, match=r"options: numba_cpu conv1d\[auto\] takes none, got \['block'\]"):
        kernels.get("conv1d", "numba_cpu", block=32)
    with pytest.raises(TypeError, match=r"options: numpy conv1d\[reference\] takes none, got \['block'\]"):
        kernels.get("conv1d", "numpy", block=32)


def test_a_backends_option_validator_runs_at_get():
    seen = []

    def validator(options):
        seen.append(dict(options))
        if "block" in options and options["block"] != 32:
            raise ValueError(f"block: expected 32, got {options['block']!r}")

    be = Backend("test", "a backend with an option validator", options=validator)

    @be.impl("conv1d", "v")
    def conv1d(p, x, w, y, **options):
        y[...] = np.correlate(x, w, "valid")

    @be.impl("conv1d_bias_grad", "v")
    def bias_grad(p, g, db, *, chunk=1):
        db[0] = g.sum()

    with pytest.raises(ValueError, match="block: expected 32, got 64"):
        be.function("conv1d", block=64)
    assert np.allclose(be.function("conv1d", block=32)(x10, x10[:3]), np.correlate(x10, x10[:3], "valid"))
    assert seen == [{"block": 64}, {"block": 32}]
    assert be.function("conv1d_bias_grad", chunk=4)(x10)[0] == pytest.approx(x10.sum())
    with pytest.raises(TypeError, match=r"takes some of \['chunk'\], got \['block'\]"):
        be.function("conv1d_bias_grad", block=4)


def test_unknown_names_list_the_choices():
    with pytest.raises(KeyError, match=r"backend: expected one of \[.*'numba_cpu'.*\], got 'nosuch'"):
        kernels.get("conv1d", "nosuch")
    with pytest.raises(KeyError, match=r"op: expected one of \[.*'conv1d'.*\], got 'nosuch'"):
        kernels.get("nosuch", "numpy")
    with pytest.raises(KeyError, match=r"has no variant 'nosuch' of 'conv1d'; it has \['reference'\]"):
        kernels.get("conv1d", "numpy", "nosuch")
