"""The project's own files: dependency lists agree, the CLI and README commands work."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _toml_and_yaml():
    """(tomllib, yaml): both come with the `test` extra; a GPU machine's Python may lack them (it collects this
    file), so they are imported by the tests that read the dependency lists, skipping with the reason."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli",
                                  reason="tomli not installed (pip install '.[test]')")
    yaml = pytest.importorskip("yaml", reason="pyyaml not installed (pip install '.[test]')")
    return tomllib, yaml


#: pip's name (pyproject.toml) -> conda-forge's, where they differ; the CUDA major of the pip wheels is conda's
#: cuda-version.
CONDA_NAMES = {"numba-cuda[cu13]": "numba-cuda", "cupy-cuda13x": "cupy", "nvidia-cuda-nvrtc": "cuda-nvrtc",
               "nvidia-cuda-nvcc": "cuda-nvcc", "nvidia-cuda-nvdisasm": "cuda-nvdisasm",
               "nvidia-cuda-cuobjdump": "cuda-cuobjdump"}
#: In environment.yml only: the interpreter, pip, the CUDA version pin, NVVM (pip's numba-cuda[cu13] brings it).
CONDA_ONLY = {"python", "pip", "cuda-version", "cuda-nvvm"}


def _spec(requirement: str) -> tuple[str, str]:
    """'numba-cuda[cu13]>=0.30' -> ('numba-cuda[cu13]', '>=0.30'); markers and spaces dropped."""
    text = requirement.split(";")[0].replace(" ", "")
    name = re.split(r"[<>=!~]", text, maxsplit=1)[0].lower()
    return name, text[len(name):]


def test_environment_yml_has_what_pyproject_has_with_the_same_versions():
    """Every requirement of the dependencies and the `test` and `gpu` extras is in environment.yml under its
    conda-forge name with the same version bounds; the project itself installs from pip, editable; the CUDA
    version pinned is that of the pip wheels; torch stays optional (not in the environment)."""
    tomllib, yaml = _toml_and_yaml()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = dict(_spec(r) for r in [*project["dependencies"], *extras["test"], *extras["gpu"]])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_spec(d) for d in env["dependencies"] if isinstance(d, str))
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip == [["-e ."]], "environment.yml installs the project with pip, editable, and nothing else from pip"
    for name, version in wanted.items():
        other = CONDA_NAMES.get(name, name)
        assert other in conda, f"{name} ({other} on conda-forge) missing from environment.yml"
        assert conda[other] == version, f"{other}: environment.yml says {conda[other]!r}, pyproject {version!r}"
    extra = set(conda) - {CONDA_NAMES.get(n, n) for n in wanted} - CONDA_ONLY
    assert not extra, f"only in environment.yml: {sorted(extra)}"
    major = re.search(r"cuda(\d+)x", next(n for n in wanted if n.startswith("cupy-"))).group(1)
    assert conda["cuda-version"] == f">={major},<{int(major) + 1}"
    assert not any(n.startswith("torch") for n in conda) and "torch" in extras


def test_the_cuda12_extra_mirrors_the_cuda13_one():
    """`make setup CUDA=12` installs the `gpu-cu12` extra: the same packages as `gpu`, as their CUDA 12 wheels."""
    tomllib, _ = _toml_and_yaml()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cu12 = {re.sub(r"cu12|-cu12|12x", "", n).strip("-"): v for n, v in map(_spec, extras["gpu-cu12"])}
    cu13 = {re.sub(r"cu13|13x", "", n).strip("-"): v for n, v in map(_spec, extras["gpu"])}
    assert set(cu12) == set(cu13)
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-cu12" in makefile and re.search(r"^CUDA\s+\?= 13$", makefile, re.M)


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


@pytest.mark.parametrize("target", ["setup", "test", "test-all", "check", "lint", "clean", "plots", "publish"])
def test_makefile_has_target(target):
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)
