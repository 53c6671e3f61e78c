"""The numba_cpu FFT paths (cpu/fft.py, cpu/auto.py) on hostile inputs: outliers and wide dynamic range
(`auto` must meet the per-output tolerance of a direct sum; `fft` the normwise bound), magnitudes near
overflow (no Inf/NaN where the true result is finite), sizes that would not fit in memory
(MemoryError before anything is written), and a missing or broken crossover table."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import kernels
from cpu import auto, fft
from kernels import compare
from kernels.spec import OPS

#: The ops with an FFT path (the bias gradient is a plain sum).
FFT_OPS = ["conv1d", "conv1d_weight_grad", "conv1d_input_grad", "conv1d_relu", "conv1d_relu_backward",
           "circular_correlate", "circular_correlate_backward"]


def _table(k_fft):
    row = {"n": [1000, 100_000], "k_fft": [k_fft, k_fft], "k_max": [1000, 100_000]}
    return {"schema": auto.SCHEMA, "ops": {op: {d: dict(row) for d in ("float32", "float64")} for op in auto.FFT_OPS}}


@pytest.fixture
def fft_everywhere(monkeypatch):
    """auto's table says FFT from k = 32 on (so the accuracy rule alone decides)."""
    table = {**_table(32), "machine": {"threads": 1}}
    monkeypatch.setattr(auto, "load", lambda: table)
    monkeypatch.setattr(auto, "_thread_scale", lambda t: 1.0)
    auto._stored_crossover.cache_clear()
    yield
    auto._stored_crossover.cache_clear()


def _args(op, rng, dtype, n, k):
    args, kwargs = OPS[op].make_args(rng, dtype, n=n, k=k)
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args], kwargs


