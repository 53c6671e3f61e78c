"""The GPU run without a GPU: the compiler module under numpy 2.5, the preflight (and that removing each thing it
checks makes it fail with a clear line), the report's runner, and that nothing it imports needs pyyaml, ruff or
tomli. Each preflight run is a child process, with the simulator off, where a `sitecustomize` hides what a test
removes.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plots.gpurun import report
from plots.model import resources

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = resources.toolchain_problem()
needs_toolchain = pytest.mark.skipif(PROBLEM is not None, reason=f"real compile: {PROBLEM}")

#: Hides the modules in $HIDE (sys.modules[name] = None: importing one raises ImportError) and the CUDA libraries
#: in $HIDE_LIBS from cuda.pathfinder, in every Python process started with it on PYTHONPATH.
SITECUSTOMIZE = """
import os, sys
for name in filter(None, os.environ.get("HIDE", "").split(",")):
    sys.modules[name] = None
if os.environ.get("HIDE_LIBS"):
    import cuda.pathfinder as pathfinder
    found, hidden = pathfinder.load_nvidia_dynamic_lib, os.environ["HIDE_LIBS"].split(",")
    def load(name):
        if name in hidden:
            raise pathfinder.DynamicLibNotFoundError(f"{name}: hidden by the test")
        return found(name)
    pathfinder.load_nvidia_dynamic_lib = load
"""


def child(args, tmp_path, hide=(), hide_libs=(), **env):
    """Run `python args...` from the repository root with `hide`/`hide_libs` removed: (returncode, output)."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join([str(tmp_path), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    full = {**os.environ, "PYTHONPATH": path, "HIDE": ",".join(hide), "HIDE_LIBS": ",".join(hide_libs),
            "NUMBA_ENABLE_CUDASIM": "0", **env}
    run = subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=300)
    return run.returncode, run.stdout + run.stderr


def preflight(tmp_path, *only, hide=(), hide_libs=(), extra=(), **env):
    args = ["-m", "plots.gpurun.preflight", "--out", str(tmp_path / "out"), *extra]
    return child([*args, *(["--only", *only] if only else [])], tmp_path, hide, hide_libs, **env)


# --- numba-cuda under numpy 2.5 -----------------------------------------------------------------------------

COMPILE = """
import numba.np.arrayobj  # numba's own CPU overloads, loaded while numpy still has row_stack (numpy < 2.5 here)
import numpy as np
if hasattr(np, "row_stack"):
    del np.row_stack  # as numpy 2.5 is
    np.__all__ = [name for name in np.__all__ if name != "row_stack"]
{imports}
@cuda.jit
def k(a):
    a[cuda.grid(1)] = 1.0
ptx, _ = cuda.compile_ptx(k.py_func, (types.float32[::1],), cc=(8, 0))
print(".version" in ptx, hasattr(np, "row_stack"))
"""


@needs_toolchain
def test_numba_cuda_compiles_under_a_numpy_without_row_stack(tmp_path):
    rc, out = child(["-c", COMPILE.format(imports="from gpu.numba_cuda.jit import cuda, types")], tmp_path)
    assert rc == 0 and out.split()[-2:] == ["True", "False"], out  # compiled; numpy left without the name
    rc, out = child(["-c", COMPILE.format(imports="from numba import cuda, types")], tmp_path)  # no fix: it breaks
    assert rc and "row_stack" in out, out


def test_the_compiler_is_chosen_by_name_and_mlir_has_no_simulator(tmp_path):
    rc, out = child(["-c", "import gpu.numba_cuda.jit"], tmp_path, KERNELS_NUMBA_COMPILER="numba-cuda-llvm")
    assert rc and "KERNELS_NUMBA_COMPILER: expected one of numba-cuda, numba-cuda-mlir" in out, out
    rc, out = child(["-c", "import gpu.numba_cuda.jit"], tmp_path, KERNELS_NUMBA_COMPILER="numba-cuda-mlir",
                    NUMBA_ENABLE_CUDASIM="1")
    assert rc and "has no simulator" in out, out


@needs_toolchain
@pytest.mark.skipif(importlib.util.find_spec("numba_cuda_mlir") is None,
                    reason="numba-cuda-mlir not installed (pip install '.[mlir]')")
