"""The layout's rules, read from the source: a NumPy-only contract, and imports that go one way.

Every import statement counts, including those inside functions. `from a import b` is an edge to the
module a.b when that is a module of the project, else to a (its __init__).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kernels", "cpu", "gpu", "plots")
#: What the contract must not import: it is NumPy only, so that it loads anywhere.
HEAVY = {"numba", "numba_cuda", "scipy", "tqdm", "matplotlib", "torch", "cupy", "cupyx", "multiprocessing"}
#: The product: the contract and the backends. The lab (plots/: benchmarks, the static model, the real-compile
#: checks) judges it and is never imported by it.
PRODUCT = ("kernels", "cpu", "gpu")
LAB = ("plots",)
#: kernels/_env.py decides, before numba is imported, between a GPU and the simulator.
HEAVY_ALLOWED = {"kernels._env": {"numba"}}


def modules() -> dict[str, Path]:
    """Dotted name -> path of every Python module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, project=None) -> set[str]:
    """Every module an import statement of `path` names (relative imports resolved): `from a import b` names
    a.b when that is a module of `project`, else a."""
    project = project or {}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in project else base for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    """The project's own import edges."""
    mods = modules()
    return {name: {m for m in imports(name, path, mods) if m in mods} - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", [m for m in modules() if m.split(".")[0] == "kernels"])
def test_the_contract_imports_nothing_heavier_than_numpy(name):
    heavy = {i.split(".")[0] for i in imports(name, modules()[name])} & HEAVY
    assert not heavy - HEAVY_ALLOWED.get(name, set()), f"{name} imports {sorted(heavy)}"


def test_kernel_modules_never_import_their_backend():
    """A backend module imports its kernel modules and registers them, never the reverse (a kernel module
    is one a backend module imports from cpu/ or gpu/)."""
    backends = {"cpu.numba_cpu", "gpu.numba_cuda.backend", "gpu.cupy.backend"}
    edges = graph()
    kernel_modules = {m for b in backends for m in edges[b] if m.split(".")[0] in ("cpu", "gpu")} - backends
    assert kernel_modules, "no kernel module found: the graph is not read"
    wrong = [f"{m} -> {b}" for m in sorted(kernel_modules) for b in edges[m] & backends]
    assert not wrong, wrong


def test_the_product_never_imports_the_lab():
    edges = graph()
    wrong = [f"{m} -> {t}" for m, targets in sorted(edges.items()) if m.split(".")[0] in PRODUCT
             for t in sorted(targets) if t.split(".")[0] in LAB]
    assert not wrong, wrong


def test_the_lab_reads_the_product():
    """The graph above has the edges the rule judges: the lab imports the product, the allowed direction."""
    edges = graph()
    assert any(t.split(".")[0] in PRODUCT for m, targets in edges.items() if m.startswith("plots.model")
               for t in targets)
