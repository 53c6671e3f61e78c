"""Every GPU step declared once: what it computes, with which kernels, at which launches.

A step is one rung of a GPU backend's ladder (naive -> tiled -> regwin -> vec -> auto). Its kernel
module declares it next to the launch code, as a `Step`, and lists it in the module's `STEPS`; the backend
module (gpu/cupy/backend.py, gpu/numba_cuda/backend.py) registers the steps of its kernel modules. Everything
else reads the declarations, never a table of its own:

    registration       Step.impls (op -> implementation), Step.notes, Step.method, Step.default
    `kernels list`     the notes, through the registry
    the real compile   Step.kernels(dtype): every `Kernel` a step launches, at every launch its launcher
                       accepts, with the dynamic shared memory it asks for there (plots/model/resources.py)
    the static model   Step.hot (op -> the kernel its default launch runs), Step.shape (op -> blocks,
                       executed FMAs, longest FMA chain of that launch), Step.traced_as (plots/model/oned.py)
    `auto`             Step.wraps: op -> the direct steps it runs, by k (gpu/auto.py, plots/model/crossover.py)
    the plots          a colour per step: the backend's hue, shaded by the step's place in its ladder

The 1-D ops are launches of three engines that a step supplies (`Engines`), the same in both backends:

    correlate(sig, f, out, launch, *, flip, offset, periodic, bias, epilogue, gate)
        out[o] = epilogue(sum_i f'[i] s[o+i] + bias), f' = f reversed when flip,
        s[t] = sig[t + offset] (zero outside, or periodic: sig[(t + offset) mod n])
    weight_grad(x, g, dw, launch, *, flip)        dw[i] = sum_j g[j] x[j+i] (reversed when flip)
    total(g, out, launch)                         out[0] = sum_j g[j]

    op                      sig  f  flip       offset  periodic  epilogue
    conv1d                   x   w  flip       0       no        NONE
    conv1d_relu              x   w  flip       0       no        RELU (bias b)
    relu backward gate       x   w  flip       0       no        GATE: g[o] where conv1d + b > 0, else 0
    conv1d_input_grad        g   w  not flip   -(k-1)  no        NONE (zero padding: full convolution)
    circular_correlate z     y   x  no         0       yes       NONE
    circular backward dx     y   g  no         0       yes       NONE
    circular backward dy     x   g  yes        1       yes       NONE  (dy[i] = sum_s g[s] x[(i-s) mod n])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

NONE, RELU, GATE = 0, 1, 2  # epilogues of the correlation engine (the CUDA C gets them as -D EPI_*)

#: The 1-D ops a forward step (a correlation engine) computes; the sums are the weight-gradient engine's.
FORWARD_OPS = ("conv1d", "conv1d_relu", "conv1d_input_grad", "conv1d_relu_backward", "circular_correlate",
               "circular_correlate_backward")
#: Every 1-D op.
ONE_D_OPS = (*FORWARD_OPS, "conv1d_weight_grad", "conv1d_bias_grad")
LAYER_OPS = ("conv1d_layer", "conv1d_layer_backward")

#: The notes of the 1-D steps both backends have (op -> note; "" for the ops not named): documentation only,
#: a step registers the ops of its `impls`.
NOTES = {
    "naive": {
        "": "one thread per output, operands read from global memory",
        "conv1d_weight_grad": "one thread per tap, summing its m products from global memory",
        "conv1d_bias_grad": "one thread sums grad_y",
    },
    "tiled": {
        "": "block tile + (k-1) halo and filter chunks staged in shared memory, several outputs per thread "
            "in registers",
        "conv1d_weight_grad": "j split over blocks, g and x chunks in shared memory, several taps per thread; "
                              "block partials added by a second pass in a fixed order (deterministic)",
        "conv1d_bias_grad": "per-block tree sums in shared memory, then added in a fixed order (deterministic)",
        "conv1d_relu_backward": "tiled ReLU gate, input gradient, weight and bias sums (deterministic)",
    },
    "atomic": {"": "tiled, but block partials are added atomically into the output: one pass, NOT deterministic "
                   "(the order of the additions varies)"},
    "regwin": {"": "tiled, but R = 8 contiguous outputs per thread (4 where registers or shared memory demand it) "
                   "with a register sliding window over x, and a halo of exactly k-1: each x value loaded serves "
                   "R outputs"},
    "wg_regwin": {"": "tap tiles sized to k (no 128-tap tiles at k = 3), contiguous taps and j per thread with a "
                      "register window; warp shuffles, then fixed-order block and partial sums (deterministic)"},
    "auto": {
        "": "the best direct step of the backend; no FFT path for this op",
        **{op: "the best direct step, or an FFT where the crossover table says it is faster and the accuracy rule "
               "keeps it within a direct sum's per-output tolerance (gpu/auto.py)"
           for op in ("conv1d", "conv1d_relu", "conv1d_input_grad", "conv1d_weight_grad")},
    },
}


@dataclass(frozen=True)
class Kernel:
    """One compiled kernel a step launches, and the launches that use it."""

    name: str  # numba: "module.factory[B=128,R=8]"; CUDA C: its name expression, "correlate_vec<float, 8, 1024>"
    dtype: str  # "float32" or "float64"
    blocks: tuple  # the block sizes it is launched at
    shared: Mapping = field(default_factory=dict)  # block -> the most dynamic shared memory a launch asks for
    default: bool = False  # launched at the backend's default launch
    source: str = ""  # CUDA C: its .cu file of gpu/cupy/ (compiled with that file's -D options)
    build: Callable | None = None  # numba: () -> (dispatcher, argument types), with the simulator off


def _no_kernels(dtype: str) -> tuple:
    return ()


@dataclass(frozen=True)
class Step:
    """One rung of a GPU backend's ladder (the module docstring says who reads which field)."""

    variant: str
    impls: Mapping[str, Callable]  # op -> implementation(p, *inputs, *outs, **options)
    notes: Mapping[str, str]  # op -> one-line note of what the step changes; "" for the ops not named
    method: str = "direct"  # "direct", "fft" or "auto"
    default: bool = False
    kernels: Callable[[str], Iterable[Kernel]] = _no_kernels  # dtype -> the kernels it compiles
    hot: Mapping[str, Callable] = field(default_factory=dict)  # op -> (dtype, k) -> name of its hot Kernel
    shape: Callable | None = None  # (op, n, k, dtype) -> {"blocks", "fmas", "chain"} of the default launch
    wraps: Mapping[str, tuple] = field(default_factory=dict)  # auto: op -> ((max_k, variant), ..., (None, variant))
    traced_as: str = ""  # the numba_cuda variant whose counted traffic stands for this step's (the model)
    engines: Engines | None = None  # a 1-D step's engines (auto wraps them)

    def note(self, op: str) -> str:
        return self.notes.get(op, self.notes.get("", ""))

    @classmethod
    def layer(cls, variant: str, forward: Callable, backward: Callable, **fields) -> Step:
        """A step of the conv1d layer: `forward` and `backward`, each noted by its docstring's first line."""
        fns = (forward, backward)
        return cls(variant, dict(zip(LAYER_OPS, fns)),
                   {op: (fn.__doc__ or "").strip().splitlines()[0] for op, fn in zip(LAYER_OPS, fns)}, **fields)


