"""The conv1d layer (`kernels.layer`) on every backend and variant: reference grid, torch, adjoints,
the no-bias contract, bad inputs. GPU backends join through `impl_params` when they register the ops."""
# ruff: noqa: E741  (l is the output position, as in the formulas)

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, impl_params

from kernels import compare, layer_counts
from kernels.layer import LayerProblem
from kernels.spec import OPS

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
LAYER_OPS = (FORWARD, BACKWARD)

# (N, C_in, C_out, L, K, stride, padding, dilation, groups, bias)
LAYERS = [
    (1, 1, 1, 1, 1, 1, 0, 1, 1, True),  # everything 1
    (2, 3, 4, 5, 5, 1, 0, 1, 1, True),  # K = L: L_out = 1
    (1, 2, 3, 7, 3, 4, 0, 2, 1, False),  # dilated span 5, stride 4: L_out = 1
    (2, 3, 4, 4, 6, 1, 1, 1, 1, True),  # K = L + 2*padding: L_out = 1, both ends in the padding
    (2, 3, 5, 17, 3, 2, 1, 1, 1, True),  # stride 2, "same"-like padding
    (3, 2, 4, 31, 4, 1, 2, 3, 1, False),  # dilation 3
    (1, 2, 2, 4, 2, 1, 5, 1, 1, True),  # padding > K: outputs that see only padding (= bias)
    (2, 3, 2, 20, 2, 5, 0, 1, 1, True),  # stride > K: inputs no tap reads (dx = 0 there)
    (1, 2, 3, 10, 3, 4, 2, 1, 1, False),  # stride not dividing L + 2*padding - span
    (2, 4, 6, 33, 5, 3, 3, 2, 2, True),  # groups 2, stride 3, dilation 2, padding 3
    (2, 4, 4, 16, 3, 1, 1, 1, 4, True),  # depthwise
    (2, 3, 6, 16, 3, 1, 1, 1, 3, False),  # depthwise, channel multiplier 2
    (4, 8, 16, 129, 7, 1, 3, 1, 1, True),  # odd length, several channels
    (2, 16, 8, 300, 31, 2, 15, 1, 1, True),  # longer filter, stride 2
    (3, 5, 7, 1031, 1, 1, 0, 1, 1, True),  # pointwise (K = 1), prime sizes
]
#: The CUDA simulator is ~1000x slower: small layers only.
LAYERS_SIMULATED = [s for s in LAYERS if s[0] * s[2] * s[3] <= 300]


def layer_id(s):
    N, C_in, C_out, L, K, stride, padding, dilation, groups, bias = s
    return (f"N{N}c{C_in}o{C_out}L{L}K{K}s{stride}p{padding}d{dilation}"
            + (f"g{groups}" if groups > 1 else "") + ("" if bias else "-nobias"))


def layer_sizes(s):
    N, C_in, C_out, L, K, stride, padding, dilation, groups, bias = s
    return dict(N=N, C_in=C_in, C_out=C_out, L=L, K=K, stride=stride, padding=padding, dilation=dilation,
                groups=groups, bias=bias)


def impl_and_layers(op_name, layers=None, simulated_exhaustive=False):
    """pytest params (impl, layer) for every backend/variant of `op_name`; unusable backends skip once. With
    `simulated_exhaustive`, the simulated backend's params run in make test-all only (a second check of what
    the reference tests already cover, at ~1 s per simulated layer)."""
    params = []
    for param in impl_params(op_name):
        impl = param.values[0]
        if impl is None:
            params.append(pytest.param(None, None, id=param.id, marks=param.marks))
            continue
        chosen = layers or LAYERS
        if impl.state == "simulated":  # the CUDA simulator is ~1000x slower: small layers only
            chosen = [s for s in chosen if s in LAYERS_SIMULATED] or LAYERS_SIMULATED[-1:]
        marks = [*param.marks, *[pytest.mark.exhaustive] * (simulated_exhaustive and impl.state == "simulated")]
        params += [pytest.param(impl, s, id=f"{param.id}-{layer_id(s)}", marks=marks) for s in chosen]
    return params


