"""Guard pages: arrays placed flush against a PROT_NONE page, and a child process that calls ops on them.

`guarded(a, side)` copies `a` into fresh anonymous memory (mmap) so that it ends exactly where a
PROT_NONE page begins (side "end") or begins exactly where one ends (side "start"): reading or
writing one element past the array faults at once, instead of picking up whatever lies there.

A fault kills the process, so the calls run in a child (`python tests/guard.py SPEC`), which prints

    B <i> <description>        before call i
    R <i> ok                   after it, when every output is within tolerance of the reference and
                               the inputs are unchanged
    R <i> FAIL <description>   when an output is off, or the call raised

`run` (in the parent) starts the child, and when it dies (a fault), records the call it died in as
failed and starts a new child after it, so that one fault does not hide the calls behind it.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE = mmap.PAGESIZE

#: n around block boundaries (8 float32 lanes, blocks of 32 and 128), and the filter lengths tried.
SIGNAL_N = (1, 7, 8, 9, 31, 32, 33, 127, 128, 129)
FILTER_K = (1, 2, 3, 8, 9, 31, 32, 33)
LAYER_L = (1, 3, 5, 7, 8, 9, 31, 32, 33, 127, 128, 129)
#: Layer settings tried at every L of LAYER_L where the dilated filter fits:
#: (N, C_in, C_out, K, stride, padding, dilation, groups, bias)
LAYER_SETTINGS = (
    (1, 1, 1, 1, 1, 0, 1, 1, True),
    (2, 3, 4, 3, 1, 1, 1, 1, True),
    (1, 2, 3, 3, 2, 1, 1, 1, False),
    (1, 1, 1, 2, 3, 2, 5, 1, False),  # taps that reach no real input, stride 3
    (1, 3, 3, 5, 3, 2, 2, 3, True),  # depthwise, strided, dilated
    (2, 4, 2, 4, 2, 3, 1, 2, True),  # padding > K - 1
    (1, 2, 2, 8, 1, 0, 1, 1, True),
    (2, 2, 4, 9, 4, 4, 1, 2, False),
)
SIDES = ("end", "start")
OPS_1D = ("conv1d", "conv1d_weight_grad", "conv1d_bias_grad", "conv1d_input_grad", "conv1d_relu",
          "conv1d_relu_backward", "circular_correlate", "circular_correlate_backward")
FLIP_OPS = ("conv1d", "conv1d_weight_grad", "conv1d_input_grad", "conv1d_relu", "conv1d_relu_backward")


# --- guarded memory (child side) -----------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FAILED = ctypes.c_void_p(-1).value
PROT_NONE = 0  # (the mmap module has PROT_READ and PROT_WRITE, not PROT_NONE)


class Arena:
    """Mappings made for one call, unmapped together by `release` (after every view of them is gone)."""

    def __init__(self):
        self.maps = []

    def guarded(self, a: np.ndarray, side: str) -> np.ndarray:
        """A C-contiguous copy of `a` flush against a PROT_NONE page at its `side` ("end" or "start")."""
        a = np.asarray(a)
        if a.nbytes == 0:
            return a.copy()
        pages = -(-a.nbytes // PAGE)
        size = (pages + 1) * PAGE
        addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                          -1, 0)
        if addr in (None, MAP_FAILED):
            raise OSError(ctypes.get_errno(), "mmap failed")
        self.maps.append((addr, size))
        guard, start = (addr + pages * PAGE, addr + pages * PAGE - a.nbytes) if side == "end" else \
            (addr, addr + PAGE)
        if _libc.mprotect(guard, PAGE, PROT_NONE) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
        view = np.frombuffer((ctypes.c_char * a.nbytes).from_address(start), a.dtype).reshape(a.shape)
        view[...] = a
        return view

    def release(self):
        for addr, size in self.maps:
            _libc.munmap(addr, size)
        self.maps = []


# --- the calls (child side) ----------------------------------------------------------------------

def calls(family: str):
    """Every (op, dtype, sizes, flip, side, use_out) the child runs for `family` ("1d" or "layer").

    Each (op, dtype, side) runs at every size; `out=` (guarded too) alternates from one size to the next.
    """
    out = []
    for dtype in ("float32", "float64"):
        for side in SIDES:
            if family == "layer":
                for L in LAYER_L:
                    for s in LAYER_SETTINGS:
                        N, C_in, C_out, K, stride, padding, dilation, groups, bias = s
                        if dilation * (K - 1) + 1 > L + 2 * padding:
                            continue
                        sizes = dict(N=N, C_in=C_in, C_out=C_out, L=L, K=K, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups, bias=bias)
                        for op in ("conv1d_layer", "conv1d_layer_backward"):
                            out.append((op, dtype, sizes, False, side, len(out) // 2 % 2 == 1))
                continue
            for op in OPS_1D:
                for n in SIGNAL_N:
                    ks = (1,) if op.startswith("circular") else sorted({k for k in FILTER_K if k <= n} | {n})
                    for k in ks:
                        flip = op in FLIP_OPS and (n + k) % 2 == 1
                        out.append((op, dtype, dict(n=n, k=k), flip, side, len(out) % 2 == 1))
    return out


def describe(op, variant, dtype, sizes, flip, side, use_out):
    return (f"{op}[{variant}] {dtype} " + " ".join(f"{k}={v}" for k, v in sizes.items())
            + (" flip" if flip else "") + f" guard at {side}" + (" out=" if use_out else ""))


def child(spec: dict):
    """Run the calls of `spec` from spec["start"] on, printing B/R lines (see the module docstring)."""
    import kernels
    import kernels.backend
    from kernels.spec import OPS

    kernels.backend.POISON = True
    backend = kernels.registry.backend(spec["backend"])
    ops = spec["ops"]
    todo = [c for c in calls(spec["family"]) if c[0] in ops]
    fns = {op: kernels.get(op, spec["backend"], spec["variant"], **spec.get("options", {}))
           for op in ops if spec["variant"] in kernels.variants(op, spec["backend"])}
    for i, (op, dtype, sizes, flip, side, use_out) in enumerate(todo):
        if i < spec["start"] or op not in fns:
            continue
        what = describe(op, spec["variant"], dtype, sizes, flip, side, use_out)
        rng = np.random.default_rng([spec["seed"], i])
        args, kwargs = OPS[op].make_args(rng, np.dtype(dtype), **sizes)
        if flip:
            kwargs = {**kwargs, "flip": True}
        arena, guarded, outs, out, got = Arena(), None, None, None, None
        try:
            guarded = tuple(arena.guarded(a, side) if isinstance(a, np.ndarray) else a for a in args)
            p, _ = OPS[op].parse(*args, **kwargs)
            outs = tuple(arena.guarded(np.full(s, np.nan, dtype), side) for s in OPS[op].out_shapes(p))
            out = (outs[0] if OPS[op].single else outs) if use_out else None
            print(f"B {i} {what}", flush=True)
            try:
                got = fns[op](*guarded, out=out, **kwargs)
                if use_out and got is not out:
                    raise AssertionError("out= was not returned")
                got = np.array(got) if OPS[op].single else tuple(np.array(g) for g in got)
                verdict = kernels.Reference(op, args, kwargs).check(got, backend.method(op, spec["variant"]))
                changed = [j for j, (g, a) in enumerate(zip(guarded, args)) if isinstance(a, np.ndarray)
                           and not np.array_equal(g, a, equal_nan=True)]
                result = (f"FAIL {what}: inputs {changed} were written" if changed else
                          "ok" if verdict.ok else f"FAIL {what}: {verdict.detail}")
            except Exception as e:  # a wrong answer or an error: both count as failed calls
                result = f"FAIL {what}: {type(e).__name__}: {e}"
            print(f"R {i} {result}", flush=True)
        finally:
            guarded = outs = out = got = None  # no view of the mappings may outlive them
            arena.release()


# --- the parent side ---------------------------------------------------------------------------------

@dataclass
class Report:
    ran: int = 0
    failures: list = field(default_factory=list)
    restarts: int = 0
    stopped: str = ""  # why calls were left out, if some were

    @property
    def ok(self) -> bool:
        return self.ran > 0 and not self.failures and not self.stopped

    def __str__(self):
        return (f"{self.ran} guard-page calls, {len(self.failures)} failed, {self.restarts} child restarts"
                + (f"; {self.stopped}" if self.stopped else ""))


def run(backend: str, variant: str, family: str, ops, *, seed: int, options=None, max_restarts=3,
        timeout=600) -> Report:
    """Run the guarded calls of (backend, variant, family, ops) in child processes; collect the results."""
    report = Report()
    start = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "KERNELS_POISON": "1"}
    while True:
        spec = dict(backend=backend, variant=variant, family=family, ops=list(ops), seed=seed, start=start,
                    options=options or {})
        proc = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=timeout)
        begun = None
        for line in proc.stdout.splitlines():
            tag, _, rest = line.partition(" ")
            index, _, text = rest.partition(" ")
            if tag == "B":
                begun = (int(index), text)
            elif tag == "R":
                report.ran += 1
                begun = None
                if text != "ok":
                    report.failures.append(text.removeprefix("FAIL "))
        if proc.returncode == 0 and begun is None:
            return report
        if begun is None:  # died outside a call: report it and stop
            report.stopped = f"child exited with {proc.returncode} outside a call: {proc.stderr[-2000:]}"
            return report
        report.ran += 1
        report.failures.append(f"{begun[1]}: child died with exit code {proc.returncode} (a fault: "
                               f"{'SIGSEGV' if proc.returncode == -11 else 'see stderr'}) {proc.stderr[-300:]}")
        if report.restarts == max_restarts:
            report.stopped = f"stopped after {max_restarts} restarts: the calls after #{begun[0]} did not run"
            return report
        report.restarts += 1
        start = begun[0] + 1


if __name__ == "__main__":
    child(json.loads(sys.argv[1]))
