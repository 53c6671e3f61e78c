"""torch as a second oracle for the conv1d layer: random configurations on every backend and variant.

For each random (N, C_in, C_out, L, K, stride, padding, dilation, groups, bias) in float64, the forward
y = F.conv1d(x, w, b, stride, padding, dilation, groups) and the gradients (dx, dw, db) of
<g, y> (torch autograd, y.backward(g)) are compared with every implementation. Both torch and the
implementation are within atol + rtol * mag of the exact result (rtol = C * eps * sqrt(reduction length),
`kernels.compare.tolerance`; mag = the layer applied to |inputs|), so they may differ by twice that.

Every input is a view into a buffer whose neighbouring elements are NaN: an implementation that reads
past either end of an input picks up NaN and fails, instead of passing by luck on whatever lies there.

`torch.autograd.gradcheck` then checks the project's backward on a subset: wrapped as the backward of an
autograd.Function whose forward is torch's conv1d (an independent forward) or the project's own.
Hypothesis runs derandomized and without a database, so CI sees the same configurations every run.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import impl_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import compare
from kernels.spec import OPS

torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch): no second oracle")
F = torch.nn.functional

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
#: Configurations per implementation: >= 300 on the CPU, fewer and smaller where the GPU is simulated.
EXAMPLES = {"available": 300, "real GPU": 300, "emulated": 30, "simulated": 30}
GRADCHECK_EXAMPLES = {"available": 12, "real GPU": 12, "emulated": 6, "simulated": 3}  # simulated: fast mode
#: Size limits (N, channels per group, groups, L beyond the dilated filter, K, stride, padding, dilation).
LIMITS = {"available": dict(N=3, Cg=3, groups=3, L=24, K=6, stride=4, padding=4, dilation=4),
          "small": dict(N=2, Cg=2, groups=2, L=8, K=4, stride=3, padding=3, dilation=3)}
CANARY = 16  # NaN elements on each side of every input

#: (op, backend, variant) -> a strict xfail mark for a known defect; none is known.
KNOWN_FAILURES = {}


@pytest.fixture(autouse=True, scope="module")
def torch_on_one_thread():
    """torch (the oracle) on one thread: on these small layers its two threads, competing with the other
    test workers for two cores, made each call up to 40x slower. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@st.composite