def outputs(op_name, got):
    return (got,) if OPS[op_name].single else tuple(got)


# --- against the reference -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl,layer", impl_and_layers(FORWARD))
def test_forward_matches_reference(impl, layer, dtype, rng):
    _check_against_reference(FORWARD, impl, layer, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl,layer", impl_and_layers(BACKWARD))
def test_backward_matches_reference(impl, layer, dtype, rng):
    _check_against_reference(BACKWARD, impl, layer, dtype, rng)


def _check_against_reference(op_name, impl, layer, dtype, rng):
    args, kwargs = OPS[op_name].make_args(rng, dtype, **layer_sizes(layer))
    got = impl(op_name)(*args, **kwargs)
    op = OPS[op_name]
    p, _ = op.parse(*args, **kwargs)
    for name, o, shape in zip(op.outputs, outputs(op_name, got), op.out_shapes(p), strict=True):
        assert tuple(o.shape) == shape, f"{name}: shape {o.shape}, expected {shape}"
        assert np.dtype(o.dtype) == np.dtype(dtype), f"{name} keeps the input dtype"
    print(*compare.assert_close(op_name, got, args, kwargs), sep="\n")


# --- against torch.nn.functional.conv1d and its autograd -------------------------------------------

def torch_layer(args, kwargs, grad_out):
    """(y, dx, dw, db) from torch, in float64 numpy (db None without a bias)."""
    torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
    tensors = [torch.tensor(np.asarray(a, np.float64), requires_grad=True) for a in args]
    y = torch.nn.functional.conv1d(*tensors, **kwargs)
    y.backward(torch.tensor(np.asarray(grad_out, np.float64)))
    grads = [t.grad.numpy() for t in tensors] + [None] * (3 - len(tensors))
    return (y.detach().numpy(), *grads)


def assert_close_to(name, got, expected, mag, rtol, atol):
    got = compare.to_host(got).astype(np.float64)
    assert got.shape == expected.shape, f"{name}: shape {got.shape}, torch {expected.shape}"
    err = np.abs(got - expected)
    bound = 2 * (atol + rtol * mag)  # both sides are within tolerance of the float64 reference
    print(f"{name}: max |got - torch| = {err.max(initial=0):.3g}, "
          f"max ratio {np.max(err / bound, initial=0):.3g}")
    assert np.all(err <= bound), f"{name}: differs from torch by up to {err.max():.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl,layer", impl_and_layers(BACKWARD, simulated_exhaustive=True))
def test_matches_torch_and_autograd(impl, layer, dtype, rng):
    """Forward and all gradients against torch (the reference too: torch is an independent oracle)."""
    sizes = layer_sizes(layer)
    (x, w, *b), kwargs = OPS[FORWARD].make_args(rng, dtype, **sizes)
    p, _ = OPS[FORWARD].parse(x, w, *b, **kwargs)
    g = rng.standard_normal(p.y_shape).astype(dtype)
    expected = torch_layer((x, w, *b), kwargs, g)
    bkw = {**kwargs, "has_bias": sizes["bias"]}
    results = {FORWARD: ((x, w, *b), kwargs), BACKWARD: ((x, w, g), bkw)}
    torch_out = {FORWARD: expected[:1], BACKWARD: expected[1:]}
    for op_name, (args, kw) in results.items():
        op = OPS[op_name]
        q, _, ref, mag = compare.reference(op_name, args, kw)
        rtol, atol = compare.tolerance(op_name, q, np.dtype(dtype))
        got = outputs(op_name, impl(op_name)(*args, **kw))
        for name, o, t, r, m in zip(op.outputs, got, torch_out[op_name], ref, mag, strict=True):
            if t is None:  # no bias: torch has no db, ours is empty
                assert o.shape == (0,) and r.shape == (0,)
                continue
            assert_close_to(f"{op_name} {name} (reference)", r, t, m, rtol, atol)
            assert_close_to(f"{op_name} {name} ({impl})", o, t, m, rtol, atol)