def test_numba_cuda_mlir_compiles_every_default_kernel(tmp_path):
    rc, out = child(["-m", "plots.model.resources", "--default", "--no-cache"], tmp_path,
                    KERNELS_NUMBA_COMPILER="numba-cuda-mlir")
    assert rc == 0, out


# --- the preflight ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_preflight(tmp_path_factory):
    return preflight(tmp_path_factory.mktemp("preflight"))


@needs_toolchain
@pytest.mark.exhaustive  # the whole preflight, a real compile included (make gpu-standin also runs it)
def test_preflight_passes_here_with_every_check_on_its_line(full_preflight):
    rc, out = full_preflight
    assert rc == 0, out
    for name in ("python", "imports", "project", "compile", "nvrtc", "collection", "tools", "disk", "memory",
                 "device"):
        assert any(line.split()[1:2] == [name] for line in out.splitlines()), (name, out)
    assert "PTX .version" in out and "preflight: ready" in out


@needs_toolchain
@pytest.mark.parametrize("check, hide, hide_libs, env, extra, words", [
    pytest.param("imports", ["cupy"], [], {}, [], ["cupy", "pip install cupy-cuda13x"], id="cupy"),
    pytest.param("imports", ["cuda.core"], [], {}, [], ["cuda.core", "pip install cuda-core"], id="cuda-core"),
    pytest.param("compile", [], ["nvvm"], {}, [], ["numba-cuda cannot compile a project kernel", "nvvm"], id="nvvm"),
    pytest.param("compile", [], [], {"KERNELS_PTXAS": "/nonexistent/ptxas"}, [], ["ptxas not found"], id="ptxas",
                 marks=pytest.mark.exhaustive),  # the compile check runs up to ptxas: a minute with a cold cache
    pytest.param("nvrtc", ["cuda.bindings.nvrtc"], [], {}, [], ["cuda-bindings", "nvidia-cuda-nvrtc"], id="nvrtc"),
    pytest.param("collection", ["numba"], [], {}, [], ["pytest cannot collect", "numba"], id="collection"),
    pytest.param("disk", [], [], {}, ["--min-disk-gb", "1e9"], ["GiB free", "free some space"], id="disk"),
    pytest.param("memory", [], [], {}, ["--min-memory-gb", "1e9"], ["GiB available"], id="memory"),
])
def test_preflight_fails_with_a_clear_line_for_each_thing_removed(tmp_path, check, hide, hide_libs, env, extra,
                                                                  words):
    rc, out = preflight(tmp_path, check, hide=hide, hide_libs=hide_libs, extra=extra, **env)
    line = next((x for x in out.splitlines() if x.startswith("FAIL") and x.split()[1] == check), None)
    assert rc == 1 and line, out
    assert all(w in line for w in words), line
    assert f"preflight: FAILED: {check}" in out


def old_ptxas() -> str | None:
    """A ptxas older than the PTX the NVVM here writes (a system CUDA 13.0 beside newer wheels), or None."""
    import glob

    return next(iter(sorted(glob.glob("/usr/local/cuda-13.0/bin/ptxas"))), None)


@needs_toolchain
@pytest.mark.exhaustive  # two preflights with real compiles
@pytest.mark.skipif(old_ptxas() is None, reason="no older ptxas here (/usr/local/cuda-13.0) to mismatch NVVM with")
def test_a_ptxas_older_than_nvvm_is_avoided_through_nvjitlink_or_named(tmp_path):
    rc, out = preflight(tmp_path, "compile", KERNELS_PTXAS=old_ptxas())
    ptx, nvvm = out.split("PTX .version ")[1].split()[0], resources.nvvm_release().split()[0]
    if float(ptx) <= 9.0:
        pytest.skip(f"NVVM {nvvm} writes PTX {ptx}, which ptxas 13.0 takes: no mismatch to show")
    assert rc == 0 and "linked by nvJitLink" in out, out  # the resource check assembles through nvJitLink
    rc, out = preflight(tmp_path, "compile", hide_libs=["nvJitLink"], KERNELS_PTXAS=old_ptxas())
    assert rc == 1 and f"PTX .version {ptx}" in out and "ptxas 13.0" in out, out
    assert "no nvJitLink" in out and "pip install nvidia-nvjitlink" in out, out


