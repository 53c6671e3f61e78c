"""Your own kernel, from a folder outside the repository: new -> check -> bench -> plot, one command each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels import explain, starters

LANGS = starters.LANGS
ROOT = Path(__file__).resolve().parent.parent


def run(cwd, *args, timeout=600):
    """`python -m ARGS` in `cwd`, with the project found as an installed package (no PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_the_project_imports_from_any_folder(tmp_path):
    result = run(tmp_path, "kernels", "list")
    assert result.returncode == 0, result.stderr
    assert "numba_cpu" in result.stdout


@pytest.mark.parametrize("lang", LANGS)
def test_a_starter_passes_check_as_written(tmp_path, lang):
    made = run(tmp_path, "kernels", "new", "conv1d", "--lang", lang, "-o", "mine.py")
    assert made.returncode == 0, made.stderr
    checked = run(tmp_path, "kernels", "check", "mine.py", "--json")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    rows = json.loads(checked.stdout)
    assert rows and all(r["ok"] for r in rows)
    assert {r["op"] for r in rows} == {"conv1d"}, "check covers the ops the file declares, nothing else"
    assert {r["case"].split()[1] for r in rows} >= {"n=1", "n=129"}, "the edge sizes are covered"
    assert {"float32", "float64"} <= {w for r in rows for w in r["case"].split()}
    if lang == "cuda-c":
        assert {r["mode"] for r in rows} == {"forward", "reverse"}, "emulated CUDA C runs in both thread orders"


@pytest.mark.parametrize("lang", LANGS)
def test_a_kernel_with_one_tap_dropped_fails_check_naming_the_sizes(tmp_path, lang):
    run(tmp_path, "kernels", "new", "conv1d", "--lang", lang, "-o", "mine.py")
    kernel = tmp_path / ("mine.cu" if lang == "cuda-c" else "mine.py")
    text = kernel.read_text()
    dropped = text.replace("i < k;", "i < k - 1;") if lang == "cuda-c" else text.replace("range(k)", "range(k - 1)")
    assert dropped != text
    kernel.write_text(dropped)
    checked = run(tmp_path, "kernels", "check", "mine.py")
    assert checked.returncode == 1, checked.stdout[-2000:] + checked.stderr
    assert "FAIL" in checked.stdout and "failing cases: conv1d n=" in checked.stdout


@pytest.mark.parametrize("op", sorted(starters.STARTER_OPS))
def test_every_cpu_starter_passes_check(tmp_path, op):
    run(tmp_path, "kernels", "new", op, "--lang", "numba", "-o", "mine.py")
    checked = run(tmp_path, "kernels", "check", "mine.py")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr


@pytest.mark.parametrize("args, words", [
    (("check", "nosuch.py"), ["no such file"]),
    (("check", "--backend", "numba-cpu"), ["--backend", "numba_cpu"]),
    (("check", "--variant", "nosuch"), ["--variant", "blocked"]),
    (("new", "conv1d_relu", "--lang", "numba"), ["OP"]),
    (("explain", "conv1d", "--n", "3", "--k", "5"), ["--k"]),
])
def test_bad_command_lines_exit_2_with_a_message(tmp_path, args, words):
    result = run(tmp_path, "kernels", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert all(w in result.stderr for w in words), result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_without_kernels_is_a_usage_error(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    result = run(tmp_path, "kernels", "check", "empty.py")
    assert result.returncode == 2 and "declares no kernel" in result.stderr


def test_every_help_works(tmp_path):
    top = run(tmp_path, "kernels", "--help")
    assert top.returncode == 0
    for command in ("list", "check", "new", "explain", "count", "bench"):
        assert f"    {command}" in top.stdout, f"{command} missing from the top-level help"
        sub = run(tmp_path, "kernels", command, "--help")
        assert sub.returncode == 0 and "usage:" in sub.stdout, (command, sub.stderr)


@pytest.mark.parametrize("op", explain.EXPLAINED_OPS)
def test_explain_prints_the_matrices_and_checks_they_agree(op):
    text = explain.explain(op)
    if op == "conv1d_layer":
        assert "MACs" in text and "parameters" in text
        return
    checks = [line for line in text.splitlines() if line.startswith("check:")]
    assert checks and all(line.endswith("(equal)") for line in checks), text


@pytest.mark.parametrize("lang", [lang if lang == "numba" else pytest.param(lang, marks=pytest.mark.exhaustive)
                                  for lang in LANGS])  # make test: the numba loop; the GPU languages' starters
def test_new_check_bench_plot_from_a_folder_outside_the_repo(tmp_path, lang):  # pass check as written above
    """The whole loop, one command each; CPU kernels are timed and plotted, GPU ones (simulated or emulated
    here) are checked and said to be untimed."""
    assert run(tmp_path, "kernels", "new", "conv1d", "--lang", lang, "-o", "mine.py").returncode == 0
    assert run(tmp_path, "kernels", "check", "mine.py").returncode == 0
    bench = run(tmp_path, "kernels", "bench", "mine.py", "--n", "1000", "--k", "3", "--k", "31", "--no-progress",
                "--results-dir", "out")
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-3000:]
    backend = starters.BACKEND[lang]
    if backend != "numba_cpu":
        assert "not timed" in bench.stderr and not (tmp_path / "out").exists()
        return
    (run_dir,) = [d for d in (tmp_path / "out").iterdir()]
    assert run_dir.is_dir() and list(run_dir.glob("*.jsonl")), "the run keeps its results file"
    rows = [json.loads(line) for line in next(run_dir.glob("*.jsonl")).read_text().splitlines()]
    mine = [r for r in rows if r.get("impl") == "numba_cpu:my_conv1d"]
    assert mine and all(r["status"] == "ok" for r in mine), mine
    assert {r["impl"] for r in rows if r.get("type") == "result"} > {"numba_cpu:my_conv1d"}, "beside the others"
    pngs = list(run_dir.glob("*/*.png"))
    assert pngs and "my_conv1d" in next(run_dir.glob("*/summary.md")).read_text()