# --- adjoints ----------------------------------------------------------------------------------------

def dot(a, b):
    return float(np.sum(compare.to_host(a).astype(np.float64) * compare.to_host(b).astype(np.float64)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl,layer", impl_and_layers(BACKWARD, [LAYERS[i] for i in (4, 9, 11, 13)],
                                                       simulated_exhaustive=True))
def test_adjoints(impl, layer, dtype, rng):
    """y = A(w) x + b = B(x) w + b: <g, y> = <dx, x> + <db, b> = <dw, w> + <db, b>."""
    sizes = {**layer_sizes(layer), "bias": True}
    (x, w, b), kwargs = OPS[FORWARD].make_args(rng, dtype, **sizes)
    y = impl(FORWARD)(x, w, b, **kwargs)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = impl(BACKWARD)(x, w, g, **kwargs, has_bias=True)
    p, _ = OPS[FORWARD].parse(x, w, b, **kwargs)
    _, _, (mag,), _ = compare.reference(FORWARD, (np.abs(x), np.abs(w), np.abs(b)), kwargs)
    scale = float(np.abs(g).ravel() @ mag.ravel())
    tol = 8 * np.finfo(dtype).eps * np.sqrt(p.C_in_g * p.K * p.N * p.L_out) * scale
    lhs = dot(g, y)
    sides = {"<dx, x> + <db, b>": dot(dx, x) + dot(db, b), "<dw, w> + <db, b>": dot(dw, w) + dot(db, b)}
    for what, rhs in sides.items():
        assert abs(lhs - rhs) <= tol, f"<g, y> = {lhs!r} but {what} = {rhs!r} (tolerance {tol:.3g})"


# --- the bias contract, out=, strided inputs, determinism -------------------------------------------

@pytest.mark.parametrize("impl,layer", impl_and_layers(BACKWARD, [LAYERS[4], LAYERS[10]], simulated_exhaustive=True))
def test_no_bias_contract(impl, layer, rng):
    """b=None is a zero bias; has_bias=False gives the same dx, dw and an empty db of shape (0,)."""
    (x, w, b), kwargs = OPS[FORWARD].make_args(rng, np.float64, **{**layer_sizes(layer), "bias": True})
    host = compare.to_host
    np.testing.assert_array_equal(host(impl(FORWARD)(x, w, **kwargs)),
                                  host(impl(FORWARD)(x, w, np.zeros_like(b), **kwargs)))
    g = rng.standard_normal(OPS[FORWARD].parse(x, w, **kwargs)[0].y_shape)
    with_bias = impl(BACKWARD)(x, w, g, **kwargs)
    without = impl(BACKWARD)(x, w, g, **kwargs, has_bias=False)
    assert host(with_bias[2]).shape == (w.shape[0],) and host(without[2]).shape == (0,)
    for a, c in zip(with_bias[:2], without[:2], strict=True):
        np.testing.assert_array_equal(host(a), host(c))


@pytest.mark.parametrize("impl,layer", impl_and_layers(BACKWARD, [LAYERS[9]], simulated_exhaustive=True))
def test_out_arguments_and_strided_inputs(impl, layer, rng):
    """out= is written and returned; views with non-trivial strides give the same results."""
    for op_name in LAYER_OPS:
        args, kwargs = OPS[op_name].make_args(rng, np.float64, **layer_sizes(layer))
        op = OPS[op_name]
        p, _ = op.parse(*args, **kwargs)
        outs = tuple(np.full(s, np.nan) for s in op.out_shapes(p))
        out = outs[0] if op.single else outs
        assert impl(op_name)(*args, out=out, **kwargs) is out
        compare.assert_close(op_name, out, args, kwargs)
        strided = tuple(_strided_copy(a, rng) for a in args)
        assert not any(s.flags.c_contiguous for s in strided)
        compare.assert_close(op_name, impl(op_name)(*strided, **kwargs), args, kwargs)


