"""Every 1-D op as launches of three engines, and the variants' notes: what both GPU backends share.

Variants (both backends register these names, never renumbered; notes in `NOTES`):

    naive   one thread per output (or per tap, or one thread for a total), operands from global memory
    tiled   signal tile + halo and filter chunks staged in shared memory, several outputs per
            thread in registers; long sums split over blocks, partials added in a fixed order
    atomic  the reductions only: tiled, with block partials added atomically (one pass, not deterministic)
    auto    (default) the backend's best direct step, or an FFT where the crossover and the accuracy rule
            allow it (gpu/auto.py)

An engine bundle (`Engines`) is what a GPU backend supplies for one variant:

    correlate(sig, f, out, launch, *, flip, offset, periodic, bias, epilogue, gate)
        out[o] = epilogue(sum_i f'[i] s[o+i] + bias), f' = f reversed when flip,
        s[t] = sig[t + offset] (zero outside, or periodic: sig[(t + offset) mod n])
    weight_grad(x, g, dw, launch, *, flip)        dw[i] = sum_j g[j] x[j+i] (reversed when flip)
    total(g, out, launch)                         out[0] = sum_j g[j]

and every op of `kernels.conv1d` and `kernels.circular` is one or more of those launches:

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

from collections.abc import Callable
from dataclasses import dataclass

NONE, RELU, GATE = 0, 1, 2  # epilogues of the correlation engine (passed to the CUDA C as -D EPI_*)

#: variant -> {op: one-line note}; "" holds the note of the ops not named. Ops without a note are not
#: registered for that variant.
#: The 1-D ops a forward ladder step (a new correlation engine) computes; the bias gradient is not a step.
LADDER_FORWARD_OPS = ("conv1d", "conv1d_relu", "conv1d_input_grad", "conv1d_relu_backward", "circular_correlate",
                      "circular_correlate_backward")

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
    "atomic": {
        op: "tiled, but block partials are added atomically into the output: one pass, NOT deterministic "
            "(the order of the additions varies)"
        for op in ("conv1d_weight_grad", "conv1d_bias_grad")
    },
    # The kernel ladder (gpu/cupy/ladder.cu for cupy, gpu/numba_cuda/ladder.py for numba_cuda; vec: cupy only):
    # each step changes one idea against the one before.
    "regwin": {
        op: "tiled, but R = 8 contiguous outputs per thread (4 where registers or shared memory demand it) with "
            "a register sliding window over x, and a halo of exactly k-1: each x value loaded serves R outputs"
        for op in LADDER_FORWARD_OPS
    },
    "vec": {op: "regwin with 16-byte loads and stores (float4 / double2) where aligned: fewer load instructions"
            for op in LADDER_FORWARD_OPS},
    "auto": {
        "": "the best direct step of the backend; no FFT path for this op",
        **{op: "the best direct step, or an FFT where the crossover table says it is faster and the accuracy rule "
               "keeps it within a direct sum's per-output tolerance (gpu/auto.py)"
           for op in ("conv1d", "conv1d_relu", "conv1d_input_grad", "conv1d_weight_grad")},
    },
    "wg_regwin": {
        "conv1d_weight_grad": "tap tiles sized to k (no 128-tap tiles at k = 3), contiguous taps and j per thread "
                              "with a register window; warp shuffles, then fixed-order block and partial sums "
                              "(deterministic)",
    },
}
#: The variant both backends use by default.
DEFAULT = "auto"


@dataclass(frozen=True)
class Engines:
    correlate: Callable
    weight_grad: Callable
    total: Callable
    empty: Callable  # (shape, dtype) -> a device array (workspace)
    launch_of: Callable  # the call's options -> the backend's launch configuration


def register(backend, variant: str, E: Engines, notes: dict | None = None):
    """Register the 1-D ops of `variant` (those with a note in `notes`, by default NOTES[variant]) on
    `backend`, computed with the engines `E`; a direct method, or "auto" for the variant `auto`."""
    notes = NOTES[variant] if notes is None else notes

    def impl(op):
        def decorate(fn):
            fn.__doc__ = notes.get(op, notes.get(""))
            if fn.__doc__:
                backend.impl(op, variant, default=variant == DEFAULT,
                             method="auto" if variant == "auto" else "direct")(fn)
            return fn
        return decorate

    def input_grad(p, w, g, dx, launch):  # dx[t] = sum_i g[t-i] w[i]: g zero-padded by k-1
        E.correlate(g, w, dx, launch, flip=not p.flip, offset=-(p.k - 1))

    @impl("conv1d")
    def conv1d(p, x, w, y, **options):
        E.correlate(x, w, y, E.launch_of(options), flip=p.flip)

    @impl("conv1d_weight_grad")
    def conv1d_weight_grad(p, x, g, dw, **options):
        E.weight_grad(x, g, dw, E.launch_of(options), flip=p.flip)

    @impl("conv1d_bias_grad")
    def conv1d_bias_grad(p, g, db, **options):
        E.total(g, db, E.launch_of(options))

    @impl("conv1d_input_grad")
    def conv1d_input_grad(p, w, g, dx, **options):
        input_grad(p, w, g, dx, E.launch_of(options))

    @impl("conv1d_relu")
    def conv1d_relu(p, x, w, y, **options):
        E.correlate(x, w, y, E.launch_of(options), flip=p.flip, bias=p.b, epilogue=RELU)

    @impl("conv1d_relu_backward")
    def conv1d_relu_backward(p, x, w, g, dx, dw, db, **options):
        launch = E.launch_of(options)
        gated = E.empty((p.m,), p.dtype)  # g where conv1d(x, w) + b > 0, else 0
        E.correlate(x, w, gated, launch, flip=p.flip, bias=p.b, epilogue=GATE, gate=g)
        input_grad(p, w, gated, dx, launch)
        E.weight_grad(x, gated, dw, launch, flip=p.flip)
        E.total(gated, db, launch)

    @impl("circular_correlate")
    def circular_correlate(p, x, y, z, **options):
        E.correlate(y, x, z, E.launch_of(options), periodic=True)

    @impl("circular_correlate_backward")
    def circular_correlate_backward(p, x, y, g, dx, dy, **options):
        launch = E.launch_of(options)
        E.correlate(y, g, dx, launch, periodic=True)
        E.correlate(x, g, dy, launch, periodic=True, offset=1, flip=True)
