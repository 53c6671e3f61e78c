"""The numba_cpu backend's own variants (cpu/blocked.py, cpu/fft.py, cpu/auto.py): the edges of the
register blocking, the threaded paths, out=, the auto dispatch and its stored crossover, and the
machine code (float32 kernels accumulate in float32, with packed FMAs)."""

import io
import json
import math
import re

import numpy as np
import pytest

import kernels
from cpu import auto, blocked, fft, loops, simd
from kernels import compare
from plots.bench import tune

DTYPES = [np.float32, np.float64]
ROW_WIDTH = {np.dtype(d): blocked.ROW * simd.LANES[np.dtype(d)] for d in DTYPES}


def _loops_correlate(x, w):
    y = np.empty(x.shape[0] - w.shape[0] + 1, x.dtype)
    zero = x.dtype.type(0)
    loops.correlate_rows(x, w, y, 0, y.shape[0], zero, zero, False)
    return y


def _rtol(dtype, length):
    return 8 * np.finfo(dtype).eps * np.sqrt(length)


def _sizes(dtype):
    """(n, k) around the row width S: outputs m = n-k+1 of S-1, S, S+1, 2S+L-1, and k on both sides
    of SHIFTS (weight gradient: dot-product form) and of S (a full row of taps)."""
    S, L = ROW_WIDTH[np.dtype(dtype)], simd.LANES[np.dtype(dtype)]
    out = []
    for m in (1, L - 1, L, L + 1, S - 1, S, S + 1, 2 * S + L - 1, 3 * S + 5):
        for k in (1, 2, blocked.SHIFTS, blocked.SHIFTS + 1, 2 * L + 3, S - 1, S + 1, 2 * S + 7):
            out.append((m + k - 1, k))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_spans_match_the_plain_loop_at_row_edges(dtype):
    """correlate_span and weight_grad_span, serial and over 1..3 spans, against loops.py."""
    rng = np.random.default_rng(0)
    for n, k in _sizes(dtype):
        x, w = rng.standard_normal(n).astype(dtype), rng.standard_normal(k).astype(dtype)
        m = n - k + 1
        g = rng.standard_normal(m).astype(dtype)
        y_ref, dw_ref = _loops_correlate(x, w), np.empty(k, dtype)
        loops.weight_grad_rows(x, g, dw_ref, 0, m, dtype(0))
        for count in (1, 2, 3):
            y, dw = np.full(m, np.nan, dtype), np.full(k, np.nan, dtype)
            blocked.correlate_parallel(x, w, y, dtype(0), dtype(0), False, count)
            blocked.weight_grad_parallel(x, g, dw, count)
            np.testing.assert_allclose(y, y_ref, rtol=_rtol(dtype, k), atol=_rtol(dtype, k) * k,
                                       err_msg=f"forward n={n} k={k} spans={count}")
            np.testing.assert_allclose(dw, dw_ref, rtol=_rtol(dtype, m), atol=_rtol(dtype, m) * m,
                                       err_msg=f"weight grad n={n} k={k} spans={count}")


