"""The fast path of the public call: taken for the common call, with the same results and errors.

Each 1-D op has a fast parse (`Op.fast`) that accepts the common call (contiguous float32/float64
NumPy arrays, default keywords) and returns None for anything else. It must never accept what the
op's `parse` rejects, and what it accepts must give the same problem and inputs. Timing is measured
outside the tests.
"""

import dataclasses

import numpy as np
import pytest
from test_bad_input import CASES, MORE_CASES

import kernels
import kernels.backend
from kernels.spec import OPS

FAST_OPS = [name for name, op in OPS.items() if op.fast is not None]


def test_every_1d_op_has_a_fast_parse():
    assert FAST_OPS == [name for name, op in OPS.items() if op.family in ("conv1d", "circular")]


def _variations(op_name, rng):
    """(args, kwargs) of good calls and of calls the fast parse must leave to the general path."""
    op = OPS[op_name]
    for dtype in (np.float32, np.float64):
        for n, k in ((1, 1), (13, 5), (100, 3), (100, 31), (100, 100)):
            args, kwargs = op.make_args(rng, dtype, n=n, k=k)
            yield args, kwargs
            arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
            if "flip" in _keywords(op_name):
                yield args, {"flip": True}
                yield args, {"flip": np.True_}
                yield args, {"flip": 1}
            yield args, {"nosuch": 1}
            yield args[:-1], kwargs
            yield (*args, args[-1]), kwargs
            for i in arrays:
                a = args[i]
                swap = _swapper(args, i)
                yield swap(np.repeat(a, 2)[::2]), kwargs  # strided
                yield swap(a.astype(np.float64 if dtype == np.float32 else np.float32)), kwargs
                yield swap(a.astype(a.dtype.newbyteorder())), kwargs
                yield swap(a.reshape(1, -1)), kwargs
                yield swap(a[:0]), kwargs
                yield swap(a[:-1] if a.shape[0] > 1 else np.concatenate([a, a])), kwargs
                yield swap(a.view(np.matrix) if a.ndim == 2 else a.view(_Sub)), kwargs
                yield swap(list(a)), kwargs
                yield swap(a.astype(np.int64)), kwargs
            if op_name.startswith("conv1d_relu"):
                for b in (0.0, -0.0, np.nan, 1, np.float32(0.375), np.float64(-1.5), np.array(0.5), None, True):
                    yield (*args[:2], b, *args[3:]), kwargs
            if op_name == "conv1d_weight_grad":
                for k_ in (np.int64(args[2]), 2**64, 0, float(args[2])):
                    yield (*args[:2], k_), kwargs


def _swapper(args, i):
    """b -> args with args[i] replaced by b."""
    return lambda b: tuple(b if j == i else c for j, c in enumerate(args))


class _Sub(np.ndarray):
    pass


def _keywords(op_name):
    import inspect

    return [p.name for p in inspect.signature(OPS[op_name].parse).parameters.values() if p.kind == p.KEYWORD_ONLY]


@pytest.mark.parametrize("op_name", FAST_OPS)
def test_fast_parse_accepts_only_what_parse_accepts_and_agrees(op_name, rng):
    op = OPS[op_name]
    accepted = rejected = 0
    for args, kwargs in _variations(op_name, rng):
        got = op.fast(args, kwargs)
        try:
            p, inputs = op.parse(*args, **kwargs)
        except (TypeError, ValueError) as e:
            assert got is None, f"fast accepted what parse rejects ({e})"
            rejected += 1
            continue
        if got is None:
            continue
        accepted += 1
        fp, finputs = got
        assert fp == p, (fp, p)
        assert len(finputs) == len(inputs) and all(a is b for a, b in zip(finputs, inputs))
    print(f"{op_name}: fast accepted {accepted}, parse rejected {rejected}")
    assert accepted >= 10 and rejected >= 5


def _counting(monkeypatch, op_name):
    """Replace OPS[op_name].fast by a wrapper counting the calls it accepts."""
    op = OPS[op_name]
    taken = []

    def fast(args, kwargs):
        got = op.fast(args, kwargs)
        taken.append(got is not None)
        return got

    monkeypatch.setitem(OPS, op_name, dataclasses.replace(op, fast=fast))
    return taken