def register(backend, steps: Iterable[Step]) -> None:
    """Register every op of every step on `backend`, each with its note as the implementation's docstring."""
    for step in steps:
        for op, fn in step.impls.items():
            impl = _noted(fn, step.note(op))
            backend.impl(op, step.variant, default=step.default, method=step.method)(impl)


def _noted(fn: Callable, note: str) -> Callable:
    """`fn` under its own name and signature, with `note` as its docstring (the registry reads it)."""
    @functools.wraps(fn)
    def impl(*args, **kwargs):
        return fn(*args, **kwargs)

    impl.__doc__ = note
    return impl


# --- the 1-D ops as launches of three engines ------------------------------------------------------------

@dataclass(frozen=True)
class Engines:
    """What a 1-D step supplies (the module docstring has their formulas)."""

    correlate: Callable
    weight_grad: Callable
    total: Callable
    empty: Callable  # (shape, dtype) -> a device array (workspace)
    launch_of: Callable  # the call's options -> the backend's launch


def correlation_impls(E: Engines, ops: Iterable[str] = ONE_D_OPS) -> dict[str, Callable]:
    """op -> implementation of the 1-D ops `ops`, each one or more launches of the engines `E`."""

    def input_grad(p, w, g, dx, launch):  # dx[t] = sum_i g[t-i] w[i]: g zero-padded by k-1
        E.correlate(g, w, dx, launch, flip=not p.flip, offset=-(p.k - 1))

    def conv1d(p, x, w, y, **options):
        E.correlate(x, w, y, E.launch_of(options), flip=p.flip)

    def conv1d_weight_grad(p, x, g, dw, **options):
        E.weight_grad(x, g, dw, E.launch_of(options), flip=p.flip)

    def conv1d_bias_grad(p, g, db, **options):
        E.total(g, db, E.launch_of(options))

    def conv1d_input_grad(p, w, g, dx, **options):
        input_grad(p, w, g, dx, E.launch_of(options))

    def conv1d_relu(p, x, w, y, **options):
        E.correlate(x, w, y, E.launch_of(options), flip=p.flip, bias=p.b, epilogue=RELU)

    def conv1d_relu_backward(p, x, w, g, dx, dw, db, **options):
        launch = E.launch_of(options)
        gated = E.empty((p.m,), p.dtype)  # g where conv1d(x, w) + b > 0, else 0
        E.correlate(x, w, gated, launch, flip=p.flip, bias=p.b, epilogue=GATE, gate=g)
        input_grad(p, w, gated, dx, launch)
        E.weight_grad(x, gated, dw, launch, flip=p.flip)
        E.total(gated, db, launch)

    def circular_correlate(p, x, y, z, **options):
        E.correlate(y, x, z, E.launch_of(options), periodic=True)

    def circular_correlate_backward(p, x, y, g, dx, dy, **options):
        launch = E.launch_of(options)
        E.correlate(y, g, dx, launch, periodic=True)
        E.correlate(x, g, dy, launch, periodic=True, offset=1, flip=True)

    impls = {f.__name__: f for f in (conv1d, conv1d_weight_grad, conv1d_bias_grad, conv1d_input_grad, conv1d_relu,
                                     conv1d_relu_backward, circular_correlate, circular_correlate_backward)}
    return {op: impls[op] for op in ops}