# --- the report's runner ------------------------------------------------------------------------------------

def fake_step(name, code, limit=20.0, estimate=1.0, needs=()):
    return report.Step(name, lambda c: [[c.python, "-c", code]], limit, estimate, "a fake step", needs=needs,
                       standin=lambda c: [[c.python, "-c", code]])


def test_a_failed_or_timed_out_step_does_not_stop_the_later_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "STEPS", (
        fake_step("first", "raise SystemExit(3)"), fake_step("slow", "import time; time.sleep(30)", limit=1.5),
        fake_step("needs_ncu", "pass", needs=("no-such-tool",)), fake_step("huge", "pass", limit=1e6),
        fake_step("last", "print('done')")))
    monkeypatch.setattr(report, "run_commands", _with_preflight_passing(report.run_commands))
    rc = report.main(["--out", str(tmp_path), "--total", "120", "--standin"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    steps = manifest["steps"]
    assert rc == 1 and steps["first"]["status"] == "failed" and steps["first"]["rc"] == 3
    assert steps["slow"]["status"] == "timed out" and steps["slow"]["seconds"] < 10
    assert steps["huge"] == {"status": "skipped", "reason": steps["huge"]["reason"]}
    assert "limit" in steps["huge"]["reason"] and steps["last"]["status"] == "passed"
    assert "done" in (tmp_path / "last.log").read_text()
    assert manifest["summary"] == {"passed": 3, "failed": 1, "timed out": 1, "skipped": 1}


def test_the_run_stops_at_once_when_the_preflight_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "STEPS", (fake_step("never", "open('ran', 'w')"),))
    assert report.main(["--out", str(tmp_path), "--python", "/nonexistent/python"]) == 1
    steps = json.loads((tmp_path / "manifest.json").read_text())["steps"]
    assert steps["preflight"]["status"] == "failed" and "never" not in steps


def _with_preflight_passing(run_commands):
    """run_commands, but the preflight replaced by a passing command (the preflight has its own tests)."""
    def run(name, commands, limit, log, env=None):
        if name == "preflight":
            commands = [[sys.executable, "-c", "pass"]]
        return run_commands(name, commands, limit, log, env)
    return run


def test_dry_run_prints_every_step_with_its_limit_estimate_and_evidence(capsys):
    assert report.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for step in report.STEPS:
        line = next(x for x in out.splitlines() if x.startswith(step.name + " "))
        assert f"{step.limit:.0f}s" in line and f"{step.estimate:.0f}s" in line and step.evidence[:30] in line
    total = report.PREFLIGHT_ESTIMATE + sum(s.estimate for s in report.STEPS if not s.background)
    assert total <= report.TOTAL and f"total estimate {total:.0f} s of 480 s" in out


# --- what the run imports -----------------------------------------------------------------------------------

def test_nothing_the_gpu_run_imports_needs_pyyaml_ruff_or_tomli():
    """No module of the playground or its tests imports them at module level (only inside the tests that use
    them, which skip without them)."""
    absent = {"yaml", "ruff", "tomli", "tomllib"}
    for folder in ("kernels", "cpu", "gpu", "plots", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                hit = {n.split(".")[0] for n in names} & absent
                assert not hit, f"{path.relative_to(ROOT)} imports {hit} at module level"


def test_the_standin_package_set_is_the_gpu_machines():
    wanted = (ROOT / "plots" / "gpurun" / "standin.txt").read_text()
    lines = [x.split("#")[0].strip() for x in wanted.splitlines() if x.split("#")[0].strip()]
    names = {x.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower() for x in lines}
    assert {"numpy", "numba-cuda", "cupy-cuda13x", "cuda-bindings", "cuda-core", "pytest", "hypothesis"} <= names
    assert not names & {"pyyaml", "ruff", "tomli", "torch"}, names
    assert "numpy>=2.5,<2.6" in lines and "numba-cuda[cu13]==0.30.4" in lines and "cupy-cuda13x==14.2.0" in lines