@pytest.mark.parametrize("backend", ["numpy", "numba_cpu"])
@pytest.mark.parametrize("op_name", FAST_OPS)
def test_fast_path_is_taken_and_equals_the_general_path(op_name, backend, rng, monkeypatch):
    taken = _counting(monkeypatch, op_name)
    be = kernels.registry.backend(backend)
    fast = be.function(op_name)
    monkeypatch.setattr(kernels.backend, "FAST", False)
    general = be.function(op_name)
    op = OPS[op_name]
    for dtype in (np.float32, np.float64):
        args, kwargs = op.make_args(rng, dtype, n=100, k=31)
        got, want = fast(*args, **kwargs), general(*args, **kwargs)
        assert taken[-1], "the fast path was not taken"
        for g, w in zip(*(((r,) if op.single else r) for r in (got, want))):
            assert type(g) is np.ndarray and g.dtype == w.dtype and np.array_equal(g, w)
        if op.single:
            out = np.full(op.out_shapes(op.parse(*args, **kwargs)[0])[0], np.nan, dtype)
            assert fast(*args, out=out, **kwargs) is out and taken[-1] and np.array_equal(out, want)
            first = args[0]
            if first.shape[0] >= out.shape[0]:  # an out overlapping an input: the general path
                aliased = fast(*args, out=first[:out.shape[0]], **kwargs)
                assert np.array_equal(aliased, want)


@pytest.mark.parametrize("case", {**CASES, **MORE_CASES})
def test_fast_and_general_paths_raise_the_same_errors(case, monkeypatch):
    op_name, args, kwargs, exc, _ = {**CASES, **MORE_CASES}[case]
    be = kernels.registry.backend("numba_cpu")
    fast = be.function(op_name)
    monkeypatch.setattr(kernels.backend, "FAST", False)
    general = be.function(op_name)
    errors = []
    for f in (fast, general):
        with pytest.raises(exc) as info:
            f(*args, **kwargs)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


# --- the whole-call path of small conv1d calls (cpu.blocked.conv1d_whole) ------------------------------------

WHOLE_SIZES = [(1, 1), (2, 1), (5, 5), (100, 3), (100, 31), (100, 32), (300, 31), (2000, 1), (2049, 2),
               (1500, 31), (4227, 31), (131072, 1), (131073, 1)]


@pytest.mark.parametrize("variant", ["auto", "blocked"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_calls_compiled_whole_match_the_reference(variant, dtype, monkeypatch, rng):
    """Without poisoning (as users call), small conv1d calls take one compiled dispatch: every size it serves,
    and the sizes it declines on both sides of its thresholds (taps, work), match the reference."""
    monkeypatch.setattr(kernels.backend, "POISON", False)
    fn = kernels.get("conv1d", "numba_cpu", variant)
    for n, k in WHOLE_SIZES:
        x, w = rng.standard_normal(n).astype(dtype), rng.standard_normal(k).astype(dtype)
        kernels.assert_close("conv1d", fn(x, w), (x, w))


def test_the_whole_call_declines_what_it_was_not_compiled_for(monkeypatch, rng):
    """Read-only, strided, integer and flipped calls, and bad sizes, leave the compiled path: the same results
    and the same errors as the general path."""
    from cpu import blocked

    monkeypatch.setattr(kernels.backend, "POISON", False)
    fn = kernels.get("conv1d", "numba_cpu")
    x, w = rng.standard_normal(50), rng.standard_normal(4)
    ro = x.copy()
    ro.flags.writeable = False
    for args, kwargs in (((ro, w), {}), ((x[::2], w), {}), ((x, w), {"flip": True})):
        kernels.assert_close("conv1d", fn(*args, **kwargs), args, kwargs)
    with pytest.raises(TypeError):
        blocked.conv1d_whole(x.astype(np.int64), w)
    with pytest.raises(ValueError, match=r"w \(filter length\): filter length must be <= signal length"):
        fn(x[:3], w)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        fn(x.astype(np.int64), w)
    assert blocked.conv1d_whole(x[:3], w).size == 0  # k > n: declined, the general path raises
