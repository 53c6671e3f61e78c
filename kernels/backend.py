"""A backend: named implementations of the ops, and how its arrays move in and out.

A backend module creates one `Backend` and registers implementations with `@backend.impl(op,
variant)`. `Backend.function` turns an implementation into the public op, the one call path:

1. validate the arguments through the op's ``parse`` (the one validation path);
2. check every ``out`` before any work: shape, dtype, writable, no broadcast view, no two outs
   sharing memory (each error names the output, e.g. ``out (db): read-only``);
3. move inputs to the backend's memory, contiguous;
4. allocate the outputs (poisoned with NaN while `POISON` is set, so unwritten elements show). An
   ``out`` that may overlap an input is not written in place: the kernel writes a temporary, copied
   into ``out`` afterwards, so ``f(x, y, out=x)`` equals ``f(x, y)``;
5. call the implementation, and hand results back in the kind of array it was given.

Arrays of other libraries: an input that is not a NumPy, CuPy or numba device array is read through
NumPy (``np.asarray``, i.e. ``__array__``; torch CPU tensors without autograd pass, without a copy),
and the results are NumPy arrays. An ``out`` of that kind is written through ``np.from_dlpack``, a
view of its memory. Anything that cannot be read or written so is a TypeError naming the argument.

On host backends, a fast path serves the common call (contiguous float32/float64 NumPy arrays,
default keywords, no ``out`` or one plain contiguous array): the op's ``fast`` parse performs the same
checks with less Python, and anything it does not accept takes the general path, which raises the
errors. An implementation may also carry a ``whole_call``: the whole public call (positional inputs only,
no ``out``, no keywords) compiled for the cases it serves, returning an empty array to decline and raising
TypeError for argument types it was not compiled for; a small call then costs one compiled dispatch.
Options given to `kernels.get` are checked there, against the implementation's signature.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kernels.spec import OPS

#: Fill freshly allocated outputs with NaN before the kernel runs (tests switch it on).
POISON = os.environ.get("KERNELS_POISON", "0") == "1"

#: Serve common host calls through the op's fast parse (read when a public function is made).
FAST = True

#: How an implementation computes its op, declared where it is registered (benchmarks and plots read it).
METHODS = ("direct", "fft", "auto")


@dataclass(frozen=True)
class Status:
    state: str  # "available", "real GPU", "simulated", "emulated" or "unavailable"
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.state != "unavailable"


class HostArrays:
    """NumPy arrays in host memory: the array kind of the CPU backends."""

    name = "numpy.ndarray"

    def owns(self, a) -> bool:
        return isinstance(a, np.ndarray)

    def prepare(self, a):
        """A contiguous array of this kind holding `a` (no copy when it already is one)."""
        return np.ascontiguousarray(a)

    def writable_in_place(self, a) -> bool:
        """True when a kernel can write into `a` directly (own kind, C-contiguous)."""
        return isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def fill_nan(self, a):
        a.fill(np.nan)

    def to_host(self, a) -> np.ndarray:
        return a

    def copy_into(self, dst, src):
        """dst[...] = src where dst may be a host array and src one of this kind."""
        dst[...] = self.to_host(src)


@dataclass
class Backend:
    name: str
    doc: str
    status: Callable[[], Status] = lambda: Status("available")
    arrays: HostArrays = field(default_factory=HostArrays)
    impls: dict = field(default_factory=dict)  # op -> {variant: implementation}
    defaults: dict = field(default_factory=dict)  # op -> default variant
    methods: dict = field(default_factory=dict)  # (op, variant) -> "direct", "fft" or "auto"
    #: Checks the options of `kernels.get` for implementations taking ``**options`` (raises TypeError or
    #: ValueError naming the bad one), e.g. a GPU backend's launch parser; None: accepted as given.
    options: Callable[[dict], object] | None = None

    def impl(self, op: str, variant: str, *, default: bool = False, method: str = "direct"):
        """Register `fn(p, *inputs, *outs, **options)` as `variant` of `op`, computed by `method`.

        The first line of its docstring is the variant's one-line note. The options it takes are its
        keyword-only parameters, or any with ``**options`` (then the backend's `options` checks them).
        """
        if op not in OPS:
            raise KeyError(f"unknown op {op!r}")
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")

        def register(fn):
            self.impls.setdefault(op, {})[variant] = fn
            self.methods[op, variant] = method
            if default or op not in self.defaults:
                self.defaults[op] = variant
            return fn

        return register

    def method(self, op: str, variant: str) -> str:
        """"direct", "fft" or "auto": how `variant` of `op` computes, as declared at registration."""
        return self.methods[op, variant]

    def variants(self, op: str) -> dict[str, str]:
        """Variant name -> one-line note, for `op`."""
        return {v: (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
                for v, fn in self.impls.get(op, {}).items()}

    def check_options(self, op_name: str, variant: str, options: dict) -> None:
        """Raise TypeError/ValueError unless `variant` of `op_name` takes `options` (checked at `get`).

        An implementation declares the options it takes as keyword-only parameters; one that takes
        ``**options`` (the GPU launches) has them checked by the backend's `options` validator, if any.
        """
        try:
            params = inspect.signature(self.impls[op_name][variant]).parameters.values()
        except (TypeError, ValueError):  # no Python signature (a compiled callable): nothing to check against
            return
        if any(q.kind is q.VAR_KEYWORD for q in params):
            if self.options is not None:
                self.options(options)
            return
        accepted = sorted(q.name for q in params if q.kind is q.KEYWORD_ONLY)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            takes = f"some of {accepted}" if accepted else "none"
            raise TypeError(f"options: {self.name} {op_name}[{variant}] takes {takes}, got {unknown}")

    def function(self, op_name: str, variant: str | None = None, **options) -> Callable:
        """The public op `op_name` computed by `variant` (default: the backend's default)."""
        op = OPS[op_name]
        if op_name not in self.impls:
            raise KeyError(f"backend {self.name!r} does not implement {op_name!r}")
        variant = variant or self.defaults[op_name]
        try:
            impl = self.impls[op_name][variant]
        except KeyError:
            raise KeyError(f"backend {self.name!r} has no variant {variant!r} of {op_name!r}; "
                           f"it has {sorted(self.impls[op_name])}") from None
        self.check_options(op_name, variant, options)
        if options:
            impl = functools.partial(impl, **options)
        arrays = self.arrays
        general = functools.partial(_general_call, op, impl, arrays)
        fast = op.fast if FAST and arrays.name == HostArrays.name else None
        call = general if fast is None else _fast_call(op, impl, fast, general)
        call = functools.update_wrapper(call, op.parse, updated=())
        call.op, call.backend, call.variant = op, self, variant
        call.__name__ = f"{op_name}[{self.name}:{variant}]"
        return call


def _general_call(op, impl, arrays, *args, out=None, **kwargs):
    """Validate, check every out, prepare the inputs, allocate, run `impl`, copy back (any array kind)."""
    p, inputs = op.parse(*args, **kwargs)
    shapes = op.out_shapes(p)
    given = _check_out(op, p, shapes, out)
    native = arrays.name != HostArrays.name and any(arrays.owns(a) for a in inputs)
    inputs = tuple(arrays.prepare(a) for a in inputs)
    outs = []
    for g, s in zip(given, shapes):
        if g is not None and arrays.writable_in_place(g) and not any(overlaps(g, a) for a in inputs):
            outs.append(g)  # written in place
        else:  # no out, one of another kind or layout, or one that overlaps an input: a temporary
            o = arrays.empty(s, p.dtype)
            if POISON:
                arrays.fill_nan(o)
            outs.append(o)
    impl(p, *inputs, *outs)
    if out is not None:
        for g, o in zip(given, outs):
            if g is not o:
                arrays.copy_into(g, o)
        return out
    if not native:
        outs = [arrays.to_host(o) for o in outs]
    return outs[0] if op.single else tuple(outs)


def _fast_call(op, impl, fast, general):
    """The public call with a fast path for host backends: `fast` (the op's quick parse) accepts the
    common case (contiguous float NumPy arrays, default keywords) or returns None, and then, like any
    `out` other than one plain contiguous writable array that overlaps no input, the general path runs.
    Both paths validate the same; errors always come from the general path.
    """
    empty, shares, ndarray, nan = np.empty, np.may_share_memory, np.ndarray, np.nan
    shapes_of = {}  # id(problem) -> (problem, out shapes); the entry keeps the problem, so its id stays unique

    def shapes(p):
        if len(shapes_of) >= 1024:
            shapes_of.clear()
        e = shapes_of[id(p)] = (p, op.out_shapes(p))
        return e

    if op.single:
        def call(*args, out=None, **kwargs):
            got = fast(args, kwargs)
            if got is None:
                return general(*args, out=out, **kwargs)
            p, inputs = got
            (shape,) = (shapes_of.get(id(p)) or shapes(p))[1]
            if out is None:
                y = empty(shape, p.dtype)
                if POISON:
                    y.fill(nan)
            elif (type(out) is ndarray and out.shape == shape and out.dtype == p.dtype and out.flags.writeable
                  and out.flags.c_contiguous and not any(shares(out, a) for a in inputs)):
                y = out
            else:
                return general(*args, out=out, **kwargs)
            impl(p, *inputs, y)
            return y

        whole = getattr(impl, "whole_call", None)
        if whole is not None:
            fast_single = call

            def call(*args, out=None, **kwargs):
                if out is None and not kwargs and not POISON:  # poisoned outputs: the path that allocates them
                    try:
                        y = whole(*args)
                    except TypeError:  # argument types it was not compiled for, or a wrong number of them
                        y = None
                    if y is not None and y.size:
                        return y
                return fast_single(*args, out=out, **kwargs)
    else:
        def call(*args, out=None, **kwargs):
            got = None if out is not None else fast(args, kwargs)
            if got is None:
                return general(*args, out=out, **kwargs)
            p, inputs = got
            outs = [empty(s, p.dtype) for s in (shapes_of.get(id(p)) or shapes(p))[1]]
            if POISON:
                for o in outs:
                    o.fill(nan)
            impl(p, *inputs, *outs)
            return tuple(outs)
    return call


# --- out= arguments ----------------------------------------------------------------------------

def _check_out(op, p, shapes, out) -> tuple:
    """The arrays to write the outputs into (Nones without `out`), checked before any work.

    Each must match its output's shape and dtype, be writable with no two of its elements in one
    place (no broadcast view), and share no memory with another out.
    """
    if out is None:
        return (None,) * len(shapes)
    if op.single:
        targets = (out,)
    elif isinstance(out, (tuple, list)):
        targets = tuple(out)
    else:
        raise TypeError(f"out: expected a tuple of {len(shapes)} arrays {op.outputs}, got {type(out).__name__}")
    if len(targets) != len(shapes):
        raise ValueError(f"out: expected {len(shapes)} arrays {op.outputs}, got {len(targets)}")
    targets = tuple(_out_array(f"out ({name})", t, s, p.dtype) for name, t, s in zip(op.outputs, targets, shapes))
    for i, a in enumerate(targets):
        for j in range(i + 1, len(targets)):
            if _same_memory(a, targets[j]):
                raise ValueError(f"out ({op.outputs[i]}) and out ({op.outputs[j]}): share memory; "
                                 f"expected a separate array for each output")
    return targets


def _out_array(label: str, t, shape, dtype):
    """`t` checked as the destination of one output; objects with ``__dlpack__`` (e.g. torch CPU
    tensors) are written through a NumPy view of their memory."""
    if not isinstance(getattr(t, "dtype", None), np.dtype) and hasattr(t, "__dlpack__"):
        try:
            t = np.from_dlpack(t)
        except Exception as e:  # device memory, autograd tensors, ...
            raise TypeError(f"{label}: cannot be written through a NumPy view ({type(e).__name__}: {e})") from None
    if not isinstance(getattr(t, "dtype", None), np.dtype) or not hasattr(t, "shape"):
        raise TypeError(f"{label}: expected an array of shape {shape} and dtype {dtype}, got {type(t).__name__}")
    if tuple(t.shape) != shape or t.dtype != dtype:
        raise ValueError(f"{label}: expected an array of shape {shape} and dtype {dtype}, "
                         f"got {tuple(t.shape)} {t.dtype}")
    if not getattr(getattr(t, "flags", None), "writeable", True):
        raise ValueError(f"{label}: read-only; expected a writable array")
    strides = getattr(t, "strides", None)
    if strides is not None and _self_overlapping(tuple(t.shape), tuple(strides), t.dtype.itemsize):
        raise ValueError(f"{label}: several elements share memory (a broadcast view, strides {tuple(strides)}); "
                         f"expected a writable array with distinct elements")
    return t


def _self_overlapping(shape, strides, itemsize) -> bool:
    """True unless the strides provably give distinct elements (zero strides, interleaved layouts)."""
    span = itemsize
    for size, stride in sorted(((s, abs(st)) for s, st in zip(shape, strides) if s > 1), key=lambda d: d[1]):
        if stride < span:
            return True
        span = stride * (size - 1) + span
    return False


# --- memory overlap ----------------------------------------------------------------------------

def _host_view(a):
    """`a` itself, or the NumPy array behind a CUDA-simulator device array."""
    inner = getattr(a, "_ary", None) if not isinstance(a, np.ndarray) else None
    return inner if isinstance(inner, np.ndarray) else a


def _device_span(a):
    """[low, high) byte addresses of a device array (``__cuda_array_interface__``), None if unknown/empty."""
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None or 0 in cai["shape"]:
        return None
    shape, itemsize = cai["shape"], np.dtype(cai["typestr"]).itemsize
    strides = cai.get("strides")
    if strides is None:  # C-contiguous
        strides, step = [], itemsize
        for s in reversed(shape):
            strides.insert(0, step)
            step *= s
    low = high = cai["data"][0]
    for s, st in zip(shape, strides):
        low, high = (low + (s - 1) * st, high) if st < 0 else (low, high + (s - 1) * st)
    return low, high + itemsize


def overlaps(a, b) -> bool:
    """True if arrays `a` and `b` may share memory (bounds overlap: NumPy, CUDA array interface)."""
    a, b = _host_view(a), _host_view(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.may_share_memory(a, b)
    sa, sb = _device_span(a), _device_span(b)
    return sa is not None and sb is not None and sa[0] < sb[1] and sb[0] < sa[1]


def _same_memory(a, b) -> bool:
    """True if `a` and `b` have an element in common (exact for NumPy, by bounds otherwise)."""
    ha, hb = _host_view(a), _host_view(b)
    if isinstance(ha, np.ndarray) and isinstance(hb, np.ndarray):
        return bool(np.shares_memory(ha, hb))
    return overlaps(a, b)