@pytest.mark.parametrize("variant", ["blocked", "fft", "auto"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_written_in_place_on_the_threaded_path(variant, dtype):
    """Sizes past PARALLEL_MIN_MACS (threads) and k >= fft.MIN_SUM (FFT): out= gets the result."""
    rng = np.random.default_rng(1)
    n, k = 40_000, 200
    assert (n - k + 1) * k >= blocked.PARALLEL_MIN_MACS and k >= fft.MIN_SUM
    x, w, g = (rng.standard_normal(s).astype(dtype) for s in (n, k, n - k + 1))
    cases = {"conv1d": ((x, w), np.full(n - k + 1, np.nan, dtype)),
             "conv1d_weight_grad": ((x, g, k), np.full(k, np.nan, dtype))}
    for op, (args, out) in cases.items():
        result = kernels.get(op, "numba_cpu", variant)(*args, out=out)
        assert result is out
        compare.assert_close(op, out, args)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threaded_blocked_results_are_deterministic(dtype):
    rng = np.random.default_rng(2)
    x, g = rng.standard_normal(50_000).astype(dtype), rng.standard_normal(50_000 - 99).astype(dtype)
    f = kernels.get("conv1d_weight_grad", "numba_cpu", "blocked")
    first = f(x, g, 100)
    assert all(np.array_equal(first, f(x, g, 100)) for _ in range(3))


# --- auto and its crossover table -----------------------------------------------------------------

def _table(k_fft):
    row = {"n": [1000, 100_000], "k_fft": k_fft, "k_max": [500, 4096]}
    return {"schema": auto.SCHEMA, "ops": {op: {d: dict(row) for d in ("float32", "float64")}
                                           for op in auto.FFT_OPS}}


def test_stored_crossover_follows_the_schema():
    table = json.loads(auto.PATH.read_text())
    auto.validate(table)
    assert table["command"] == "python -m plots.bench.tune" and table["machine"]["model"]


@pytest.mark.parametrize("bad", [{"schema": 99}, _table([100]), _table([100, 5000])])
def test_validate_rejects_bad_tables(bad):
    with pytest.raises((ValueError, KeyError)):
        auto.validate(bad)


def test_crossover_interpolates_on_log_axes_and_clamps():
    table = _table([100, 1000])
    assert auto.crossover("conv1d", 1000, "float32", table) == pytest.approx(100)
    assert auto.crossover("conv1d", 10_000, "float32", table) == pytest.approx(np.sqrt(100 * 1000))
    assert auto.crossover("conv1d", 10, "float32", table) == pytest.approx(100)  # nearest end
    assert auto.crossover("conv1d", 10**7, "float32", table) == pytest.approx(1000)
    never = _table([None, None])
    assert auto.crossover("conv1d_weight_grad", 5000, "float64", never) == np.inf
    assert auto.crossover("conv1d", 5000, "float16", table) == np.inf  # no row: direct


@pytest.mark.parametrize("op", ["conv1d", "conv1d_weight_grad", "conv1d_input_grad"])
def test_auto_calls_the_side_the_table_picks(op, monkeypatch):
    """k below the stored crossover stays direct, at or above it (random inputs: the accuracy rule
    allows it) goes to the FFT (auto's one FFT entry, fft.correlate)."""
    table = _table([64, 64])
    monkeypatch.setattr(auto, "load", lambda: table)
    calls = []
    real = fft.correlate
    monkeypatch.setattr(fft, "correlate", lambda *a: (calls.append("fft"), real(*a)))
    rng = np.random.default_rng(3)
    f = kernels.get(op, "numba_cpu", "auto")
    for k, expected in ((63, []), (64, ["fft"])):
        calls.clear()
        args, kwargs = kernels.spec.OPS[op].make_args(rng, np.float64, n=5000, k=k)
        compare.assert_close(op, f(*args, **kwargs), args, kwargs)
        assert calls == expected, (k, calls)


def test_tune_interpolates_the_crossing():
    # direct 2x slower than fft at k=256 (ratio 1/2), fft 2x slower at k=64 (ratio 2): crossing at 128
    assert tune._crossover([64, 256, 1024], [1, 2, 4], [2, 1, 1], wins=2) == 128
    assert tune._crossover([32, 64], [1, 1], [2, 2], wins=0) is None
    assert tune._crossover([32, 64], [2, 2], [1, 1], wins=2) == 32


# --- the machine code ------------------------------------------------------------------------------

def _compiled(fn, dtype):
    """The signature of njit function `fn` compiled for `dtype` arrays (compiling it if needed)."""
    x = np.ones(300, dtype)
    if fn is blocked.correlate_span:
        fn(x, x[:31], np.empty(270, dtype), 0, 270, 0, 31, np.empty(ROW_WIDTH[np.dtype(dtype)], dtype))
    for sig in fn.signatures:
        if str(sig[0].dtype) == np.dtype(dtype).name:
            return sig
    raise AssertionError(f"{fn} not compiled for {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulators_keep_the_array_dtype(dtype):
    """numba's types for the row kernel: vectors of the array's dtype only (no silent float64)."""
    sig = _compiled(blocked.correlate_span, dtype)
    buf = io.StringIO()
    blocked.correlate_span.inspect_types(file=buf, signature=sig)
    text = buf.getvalue()
    other = "float64" if dtype == np.float32 else "float32"
    want = f"Vec({np.dtype(dtype).name} x {simd.LANES[np.dtype(dtype)]})"
    assert want in text
    assert f"Vec({other}" not in text
    if dtype == np.float32:
        assert "float64" not in text, [line for line in text.splitlines() if "float64" in line][:5]


@pytest.mark.skipif(not simd.llb.get_host_cpu_features().get("fma"), reason="host CPU has no FMA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_machine_code_uses_packed_fma_at_full_width(dtype):
    """The row kernel's assembly (compiled afresh: cached code has none to show): packed FMAs of the
    dtype on the widest registers, none of the other dtype."""
    import numba
    from numba import types

    nb = numba.from_dtype(np.dtype(dtype))
    arr = types.Array(nb, 1, "C")
    row = types.UniTuple(simd.Vec(nb, simd.LANES[np.dtype(dtype)]), blocked.ROW)
    fresh = numba.njit(blocked.row_sum.py_func)
    fresh.compile((arr, arr, types.int64, types.int64, types.int64, row))
    asm = fresh.inspect_asm(fresh.signatures[0])
    suffix = "ps" if dtype == np.float32 else "pd"
    reg = {64: "zmm", 32: "ymm", 16: "xmm"}[simd.REGISTER_BYTES]
    packed = re.findall(rf"vfmadd\d+{suffix}\s+[^\n]*%{reg}", asm)
    assert len(packed) >= 2 * blocked.ROW, f"{len(packed)} packed {reg} FMAs"
    other = "pd" if suffix == "ps" else "ps"
    assert not re.search(rf"vfmadd\d+{other}", asm), f"vfmadd..{other} in a {np.dtype(dtype).name} kernel"


def test_auto_follows_the_stored_crossover():
    """At every measured n, auto picks blocked just below the stored k_fft (scaled to the threads
    in use) and fft from it on."""
    table = auto.load()
    scale = auto._thread_scale(table)
    for op, dtypes in table["ops"].items():
        for dtype, row in dtypes.items():
            for n, k, top in zip(row["n"], row["k_fft"], row["k_max"], strict=True):
                if k is None:
                    assert not auto.use_fft(op, n, top, dtype)
                    continue
                k = math.ceil(k * scale - 1e-6)
                assert auto.use_fft(op, n, k, dtype) and not auto.use_fft(op, n, k - 1, dtype), (op, dtype, n)


def test_crossover_scales_with_the_thread_count():
    """Measured with twice today's threads, direct was twice as fast there: FFT from half the k."""
    import numba

    table = {**_table([100, 1000]), "machine": {"threads": 2 * numba.config.NUMBA_NUM_THREADS}}
    assert auto.use_fft("conv1d", 1000, 50, "float32", table)
    assert not auto.use_fft("conv1d", 1000, 49, "float32", table)
