"""`python -m kernels check FILE` that never dies: calls in a watched child (kernels.isolate), reports that
point at the fault, cases that exercise every rule of the op, starters that pass, and usage errors that
are messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kernels import cases, isolate, starters
from kernels.spec import OPS

ROOT = Path(__file__).resolve().parent.parent
PLANTED = ROOT / "tests" / "fixtures" / "planted"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def kernels_cli(*argv, cwd=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "kernels", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=ENV)


# --- the watcher ----------------------------------------------------------------------------------------

CHILD = """
import os, sys, time
from kernels.isolate import Channel
c = Channel.from_env()
start = int(sys.argv[1])
c.send(plan=[0, 1, 2, 3])
for i in range(start, 4):
    c.send(begin=i, limit=1.5)
    print("call", i, flush=True)
    if i == 1:
        os.kill(os.getpid(), 11)
    if i == 2:
        time.sleep(60)
    c.send(end=i, ok=True)
"""


def test_a_signal_or_a_hang_fails_its_call_and_the_next_calls_still_run():
    state = isolate.Watch()
    started = time.monotonic()
    outcomes = list(isolate.watch(lambda start: [sys.executable, "-c", CHILD, str(start)], env=ENV, state=state))
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert outcomes[0].end == {"end": 0, "ok": True} and outcomes[3].end == {"end": 3, "ok": True}
    assert (outcomes[1].kind, outcomes[1].signal) == ("signal", "SIGSEGV") and "call 1" in outcomes[1].output
    assert outcomes[2].kind == "time" and outcomes[2].failure == "no answer in 1.5 s (killed)"
    assert state.restarts == 2 and time.monotonic() - started < 30


def test_a_fatal_report_or_a_death_outside_a_call_is_raised():
    fatal = "from kernels.isolate import Channel; Channel.from_env().send(fatal='FILE: bad', usage=True)"
    with pytest.raises(isolate.Fatal, match="FILE: bad"):
        list(isolate.watch(lambda start: [sys.executable, "-c", fatal], env=ENV))
    with pytest.raises(isolate.Fatal, match="killed by SIGABRT outside any call"):
        list(isolate.watch(lambda start: [sys.executable, "-c", "import os; os.abort()"], env=ENV))


def test_ctrl_c_stops_check_at_once_and_leaves_no_child(tmp_path):
    out_file, err_file = (tmp_path / "out").open("w+"), (tmp_path / "err").open("w+")  # a pipe unread could block it
    proc = subprocess.Popen([sys.executable, "-m", "kernels", "check", str(PLANTED / "numba_hang.py"), "--timeout",
                             "600"], stdout=out_file, stderr=err_file, text=True, env=ENV, preexec_fn=_interruptible)
    deadline = time.monotonic() + 300  # a cold compile cache on a loaded machine takes a while
    while not _children_of("numba_hang") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(5)  # the watched child compiled, and hanging in the first case past n = 100
    assert proc.poll() is None and _children_of("numba_hang"), (proc.poll(), _children_of(""))
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    proc.wait(timeout=60)
    err = (tmp_path / "err").read_text()
    assert time.monotonic() - sent < 5 and proc.returncode == 130 and "interrupted" in err, (proc.returncode, err)
    assert not _children_of("numba_hang")


def _interruptible():
    """SIGINT at its default in the child, so that Python installs its Ctrl-C handler there: a shell's
    background job (as a CI runner may start the tests) ignores SIGINT, and that is inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _children_of(name: str) -> list[str]:
    """The command lines of watched `check` children running the kernel file `name`."""
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if name in line and "child_main" in line]


# --- reports ---------------------------------------------------------------------------------------------

def test_a_failing_report_sorts_by_size_names_each_fault_and_reruns_as_printed(tmp_path):
    done = kernels_cli("check", PLANTED / "numba_last_unwritten.py", "--seed", 11)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    fails = [line for line in lines if line.startswith("FAIL")]
    ns = [int(line.split(" n=")[1].split()[0]) for line in fails]
    assert ns == sorted(ns) and ns[0] == 1 and ns[-1] == 4099, "cases sorted by size, numerically"
    assert all("1 unwritten (NaN), the first at y[" in line for line in fails)
    summary = lines[-1]
    assert summary.startswith("0 passed, 52 failed (caught by values 52, bounds 0, mutation 0, time 0, crash 0, "
                              "error 0); seed 11"), summary
    rerun = next(line.split("rerun: ", 1)[1] for line in lines if "--case 'conv1d n=129 k=3 float32 flip'" in line)
    argv = rerun.split(" ", 3)[3]  # after "python -m kernels"
    again = subprocess.run(f"{sys.executable} -m kernels {argv} --json", shell=True, capture_output=True,
                           text=True, timeout=300, env=ENV)
    (row,) = json.loads(again.stdout)
    first = json.loads(kernels_cli("check", PLANTED / "numba_last_unwritten.py", "--seed", 11, "--json").stdout)
    same = next(r for r in first if r["case"] == "conv1d n=129 k=3 float32 flip")
    assert (row["case"], row["max_err"], row["first_unwritten"]) == (same["case"], same["max_err"],
                                                                   same["first_unwritten"]), "not the same inputs"


