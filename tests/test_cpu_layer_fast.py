"""The BLAS and register-blocked layer variants of numba_cpu (`cpu/layer_gemm.py`, `cpu/layer_packed.py`,
`cpu/layer_blocked.py`): gemm, gemm_folded, gemm_packed, gemm_numpy, blocked and auto (`cpu/layer_auto.py`),
against the float64 reference on random configurations (stride, padding, dilation, groups, bias, both dtypes,
out= given), plus determinism of dw, the BLAS wrapper's beta = 0 and auto's choice of the nearest measured shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import DTYPES

import cpu.numba_cpu  # noqa: F401  (registers the numba_cpu variants, cpu.layer_gemm among them)
import kernels
from cpu import layer_auto, layer_gemm, machine
from kernels.layer import LayerProblem
from kernels.spec import OPS

FORWARD, BACKWARD = "conv1d_layer", "conv1d_layer_backward"
VARIANTS = ("gemm", "gemm_folded", "gemm_packed", "gemm_numpy", "blocked", "auto")
CONFIGS = 12  # random configurations per (variant, dtype)


def random_config(rng):
    """make_args keywords of a random small layer: any stride, padding, dilation, groups, bias."""
    while True:
        groups = int(rng.choice([1, 1, 2, 3, 4]))
        c = dict(N=int(rng.integers(1, 4)), C_in=groups * int(rng.integers(1, 6)),
                 C_out=groups * int(rng.integers(1, 6)), L=int(rng.integers(1, 60)), K=int(rng.integers(1, 7)),
                 stride=int(rng.integers(1, 5)), padding=int(rng.integers(0, 5)), dilation=int(rng.integers(1, 4)),
                 groups=groups, bias=bool(rng.integers(0, 2)))
        if c["dilation"] * (c["K"] - 1) + 1 <= c["L"] + 2 * c["padding"]:
            return c


def _problem(op, args, kwargs):
    return OPS[op].parse(*args, **kwargs)[0]


def _routes_to_direct_with_padded_stride(variant, p):
    """auto would run the direct backward at stride >= 2 with padding, whose own tests cover it."""
    return variant == "auto" and layer_auto.choose(p, "backward") == "direct" and p.stride >= 2 and p.padding > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_random_layers_match_reference(variant, dtype, rng):
    fwd, bwd = kernels.get(FORWARD, "numba_cpu", variant), kernels.get(BACKWARD, "numba_cpu", variant)
    for _ in range(CONFIGS):
        c = random_config(rng)
        args, kwargs = OPS[FORWARD].make_args(rng, dtype, **c)
        print(c)
        kernels.assert_close(FORWARD, fwd(*args, **kwargs), args, kwargs)
        args, kwargs = OPS[BACKWARD].make_args(rng, dtype, **c)
        if _routes_to_direct_with_padded_stride(variant, _problem(BACKWARD, args, kwargs)):
            continue
        kernels.assert_close(BACKWARD, bwd(*args, **kwargs), args, kwargs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_out_given_is_overwritten(variant, rng):
    """out= arrays prefilled with NaN: every element is written (nothing accumulates into the caller's data)."""
    c = dict(N=2, C_in=6, C_out=4, L=33, K=3, stride=2, padding=1, dilation=2, groups=2, bias=True)
    for op in (FORWARD, BACKWARD):
        args, kwargs = OPS[op].make_args(rng, np.float32, **c)
        p = _problem(op, args, kwargs)
        out = tuple(np.full(s, np.nan, np.float32) for s in OPS[op].out_shapes(p))
        got = kernels.get(op, "numba_cpu", variant)(*args, **kwargs, out=out[0] if OPS[op].single else out)
        assert (got is out[0]) if OPS[op].single else all(a is b for a, b in zip(got, out))
        kernels.assert_close(op, got, args, kwargs)


@pytest.mark.parametrize("variant,stride", (("gemm", 2), ("gemm_folded", 2), ("blocked", 1)))
def test_weight_grad_is_deterministic(variant, stride, rng):
    args, kwargs = OPS[BACKWARD].make_args(rng, np.float32, N=4, C_in=32, C_out=48, L=300, K=5, stride=stride,
                                           padding=2, dilation=1, groups=2)
    bwd = kernels.get(BACKWARD, "numba_cpu", variant)
    first = bwd(*args, **kwargs)
    for _ in range(3):
        for a, b in zip(first, bwd(*args, **kwargs)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_cblas", (True, False))
def test_gemm_with_beta_zero_ignores_c(dtype, use_cblas, rng):
    """C = op(A) @ op(B) at offsets and leading dimensions, with NaN in C beforehand (beta = 0) or not (1)."""
    if use_cblas and layer_gemm.cblas() is None:
        pytest.skip("numpy's bundled OpenBLAS (CBLAS interface) was not found: only the np.matmul path runs")
    m, n, k = 5, 7, 3
    for ta in (False, True):
        for tb in (False, True):
            A, B = rng.standard_normal(60).astype(dtype), rng.standard_normal(70).astype(dtype)
            a = A[2:2 + 15].reshape((k, m) if ta else (m, k))
            b = B[1:1 + 21].reshape((n, k) if tb else (k, n))
            want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
            for beta in (0, 1):
                C = np.full(2 + m * 9, np.nan if beta == 0 else 1.0, dtype)
                layer_gemm.gemm(ta, tb, m, n, k, A, 2, m if ta else k, B, 1, k if tb else n, beta, C, 2, 9,
                                use_cblas)
                got = C[2:2 + m * 9].reshape(m, 9)[:, :n]
                np.testing.assert_allclose(got, want + beta, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case,want", [
    (dict(N=4, C_in=512, C_out=512, L=2048, K=4, padding=3, groups=512), "direct"),  # depthwise
    (dict(N=1, C_in=2, C_out=3, L=100, K=3), "direct"),  # a tiny product per BLAS call
    (dict(N=8, C_in=64, C_out=64, L=128, K=3, padding=1), "gemm_folded"),
    (dict(N=8, C_in=256, C_out=256, L=1024, K=5, padding=2), "gemm_folded"),
    (dict(N=8, C_in=128, C_out=128, L=4096, K=7, padding=3, stride=2), "gemm_folded"),
])
def test_auto_without_a_table_routes_by_its_fallback_rule(case, want):
    keys = ("stride", "padding", "dilation", "groups")
    p = LayerProblem(case["N"], case["C_in"], case["C_out"], case["L"], case["K"], np.dtype(np.float32),
                     **{k: case[k] for k in keys if k in case})
    assert layer_auto.fallback(p) == want and layer_auto.choose(p, "forward", points=()) == want


def test_auto_takes_the_choice_of_the_nearest_measured_shape():
    def point(N, C, L, K, forward, backward, stride=1):
        p = LayerProblem(N, C, C, L, K, np.dtype(np.float32), stride=stride)
        return layer_auto.features(p), {"forward": forward, "backward": backward}

    points = (point(8, 64, 4096, 3, "gemm_packed", "gemm_folded"), point(4, 4, 128, 3, "direct", "direct"),
              point(8, 128, 4096, 7, "gemm_folded", "gemm_packed", stride=2))
    near_big = LayerProblem(8, 96, 96, 2048, 3, np.dtype(np.float32))
    near_small = LayerProblem(2, 8, 8, 100, 3, np.dtype(np.float32))
    strided = LayerProblem(8, 64, 64, 4096, 3, np.dtype(np.float32), stride=2)  # the kind outweighs the sizes
    assert [layer_auto.choose(near_big, s, points) for s in ("forward", "backward")] == ["gemm_packed", "gemm_folded"]
    assert layer_auto.choose(near_small, "backward", points) == "direct"
    assert layer_auto.choose(strided, "backward", points) == "gemm_packed"


def test_a_missing_or_broken_layer_table_warns_and_falls_back(tmp_path):
    (tmp_path / "bad.json").write_text('{"schema": 1, "points": [{"features": [[1], []]}]}')
    for path in (tmp_path / "missing.json", tmp_path / "bad.json"):
        with pytest.warns(RuntimeWarning, match=f"{path.name} is (missing|invalid)"):
            assert layer_auto.load(path) == ()


def test_every_committed_layer_table_is_valid_and_named_by_its_cpu():
    tables = sorted(layer_auto.FOLDER.glob("*.json"))
    assert tables, f"no table in {layer_auto.FOLDER}: write one with python -m plots.bench.tune --layer"
    for path in tables:
        assert layer_auto.load(path), path
        assert layer_auto.path_for(json.loads(path.read_text())["machine"]) == path
    assert layer_auto.load()


def test_a_cpu_reads_its_own_table_else_the_nearest(tmp_path):
    """Own table first; else the same vendor and ISA, then the same ISA, then any."""
    zen3 = {"model": "AMD EPYC", "family": "25", "model_id": "1", "usable_cores": 2, "isa": ["avx2", "fma"]}
    zen4 = {**zen3, "model_id": "17", "isa": ["avx512f", "avx2", "fma"]}
    xeon = {"model": "Intel(R) Xeon(R) Processor", "family": "6", "model_id": "167", "usable_cores": 2,
            "isa": ["avx512f", "avx2", "fma"]}
    for measured in (xeon, zen4):
        (tmp_path / layer_auto.path_for(measured).name).write_text(json.dumps({"machine": measured}))
    (tmp_path / "broken.json").write_text("{")
    order = [p.name for p in layer_auto.table_order(zen4, tmp_path)]
    assert order[:2] == [layer_auto.path_for(zen4).name, layer_auto.path_for(xeon).name]
    other_zen4 = {**zen4, "usable_cores": 4}  # another name, same vendor and ISA: the Zen 4 table, not the Xeon's
    assert layer_auto.table_order(other_zen4, tmp_path)[0].name == layer_auto.path_for(zen4).name
    epyc_avx512 = {**xeon, "model": "AMD EPYC 9R14"}  # same ISA as both, AMD: the Zen 4 table
    assert layer_auto.table_order(epyc_avx512, tmp_path)[0].name == layer_auto.path_for(zen4).name
    intel_avx2 = {**xeon, "isa": ["avx2", "fma"], "model_id": "85"}  # no AVX2 table: any, by name
    assert [p.name for p in layer_auto.table_order(intel_avx2, tmp_path)] == sorted(order)


def test_a_table_without_times_of_a_newer_variant_stays_valid(tmp_path):
    """A table written before a variant joined VARIANTS lacks its times; only the winners' names are read."""
    table = json.loads(layer_auto.table_order(machine.cpu_info())[0].read_text())
    for pt in table["points"]:
        for which in layer_auto.PASSES:
            pt[f"{which}_seconds"].pop("blocked", None)
    (tmp_path / "old.json").write_text(json.dumps(table))
    points = layer_auto.load(tmp_path / "old.json")
    assert points and all(v in layer_auto.VARIANTS for _, choice in points for v in choice.values())


@pytest.mark.parametrize("dtype", DTYPES)
def test_auto_depthwise_causal_matches_reference(dtype, rng):
    c = dict(N=2, C_in=8, C_out=8, L=50, K=4, padding=3, groups=8)
    for op in (FORWARD, BACKWARD):
        args, kwargs = OPS[op].make_args(rng, dtype, **c)
        assert layer_auto.choose(_problem(op, args, kwargs), "forward" if op == FORWARD else "backward") == "direct"
        kernels.assert_close(op, kernels.get(op, "numba_cpu", "auto")(*args, **kwargs), args, kwargs)


def test_auto_is_the_layer_default():
    for op in (FORWARD, BACKWARD):
        assert kernels.get(op, "numba_cpu").variant == "auto"


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_with_short_column_spans(dtype, rng, monkeypatch):
    """Spans of a few columns (many per row): the products of consecutive spans meet in dx and dw."""
    monkeypatch.setattr(layer_gemm, "MIN_SPAN", 3)
    monkeypatch.setattr(layer_gemm, "SPAN_BYTES", 16)
    for _ in range(CONFIGS):
        c = random_config(rng)
        for op in (FORWARD, BACKWARD):
            args, kwargs = OPS[op].make_args(rng, dtype, **c)
            p = _problem(op, args, kwargs)
            assert len(layer_gemm.column_spans(p)) == -(-p.L_out // 3)  # spans of MIN_SPAN = 3 columns
            kernels.assert_close(op, kernels.get(op, "numba_cpu", "gemm")(*args, **kwargs), args, kwargs)


@pytest.mark.parametrize("user", [None, "ACTIVE"])
def test_the_cpu_backend_makes_idle_openmp_threads_sleep_unless_the_user_chose(user):
    # numba's loops and OpenBLAS's threads take turns on the cores: a spinning idle thread costs a time slice
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": user} if user else {})
    code = "import os, kernels; kernels.get('conv1d_layer', 'numba_cpu'); print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == (user or "PASSIVE")
