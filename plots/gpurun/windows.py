"""Float64 references of large 1-D problems (n = 1e8 and past 2^31) by windows and chunks, on every core.

The whole reference of conv1d at n = 1e8 and k = 31 takes ~90 s of NumPy on one core. Each output of a sliding
op depends on a window of its inputs only, so a window of outputs is checked against the reference of that
window of inputs; a sum over n (the weight and bias gradients) is the sum of the references of chunks:

    conv1d, conv1d_relu     y[a:b]  = op(x[a : b+k-1], w)
    conv1d_input_grad       dx[a:b] = input_grad(w, g[lo:b])[a-lo : b-lo],  lo = max(0, a-k+1)
    conv1d_weight_grad      dw      = sum_c weight_grad(x[c0 : c1+k-1], g[c0:c1], k)
    conv1d_bias_grad        db      = sum_c bias_grad(g[c0:c1])

Magnitudes (the op applied to |inputs|) are made the same way, and each element is judged as kernels.compare
judges it: |got - ref| <= atol + rtol * mag with rtol from the dtype and the full problem's reduction length.
Windows and chunks run in a thread pool (NumPy releases the GIL in them).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np

from kernels import compare
from kernels.spec import OPS

SLIDING = ("conv1d", "conv1d_relu", "conv1d_input_grad")
SUMS = ("conv1d_weight_grad", "conv1d_bias_grad")
CHUNK = 1 << 22  # outputs per chunk of a sum


def host(a, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """a[lo:hi] as a float64 NumPy array (a may be a NumPy, CuPy or numba device array)."""
    return compare.to_host(a[lo:hi]).astype(np.float64)


def _window_args(op: str, args, a: int, b: int, k: int):
    """The inputs (float64) whose op gives outputs [a, b) of the full problem, and where they sit in its result."""
    if op in ("conv1d", "conv1d_relu"):
        return (host(args[0], a, b + k - 1), host(args[1]), *args[2:]), 0
    lo = max(0, a - k + 1)  # conv1d_input_grad: args (w, g)
    return (host(args[0]), host(args[1], lo, b)), a - lo


def _chunk_args(op: str, args, c0: int, c1: int, k: int):
    if op == "conv1d_weight_grad":
        return host(args[0], c0, c1 + k - 1), host(args[1], c0, c1), k
    return (host(args[0], c0, c1),)


def _pair(op: str, args, kwargs):
    """(reference, magnitude) of op(*args, **kwargs), inputs already float64."""
    p, inputs = OPS[op].parse(*args, **kwargs)
    ref = OPS[op].reference(p, *inputs)[0]
    abs_p = dataclasses.replace(p, b=abs(p.b)) if getattr(p, "b", None) is not None else p
    mag = OPS[op].reference(abs_p, *(np.abs(x) for x in inputs))[0]
    return ref, mag


def check(op: str, got, args, kwargs=None, *, windows=None, workers: int | None = None) -> compare.Mismatch:
    """`got` (the op's one output, on the device or the host) against the float64 reference, by windows of
    outputs for a sliding op (default: the first, last and two random windows of 2^20), or by chunks for a sum
    (default: every output j; given `windows`, only those ranges of j, where the inputs are zero elsewhere);
    AssertionError naming the worst element when an element is off."""
    kwargs = dict(kwargs or {})
    p, _ = OPS[op].parse(*args, **kwargs)
    rtol, atol = compare.tolerance(op, p, p.dtype)
    pool = concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1)
    with pool:
        if op in SUMS:
            m = p.n - p.k + 1
            bounds = [(c0, min(hi, c0 + CHUNK)) for lo, hi in (windows or [(0, m)]) for c0 in range(lo, hi, CHUNK)]
            parts = list(pool.map(lambda c: _pair(op, _chunk_args(op, args, *c, p.k), kwargs), bounds))
            ref, mag = sum(r for r, _ in parts), sum(g for _, g in parts)
            result = compare.compare_output(OPS[op].outputs[0], compare.to_host(got), ref, mag, rtol, atol)
        elif op in SLIDING:
            size = got.shape[0]
            windows = list(windows or default_windows(size))

            def one(w):
                a, b = w
                wargs, at = _window_args(op, args, a, b, p.k)
                ref, mag = _pair(op, wargs, kwargs)
                return compare.compare_output(f"{OPS[op].outputs[0]}[{a}:{b}]", compare.to_host(got[a:b]),
                                              ref[at:at + b - a], mag[at:at + b - a], rtol, atol)

            reports = list(pool.map(one, windows))
            result = max(reports, key=lambda r: (r.bad_nonfinite, r.max_ratio))
        else:
            raise ValueError(f"op: {op!r} has no windowed reference; expected one of {', '.join(SLIDING + SUMS)}")
    if not result.ok:
        raise AssertionError(f"{op} differs from the reference: {result}")
    return result


def default_windows(size: int, width: int = 1 << 20, seed: int = 0) -> list[tuple[int, int]]:
    """The first and the last `width` outputs and two random windows between them."""
    if size <= 4 * width:
        return [(0, size)]
    starts = np.random.default_rng(seed).integers(width, size - 2 * width, 2)
    return [(0, width), *((int(s), int(s) + width) for s in starts), (size - width, size)]