def _strided_copy(a, rng):
    """`a` as a view taking every other element along every axis of a larger random array."""
    big = rng.standard_normal(tuple(2 * s for s in a.shape)).astype(a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


@pytest.mark.parametrize("impl,layer", impl_and_layers(BACKWARD, [LAYERS[13]], simulated_exhaustive=True))
def test_backward_is_deterministic(impl, layer, rng):
    """The dw and db reductions over (n, l) give bitwise the same result on every call."""
    args, kwargs = OPS[BACKWARD].make_args(rng, np.float32, **layer_sizes(layer))
    first = [compare.to_host(o) for o in impl(BACKWARD)(*args, **kwargs)]
    for _ in range(3):
        for a, b in zip(first, impl(BACKWARD)(*args, **kwargs), strict=True):
            np.testing.assert_array_equal(a, compare.to_host(b))


# --- bad input ---------------------------------------------------------------------------------------

f32 = np.float32
x3 = np.ones((2, 3, 10))
w3 = np.ones((4, 3, 3))
g3 = np.ones((2, 4, 8))

# (op, args, kwargs, exception, words the message must contain)
BAD = {
    "channel mismatch": (FORWARD, (x3, np.ones((4, 2, 3))), {}, ValueError,
                         ["w", "axis 1", "C_in", "3", "2"]),
    "channel mismatch (backward)": (BACKWARD, (x3, np.ones((4, 5, 3)), g3), {}, ValueError,
                                    ["w", "C_in", "5"]),
    "groups not dividing": (FORWARD, (x3, np.ones((4, 1, 3))), {"groups": 2}, ValueError,
                            ["groups", "divide", "C_in", "3"]),
    "negative padding": (FORWARD, (x3, w3), {"padding": -1}, ValueError, ["padding", ">= 0", "-1"]),
    "stride 0": (FORWARD, (x3, w3), {"stride": 0}, ValueError, ["stride", ">= 1", "0"]),
    "dilation 0": (FORWARD, (x3, w3), {"dilation": 0}, ValueError, ["dilation", ">= 1", "0"]),
    "stride 0 (backward)": (BACKWARD, (x3, w3, g3), {"stride": 0}, ValueError, ["stride", ">= 1"]),
    "stride float": (FORWARD, (x3, w3), {"stride": 1.0}, TypeError, ["stride", "integer"]),
    "padding str": (FORWARD, (x3, w3), {"padding": "same"}, TypeError, ["padding", "integer"]),
    "x 2-D": (FORWARD, (np.ones((3, 10)), w3), {}, ValueError, ["x", "3-D", "(N, C_in, L)", "ndim=2"]),
    "x 4-D": (FORWARD, (np.ones((1, 2, 3, 10)), w3), {}, ValueError, ["x", "3-D", "ndim=4"]),
    "w 2-D": (FORWARD, (x3, np.ones((4, 3))), {}, ValueError, ["w", "3-D", "(C_out, C_in/groups, K)"]),
    "grad_out 2-D": (BACKWARD, (x3, w3, np.ones((4, 8))), {}, ValueError, ["grad_out", "3-D"]),
    "bias wrong length": (FORWARD, (x3, w3, np.ones(5)), {}, ValueError, ["b", "length 4", "C_out", "5"]),
    "bias 2-D": (FORWARD, (x3, w3, np.ones((4, 1))), {}, ValueError, ["b", "1-D", "(C_out,)"]),
    "K > L + 2*padding": (FORWARD, (x3, np.ones((4, 3, 13))), {"padding": 1}, ValueError,
                          ["w", "dilation*(K-1)+1 = 13", "L + 2*padding = 12"]),
    "dilated K > L": (FORWARD, (x3, w3), {"dilation": 5}, ValueError, ["dilation*(K-1)+1 = 11", "= 10"]),
    "grad_out wrong L_out": (BACKWARD, (x3, w3, np.ones((2, 4, 9))), {}, ValueError,
                             ["grad_out", "(2, 4, 8)", "(2, 4, 9)"]),
    "grad_out wrong channels": (BACKWARD, (x3, w3, np.ones((2, 5, 8))), {}, ValueError,
                                ["grad_out", "(2, 4, 8)"]),
    "mixed dtypes": (FORWARD, (x3.astype(f32), w3), {}, TypeError, ["mixed", "x=float32", "w=float64"]),
    "bias dtype": (FORWARD, (x3, w3, np.ones(4, f32)), {}, TypeError, ["mixed", "b=float32"]),
    "int dtype": (FORWARD, (np.ones((2, 3, 10), int), w3), {}, TypeError, ["x", "float32 or float64"]),
    "empty x": (FORWARD, (np.ones((0, 3, 10)), w3), {}, ValueError, ["x", "non-empty"]),
    "has_bias not bool": (BACKWARD, (x3, w3, g3), {"has_bias": 1}, TypeError, ["has_bias", "True or False"]),
    "x None": (FORWARD, (None, w3), {}, TypeError, ["x", "None"]),
}


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("impl", impl_params(FORWARD))
def test_bad_input_is_rejected(impl, case):
    op_name, args, kwargs, exc, words = BAD[case]
    with pytest.raises(exc) as info:
        impl(op_name)(*args, **kwargs)
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message {message!r} lacks {missing}"


@pytest.mark.parametrize("impl", impl_params(BACKWARD))
def test_out_of_wrong_shape_is_rejected(impl):
    with pytest.raises(ValueError, match=r"out \(db\): expected an array of shape \(0,\)"):
        impl(BACKWARD)(x3, w3, g3, has_bias=False, out=(np.empty_like(x3), np.empty_like(w3), np.empty(4)))


# --- the problem description ----------------------------------------------------------------------

@pytest.mark.parametrize("layer", LAYERS, ids=layer_id)
def test_problem_shapes_and_tap_ranges(layer):
    """L_out is the number of window positions; tap_range(t) is exactly the l whose tap t is on the input."""
    N, C_in, C_out, L, K, stride, padding, dilation, groups, bias = layer
    p = LayerProblem(N, C_in, C_out, L, K, np.dtype(np.float32), stride, padding, dilation, groups, bias)
    positions = [l for l in range(L + 2 * padding) if l * stride + (K - 1) * dilation < L + 2 * padding]
    assert p.L_out == len(positions) >= 1
    assert p.w_shape == (C_out, C_in // groups, K) and p.b_shape == ((C_out,) if bias else (0,))
    for t in range(K):
        inside = [l for l in range(p.L_out) if 0 <= l * stride + t * dilation - padding < L]
        lo, hi = p.tap_range(t)
        assert list(range(lo, hi)) == inside, f"tap {t}"
    assert OPS[FORWARD].flops(p) == layer_counts.conv1d(N, C_in, C_out, L, K, stride=stride, padding=padding,
                                                        dilation=dilation, groups=groups, bias=bias).flops


@pytest.mark.parametrize("K", [3, 7, 31])
def test_make_args_takes_realistic_benchmark_shapes(K, rng):
    """The benchmark preset (N=8, C_in=64, C_out=128, L=4096): inputs only, no computation."""
    for op_name in LAYER_OPS:
        args, kwargs = OPS[op_name].make_args(rng, np.float32, N=8, C_in=64, C_out=128, L=4096, K=K,
                                              padding=K // 2)
        p, inputs = OPS[op_name].parse(*args, **kwargs)
        assert p.y_shape == (8, 128, 4096) and all(a.dtype == np.float32 for a in inputs)
        assert OPS[op_name].flops(p) == (1 if op_name == FORWARD else 2) * 2 * 8 * 128 * 4096 * 64 * K
