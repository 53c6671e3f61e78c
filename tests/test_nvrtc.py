"""Every .cu file under gpu/ compiles with NVRTC for sm_90 (and sm_80 in make test-all), with its -D tunables from
gpu/cupy/tunables.py and no register spills; the command line of gpu.cupy.nvrtc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpu.cupy import nvrtc

PROBLEM = nvrtc.nvrtc_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))

SPILLS = r"""
// 96 live values in at most 32 registers (1024 threads x 2 blocks per SM): ptxas must spill.
extern "C" __global__ void __launch_bounds__(1024, 2) many_live_values(const float* x, float* y) {
  float v[96];
#pragma unroll
  for (int i = 0; i < 96; ++i) v[i] = x[threadIdx.x + 1024 * i];
  float s = 0;
#pragma unroll
  for (int i = 0; i < 96; ++i) s += v[i] * v[95 - i] * v[(i * 7) % 96];
  y[threadIdx.x] = s * v[3] + v[50];
}
"""


@pytest.mark.parametrize("arch", [pytest.param(a, marks=[] if a == max(nvrtc.ARCHS) else pytest.mark.exhaustive)
                                  for a in nvrtc.ARCHS])  # make test: sm_90 (the H100 and H200)
@pytest.mark.parametrize("path", nvrtc.cu_files(), ids=lambda p: p.name)
def test_compiles_without_spills(path, arch):
    rows = nvrtc.check(path, archs=(arch,))
    assert rows and {r.arch for r in rows} == {arch}
    spilled = [r for r in rows if r.spill_stores or r.spill_loads]
    assert not spilled, "\n".join(map(str, spilled))


def test_every_declared_name_expression_is_compiled():
    path = Path(__file__).with_name("fixtures") / "kernels_broken.cu"
    kernels = {r.kernel for r in nvrtc.check(path, archs=(80,))}
    assert kernels == set(nvrtc.declared_names(path.read_text()))


def test_a_spill_is_reported():
    log, names = nvrtc.compile_log(SPILLS, [], 80)
    (row,) = nvrtc.parse_ptxas(log, names)
    assert row.kernel == "many_live_values" and row.registers <= 32
    assert row.spill_stores > 0 and row.spill_loads > 0 and row.stack > 0


def test_compile_error_carries_the_log():
    with pytest.raises(nvrtc.CompileError, match="undefined"):
        nvrtc.compile_log("__global__ void k() { undefined_name(); }", [], 80)


def test_a_file_compiled_without_its_tunables_names_where_they_are():
    with pytest.raises(nvrtc.CompileError, match="gpu/cupy/tunables.py"):
        nvrtc.check(nvrtc.tunables.FOLDER / "correlate.cu", archs=(80,), defines={})


ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpu.cupy.nvrtc", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_help():
    run = run_cli("--help")
    assert run.returncode == 0 and "usage: python -m gpu.cupy.nvrtc" in run.stdout, run.stderr
    assert "FILE.cu" in run.stdout and not run.stderr


def test_cli_names_a_missing_file():
    run = run_cli("no_such_file.cu")
    assert run.returncode == 2 and "no such file: no_such_file.cu" in run.stderr and "Traceback" not in run.stderr
