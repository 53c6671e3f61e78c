"""The project's own files: dependency lists agree, the CLI and README commands work."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements):
    return {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_environment_yml_lists_what_pyproject_lists():
    # pyyaml and tomli come with the `test` extra; a GPU machine's Python may lack them (it collects this file)
    yaml = pytest.importorskip("yaml", reason="pyyaml not installed (pip install '.[test]')")
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli",
                                  reason="tomli not installed (pip install '.[test]')")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(
        r for extra in project["optional-dependencies"].values() for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = set()
    for dep in env["dependencies"]:
        listed |= _names(dep["pip"]) if isinstance(dep, dict) else _names([dep])
    assert wanted - listed == set(), f"missing from environment.yml: {sorted(wanted - listed)}"
    assert listed - wanted - {"python", "pip"} == set(), f"only in environment.yml: {sorted(listed - wanted)}"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "kernels", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_cli_list_shows_every_backend_with_a_status():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in ("numpy", "numba_cpu", "numba_cuda", "cupy"):
        assert re.search(rf"^\s+{name}\s+(available|real GPU|simulated|emulated|unavailable)", result.stdout,
                         re.M), result.stdout


def test_cli_check_passes_on_cpu_backends():
    result = run_cli("check", "--backend", "numpy", "--backend", "numba_cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and result.stdout.count("pass") >= 16


def test_readme_leads_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme[: readme.index("## ")]
    assert "make plots" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("target", ["setup", "test", "check", "lint", "clean", "plots"])
def test_makefile_has_target(target):
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)
