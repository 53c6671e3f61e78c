"""The `auto` variant of both GPU backends (gpu/auto.py): the best direct step, or an FFT where the
crossover table and the accuracy rule allow it.

With a table that puts every k >= 32 on the FFT side, the FFT path is taken (counted) and each op still
meets the elementwise tolerance of a direct sum (checked with method "direct", not the FFT's normwise
bound); inputs the accuracy rule must turn down (an outlier, a wide dynamic range, a non-finite value)
go direct and give the direct step's bits. The committed tables are the model's and say so.
"""

import json

import numpy as np
import pytest
from conftest import call_args
from test_gpu_backends import marks_for

import kernels
from gpu import auto
from kernels import compare, fft_choice

BACKENDS = ("numba_cuda", "cupy")
SMALL = {"numba_cuda": {"block": 32, "per_thread": 1}, "cupy": {"block": 32}}
DIRECT = {"numba_cuda": "regwin", "cupy": "vec16"}  # the direct forward beyond auto.STREAM_MAX_K taps
STREAM = {"numba_cuda": "tiled", "cupy": "naive"}  # up to auto.STREAM_MAX_K taps
FFT_OPS = ["conv1d", "conv1d_relu", "conv1d_input_grad", "conv1d_weight_grad"]


def always_fft(backend):
    row = {"n": [1, 10**9], "k_fft": [1, 1], "k_max": [1, 10**9]}
    return {"schema": 1, "ops": {op: {d: dict(row) for d in ("float32", "float64")} for op in fft_choice.FFT_OPS}}


@pytest.fixture
def fft_everywhere(monkeypatch):
    """Every k >= MIN_SUM on the FFT side; returns the list of FFT transforms done."""
    monkeypatch.setattr(auto, "load", always_fft)
    done = []
    real = auto.fft_valid

    def counted(xp, s, f):
        done.append((s.shape[0], f.shape[0]))
        return real(xp, s, f)

    monkeypatch.setattr(auto, "fft_valid", counted)
    return done


def params(cases):
    return [pytest.param(b, *c, marks=marks_for(b), id="-".join(map(str, (b, *c)))) for b in BACKENDS for c in cases]


@pytest.mark.parametrize("backend, op_name, dtype, flip", params(
    [(op, dt, flip) for op in FFT_OPS for dt in ("float32", "float64") for flip in (False, True)]))
def test_fft_path_meets_the_direct_tolerance(backend, op_name, dtype, flip, fft_everywhere):
    rng = np.random.default_rng()
    n, k = (300, 40) if op_name != "conv1d_weight_grad" else (300, 7)  # weight grad: m = 294 terms
    args, kwargs = call_args(op_name, rng, dtype, (n, k), flip=flip)
    got = kernels.get(op_name, backend, "auto", **SMALL[backend])(*args, **kwargs)
    assert fft_everywhere, "the FFT path was not taken"
    verdict = compare.check(op_name, got, args, kwargs, method="direct")
    assert verdict.ok, verdict