def _hostile(kind, a, rng):
    """Plant `kind` into the long array `a` in place."""
    dtype = a.dtype
    big = {np.dtype(np.float32): 1e8, np.dtype(np.float64): 1e20}[dtype]
    if kind == "outlier":
        a[a.size // 3] = big
    elif kind == "zeros":  # a run of zeros: outputs whose sums are exactly 0
        a[a.size // 4:a.size // 2] = 0
    elif kind == "range":  # a smooth swing of the magnitude over 6 decades
        a *= np.logspace(0, 6, a.size).astype(dtype)
    elif kind == "tiny":
        a[: a.size // 2] *= dtype.type(1e-30 if dtype == np.float64 else 1e-20)


def _call(op, variant, args, kwargs):
    with np.errstate(over="ignore", invalid="ignore"):
        return kernels.get(op, "numba_cpu", variant)(*args, **kwargs)


@pytest.mark.parametrize("kind", ["outlier", "zeros", "range", "tiny", "filter outlier"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", FFT_OPS)
def test_auto_meets_the_per_output_tolerance_on_hostile_inputs(op, dtype, kind, fft_everywhere, rng):
    """With the FFT allowed from k = 32 on, auto's every output is within the elementwise tolerance of
    a direct sum, whatever the dynamic range of the inputs (the accuracy rule sends these direct)."""
    n, k = (3000, 300) if op.startswith("circular") else (20_000, 300)
    args, kwargs = _args(op, rng, dtype, n, k)
    long, short = (args[0], args[1]) if args[0].size >= args[1].size else (args[1], args[0])
    _hostile(kind.split()[-1], short if kind.startswith("filter") else long, rng)
    verdict = compare.check(op, _call(op, "auto", args, kwargs), args, kwargs, method="direct")
    print(op, kind, verdict.as_dict())
    assert verdict.ok, verdict.detail


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", FFT_OPS)
def test_auto_still_takes_the_fft_on_ordinary_inputs(op, dtype, fft_everywhere, rng, monkeypatch):
    """Standard normal inputs pass the accuracy rule: auto computes by FFT, within the elementwise
    tolerance."""
    calls = []
    real = fft.correlate
    monkeypatch.setattr(fft, "correlate", lambda *a: (calls.append(a[1].shape[0]), real(*a)))
    n, k = (3000, 300) if op.startswith("circular") else (20_000, 300)
    args, kwargs = _args(op, rng, dtype, n, k)
    verdict = compare.check(op, _call(op, "auto", args, kwargs), args, kwargs, method="direct")
    assert verdict.ok, verdict.detail
    assert calls, f"{op}: auto did not take the FFT on standard normal inputs"


def test_auto_on_the_measured_outlier_cases():
    """float32 n = 1e5, k = 1300 (FFT side of the stored crossover) with one 1e8, and float64 with
    one 1e20: every output within the elementwise tolerance (the FFT gave errors of 34 and 1e4)."""
    rng = np.random.default_rng(5)
    for dtype, big in ((np.float32, 1e8), (np.float64, 1e20)):
        x, w = rng.standard_normal(100_000).astype(dtype), rng.standard_normal(1300).astype(dtype)
        x[50_000] = big
        verdict = compare.check("conv1d", kernels.get("conv1d", "numba_cpu")(x, w), (x, w))
        assert verdict.ok and verdict.criterion == "elementwise", verdict.as_dict()
        fft_verdict = compare.check("conv1d", kernels.get("conv1d", "numba_cpu", "fft")(x, w), (x, w),
                                    method="fft")
        assert fft_verdict.ok, fft_verdict.as_dict()  # the fft variant: within its normwise bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", FFT_OPS)
@pytest.mark.parametrize("variant", ["fft", "auto"])
def test_no_overflow_inside_the_transform(variant, op, dtype, fft_everywhere, rng):
    """Inputs of +-max / (8 * terms) (x = +-6.6e35 in float32 with k = 64): every true result is finite,
    and so is every output; within the normwise bound."""
    n, k = 2000, 64
    args, kwargs = _args(op, rng, dtype, n, k)
    p, _ = OPS[op].parse(*args, **kwargs)
    terms = OPS[op].reduction_length(p)  # the longest sum behind an output
    huge = float(np.finfo(dtype).max) / (8 * terms)  # float32 conv1d: 6.6e35
    args[0] = (np.sign(args[0]) * huge).astype(dtype)
    _, _, ref, _ = compare.reference(op, args, kwargs)
    assert all(np.isfinite(r).all() for r in ref)
    got = _call(op, variant, args, kwargs)
    for name, g in zip(OPS[op].outputs, (got,) if OPS[op].single else got, strict=True):
        assert np.isfinite(g).all(), f"{variant} {op} {name}: {np.count_nonzero(~np.isfinite(g))} non-finite"
    if op == "conv1d_relu_backward":
        return  # the ReLU mask flips where |pre| is below the FFT's normwise error: no bound holds there
    verdict = compare.check(op, got, args, kwargs, method="fft")
    assert verdict.ok, verdict.as_dict()


# --- memory ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", FFT_OPS)
def test_fft_too_large_for_memory_raises_before_writing(op, monkeypatch, rng):
    """With 64 KiB 'available', an FFT whose temporaries need more raises MemoryError naming the sizes,
    and the out= arrays stay as they were; auto goes direct instead."""
    monkeypatch.setattr(fft, "available_memory", lambda: 1 << 16)
    n, k = 4000, 500
    args, kwargs = _args(op, rng, np.float64, n, k)
    p, _ = OPS[op].parse(*args, **kwargs)
    outs = tuple(np.full(s, np.nan) for s in OPS[op].out_shapes(p))
    out = outs[0] if OPS[op].single else outs
    with pytest.raises(MemoryError, match=r"lengths \d+ and \d+ \(float64\) need about .* GiB"):
        kernels.get(op, "numba_cpu", "fft")(*args, **kwargs, out=out)
    assert all(np.isnan(o).all() for o in outs), "an output was written before the MemoryError"
    table = {**_table(32), "machine": {"threads": 1}}
    monkeypatch.setattr(auto, "load", lambda: table)
    auto._stored_crossover.cache_clear()
    compare.assert_close(op, kernels.get(op, "numba_cpu", "auto")(*args, **kwargs), args, kwargs)
    auto._stored_crossover.cache_clear()


def test_memory_estimate_grows_with_the_sizes():
    assert fft.temp_bytes(2**31 + 100, 2**31, np.float32) > 2**35
    assert fft.available_memory() > 0


# --- the crossover table ----------------------------------------------------------------------------

@pytest.fixture
def table_path(tmp_path, monkeypatch):
    path = tmp_path / "crossover.json"
    monkeypatch.setattr(auto, "PATH", path)
    clear = getattr(auto, "_load", auto.load).cache_clear
    clear()
    auto._stored_crossover.cache_clear()
    yield path
    clear()
    auto._stored_crossover.cache_clear()


def _truncated():
    text = auto.PATH.read_text() if auto.PATH.exists() else json.dumps(_table(100))
    return text[: len(text) // 2]


BROKEN = {
    "missing": None,
    "empty": "",
    "truncated": "TRUNCATED",
    "not an object": "[1, 2]",
    "wrong schema": json.dumps({"schema": 99, "ops": {}}),
    "no ops": json.dumps({"schema": auto.SCHEMA}),
    "empty rows": json.dumps({"schema": auto.SCHEMA, "ops": {op: {"float32": {"n": [], "k_fft": [], "k_max": []},
                                                                  "float64": {}} for op in auto.FFT_OPS}}),
    "bad threads": json.dumps({**_table(100), "machine": {"threads": "two"}}),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_crossover_table_falls_back_to_direct_with_one_warning(case, table_path, rng):
    text = BROKEN[case]
    if text == "TRUNCATED":
        text = _truncated()
    if text is not None:
        table_path.write_text(text)
    x, w = rng.standard_normal(5000), rng.standard_normal(600)
    f = kernels.get("conv1d", "numba_cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            compare.assert_close("conv1d", f(x, w), (x, w))
        assert not auto.use_fft("conv1d", 5000, 600, "float64")
    messages = [str(c.message) for c in caught if issubclass(c.category, RuntimeWarning)]
    assert len(messages) == 1 and str(table_path) in messages[0], messages


def test_valid_table_at_the_patched_path_is_used(table_path):
    table_path.write_text(json.dumps(_table(100)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert auto.load()["schema"] == auto.SCHEMA
        assert auto.use_fft("conv1d", 5000, 100, "float64", auto.load())
