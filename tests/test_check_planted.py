"""`python -m kernels check FILE` on planted bugs (tests/fixtures/planted/, three languages, the layer and
circular correlation included): each is caught by the kind of check that should catch it, at the cases
where it shows, and the checker itself survives every one of them.

| fixture                          | language   | bug                                          | caught as          |
|----------------------------------|------------|----------------------------------------------|--------------------|
| numba_write_past_end             | numba      | y[m] = 0                                     | bounds (SIGSEGV)   |
| numba_read_past_end              | numba      | reads x[n]                                   | bounds (SIGSEGV)   |
| numba_hang                       | numba      | loop index stuck past n = 100                | time               |
| numba_mutates_inputs             | numba      | zeroes x and w                               | mutation           |
| numba_last_unwritten             | numba      | leaves y[m-1]                                | values (unwritten) |
| numba_abort                      | numba      | abort() past n = 1000                        | crash (SIGABRT)    |
| numba_layer_defaults_only        | numba      | layer ignores stride/padding/dilation/groups | values             |
| numba_circular_no_wrap           | numba      | circular without the modulo                  | values             |
| numba_cuda_no_grid_stride        | numba-cuda | no grid-stride loop                          | values (capped)    |
| numba_cuda_write_past_end        | numba-cuda | j <= m                                       | bounds (IndexError)|
| numba_cuda_layer_no_groups       | numba-cuda | layer ignores groups                         | values             |
| cuda_c_no_grid_stride            | cuda-c     | no grid-stride loop                          | values (capped)    |
| cuda_c_read_past_end             | cuda-c     | reads x[n]                                   | bounds (SIGSEGV)   |
| cuda_c_write_before_start        | cuda-c     | writes y[-1]                                 | bounds (reverse)   |
| cuda_c_hang                      | cuda-c     | grid-stride step 0 past n = 100              | time               |
| cuda_c_circular_no_wrap          | cuda-c     | circular without the modulo                  | values             |
| cuda_c_layer_no_stride           | cuda-c     | layer ignores stride and dilation            | values             |
| cuda_c_no_builtins (a control)   | cuda-c     | none: one thread, no CUDA built-in           | passes             |

numba_lazy and numba_lazy_later (right when checked, lazy when timed) pass `check`, which calls each case
once; `bench` catches them (tests/test_bench_trust.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kernels

ROOT = Path(__file__).resolve().parent.parent
PLANTED = ROOT / "tests" / "fixtures" / "planted"
TIMEOUT = 5  # seconds per call for the hanging fixtures

#: fixture -> (kind, a word of the message, predicate on a failing case's label and mode: where it shows).
EXPECTED = {
    "numba_write_past_end": ("bounds", "SIGSEGV", lambda case, mode: True),
    "numba_read_past_end": ("bounds", "SIGSEGV", lambda case, mode: True),
    "numba_hang": ("time", f"no answer in {TIMEOUT} s", lambda case, mode: _size(case, "n") > 100),
    "numba_mutates_inputs": ("mutation", "its input x", lambda case, mode: True),
    "numba_last_unwritten": ("values", "", lambda case, mode: True),
    "numba_abort": ("crash", "SIGABRT", lambda case, mode: _size(case, "n") > 1000),
    "numba_layer_defaults_only": ("values", "", lambda case, mode: any(
        _size(case, k, d) != d for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)))),
    "numba_circular_no_wrap": ("values", "", lambda case, mode: _size(case, "n") > 1),
    "numba_cuda_no_grid_stride": ("values", "", lambda case, mode: "blocks=2" in case),
    "numba_cuda_write_past_end": ("bounds", "out of bounds", lambda case, mode: True),
    "numba_cuda_layer_no_groups": ("values", "", lambda case, mode: _size(case, "groups", 1) > 1),
    "cuda_c_no_grid_stride": ("values", "", lambda case, mode: "blocks=2" in case),
    "cuda_c_read_past_end": ("bounds", "SEGV", lambda case, mode: True),  # SEGV: AddressSanitizer's word too
    "cuda_c_write_before_start": ("bounds", "SEGV", lambda case, mode: mode == "reverse"),
    "cuda_c_hang": ("time", f"no answer in {TIMEOUT} s", lambda case, mode: _size(case, "n") > 100),
    "cuda_c_circular_no_wrap": ("values", "", lambda case, mode: _size(case, "n") > 1),
    "cuda_c_layer_no_stride": ("values", "", lambda case, mode: max(_size(case, "stride", 1),
                                                                      _size(case, "dilation", 1)) > 1),
}
BACKEND_MARKS = {"numba_cuda": pytest.mark.cudasim, "cuda_c": pytest.mark.emulated}
#: `make test` runs one fixture per kind of check and language (each `check` is a child process of ~10-30 s);
#: the others are exhaustive (make test-all).
FAST = {"numba_write_past_end", "numba_hang", "numba_mutates_inputs", "numba_last_unwritten",
        "numba_cuda_no_grid_stride", "cuda_c_read_past_end", "cuda_c_layer_no_stride"}


def _size(case: str, name: str, default: int | None = None) -> int:
    """The value of `name` in a case label (`default` where the label leaves it out)."""
    return next((int(w.split("=")[1]) for w in case.split() if w.startswith(f"{name}=")), default)


def check(path, *argv):
    argv = [sys.executable, "-m", "kernels", "check", str(path), "--json", "--seed", "7", *map(str, argv)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done, (json.loads(done.stdout) if done.stdout.startswith("[") else None)


def params():
    out = []
    for name in sorted(EXPECTED):
        lang = next((k for k in BACKEND_MARKS if name.startswith(k)), None)
        marks = ([BACKEND_MARKS[lang]] if lang else []) + ([] if name in FAST else [pytest.mark.exhaustive])
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", params())
def test_a_planted_bug_is_caught_by_its_kind_where_it_shows(name):
    kind, word, shows = EXPECTED[name]
    done, rows = check(PLANTED / f"{name}.py", "--timeout", TIMEOUT)
    assert done.returncode == 1 and rows, done.stderr[-3000:]
    failed = [r for r in rows if not r["ok"] and r["kind"] != "not run"]
    caught = [r for r in failed if r["kind"] == kind]
    assert caught, f"no {kind} failure: {[(r['case'], r['kind'], r['error']) for r in failed[:5]]}"
    assert all(word in r["error"] for r in caught) if word else True, caught[0]
    assert all(shows(r["case"], r["mode"]) for r in failed), [(r["case"], r["mode"], r["kind"]) for r in failed
                                                              if not shows(r["case"], r["mode"])]
    assert any(r["ok"] for r in rows) or all(shows(r["case"], r["mode"]) for r in rows), "nothing passed"
    if kind == "values" and name == "numba_last_unwritten":  # the NaN's index, apart from the worst finite error
        r = next(r for r in caught if r["case"] == "conv1d n=1000 k=31 float32")
        assert r["unwritten"] == 1 and r["first_unwritten"] == "y[969]" and r["max_ratio"] <= 1, r


@pytest.mark.emulated
@pytest.mark.exhaustive  # the runtime's linking is also tests/test_emulator.py's, without the checker's child
def test_a_kernel_that_names_no_cuda_builtin_passes():
    done, rows = check(PLANTED / "cuda_c_no_builtins.py")
    assert done.returncode == 0 and rows and all(r["ok"] for r in rows), done.stdout[-2000:] + done.stderr[-2000:]


def test_the_fixtures_table_covers_three_languages_the_layer_and_circular_correlation():
    files = {p.stem for p in PLANTED.glob("*.py")}
    assert set(EXPECTED) <= files and FAST <= set(EXPECTED)
    for prefix in ("numba_", "numba_cuda_", "cuda_c_"):
        assert any(n.startswith(prefix) for n in EXPECTED)
    assert any("layer" in n for n in EXPECTED) and any("circular" in n for n in EXPECTED)
    assert {n for n in files if n.startswith("numba_lazy")} == {"numba_lazy", "numba_lazy_later"}
    assert kernels.OPS  # the ops the fixtures declare exist
