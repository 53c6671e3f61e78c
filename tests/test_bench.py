"""The benchmark harness on tiny sweeps: timers, results files, plots. No speed is asserted."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kernels.spec import OPS
from plots.bench import analysis, results, runner, timing
from plots.bench.sweeps import PRESETS, CeilingSizes, Grid, Preset

ROOT = Path(__file__).resolve().parent.parent
TINY = Preset("tiny", "test sweep", budget=0.003, min_repeats=2,
              grids=(Grid("cpu", "float32", (64, 300), (1, 3, 31),
                          include=("numba_cpu:*", "numpy.correlate", "scipy.*")),
                     Grid("cpu", "float64", (300,), (3, 31), ops=("conv1d",),
                          include=("numba_cpu:parallel", "numpy.correlate"))),
              ceilings=CeilingSizes(matmul_n=64, copy_bytes=1 << 20, cache_copy_bytes=1 << 18, budget=0.003))


# --- timers -----------------------------------------------------------------------------------------

def test_cpu_timer_reports_ordered_quantiles_of_the_call():
    t = timing.time_cpu(lambda: time.sleep(0.002), budget=0.03, min_repeats=3)
    assert t.repeats >= 3 and t.total >= 0.03
    assert t.min <= t.p20 <= t.median <= t.p80
    assert 0.0019 < t.median < 0.05  # a sleep of 2 ms, on a loaded machine


def test_cpu_timer_excludes_the_warm_up_call():
    calls = []

    def fn():
        time.sleep(0.3 if not calls else 0.0)  # the first call "compiles"
        calls.append(1)

    t = timing.time_cpu(fn, budget=0.01)
    assert t.median < 0.1 and len(calls) == t.repeats + 1


def test_cpu_timer_makes_min_repeats_even_past_the_budget():
    t = timing.time_cpu(lambda: time.sleep(0.01), budget=0.001, min_repeats=4, warmup=False)
    assert t.repeats == 4


class FakeClock:
    """CPU stand-in for CUDA events: record() is a timestamp, flush() is counted."""

    name = "fake"
    library = "fake"
    flush_seconds = 0.0

    def __init__(self):
        self.flushes = 0

    def record(self):
        return time.perf_counter()

    def elapsed(self, a, b):
        return b - a

    def synchronize(self):
        pass

    def flush(self):
        self.flushes += 1


def test_gpu_timer_flushes_before_every_timed_call():
    clock, calls = FakeClock(), []
    t = timing.time_gpu(lambda: calls.append(time.sleep(0.001)), budget=0.02, min_repeats=5, clock=clock)
    assert t.repeats >= 5 and t.min <= t.p20 <= t.median <= t.p80
    assert clock.flushes == t.repeats + 1  # + the one before the estimate
    assert len(calls) == t.repeats + 1 + 3  # warm-up + 3 estimate calls


# --- analysis -----------------------------------------------------------------------------------------

def test_crossover_is_where_fft_wins_from_then_on():
    ks = [1, 3, 7, 15, 31]
    direct = {k: float(k) for k in ks}
    fft = {1: 4.0, 3: 2.0, 7: 8.0, 15: 10.0, 31: 12.0}  # wins at 3 by chance, for good from 15
    k_star, first = analysis.crossover_k(ks, direct, fft)
    assert first == 15 and 7 < k_star < 15
    assert analysis.crossover_k(ks, direct, {k: 100.0 for k in ks}) == (None, None)
    assert analysis.crossover_k(ks, direct, {k: 0.1 for k in ks}) == (1.0, 1)


def test_estimates_scale_with_n_and_k():
    est = runner.Estimates()
    est.add(("g",), 1000, 3, 0.01)
    assert est.predict(("g",), 10000, 3, [1000, 10000], [3, 31]) == pytest.approx(0.1)
    assert est.predict(("g",), 1000, 31, [1000, 10000], [3, 31]) == pytest.approx(0.01 * 31 / 3)
    assert est.predict(("h",), 10000, 3, [1000, 10000], [3, 31]) is None
    est.add(("g",), 1000, 31, 0.1)
    assert est.predict(("g",), 10000, 31, [1000, 10000], [3, 31], "fft") == pytest.approx(1.0)  # max


def test_presets_are_well_formed():
    for preset in PRESETS.values():
        for grid in preset.grids:
            assert set(grid.ops) <= set(OPS) and grid.device in ("cpu", "gpu")
            assert all(k <= n for _, n, k in grid.points())
    quick = PRESETS["quick"].grids[0]
    assert quick.device == "cpu" and quick.dtype == "float32" and max(quick.ns) == 10**6


def test_discovery_times_only_what_runs_for_real():
    impls, _ = runner.discover("conv1d", "cpu")
    labels = {i.label for i in impls}
    assert {"numba_cpu:naive", "numba_cpu:parallel", "numpy.correlate"} <= labels
    for i in impls:
        if i.kind == "kernel":
            import kernels

            assert kernels.status(i.backend).state == "available"
    assert not any(i.label.startswith("numpy:") for i in runner.select(impls, Grid("cpu", "float32", (10,))))


def test_bench_makes_idle_openmp_threads_sleep_unless_told(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert runner.quiet_spinning(spin=True)["omp_wait_policy"].startswith("runtime default")
    assert runner.quiet_spinning(spin=False)["omp_wait_policy"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice wins
    assert runner.quiet_spinning(spin=False)["omp_wait_policy"] == "ACTIVE"


def test_results_file_names_are_never_reused(tmp_path):
    first = results.unique_path(tmp_path, "run")
    first.write_text("{}")
    second = results.unique_path(tmp_path, "run")
    assert second != first and not second.exists()


# --- a tiny sweep, then its plots ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("results")
    path = runner.run(TINY, directory=directory, progress=False, spin=True, log=io.StringIO())
    return path, results.load(path)


def test_results_file_carries_metadata(tiny_run):
    path, run = tiny_run
    first = json.loads(path.read_text().splitlines()[0])
    assert first["type"] == "meta"
    for key in ("date", "cpu", "versions", "threads", "git", "preset", "out_preallocated", "budget_s",
                "timer"):
        assert key in first, key
    assert first["cpu"]["name"] and first["cpu"]["usable_cores"] >= 1
    assert first["versions"]["numpy"] and first["threads"]["numba_threads"] >= 1
    assert not list((path.parent / "tmp").glob("*.partial")), "temporary file left behind"


def test_results_have_ceilings_and_checked_rows(tiny_run):
    _, run = tiny_run
    kinds = {(c["kind"], c.get("dtype") or c.get("level")) for c in run.ceilings}
    assert kinds == {("flops", "float32"), ("flops", "float64"), ("bandwidth", "dram"),
                     ("bandwidth", "cache")}
    assert all(c["value"] > 0 for c in run.ceilings)
    bad = [r for r in run.rows if r["status"] != "ok"]
    assert run.rows and not bad, bad
    for r in run.rows:
        p, _ = OPS[r["op"]].parse(*OPS[r["op"]].make_args(np.random.default_rng(0), np.dtype(r["dtype"]),
                                                         n=r["n"], k=r["k"])[0])
        assert (r["flops"], r["min_bytes"]) == (OPS[r["op"]].flops(p), OPS[r["op"]].min_bytes(p))
        assert r["check"]["ok"] and r["timing"]["repeats"] >= 2
        assert r["out_preallocated"] is (r["kind"] == "kernel")
    assert {r["impl"] for r in run.rows} >= {"numba_cpu:parallel", "numpy.correlate", "scipy.correlate[fft]"}


def test_plots_are_written_for_both_ops(tiny_run, tmp_path):
    from plots import draw

    _, run = tiny_run
    run = dataclasses.replace(run, rows=[r for r in run.rows if r["dtype"] == "float32"])  # fewer figures
    written = draw.draw_run(run, "cpu", tmp_path)
    folder = tmp_path / run.device_slug("cpu")
    for op in ("conv1d", "conv1d_weight_grad"):
        for kind in draw.KINDS:
            for ext in ("png", "csv"):
                assert (folder / f"{op}-float32-{kind}.{ext}").stat().st_size > 0, (op, kind, ext)
    assert (folder / "summary.md") in written and "crossover" in (folder / "summary.md").read_text()


def test_cli_lists_the_sweep():
    result = subprocess.run([sys.executable, "-m", "kernels", "bench", "--list", "--n", "1e3", "--k", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "numba_cpu:parallel" in result.stdout and "numpy.correlate" in result.stdout


def test_isolated_worker_runs_torch_baselines_in_a_child_process():
    pytest.importorskip("torch")
    from plots.bench.isolated import Worker

    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(200).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    worker = Worker()
    try:
        got, seconds = worker.call("torch.conv1d", "conv1d", (x, w))
        np.testing.assert_allclose(got, np.correlate(x, w, "valid"), rtol=1e-5, atol=1e-5)
        t = worker.time(0.005, 2)
        assert t["repeats"] >= 2 and t["p20"] <= t["median"] <= t["p80"] and seconds > 0
        assert worker.info["torch_threads"] >= 1
    finally:
        worker.close()


# --- the layer preset: shapes instead of (n, k) ---------------------------------------------------------

TINY_LAYER = dataclasses.replace(
    PRESETS["layer"], name="tiny-layer", budget=0.003, min_repeats=2, ceilings=TINY.ceilings,
    grids=tuple(dataclasses.replace(g, shapes=(dict(N=2, C_in=3, C_out=4, L=50, K=3, padding=1),
                                               dict(N=1, C_in=2, C_out=2, L=300, K=7, padding=3)))
                for g in PRESETS["layer"].grids))


def test_layer_preset_covers_the_issue_shapes():
    from plots.bench.sweeps import LAYER_SHAPES

    cpu = PRESETS["layer"].grids[0]
    assert cpu.device == "cpu" and cpu.dtype == "float32" and cpu.shapes == LAYER_SHAPES
    assert set(cpu.ops) == {"conv1d_layer", "conv1d_layer_backward"} and cpu.points() == []
    assert {s["K"] for s in LAYER_SHAPES if s["L"] == 4096} == {3, 7, 31}
    # "same" padding of the dilated filter, except the causal shape (padding K - 1, the tail cropped by the caller)
    causal = [s for s in LAYER_SHAPES if s["padding"] == s["K"] - 1 and s.get("groups", 1) == s["C_in"]]
    assert len(causal) == 1
    assert all(s["padding"] == s.get("dilation", 1) * (s["K"] - 1) // 2 for s in LAYER_SHAPES if s not in causal)


def test_layer_run_writes_results_and_the_grouped_bar_plot(tmp_path):
    from plots import draw
    from plots.bench import layer

    path = runner.run(TINY_LAYER, directory=tmp_path / "results", progress=False, spin=True, log=io.StringIO())
    run = results.load(path)
    for key in ("date", "cpu", "versions", "threads", "git", "preset", "out_preallocated", "budget_s", "timer"):
        assert key in run.meta, key
    assert run.meta["preset"] == "tiny-layer" and run.ceilings
    bad = [r for r in run.rows if r["status"] != "ok"]
    assert run.rows and not bad, bad
    assert {r["op"] for r in run.rows} == {"conv1d_layer", "conv1d_layer_backward"}
    assert {"numba_cpu:direct", "numba_cpu:im2col"} <= {r["impl"] for r in run.rows}
    assert "numba_cpu:naive" not in {r["impl"] for r in run.rows}
    for r in run.rows:
        args, kwargs = OPS[r["op"]].make_args(np.random.default_rng(0), np.dtype("float32"), **r["layer"])
        assert r["flops"] == OPS[r["op"]].flops(OPS[r["op"]].parse(*args, **kwargs)[0])
        assert r["check"]["ok"] and r["timing"]["repeats"] >= 2
    if importlib.util.find_spec("torch"):
        assert {"torch.conv1d"} <= {r["impl"] for r in run.rows}
        assert all(r["speedup"] > 0 for r in layer.ratios(run))
    written = draw.draw_run(run, "cpu", tmp_path / "plots")
    folder = tmp_path / "plots" / run.device_slug("cpu")
    for op in ("conv1d_layer", "conv1d_layer_backward"):
        for ext in ("png", "csv"):
            assert (folder / f"{op}-float32-layer_gflops.{ext}").stat().st_size > 0, (op, ext)
    assert (folder / "layer-summary.md") in written
    # a layer run does not hide the newest 1-D run of the same device from `python -m plots`
    assert any("shape" in r for run_, _ in results.newest_per_device(tmp_path / "results") for r in run_.rows)
