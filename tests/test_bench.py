"""The benchmark harness on tiny sweeps: timers, results files, plots. No speed is asserted."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest

from kernels.spec import OPS
from plots.bench import analysis, plan, results, runner, sessions, timing
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
    """CPU stand-in for CUDA events: record() is a timestamp, flush() and hold() are counted."""

    name = "fake"
    library = "fake"
    flush_seconds = 0.0

    def __init__(self):
        self.flushes, self.holds, self.log = 0, [], []

    def record(self):
        self.log.append("record")
        return time.perf_counter()

    def elapsed(self, a, b):
        return b - a

    def synchronize(self):
        pass

    def flush(self):
        self.flushes += 1
        self.log.append("flush")

    def hold(self, seconds):
        self.holds.append(seconds)
        self.log.append("hold")
        return True


def test_gpu_timer_flushes_before_every_timed_call_behind_a_hold():
    clock, calls = FakeClock(), []
    t = timing.time_gpu(lambda: calls.append(time.sleep(0.001)), budget=0.02, min_repeats=5, clock=clock,
                        sm_clock=lambda: 1980.0)
    assert t.repeats >= 5 and t.min <= t.p20 <= t.median <= t.p80
    assert clock.flushes == t.repeats + 1 + 3  # + the one before the estimate, + the host-time estimate's
    assert len(calls) == t.repeats + 1 + 3 + 3 + 3  # warm-up, synchronous calls, host and GPU estimates
    timed = clock.log[clock.log.index("hold"):]
    assert timed[1:4] == ["flush", "record", "record"] and timed.count("flush") == t.repeats
    assert sum(clock.holds) >= 1.5 * 0.001 * t.repeats  # each batch is held longer than the host enqueues it
    assert t.call >= 0.001 and t.sm_clock_mhz == (1980.0, 1980.0) and t.host_bound is False


def test_gpu_timer_says_when_the_host_fell_behind_the_hold():
    clock, slow = FakeClock(), []

    def fn():  # fast while the host time is estimated, then slower than the hold allows for
        slow.append(None)
        time.sleep(0.02 if len(slow) > 10 else 0.0001)

    t = timing.time_gpu(fn, budget=0.001, min_repeats=5, max_repeats=5, clock=clock)
    assert t.host_bound is True


def test_rates_over_the_device_limit_are_rejected():
    limits = {"gflops": 67_000.0, "gbs": 3350.0}
    assert timing.implausible(1e-3, 1e9, 1e6, limits) is None  # 1 TFLOP/s, 1 GB/s
    assert "GFLOP/s" in timing.implausible(1e-6, 1e9, 1e3, limits)  # 1 PFLOP/s
    assert "GB/s" in timing.implausible(1e-6, 1e3, 1e8, limits)  # 100 TB/s
    assert timing.implausible(1e-9, 1e9, 1e9, {}) is None  # no limits known: nothing rejected


# --- analysis -----------------------------------------------------------------------------------------

def test_crossover_is_where_fft_wins_from_then_on():
    ks = [1, 3, 7, 15, 31]
    direct = {k: float(k) for k in ks}
    fft = {1: 4.0, 3: 2.0, 7: 8.0, 15: 10.0, 31: 12.0}  # wins at 3 by chance, for good from 15
    k_star, first = analysis.crossover_k(ks, direct, fft)
    assert first == 15 and 7 < k_star < 15
    assert analysis.crossover_k(ks, direct, {k: 100.0 for k in ks}) == (None, None)
    assert analysis.crossover_k(ks, direct, {k: 0.1 for k in ks}) == (1.0, 1)
    described = analysis.Crossover("x", 10**6, *analysis.crossover_k(ks, direct, fft), "d", "f", tuple(ks)).describe()
    assert described == "FFT wins from k=15 on: 7 < k* <= 15"  # an interval of measured k, no invented digits


def test_estimates_scale_with_n_and_k():
    est = plan.Estimates()
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
    candidates, _ = plan.discover("conv1d", "cpu")
    labels = {c.label for c in candidates}
    assert {"numba_cpu:naive", "numba_cpu:parallel", "numpy.correlate"} <= labels
    for c in candidates:
        if c.kind == "kernel":
            import kernels

            assert kernels.status(c.backend).state == "available"
    assert not any(c.label.startswith("numpy:") for c in plan.select(candidates, Grid("cpu", "float32", (10,))))


def test_bench_makes_idle_openmp_threads_sleep_unless_told(monkeypatch):
    import cpu

    monkeypatch.setattr(cpu, "USER_WAIT_POLICY", None)
    monkeypatch.setenv("OMP_WAIT_POLICY", cpu.WAIT_POLICY)  # what importing the product set
    assert cpu.WAIT_POLICY == "PASSIVE"
    assert sessions.quiet_spinning(spin=True)["omp_wait_policy"] == "ACTIVE"
    assert sessions.quiet_spinning(spin=False)["omp_wait_policy"] == "PASSIVE"
    monkeypatch.setattr(cpu, "USER_WAIT_POLICY", "ACTIVE")  # the user's choice wins
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert sessions.quiet_spinning(spin=False)["omp_wait_policy"] == "ACTIVE"


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



# --- where results and figures go; what a run says about load ------------------------------------------------

ZEN3 = {"model": "AMD EPYC", "family": "25", "model_id": "1", "usable_cores": 2, "isa": ["avx2", "fma"],
        "machine": "x86_64"}
ZEN4 = {**ZEN3, "model_id": "17", "isa": ["avx512f", "avx2", "fma"]}


def test_cpus_of_one_name_get_their_own_folder_by_isa_and_cpuid():
    from cpu import machine

    assert machine.cpu_slug(ZEN3) == "amd-epyc-avx2-f25m1-2c"
    assert machine.cpu_slug(ZEN4) == "amd-epyc-avx-512-f25m17-2c"
    assert machine.cpu_slug({**ZEN4, "model_id": "1"}) != machine.cpu_slug(ZEN3)  # same CPUID, other ISA
    assert machine.cpu_name(ZEN4) == "AMD EPYC (2 cores, AVX-512)"
    old = results.Run(Path("old.jsonl"), {"cpu": {**ZEN3, "name": "AMD EPYC (2 cores)", "slug": "amd-epyc-2c"}})
    assert old.device_slug("cpu") == "amd-epyc-avx2-f25m1-2c"  # a file recorded before the ISA joined the slug


def test_results_and_figures_go_to_folders_git_ignores():
    root = Path(__file__).resolve().parent.parent
    paths = [results.RESULTS_DIR / "x.jsonl", results.FIGURES_DIR / "cpu" / "x.png", root / ".venv310" / "x",
             root / ".venv" / "x", root / "bench-mine" / "x"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *map(str, paths)], cwd=root, capture_output=True,
                         text=True)
    assert sorted(out.stdout.split()) == sorted(map(str, paths)), out.stdout
    published = results.PUBLISHED_DIR / "results" / "x.jsonl"
    assert subprocess.run(["git", "check-ignore", "-q", "--no-index", str(published)], cwd=root).returncode == 1


def _ceiling(when, value, kind="flops", dtype="float32"):
    return {"type": "ceiling", "device": "cpu", "kind": kind, "dtype": dtype, "value": value,
            "value_median": value, "unit": "GFLOP/s", "method": "m", "when": when}


def test_a_run_whose_ceilings_moved_says_the_machine_was_loaded_and_by_how_much():
    quiet = [_ceiling("start", 200.0), _ceiling("end", 190.0)]
    assert analysis.load_note(quiet, "cpu") is None
    loaded = [_ceiling("start", 207.0), _ceiling("end", 65.0), _ceiling("start", 90, dtype="float64"),
              _ceiling("end", 92, dtype="float64")]
    note = analysis.load_note(loaded, "cpu")
    assert note.startswith("machine loaded") and "207" in note and "65" in note and "3.2x" in note
    assert analysis.load_note([_ceiling("start", 207.0)], "cpu") is None  # measured once: nothing to compare
    run = results.Run(Path("r.jsonl"), {"cpu": {**ZEN3, "name": "n", "slug": "s"}}, ceilings=loaded)
    assert any("Machine loaded" in line for line in analysis.summary(run, "cpu"))


def test_the_fft_variant_is_drawn_as_the_direct_kernel_below_min_sum_taps():
    from kernels.fft_choice import MIN_SUM
    from plots.draw import measured

    rows = [{"impl": i, "kind": kind, "method": m, "family": "numba_cpu", "n": 1000, "k": k,
             "timing": {"median": 1.0}} for i, kind, m in (("numba_cpu:fft", "kernel", "fft"),
                                                           ("scipy.correlate[fft]", "baseline", "fft"))
            for k in (MIN_SUM - 1, MIN_SUM)]
    table = analysis.Table(None, "cpu", "conv1d", "float32", rows)
    assert measured.runs_direct(table, "numba_cpu:fft", 1000, MIN_SUM - 1)
    assert not measured.runs_direct(table, "numba_cpu:fft", 1000, MIN_SUM)
    assert not measured.runs_direct(table, "scipy.correlate[fft]", 1000, 3)  # a baseline's FFT is always one
    wg = analysis.Table(None, "cpu", "conv1d_weight_grad", "float32", rows)
    assert measured.runs_direct(wg, "numba_cpu:fft", 40, 10)  # 31 terms per sum: n - k + 1 < MIN_SUM


def test_an_fft_variant_running_its_direct_kernel_is_no_fft_win_in_the_crossover():
    from kernels.fft_choice import MIN_SUM

    ks, big = (3, MIN_SUM - 1, 4 * MIN_SUM), 4 * MIN_SUM
    times = {"numba_cpu:blocked": {3: 1.0, MIN_SUM - 1: 2.0, big: 8.0},
             "numba_cpu:fft": {3: 0.9, MIN_SUM - 1: 1.9, big: 4.0}}  # direct below MIN_SUM: a hair faster
    rows = [{"impl": i, "kind": "kernel", "method": "fft" if i.endswith("fft") else "direct", "family": "numba_cpu",
             "n": 10**5, "k": k, "timing": {"median": times[i][k]}} for i in times for k in ks]
    (c, *_), = [analysis.crossovers(analysis.Table(None, "cpu", "conv1d", "float32", rows), 10**5)]
    assert (c.first_k, c.last_direct) == (big, MIN_SUM - 1), c  # not "FFT wins at every k measured"


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
    PRESETS["layer-ladder"], name="tiny-layer", budget=0.003, min_repeats=2, ceilings=TINY.ceilings,
    grids=tuple(dataclasses.replace(g, shapes=(dict(N=2, C_in=3, C_out=4, L=50, K=3, padding=1),
                                               dict(N=1, C_in=2, C_out=2, L=300, K=7, padding=3)))
                for g in PRESETS["layer-ladder"].grids))


def test_layer_preset_is_the_ladder_without_its_middle_rungs():
    from plots.bench.sweeps import LADDER_ONLY

    full, short = PRESETS["layer-ladder"], PRESETS["layer"]
    assert [g.shapes for g in short.grids] == [g.shapes for g in full.grids]
    cpu = [g for g in short.grids if g.device == "cpu"]
    assert cpu and all(set(LADDER_ONLY) <= set(g.exclude) for g in cpu)
    assert not any(set(LADDER_ONLY) & set(g.exclude) for g in full.grids)


def test_layer_preset_covers_the_named_shapes():
    from plots.bench.sweeps import LAYER_SHAPES

    cpu = PRESETS["layer"].grids[0]
    assert cpu.device == "cpu" and cpu.dtype == "float32" and cpu.shapes == LAYER_SHAPES
    assert set(cpu.ops) == {"conv1d_layer", "conv1d_layer_backward"} and cpu.points() == []
    assert {s["K"] for s in LAYER_SHAPES if s["L"] == 4096 and (s["C_in"], s["C_out"]) == (64, 128)} == {3, 7, 31}
    assert any(s.get("dilation", 1) == 2 and s["C_in"] == 64 for s in LAYER_SHAPES)  # dilated at 64 channels
    assert any(s.get("stride", 1) > 1 and s["K"] == 9 for s in LAYER_SHAPES)  # strided with a 9-tap filter
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


# --- one run loop: no import cycle, skips, selection errors before any measurement --------------------

def _project_imports(path: Path, module: str) -> set[str]:
    """Every project module `module` (at `path`) imports, at top level or inside functions."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and not ((ROOT / name.replace(".", "/")).with_suffix(".py").exists()
                                or (ROOT / name.replace(".", "/") / "__init__.py").exists()):
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def test_plots_modules_import_one_way_without_cycles():
    modules = {}
    for path in sorted((ROOT / "plots").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {m: {i for i in _project_imports(p, m) if i in modules} for m, p in modules.items()}
    assert "plots.bench.runner" in graph["plots.bench.cli"]  # the walk sees imports inside functions
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for nxt in sorted(graph[m]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
    for path in sorted((ROOT / "kernels").rglob("*.py")):  # the contract never imports the harness
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        assert not any(i.startswith("plots") for i in _project_imports(path, name)), name


def test_a_call_slower_than_max_call_is_timed_once_and_marked(tmp_path):
    """Measured over max_call: timed with one repeat and marked, not dropped; the next point, estimated over
    it from this one, is skipped without a call."""
    preset = dataclasses.replace(TINY, max_call=1e-12, grids=(
        Grid("cpu", "float32", (64, 300), (3,), ops=("conv1d",), include=("numpy.correlate",)),))
    run = results.load(runner.run(preset, directory=tmp_path, progress=False, spin=True, log=io.StringIO()))
    assert [r["n"] for r in run.rows] == [64, 300]
    first, second = run.rows
    assert first["status"] == "ok" and first["over_max_call"] and first["timing"]["repeats"] == 1, first
    assert first["reason"].startswith("timed once: a call took") and first["check"]["ok"]
    assert second["status"] == "skipped" and second["reason"].startswith("estimated")  # from the first


def _bench_args(*argv):
    from plots.bench import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_bench_exclude_adds_to_each_grids_own_exclusions():
    from plots.bench import cli

    preset = cli.build_preset(_bench_args("--preset", "layer", "--exclude", "torch.*"))
    own = {g.device: set(g.exclude) for g in PRESETS["layer"].grids}
    for grid in preset.grids:
        assert set(grid.exclude) == own[grid.device] | {"torch.*"}
    cpu = preset.grids[0]
    labels = {c.label for c in plan.select(plan.discover("conv1d_layer", "cpu")[0], cpu)}
    assert "numba_cpu:direct" in labels
    assert not labels & {"numba_cpu:naive", "numpy:reference", "torch.conv1d"}
    candidates, _ = plan.discover("conv1d", "cpu")  # a label with brackets selects itself, not a character class
    grid = Grid("cpu", "float32", (10,), include=("scipy.correlate[fft]",), exclude=("numba_cpu:[a-z]*",))
    assert [c.label for c in plan.select(candidates, grid)] == ["scipy.correlate[fft]"]


@pytest.fixture
def no_measuring(monkeypatch):
    """Make any measurement (ceilings, the results file) fail the test."""
    from plots.bench import ceilings

    def measured(*args, **kwargs):
        raise AssertionError("measured before the selection was checked")
    monkeypatch.setattr(ceilings, "cpu", measured)
    monkeypatch.setattr(runner, "start", measured)


@pytest.mark.parametrize("argv, message", [
    (["--op", "nosuch"], "--op: unknown op 'nosuch'"),
    (["--include", "nosuch:*"], "no implementation matches"),
    (["--n", "10", "--k", "100"], "no point with k <= n"),
    (["--preset", "layer", "--op", "conv1d"], "does not run on the layer grids"),
])
def test_bench_rejects_a_selection_that_measures_nothing(argv, message, no_measuring, tmp_path, capsys):
    from plots.__main__ import main

    assert main(["bench", *argv, "--no-progress", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--budget", "-1"], ["--max-call", "-1"], ["--budget", "nan"],
                                  ["--max-call", "0"], ["--n", "0"], ["--k", "1.5"]])
def test_bench_rejects_bad_numbers_with_exit_code_2(argv, no_measuring, capsys):
    from plots.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["bench", *argv])
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_run_refuses_a_preset_that_measures_nothing(no_measuring, tmp_path):
    preset = TINY.with_grids(include=("nosuch:*",))
    with pytest.raises(ValueError, match="nothing to measure"):
        runner.run(preset, directory=tmp_path, progress=False, log=io.StringIO())


def test_kernels_bench_alias_passes_the_exit_code_through():
    result = subprocess.run([sys.executable, "-m", "kernels", "bench", "--op", "nosuch"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "unknown op 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr


# --- count: arithmetic only ----------------------------------------------------------------------------

def test_count_of_a_huge_layer_is_arithmetic_and_fast(capsys):
    from kernels.cli import main

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        rc = main(["count", "conv1d", "--input", "100000", "100000", "100000000", "--out-channels", "100000",
                   "--kernel", "3"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 0 and time.perf_counter() - t0 < 5 and peak < 10 << 20
    out = capsys.readouterr().out
    assert "(100000, 100000, 99999998)" in out and "299,999,994,000,000,000,000,000" in out


def test_tap_counts_match_a_brute_force_count():
    from kernels import layer_counts

    rng = np.random.default_rng()
    checked = 0
    for _ in range(3000):
        L, K, s, p, d = (int(v) for v in rng.integers((1, 1, 1, 0, 1), (60, 14, 8, 20, 10)))
        if d * (K - 1) + 1 > L + 2 * p:
            continue
        lo = layer_counts.output_length(L, K, s, p, d)
        index = np.arange(lo)[:, None] * s + np.arange(K)[None, :] * d - p  # input index of tap t at l
        real = ((index >= 0) & (index < L)).sum(axis=1)
        assert layer_counts.tap_counts(L, K, s, p, d) == (lo, int(real.sum()), int(np.count_nonzero(real))), \
            (L, K, s, p, d)
        checked += 1
    assert checked > 1000


# --- timers, baselines, draws, tune --------------------------------------------------------------------

def test_round_robin_timer_times_every_call_alike():
    calls = {"a": 0, "b": 0}

    def make(name, seconds):
        def fn():
            calls[name] += 1
            time.sleep(seconds)
        return fn

    t = timing.time_race({"a": make("a", 0.001), "b": make("b", 0.003)}, budget=0.05, min_rounds=3)
    assert set(t) == {"a", "b"} and t["a"].repeats == t["b"].repeats >= 3
    assert calls["a"] == calls["b"] == 1 + 2 * t["a"].repeats  # warm-up, then untimed + timed per round
    assert t["a"].min < t["b"].min and t["b"].min >= 0.003


def test_baselines_table_keeps_every_name_and_agrees_with_the_reference():
    from kernels import compare
    from plots.bench import baselines as bl

    names = {(b.op, b.name) for b in bl.BASELINES}
    for op in ("conv1d", "conv1d_weight_grad"):
        assert {n for o, n in names if o == op} == {
            "numpy.correlate", "scipy.correlate[direct]", "scipy.correlate[fft]", "scipy.oaconvolve",
            "torch.conv1d", "torch.conv1d[cuda]", "torch.conv1d[cuda,tf32]", "cupyx.correlate[direct]",
            "cupyx.correlate[fft]", "cupyx.fftconvolve"}
    for op in ("conv1d_layer", "conv1d_layer_backward"):
        assert {n for o, n in names if o == op} == {"torch.conv1d", "torch.conv1d[cuda]", "torch.conv1d[cuda,tf32]"}
    assert len(names) == len(bl.BASELINES)
    assert not bl.for_op("conv1d", "gpu", "float64") or all(
        b.name != "torch.conv1d[cuda,tf32]" for b in bl.for_op("conv1d", "gpu", "float64"))
    rng = np.random.default_rng()
    for op in ("conv1d", "conv1d_weight_grad"):
        args, _ = OPS[op].make_args(rng, np.dtype("float64"), n=500, k=21)
        for b in bl.for_op(op, "cpu"):
            if b.arrays == "numpy":
                verdict = compare.check(op, b.fn(*args), args, method=b.method)
                assert verdict.ok, (op, b.name, verdict.detail)


def test_gpu_pools_are_released_only_where_imported(monkeypatch):
    from plots.bench import baselines as bl

    assert sessions.release_gpu_pools() == [] or bl.gpu_present()
    freed = []
    pool = types.SimpleNamespace(free_all_blocks=lambda: freed.append("pool"))
    plans = types.SimpleNamespace(clear=lambda: freed.append("plans"))
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(
        synchronize=lambda: None)), get_default_memory_pool=lambda: pool, get_default_pinned_memory_pool=lambda: pool,
        fft=types.SimpleNamespace(config=types.SimpleNamespace(get_plan_cache=lambda: plans)))
    torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True, synchronize=lambda: None,
                                                             empty_cache=lambda: freed.append("torch")),
                                  backends=types.SimpleNamespace(cuda=types.SimpleNamespace(cufft_plan_cache=plans)))
    monkeypatch.setattr(bl, "gpu_present", lambda: True)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.delitem(sys.modules, "numba.cuda", raising=False)
    assert sessions.release_gpu_pools() == ["cupy", "torch"]
    assert freed == ["plans", "pool", "pool", "plans", "torch"]  # cuFFT plans too, before the pools
    monkeypatch.delitem(sys.modules, "cupy")
    monkeypatch.delitem(sys.modules, "torch")
    assert sessions.release_gpu_pools() == []


def test_every_registered_implementation_gets_its_own_shade_of_its_family_hue():
    """Colours are derived, no table: a new variant or baseline gets one without an edit."""
    import matplotlib

    from plots import draw
    from plots.bench import baselines as bl
    from plots.bench import runner

    ladders = runner.ladders()
    labels = {b.name for b in bl.BASELINES} | {f"{b}:{v}" for b, vs in ladders.items() for v in vs}
    labels |= {"numba_cpu:mine", "cupy:my_step"}  # a kernel of yours, a step not yet in any results
    palette = draw.Palette(labels, ladders)
    colours = [palette(label) for label in labels]
    assert len(set(colours)) == len(labels) and "black" not in colours
    for label in labels:
        hue = matplotlib.colormaps[draw.HUES.get(draw.family(label), draw.OTHER_HUE)]
        shades = {matplotlib.colors.to_hex(hue(x)) for x in np.linspace(*draw.SHADES, 1001)}
        rgb = matplotlib.colors.to_rgb(palette(label))
        assert min(sum((u - v) ** 2 for u, v in zip(rgb, matplotlib.colors.to_rgb(s))) for s in shades) < 1e-3
    later = [palette(f"cupy:{v}") for v in ladders["cupy"]]  # the ladder darkens step by step
    assert [sum(matplotlib.colors.to_rgb(c)) for c in later] == sorted(
        (sum(matplotlib.colors.to_rgb(c)) for c in later), reverse=True)


def test_draw_removes_what_an_earlier_draw_left_and_quotes_the_measured_k(tiny_run, tmp_path):
    from plots import draw

    _, run = tiny_run
    run = dataclasses.replace(run, rows=[r for r in run.rows if r["dtype"] == "float32"])
    folder = tmp_path / run.device_slug("cpu")
    folder.mkdir()
    stale = [folder / "conv1d-float64-roofline.png", folder / "conv1d-float64-speedup.csv"]
    others = [folder / "layer-summary.md", folder / "conv1d_layer-float32-layer_gflops.png", folder / "notes.txt"]
    for p in stale + others:
        p.write_text("from an earlier draw")
    written = draw.draw_run(run, "cpu", tmp_path)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)  # a layer draw's files and files the drawer does not own stay
    assert all(p.exists() for p in written)
    summary = (folder / "summary.md").read_text()
    assert "| implementation | k=1 | k=3 | k=31 |" in summary  # TINY's k, not a fixed list


