"""A benchmark that cannot be fooled: timed outputs checked again, impossible rates marked, `bench FILE`
failing on a wrong kernel and honouring every flag, and results files that survive a bad record."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import compare, playground, registry
from kernels.backend import Status
from kernels.spec import OPS
from plots.bench import analysis, ceilings, measure, mine, results, runner
from plots.bench.sweeps import CeilingSizes, Grid, Preset

ROOT = Path(__file__).resolve().parent.parent
PLANTED = ROOT / "tests" / "fixtures" / "planted"
TINY = Preset("tiny", "test sweep", budget=0.003, min_repeats=2,
              grids=(Grid("cpu", "float32", (300,), (3, 31), ops=("conv1d",),
                          include=("numba_cpu:naive", "numba_cpu:blocked", "numpy.correlate")),),
              ceilings=CeilingSizes(matmul_n=64, copy_bytes=1 << 20, cache_copy_bytes=1 << 18, budget=0.003))


def bench(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "kernels", "bench", *map(str, argv)], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _args(*argv):
    from plots.bench import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *map(str, argv)])


# --- the timed calls are checked -----------------------------------------------------------------------

@pytest.mark.parametrize("fixture, reason", [  # make test: the subtlest; each is a bench in a child (~20 s)
    pytest.param("numba_lazy.py", "the second call, on other inputs, is wrong", marks=pytest.mark.exhaustive),
    ("numba_lazy_later.py", "the outputs of the timed calls are wrong"),
    pytest.param("numba_mutates_inputs.py", "the kernel wrote its input x", marks=pytest.mark.exhaustive),
])
def test_a_kernel_that_caches_its_answer_or_writes_its_inputs_fails_bench_file(fixture, reason, tmp_path):
    """Right when checked, wrong when timed (or writing its inputs): bench FILE records it wrong, draws it
    nowhere, leaves the others right, and exits 1."""
    done = bench(PLANTED / fixture, "--n", 1000, "--k", 3, "--budget", 0.01, "--no-progress", "--include",
                 "numba_cpu:[lm]*", "--include", "numpy.correlate", "--results-dir", tmp_path / "out")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert reason in done.stderr and "was wrong" in done.stderr, done.stderr[-3000:]
    (rows_file,) = (tmp_path / "out").glob("*/*.jsonl")
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    mine_rows = [r for r in rows if r.get("impl", "").startswith("numba_cpu:")]
    assert mine_rows and all(r["status"] == "wrong" for r in mine_rows), mine_rows
    others = [r for r in rows if r.get("impl") == "numpy.correlate"]
    assert others and all(r["status"] == "ok" for r in others), others


def test_timed_inputs_double_every_output_of_every_op():
    """LINEAR_IN: doubling those inputs doubles every reference output exactly (the timed calls' reference)."""
    assert set(measure.LINEAR_IN) == set(OPS)
    rng = np.random.default_rng(0)
    for op in OPS:
        for sizes in (dict(n=40, k=5), dict(N=2, C_in=4, C_out=2, L=30, K=3, stride=2, padding=1, groups=2)):
            if (OPS[op].family == "layer") != ("N" in sizes):
                continue
            args, kwargs = OPS[op].make_args(rng, np.float64, **sizes)
            scaled = measure.scaled_args(op, args)
            assert all(s is not a for s, a in zip(scaled, args) if isinstance(a, np.ndarray)), "fresh arrays"
            before = compare.reference(op, args, kwargs)[2]
            after = compare.reference(op, scaled, kwargs)[2]
            for b, a in zip(before, after):
                np.testing.assert_array_equal(a, 2 * b, err_msg=op)


def test_a_large_point_checks_the_timed_calls_against_the_warm_up(monkeypatch):
    """Where the reference is too slow, the timed outputs must equal twice the warm-up's (normwise)."""
    monkeypatch.setattr(measure, "CHECK_MAX_WORK", 10)
    rng = np.random.default_rng(1)
    args, kwargs = OPS["conv1d"].make_args(rng, np.float32, n=500, k=7)
    point = measure.PointCheck("conv1d", args, kwargs, rng)
    assert point.check_args is not None
    first = kernels.get("conv1d", "numba_cpu", "blocked")(*args)
    timed = kernels.get("conv1d", "numba_cpu", "blocked")(*point.timed_args)
    assert point.check_timed(timed, "direct", first)["ok"]
    assert not point.check_timed(first, "direct", first)["ok"], "the warm-up's answer passed for the timed one"
    nan = timed.copy()
    nan[-1] = np.nan
    assert not point.check_timed(nan, "direct", first)["ok"]


# --- impossible rates --------------------------------------------------------------------------------

def test_impossible_rates_name_the_ceiling_and_spare_baselines():
    limits = measure.Ceilings.of([{"kind": "flops", "device": "cpu", "dtype": "float32", "value": 100.0},
                                  {"kind": "bandwidth", "device": "cpu", "level": "dram", "value": 20.0},
                                  {"kind": "bandwidth", "device": "cpu", "level": "cache", "value": 60.0}])
    base = {"device": "cpu", "dtype": "float32"}
    direct = plan_candidate("kernel", "direct")
    assert limits.impossible(base, direct, 28000.0, 1.0).startswith("impossible: 2.8e+04 GFLOP/s is 280x")
    assert limits.impossible(base, direct, 399.0, 239.0) == ""  # within the margin of 4
    assert "fastest copy" in limits.impossible(base, plan_candidate("kernel", "fft"), 28000.0, 250.0)
    assert limits.impossible(base, plan_candidate("kernel", "fft"), 28000.0, 1.0) == ""  # FFT: fewer FLOPs
    assert limits.impossible(base, plan_candidate("baseline", "direct"), 28000.0, 1.0) == ""


def plan_candidate(kind, method):
    from plots.bench.plan import Candidate

    return Candidate("x:y", kind, "conv1d", "cpu", method, "x", "")


def test_a_rate_above_the_runs_ceilings_is_marked_impossible_and_never_fastest(monkeypatch, tmp_path):
    real = ceilings.cpu

    def tiny(sizes):  # ceilings that every kernel beats by far
        return [dict(c, value=c["value"] * 1e-6) for c in real(sizes)]

    monkeypatch.setattr(ceilings, "cpu", tiny)
    run = results.load(runner.run(TINY, directory=tmp_path, progress=False, spin=True, log=io.StringIO()))
    kernel_rows = [r for r in run.rows if r["kind"] == "kernel"]
    assert kernel_rows and all(r["status"] == "impossible" for r in kernel_rows), kernel_rows
    assert all(r["reason"].startswith("impossible: ") and r["timing"] for r in kernel_rows)
    assert all(r["status"] == "ok" for r in run.rows if r["kind"] == "baseline")
    (table,) = analysis.tables(run, "cpu")
    assert not set(table.info) & {r["impl"] for r in kernel_rows}, "an impossible row was ranked"


# --- bench FILE: flags ------------------------------------------------------------------------------

def test_every_flag_applies_to_a_file():
    from plots.bench import cli

    declared = [playground.Declared("numba_cpu", "conv1d", "naive")]  # as a file declaring it would
    preset, _ = cli.file_preset(_args(PLANTED / "x.py", "--dtype", "float64", "--n", 500, "--k", 7, "--budget",
                                      0.02, "--max-call", 0.3, "--exclude", "scipy.*", "--include", "numba_cpu:*"),
                                declared)
    (grid,) = preset.grids
    assert (grid.dtype, grid.ns, grid.ks) == ("float64", (500,), (7,))
    assert (preset.budget, preset.max_call) == (0.02, 0.3)
    assert "scipy.*" in grid.exclude and grid.include == ("numba_cpu:*",)
    full, _ = cli.file_preset(_args(PLANTED / "x.py", "--preset", "full"), declared)
    assert full.max_call == 5.0 and {g.dtype for g in full.grids} == {"float32", "float64"}
    assert all(g.ops == ("conv1d",) for g in full.grids)


@pytest.mark.parametrize("argv, message", [  # make test: two; each is a bench in a child
    (["--op", "conv1d_weight_grad"], "--op: "),
    (["--preset", "layer"], "nothing to measure"),
    pytest.param(["--device", "gpu"], "nothing to measure", marks=pytest.mark.exhaustive),
    pytest.param(["--results-dir", "afile/sub"], "--results-dir: ", marks=pytest.mark.exhaustive),
    pytest.param(["--include", "nosuch:*"], "no implementation matches", marks=pytest.mark.exhaustive),
])
def test_a_flag_that_selects_nothing_for_a_file_is_refused(argv, message, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    done = bench(PLANTED / "numba_write_past_end.py", *argv, "--n", 1000, "--k", 3, cwd=tmp_path)
    if argv[:2] == ["--device", "gpu"] and "real GPU" in subprocess.run(
            [sys.executable, "-m", "kernels", "list"], capture_output=True, text=True).stdout:
        pytest.skip("a GPU is here: --device gpu selects something")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_list_shows_a_files_plan_without_measuring(tmp_path):
    done = bench(PLANTED / "numba_write_past_end.py", "--list", "--n", 1000, "--k", 3, "--dtype", "float64",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cpu float64 conv1d" in done.stdout and "numba_cpu:write_past_end" in done.stdout
    assert not list(tmp_path.iterdir()), "--list measured or wrote something"


def test_results_dir_that_cannot_be_made_is_a_message(tmp_path):
    (tmp_path / "afile").write_text("x")
    done = bench("--results-dir", tmp_path / "afile" / "sub", "--n", 1000, "--k", 3, "--include",
                 "numpy.correlate", "--no-progress")
    assert done.returncode == 2 and "--results-dir: " in done.stderr and "Traceback" not in done.stderr


def test_on_a_gpu_a_files_gpu_kernels_get_gpu_sizes(monkeypatch):
    declared = [playground.Declared("numba_cuda", "conv1d", "mine")]
    monkeypatch.setattr(mine.registry, "status", lambda name: Status("real GPU", "test"))
    preset, notes = mine.preset_for(declared)
    (grid,) = preset.grids
    assert grid.device == "gpu" and max(grid.ns) == 10**8 and not notes
    monkeypatch.setattr(mine.registry, "status", registry.status)


# --- results files with a bad record -------------------------------------------------------------------

def test_a_cut_record_is_named_and_the_rest_drawn(tmp_path, capsys):
    from plots.__main__ import main

    run = results.load(runner.run(TINY, directory=tmp_path / "r", progress=False, spin=True, log=io.StringIO()))
    cut = tmp_path / "cut.jsonl"
    text = run.path.read_text()
    cut.write_text(text + text.splitlines()[-1][:40] + "\n")  # a last record cut short
    assert main(["draw", str(cut), "--out", str(tmp_path / "plots"), "--no-model"]) == 0
    err = capsys.readouterr().err
    assert f"{cut}:{len(text.splitlines()) + 1}: a bad record left out" in err
    assert list((tmp_path / "plots").rglob("*.png")), "the rest was not drawn"
    capsys.readouterr()
    assert results.newest_per_device(tmp_path) and str(cut) in capsys.readouterr().err, "the folder's reader says"


@pytest.mark.parametrize("content", [None, "not json\n"])
def test_draw_of_a_missing_or_foreign_file_is_a_message(content, tmp_path):
    path = tmp_path / "x.jsonl"
    if content is not None:
        path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "plots", "draw", str(path), "--no-model"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "x.jsonl" in done.stderr and "Traceback" not in done.stderr, done.stderr

