"""Inputs and outputs flush against PROT_NONE pages: one element read or written out of bounds faults.

Every CPU variant (numba_cpu) and the emulated CUDA C (cupy backend: there, inputs are NumPy arrays in
host memory), for the 1-D ops and the layer, at sizes around the block boundaries (`tests/guard.py`
lists them), with the guard page after the arrays and before them, with and without `out=` (the `out`
arrays are guarded too). The calls run in child processes (a fault is a failed call, not a crashed
pytest), and every result is also checked against the float64 reference. `make test` guards each backend's
default variants; every other variant is exhaustive (make test-all).

The children run numba and BLAS on one thread: which addresses a call touches does not depend on the
thread count at these sizes, and two threads per child, competing with the other test workers for two
cores, make each call about 100x slower.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import guard
import numpy as np
import pytest

import kernels
import kernels.registry
from kernels.spec import OPS

LAYER_OPS = ("conv1d_layer", "conv1d_layer_backward")
#: Options per backend: small blocks on the emulator, so that small inputs span several blocks.
OPTIONS = {"cupy": {"block": 32}}
CHILD_ENV = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
             "KERNELS_EMU_THREADS": "1"}

#: (backend, variant, op) -> a strict xfail mark for a known defect; none is known.
KNOWN_FAILURES = {}


def cases():
    """pytest params (backend, variant, family, ops): every CPU variant and the emulated CUDA C."""
    params = []
    for backend, st in kernels.backends().items():
        if st.state not in ("available", "emulated") or backend == "numpy":
            continue
        marks = [pytest.mark.emulated] if st.state == "emulated" else []
        variants_1d = sorted({v for op in guard.OPS_1D for v in kernels.variants(op, backend)})
        units = [(v, "1d", guard.OPS_1D) for v in variants_1d]
        units += [(v, "layer", (op,)) for op in LAYER_OPS for v in kernels.variants(op, backend)]
        for variant, family, ops in units:
            known = [KNOWN_FAILURES[backend, variant, op] for op in ops if (backend, variant, op) in KNOWN_FAILURES]
            ident = f"{backend}-{variant}-" + (family if family == "1d" else ops[0])
            default = variant in {kernels.registry.backend(backend).defaults.get(op) for op in ops}
            speed = [] if default else [pytest.mark.exhaustive]  # make test: the defaults (a child each)
            params.append(pytest.param(backend, variant, family, ops, id=ident, marks=marks + known + speed))
    return params


@pytest.mark.parametrize("backend,variant,family,ops", cases())
def test_guard_pages(backend, variant, family, ops, monkeypatch):
    """No call faults on a guard page, and every result is within tolerance of the reference."""
    for name, value in CHILD_ENV.items():
        monkeypatch.setenv(name, value)
    seed = secrets.randbits(32)
    report = guard.run(backend, variant, family, ops, seed=seed, options=OPTIONS.get(backend))
    print(f"{backend} {variant} {family} {','.join(ops)}: {report} (seed {seed})")
    assert report.ok, f"{report} (seed {seed}):\n  " + "\n  ".join(report.failures[:20])


# --- the guard itself ----------------------------------------------------------------------------

@pytest.mark.parametrize("side", guard.SIDES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 1024, 1025])
def test_guarded_arrays_are_flush_against_the_page(side, dtype, n):
    arena = guard.Arena()
    try:
        a = np.arange(n, dtype=dtype) + 0.5
        g = arena.guarded(a, side)
        start = g.__array_interface__["data"][0]
        boundary = start + g.nbytes if side == "end" else start
        assert boundary % guard.PAGE == 0, f"{side}: array at {start:#x}, {g.nbytes} bytes, not flush"
        assert g.flags.c_contiguous and g.flags.writeable
        np.testing.assert_array_equal(g, a)
        g = None
    finally:
        arena.release()


PROBE = """
import sys, ctypes, numpy as np
sys.path.insert(0, {tests!r})
import guard
arena = guard.Arena()
a = arena.guarded(np.ones(5), {side!r})
base = a.__array_interface__["data"][0] + ({side!r} == "end") * a.nbytes - ({side!r} == "start") * 8
print("reading", flush=True)
print(ctypes.c_double.from_address(base).value)
"""


@pytest.mark.parametrize("side", guard.SIDES)
def test_one_element_past_the_array_faults(side):
    """Negative control: the element just past the end (or before the start) is on the PROT_NONE page."""
    code = PROBE.format(tests=str(guard.ROOT / "tests"), side=side)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("reading"), proc.stderr
    assert proc.returncode == -11, f"expected SIGSEGV, got exit code {proc.returncode}: {proc.stdout!r}"


def test_a_fault_is_a_failed_call_and_the_calls_after_it_still_run(monkeypatch, tmp_path):
    """The parent records the call a child died in, and restarts after it (here: every call faults)."""
    monkeypatch.setattr(guard, "__file__", str(tmp_path / "faulty.py"))
    (tmp_path / "faulty.py").write_text(
        "import json, os, sys\nfrom kernels.isolate import Channel\nspec = json.loads(sys.argv[1])\n"
        "for i in range(spec['start'], 3):\n    Channel.from_env().send(begin=i, what=f'call {i}')\n"
        "    os.abort()\n")
    report = guard.run("numba_cpu", "naive", "1d", ("conv1d",), seed=0)
    assert report.ran == 3 and report.restarts == 3 and len(report.failures) == 3, report
    assert all(f"call {i}" in report.failures[i] and "SIGABRT" in report.failures[i] for i in range(3)), \
        report.failures


def test_every_op_is_covered():
    assert set(guard.OPS_1D) | set(LAYER_OPS) == set(OPS)
