"""Bad input gets a clear TypeError/ValueError naming the argument, on every backend."""

import numpy as np
import pytest
from conftest import ops_for

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
def test_bad_input_is_rejected(op_name, impl, case):
    op, args, kwargs, exc, words = CASES[case]
    with pytest.raises(exc) as info:
        impl(op)(*args, **kwargs)
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message {message!r} lacks {missing}"


@ops_for("conv1d")
def test_out_of_wrong_shape_is_rejected(op_name, impl):
    with pytest.raises(ValueError, match=r"out \(y\): expected an array of shape \(8,\)"):
        impl("conv1d")(x10, x10[:3], out=np.empty(9))
