"""Guard pages: arrays placed flush against a PROT_NONE page, and a child process that calls ops on them.

`kernels.guard.Arena().guarded(a, side)` copies `a` into fresh anonymous memory (mmap) so that it ends
exactly where a PROT_NONE page begins (side "end") or begins exactly where one ends (side "start"):
reading or writing one element past the array faults at once, instead of picking up whatever lies there.

A fault kills the process, so the calls run in a child (`python tests/guard.py SPEC`) watched by
`kernels.isolate` (the mechanism of `python -m kernels check FILE`): the child reports each call's begin
(its description) and end ("ok" when every output is within tolerance of the reference and the inputs
are unchanged, else what failed); `run` (in the parent) records a call the child died in as failed and
starts a new child after it, so that one fault does not hide the calls behind it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernels import isolate
from kernels.cases import LAYER_SETTINGS  # (N, C_in, C_out, K, stride, padding, dilation, groups, bias)
from kernels.guard import PAGE, SIDES, Arena  # noqa: F401  (PAGE, Arena: the tests of the guard use them)

ROOT = Path(__file__).resolve().parents[1]

#: n around block boundaries (8 float32 lanes, blocks of 32 and 128), and the filter lengths tried.
SIGNAL_N = (1, 7, 8, 9, 31, 32, 33, 127, 128, 129)
FILTER_K = (1, 2, 3, 8, 9, 31, 32, 33)
LAYER_L = (1, 3, 5, 7, 8, 9, 31, 32, 33, 127, 128, 129)
OPS_1D = ("conv1d", "conv1d_weight_grad", "conv1d_bias_grad", "conv1d_input_grad", "conv1d_relu",
          "conv1d_relu_backward", "circular_correlate", "circular_correlate_backward")
FLIP_OPS = ("conv1d", "conv1d_weight_grad", "conv1d_input_grad", "conv1d_relu", "conv1d_relu_backward")


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
    """Run the calls of `spec` from spec["start"] on, each between begin and end reports."""
    import kernels
    import kernels.backend
    from kernels.spec import OPS

    kernels.backend.POISON = True
    channel = isolate.Channel.from_env()
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
            channel.send(begin=i, limit=spec["limit"], what=what)
            try:
                got = fns[op](*guarded, out=out, **kwargs)
                if use_out and got is not out:
                    raise AssertionError("out= was not returned")
                got = np.array(got) if OPS[op].single else tuple(np.array(g) for g in got)
                verdict = kernels.Reference(op, args, kwargs).check(got, backend.method(op, spec["variant"]))
                changed = [j for j, (g, a) in enumerate(zip(guarded, args)) if isinstance(a, np.ndarray)
                           and not np.array_equal(g, a, equal_nan=True)]
                result = (f"{what}: inputs {changed} were written" if changed else
                          "ok" if verdict.ok else f"{what}: {verdict.detail}")
            except Exception as e:  # a wrong answer or an error: both count as failed calls
                result = f"{what}: {type(e).__name__}: {e}"
            channel.send(end=i, result=result)
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "KERNELS_POISON": "1"}

    def command(start):
        spec = dict(backend=backend, variant=variant, family=family, ops=list(ops), seed=seed, start=start,
                    options=options or {}, limit=timeout)
        return [sys.executable, __file__, json.dumps(spec)]

    def resume(outcome):
        if report.restarts == max_restarts:
            report.stopped = f"stopped after {max_restarts} restarts: the calls after #{outcome.index} did not run"
            return None
        report.restarts += 1
        return outcome.index + 1

    try:
        for outcome in isolate.watch(command, env=env, cwd=ROOT, resume=resume):
            report.ran += 1
            if outcome.end is None:
                report.failures.append(f"{outcome.begin.get('what', f'call {outcome.index}')}: child "
                                       f"{outcome.failure} {outcome.output[-300:]}")
            elif outcome.end["result"] != "ok":
                report.failures.append(outcome.end["result"])
    except isolate.Fatal as e:  # died outside a call: report it and stop
        report.stopped = str(e)[-2000:]
    return report


if __name__ == "__main__":
    child(json.loads(sys.argv[1]))