def test_tune_writes_the_crossover_table_atomically(tmp_path):
    """The one writer of crossover tables (plots.bench.tune and plots.model.crossover both call it)."""
    from kernels import fft_choice

    path = tmp_path / "crossover.json"
    table = json.loads((ROOT / "cpu" / "crossover.json").read_text())
    fft_choice.write_table(table, path)
    assert json.loads(path.read_text()) == table
    with pytest.raises(TypeError):
        fft_choice.write_table({**table, "raw": object()}, path)  # valid, but fails halfway through the dump
    assert json.loads(path.read_text()) == table  # the old table is intact
    assert [p.name for p in tmp_path.iterdir()] == ["crossover.json"]  # no temporary file left


def test_fp32_torch_baseline_switches_tf32_off_and_the_tf32_one_on():
    torch = pytest.importorskip("torch")
    from plots.bench import baselines as bl

    x, w = torch.randn(64, dtype=torch.float32), torch.randn(5, dtype=torch.float32)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for name, allow in (("torch.conv1d[cuda]", False), ("torch.conv1d[cuda,tf32]", True)):
            b = next(b for b in bl.for_op("conv1d", "gpu") if b.name == name)
            bl._torch()
            got = b.fn(x, w)  # CPU tensors: only the switches are under test here
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (allow, allow)
            np.testing.assert_allclose(got.numpy(), np.correlate(x.numpy(), w.numpy(), "valid"), rtol=1e-5,
                                       atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