def _outlier(rng, dtype, n):
    x = rng.standard_normal(n).astype(dtype)
    x[n // 2] = 1e6  # every output near it is large, the others small: the FFT's normwise error is not
    return x


@pytest.mark.parametrize("backend, dtype, case", params(
    [(dt, case) for dt in ("float32", "float64") for case in ("outlier", "range", "nan", "zeros")]))
def test_inputs_the_rule_turns_down_go_direct(backend, dtype, case, fft_everywhere):
    rng = np.random.default_rng()
    n, k = 400, 48
    x = rng.standard_normal(n).astype(dtype)
    w = rng.standard_normal(k).astype(dtype)
    if case == "outlier":
        x = _outlier(rng, dtype, n)
    elif case == "range":
        x[: n // 2] *= np.asarray(1e-12, dtype)  # outputs whose terms are all tiny
    elif case == "nan":
        x[17] = np.nan
    else:
        x[:] = 0
    got = kernels.get("conv1d", backend, "auto", **SMALL[backend])(x, w)
    direct = kernels.get("conv1d", backend, DIRECT[backend], **SMALL[backend])(x, w)
    assert not fft_everywhere, f"{case}: the FFT result was kept"
    np.testing.assert_array_equal(compare.to_host(got), compare.to_host(direct))


@pytest.mark.parametrize("backend", [pytest.param(b, marks=marks_for(b)) for b in BACKENDS])
def test_below_the_crossover_auto_is_the_direct_step(backend, monkeypatch):
    monkeypatch.setattr(auto, "load", lambda backend: {})  # no table: direct everywhere
    rng = np.random.default_rng()
    x, w = rng.standard_normal(300).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    got = kernels.get("conv1d", backend, "auto", **SMALL[backend])(x, w)
    direct = kernels.get("conv1d", backend, DIRECT[backend], **SMALL[backend])(x, w)
    np.testing.assert_array_equal(compare.to_host(got), compare.to_host(direct))


@pytest.mark.parametrize("backend", [pytest.param(b, marks=marks_for(b)) for b in BACKENDS])
def test_the_direct_forward_is_chosen_by_k_as_declared(backend, monkeypatch):
    """auto's forward is the streaming step up to STREAM_MAX_K taps and the window step beyond, each op that runs
    the correlation engine alike (the input gradient too), and its `wraps` says so."""
    from plots.model.crossover import wrapped_at

    monkeypatch.setattr(auto, "load", lambda backend: {})  # no table: direct everywhere
    rng = np.random.default_rng()
    x = rng.standard_normal(300).astype(np.float32)
    for k, variant in ((auto.STREAM_MAX_K, STREAM[backend]), (auto.STREAM_MAX_K + 1, DIRECT[backend])):
        assert wrapped_at(backend, "conv1d", k) == variant
        w = rng.standard_normal(k).astype(np.float32)
        for op, args in (("conv1d", (x, w)), ("conv1d_input_grad", (w, x))):
            got = kernels.get(op, backend, "auto", **SMALL[backend])(*args)
            direct = kernels.get(op, backend, variant, **SMALL[backend])(*args)
            np.testing.assert_array_equal(compare.to_host(got), compare.to_host(direct), err_msg=f"{op} k={k}")


def test_committed_tables_are_valid_and_say_where_they_come_from():
    for backend in BACKENDS:
        table = json.loads(auto.path(backend).read_text())
        fft_choice.validate(table)
        assert table["source"].startswith(("MODEL", "measured")), backend
        # the FFT pays from some k at the largest n, and from a smaller k there than at the smallest n
        row = table["ops"]["conv1d"]["float32"]
        assert row["k_fft"][-1] is not None, (backend, row)
        assert row["k_fft"][0] is None or row["k_fft"][0] > row["k_fft"][-1], (backend, row)


@pytest.mark.parametrize("backend", [pytest.param("cupy", marks=marks_for("cupy"))])
def test_the_tuner_measures_a_gpu_backends_crossover(backend):
    from plots.bench import tune

    table = tune.measure(backend=backend, ns=[1500])
    fft_choice.validate(table)
    assert table["source"].startswith("measured on") and table["command"].endswith(f"--backend {backend}")
    assert set(table["ops"]) == set(fft_choice.FFT_OPS)


def test_use_fft_follows_the_table():
    row = {"n": [1000, 10**6], "k_fft": [None, 100], "k_max": [1000, 10**6]}
    table = {"schema": 1, "ops": {op: {d: dict(row) for d in ("float32", "float64")} for op in fft_choice.FFT_OPS}}
    assert auto.use_fft(table, "conv1d", 10**6, 100, "float32")
    assert not auto.use_fft(table, "conv1d", 10**6, 99, "float32")
    assert not auto.use_fft(table, "conv1d_input_grad", 1000, 999, "float64")  # never at n = 1000
    assert not auto.use_fft({}, "conv1d", 10**8, 4096, "float32")  # no table: direct


@pytest.mark.parametrize("backend", [pytest.param(b, marks=marks_for(b)) for b in BACKENDS])
def test_sums_shorter_than_min_sum_stay_direct(backend, fft_everywhere):
    rng = np.random.default_rng()
    x, w = rng.standard_normal(200), rng.standard_normal(fft_choice.MIN_SUM - 1)
    kernels.get("conv1d", backend, "auto", **SMALL[backend])(x, w)
    assert not fft_everywhere


@pytest.mark.parametrize("backend, scale", params([(s,) for s in ("subnormal_x", "subnormal_both", "huge_x")]))
def test_scaling_survives_subnormal_and_extreme_float64_inputs(backend, scale, fft_everywhere):
    """Inputs whose largest |value| is subnormal (2**1074 does not exist as a float) or near the top of the
    range: auto answers as the reference does, whichever path the rule takes."""
    rng = np.random.default_rng()
    x, w = rng.standard_normal(300), rng.standard_normal(40)
    if scale == "subnormal_x":
        x *= 1e-310
    elif scale == "subnormal_both":
        x, w = x * 1e-310, w * 1e-309
    else:
        x *= 1e300
    got = kernels.get("conv1d", backend, "auto", **SMALL[backend])(x, w)
    assert np.all(np.isfinite(compare.to_host(got)))
    verdict = compare.check("conv1d", got, (x, w), method="auto")
    assert verdict.ok, verdict