def layers(draw, limits):
    """A valid layer configuration: groups divide both channel counts, the dilated filter fits."""
    lim = LIMITS[limits]
    groups = draw(st.integers(1, lim["groups"]))
    K = draw(st.integers(1, lim["K"]))
    dilation = draw(st.integers(1, lim["dilation"]))
    padding = draw(st.integers(0, lim["padding"]))
    span = dilation * (K - 1) + 1
    L = draw(st.integers(max(1, span - 2 * padding), max(1, span - 2 * padding) + lim["L"]))
    return dict(N=draw(st.integers(1, lim["N"])), C_in=groups * draw(st.integers(1, lim["Cg"])),
                C_out=groups * draw(st.integers(1, lim["Cg"])), L=L, K=K,
                stride=draw(st.integers(1, lim["stride"])), padding=padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


def describe(c):
    return ", ".join(f"{k}={v}" for k, v in c.items())


def fenced(a):
    """A C-contiguous copy of `a` inside a buffer with CANARY NaNs before and after it."""
    buf = np.full(a.size + 2 * CANARY, np.nan, a.dtype)
    view = buf[CANARY:CANARY + a.size].reshape(a.shape)
    view[...] = a
    return view


def inputs(c):
    """(x, w, b or None, g) in float64, fenced by NaN, and the layer settings."""
    rng = np.random.default_rng(c["seed"])
    (x, w, *b), kwargs = OPS[FORWARD].make_args(rng, np.float64, **{k: v for k, v in c.items() if k != "seed"})
    p, _ = OPS[FORWARD].parse(x, w, *b, **kwargs)
    g = rng.standard_normal(p.y_shape)
    x, w, g = (fenced(a) for a in (x, w, g))
    return x, w, (fenced(b[0]) if b else None), g, kwargs


def torch_layer(x, w, b, g, kwargs):
    """{y, dx, dw, db} from torch autograd, in float64 NumPy (db absent without a bias)."""
    tensors = {name: torch.tensor(np.array(a), requires_grad=True) for name, a in (("x", x), ("w", w), ("b", b))
               if a is not None}
    y = F.conv1d(tensors["x"], tensors["w"], tensors.get("b"), **kwargs)
    y.backward(torch.tensor(np.array(g)))
    return {"y": y.detach().numpy(), **{"d" + name: t.grad.numpy() for name, t in tensors.items()}}


def mismatches(op_name, got, expected, args, kwargs):
    """Outputs of `op_name` that differ from torch's by more than twice the reference tolerance."""
    op = OPS[op_name]
    p, _, _, mags = compare.reference(op_name, args, kwargs)
    rtol, atol = compare.tolerance(op_name, p, p.dtype)
    got = (got,) if op.single else tuple(got)
    bad = []
    for name, o, mag in zip(op.outputs, got, mags, strict=True):
        o = compare.to_host(o).astype(np.float64)
        if name not in expected:  # no bias: torch has no db, ours is empty
            if o.shape != (0,):
                bad.append(f"{name}: expected shape (0,) without a bias, got {o.shape}")
            continue
        t = expected[name]
        if o.shape != t.shape:
            bad.append(f"{name}: shape {o.shape}, torch {t.shape}")
            continue
        with np.errstate(invalid="ignore"):
            ratio = np.abs(o - t) / (2 * (atol + rtol * mag))
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        if ratio.size and ratio.max() > 1:
            i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            bad.append(f"{name}: {o[i]!r} vs torch {t[i]!r} at {tuple(int(j) for j in i)} "
                       f"({ratio.max():.3g}x tolerance, {int(np.count_nonzero(ratio > 1))} of {o.size} off)")
    return bad


def call(impl, op_name, x, w, b, g, kwargs):
    if op_name == FORWARD:
        args, kw = (x, w) + ((b,) if b is not None else ()), kwargs
    else:
        args, kw = (x, w, g), {**kwargs, "has_bias": b is not None}
    return impl(op_name)(*args, **kw), args, kw


def impls(*op_names, known=KNOWN_FAILURES):
    """pytest params (op_name, impl) for every implementation of `op_names`, `known` failures marked."""
    params = []
    for op_name in op_names:
        for param in impl_params(op_name):
            impl = param.values[0]
            mark = known.get((op_name, impl.backend, impl.variant)) if impl else None
            params.append(pytest.param(op_name, impl, id=f"{op_name}-{param.id}",
                                       marks=[*param.marks, *([mark] if mark else [])]))
    return params


def limits_for(impl):
    return "small" if impl.state in ("emulated", "simulated") else "available"


def run_property(impl, op_name, examples, check, limits=None):
    """Run `check(config)` on `examples` derandomized configurations; return how many distinct ran."""
    seen = set()

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(c=layers(limits or limits_for(impl)))
    def prop(c):
        seen.add(tuple(c.items()))
        check(c)

    prop()
    print(f"{op_name} [{impl}]: {len(seen)} configurations")
    return len(seen)


@pytest.mark.exhaustive
@pytest.mark.parametrize("op,impl", impls(FORWARD, BACKWARD))
def test_matches_torch_on_random_layers(op, impl):
    """Forward (y) or backward (dx, dw, db) of every implementation agree with torch within tolerance."""
    def check(c):
        x, w, b, g, kwargs = inputs(c)
        got, args, kw = call(impl, op, x, w, b, g, kwargs)
        bad = mismatches(op, got, torch_layer(x, w, b, g, kwargs), args, kw)
        assert not bad, f"{op} [{impl}] differs from torch at {describe(c)}:\n  " + "\n  ".join(bad)

    ran = run_property(impl, op, EXAMPLES[impl.state], check)
    assert ran >= EXAMPLES[impl.state] * 0.9, f"only {ran} distinct configurations ran"


# The configurations reported as wrong, with the NaN fence that makes an out-of-bounds read visible.
KNOWN_CONFIGS = {
    "oob-grad-out": dict(N=1, C_in=1, C_out=1, L=3, K=2, stride=3, padding=2, dilation=5, groups=1, bias=False),
    "depthwise-strided": dict(N=1, C_in=3, C_out=3, L=5, K=5, stride=3, padding=2, dilation=2, groups=3,
                              bias=True),
}


@pytest.mark.parametrize("config", KNOWN_CONFIGS)
@pytest.mark.parametrize("op,impl", impls(BACKWARD))
def test_backward_matches_torch_on_reported_configurations(op, impl, config):
    """Strided, padded layers whose taps partly reach no real input: dx, dw, db agree with torch."""
    c = {**KNOWN_CONFIGS[config], "seed": 12345}
    x, w, b, g, kwargs = inputs(c)
    got, args, kw = call(impl, BACKWARD, x, w, b, g, kwargs)
    bad = mismatches(BACKWARD, got, torch_layer(x, w, b, g, kwargs), args, kw)
    assert not bad, f"{BACKWARD} [{impl}] differs from torch at {describe(c)}:\n  " + "\n  ".join(bad)


# --- gradcheck: the project's backward as the gradient of a forward -------------------------------

def layer_function(impl, torch_forward):
    """An autograd.Function (x, w, b, settings) -> y whose backward is the project's layer backward."""

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b, kwargs):
            ctx.save_for_backward(x, w)
            ctx.kwargs, ctx.has_bias = kwargs, b is not None
            if torch_forward:
                return F.conv1d(x, w, b, **kwargs)
            args = tuple(fenced(t.detach().numpy()) for t in (x, w, b) if t is not None)
            return torch.from_numpy(np.array(compare.to_host(impl(FORWARD)(*args, **kwargs))))

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            g = fenced(g.detach().numpy())
            dx, dw, db = (np.array(compare.to_host(a)) for a in
                          impl(BACKWARD)(fenced(x.detach().numpy()), fenced(w.detach().numpy()), g, **ctx.kwargs,
                                         has_bias=ctx.has_bias))
            return torch.from_numpy(dx), torch.from_numpy(dw), torch.from_numpy(db) if ctx.has_bias else None, None

    return Layer.apply


@pytest.mark.exhaustive
@pytest.mark.parametrize("torch_forward", [True, False], ids=["torch-forward", "own-forward"])
@pytest.mark.parametrize("op,impl", impls(BACKWARD, known={}))
def test_gradcheck(op, impl, torch_forward):
    """torch.autograd.gradcheck: finite differences of the forward against the project's backward."""
    fn = layer_function(impl, torch_forward)

    def check(c):
        x, w, b, _, kwargs = inputs(c)
        tensors = tuple(torch.tensor(np.array(a), requires_grad=True) for a in (x, w, b) if a is not None)
        if b is None:
            tensors += (None,)
        assert torch.autograd.gradcheck(lambda x, w, b: fn(x, w, b, kwargs), tensors, eps=1e-6, atol=1e-7,
                                        rtol=1e-5, fast_mode=impl.state == "simulated"), \
            f"gradcheck failed at {describe(c)}"

    run_property(impl, op, GRADCHECK_EXAMPLES[impl.state], check, limits="small")