@pytest.mark.parametrize("source, words", [
    ("import kernels\ndef f(:\n", ["mine.py:2", "syntax error"]),
    pytest.param("import kernels\nimport no_such_module_here\n", ["mine.py:2", "ModuleNotFoundError",
                                                                  "no_such_module_here"], marks=pytest.mark.exhaustive),
    pytest.param("import kernels\nraise RuntimeError('at import')\n", ["mine.py:2", "RuntimeError: at import"],
                 marks=pytest.mark.exhaustive),
])
def test_a_file_that_fails_to_load_is_a_usage_error(source, words, tmp_path):
    (tmp_path / "mine.py").write_text(source)
    done = kernels_cli("check", "mine.py", cwd=tmp_path)
    assert done.returncode == 2 and all(w in done.stderr for w in words), done.stderr
    assert "Traceback" not in done.stderr


def test_new_into_a_missing_folder_is_a_usage_error(tmp_path):
    done = kernels_cli("new", "conv1d", "--lang", "numba", "-o", "missing/dir/x.py", cwd=tmp_path)
    assert done.returncode == 2 and "missing/dir/x.py" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_case_label_is_a_usage_error(tmp_path):
    done = kernels_cli("check", PLANTED / "numba_last_unwritten.py", "--case", "conv1d n=7 k=7 float16")
    assert done.returncode == 2 and "--case" in done.stderr and "Traceback" not in done.stderr


# --- the cases --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["available", "simulated", "emulated"])
def test_every_case_label_reads_back_and_cases_sort_by_size(state):
    for op in OPS:
        todo = cases.cases(op, state)
        assert [cases.Case.parse(str(c)) for c in todo] == todo
        plain = [c for c in todo if c.blocks is None]
        main = [tuple(c.params.get(k, 0) for k in ("n", "L")) for c in plain]
        assert main == sorted(main), op
        assert (state != "available") == any(c.blocks for c in todo) or op == "conv1d_bias_grad"


def test_layer_cases_leave_every_default():
    layer = [c.params for c in cases.cases("conv1d_layer")]
    for name, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
        assert any(p.get(name, default) != default for p in layer), name
    assert {p.get("bias", True) for p in layer} == {True, False}
    assert {p["groups"] for p in layer if "groups" in p and p["groups"] == p["C_in"] > 1}, "no depthwise case"


def test_the_layer_cases_follow_torch():
    """torch is the second oracle of every layer case: the reference the checker uses agrees with it."""
    torch = pytest.importorskip("torch", reason="torch is not installed: the second oracle is absent")
    from kernels import compare

    for case in cases.cases("conv1d_layer"):
        args, kwargs = case.args(case.rng(0))
        ref = compare.reference("conv1d_layer", args, kwargs)[2][0]
        x, w, *b = (torch.from_numpy(np.asarray(a, np.float64)) for a in args)
        want = torch.nn.functional.conv1d(x, w, b[0] if b else None, **kwargs).numpy()
        np.testing.assert_allclose(ref, want, rtol=1e-12, atol=1e-12, err_msg=str(case))


# --- starters and launch rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("lang", [pytest.param(lang, marks=[{"numba-cuda": pytest.mark.cudasim,
                                                             "cuda-c": pytest.mark.emulated}[lang]]
                                               if lang != "numba" else []) for lang in starters.LANGS])
@pytest.mark.parametrize("op", ["conv1d_layer", pytest.param("circular_correlate", marks=pytest.mark.exhaustive)])
def test_layer_and_circular_starters_pass_as_written(op, lang, tmp_path):
    assert kernels_cli("new", op, "--lang", lang, "-o", "mine.py", cwd=tmp_path).returncode == 0
    done = kernels_cli("check", "mine.py", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert rows and all(r["ok"] for r in rows) and {r["op"] for r in rows} == {op}
    if lang != "numba":
        capped = [r for r in rows if "blocks=2" in r["case"]]
        assert capped and all("grid capped at 2 blocks" in r["note"] for r in capped), capped


UNCAPPED_NUMBA_CUDA = '''
from numba import cuda, int64
import kernels

@cuda.jit
def loop(x, w, y, flip):
    j = int64(cuda.grid(1))
    k = w.shape[0]
    if j < y.shape[0]:  # one thread per output, and the launch below gives one at every size
        acc = x.dtype.type(0)
        for i in range(k):
            acc += x[j + i] * w[k - 1 - i if flip else i]
        y[j] = acc

@kernels.kernel("conv1d", backend="numba_cuda", name="uncapped")
def uncapped(p, x, w, y, *, block=128):
    """a grid of ceil(m / block) blocks, uncapped"""
    loop[(p.m + block - 1) // block, block](x, w, y, p.flip)
'''


@pytest.mark.cudasim
def test_a_launch_that_promises_one_thread_per_output_is_checked_and_left_uncapped(tmp_path):
    (tmp_path / "mine.py").write_text(UNCAPPED_NUMBA_CUDA)
    done = kernels_cli("check", "mine.py", "--json", "--case", "conv1d n=300 k=7 float32 blocks=2", cwd=tmp_path)
    (row,) = json.loads(done.stdout)
    assert row["ok"] and row["note"].startswith("not capped: the launch rule gives one thread per output"), row
