"""Every 1-D op as launches of three engines: the mapping both GPU backends share.

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

NONE, RELU, GATE = 0, 1, 2  # epilogues of the correlation engine (the kernels use the same numbers)


@dataclass(frozen=True)
class Engines:
    correlate: Callable
    weight_grad: Callable
    total: Callable
    empty: Callable  # (shape, dtype) -> a device array (workspace)
    launch_of: Callable  # the call's options -> the backend's launch configuration


def register(backend, variant: str, E: Engines, notes: dict, default: bool = False):
    """Register every 1-D op of `backend` for `variant`, computed with the engines `E`.

    `notes` maps an op to its one-line note ("" to the note of the ops not named); ops without a note
    are not registered.
    """
    def impl(op):
        def decorate(fn):
            fn.__doc__ = notes.get(op, notes.get(""))
            if fn.__doc__:
                backend.impl(op, variant, default=default)(fn)
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
