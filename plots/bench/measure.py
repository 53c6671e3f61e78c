"""One candidate at one point: check its result against the float64 reference, time it, check it again.

`PointCheck` holds the reference of a point, computed once and shared by every candidate;
`check_and_time` makes the warm-up call on the point's inputs and checks it, then times the candidate
through a session (`plots.bench.sessions`) on *other* inputs, the timed ones (`PointCheck.timed_args`:
fresh arrays whose values differ from the checked ones), with its preallocated outputs poisoned with NaN
after their first (checked) call, and checks what the timed calls wrote, so that a kernel that caches its
first answer, or computes only on its first calls, cannot pass. (The GPU timer's own warm-up call is one
of the calls that must write: a kernel that computes on its first three calls only still passes there;
its rate, past this run's ceilings, does not.) `row` is the result
row every outcome is written as:

    ok          checked, timed, checked again; `over_max_call` when one call took longer than the preset's
                max_call: then it is timed once (a single repeat), not dropped
    wrong       a checked call was off: the warm-up, the first call on the timed inputs, or the timed calls;
                or a call wrote one of its inputs (restored, so that the reference and the other
                candidates see the point's own values)
    impossible  right, but faster than this run's own ceilings allow (`Ceilings`): its time is kept and it
                is left out of every comparison (only "ok" rows are plotted and ranked)
    skipped     by the runner, before any call (an estimate over max_call, a point too large for memory)
    error       the call raised

The timed inputs are the checked ones with the inputs each output is linear in doubled (`LINEAR_IN`):
every output of a correct kernel doubles, exactly in binary floating point, so the reference of the timed
inputs is the checked call's, doubled, at no cost.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

from kernels import compare
from kernels.spec import OPS
from plots.bench.plan import Candidate
from plots.bench.sessions import TimingRejected
from plots.bench.sweeps import Preset

#: Largest n * k whose float64 reference is computed on the timed inputs (a few seconds of NumPy).
CHECK_MAX_WORK = 1.1e9
#: Per op, the inputs (by parameter name) every output is linear in: doubling them doubles every output.
LINEAR_IN = {
    "conv1d": ("x",), "conv1d_weight_grad": ("grad_y",), "conv1d_bias_grad": ("grad_y",),
    "conv1d_input_grad": ("grad_y",), "conv1d_relu": ("x", "b"), "conv1d_relu_backward": ("grad_y",),
    "circular_correlate": ("x",), "circular_correlate_backward": ("grad_z",), "conv1d_layer": ("x", "b"),
    "conv1d_layer_backward": ("grad_out",),
}
SCALE = 2.0
#: A rate more than this factor above the same run's measured ceiling (the matmul's FLOP/s for a direct
#: method, the fastest copy's bytes/s for any) cannot be the kernel's. Ceilings measured on a shared
#: machine vary by up to ~3x between runs, so 4x leaves room for a ceiling measured under load.
IMPOSSIBLE_MARGIN = 4.0


def parameter_names(op: str) -> list[str]:
    """The op's positional parameters (its input arrays and sizes), in call order."""
    return [p.name for p in inspect.signature(OPS[op].parse).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def scaled_args(op: str, args: tuple) -> tuple:
    """Fresh copies of `args` with the inputs of LINEAR_IN[op] multiplied by SCALE (the others copied too)."""
    linear = set(LINEAR_IN[op])
    return tuple(a * a.dtype.type(SCALE) if name in linear else a.copy() if isinstance(a, np.ndarray) else a
                 for name, a in zip(parameter_names(op), args))


def _bits(a: np.ndarray) -> np.ndarray:
    """`a`'s elements as unsigned integers of their width (the array itself for other widths)."""
    return a.view(f"u{a.itemsize}") if a.itemsize in (1, 2, 4, 8) else a


class PointCheck:
    """The float64 reference of one point, computed on first use and shared by every candidate.

    The reference costs O(n k) NumPy work; for a 1-D point with n * k > CHECK_MAX_WORK it is computed
    for a smaller problem with the same k and fresh inputs (`check_args`), which each candidate then
    also runs; otherwise (`check_args` None) the timed inputs themselves are checked. `timed_args` are
    the inputs the timed calls get (LINEAR_IN doubled), and `check_timed` judges what they wrote.
    """

    def __init__(self, op: str, args: tuple, kwargs: dict, rng: np.random.Generator):
        self.op, self.args, self.kwargs, self.check_args = op, args, kwargs, None
        p, _ = OPS[op].parse(*args, **kwargs)
        self.p = p
        n, k = getattr(p, "n", None), getattr(p, "k", None)
        if n is not None and k is not None and n * k > CHECK_MAX_WORK:
            self.check_args, _ = OPS[op].make_args(rng, p.dtype, n=max(k, int(CHECK_MAX_WORK // k)), k=k)
        self._ref = compare.Reference(op, self.check_args or args, kwargs)  # computed on first check
        self.timed_args = scaled_args(op, args)
        self._timed_ref = None
        names = parameter_names(op)
        self._saved = [(name, a, a.copy()) for every in (args, self.timed_args, self.check_args or ())
                       for name, a in zip(names, every) if isinstance(a, np.ndarray)]

    def written_input(self) -> str:
        """The name of an input array a call wrote ("" when none did); every input is restored either way,
        so that the reference and the next candidates see the point's own values. Compared bit for bit
        (as unsigned integers of the same width): a NaN rewritten or a 0 turned into -0 counts as written."""
        written = ""
        for name, a, saved in self._saved:
            if not np.array_equal(_bits(a), _bits(saved)):
                written = written or name
                np.copyto(a, saved)
        return written

    def check(self, got, method: str) -> dict:
        return self._ref.check(got, method).as_dict()

    def check_timed(self, got, method: str, first=None) -> dict:
        """The verdict on outputs of calls on `timed_args`: against the reference doubled where the reference
        is of the timed size; else (a large point) against SCALE x `first`, the unchecked outputs of the
        warm-up call, with a normwise tolerance (any correct kernel, deterministic or not, stays within it;
        an answer left from the warm-up is off by half the outputs)."""
        if self.check_args is None:
            if self._timed_ref is None:
                self._timed_ref = self._ref.scaled(SCALE, self.timed_args)
            return self._timed_ref.check(got, method).as_dict()
        got = (got,) if OPS[self.op].single else tuple(got)
        first = (first,) if OPS[self.op].single else tuple(first)
        rtol, _ = compare.tolerance(self.op, self.p, self.p.dtype)
        err = scale = 0.0
        for g, f in zip(got, first):
            want, g = np.asarray(f, np.float64) * SCALE, np.asarray(g, np.float64)
            with np.errstate(invalid="ignore"):
                d = np.where(g == want, 0.0, np.abs(g - want))
            err = max(err, math.inf if np.isnan(d).any() else float(d.max(initial=0.0)))
            scale = max(scale, float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0)))
        tol = rtol * scale
        ok = bool(err <= tol)  # NaN fails
        verdict = {"criterion": "normwise, against the warm-up call doubled", "ok": ok, "max_err": err,
                   "max_ratio": err / tol if tol else math.inf}
        return verdict | ({} if ok else {"detail": f"max err {err:.3g} > {tol:.3g} (normwise)"})


@dataclass
class Ceilings:
    """The run's measured ceilings: {(device, dtype): GFLOP/s} and {device: GB/s} (the fastest level)."""

    flops: dict
    bandwidth: dict

    @classmethod
    def of(cls, rows) -> Ceilings:
        flops, bandwidth = {}, {}
        for c in rows:
            if c["kind"] == "flops":
                flops[c["device"], c["dtype"]] = max(flops.get((c["device"], c["dtype"]), 0.0), c["value"])
            elif c["kind"] == "bandwidth":
                bandwidth[c["device"]] = max(bandwidth.get(c["device"], 0.0), c["value"])
        return cls(flops, bandwidth)

    def impossible(self, base: dict, candidate: Candidate, gflops: float, gbs: float) -> str:
        """Why the rates of a kernel's row cannot be true, or "". Baselines are exempt: a library may
        compute a "direct" convolution with fewer operations (Winograd, FFT), and its rows only set the bar.
        The FLOP/s bound holds for direct methods only (an FFT does fewer than the counted FLOPs)."""
        if candidate.kind != "kernel":
            return ""
        peak = self.flops.get((base["device"], base["dtype"]))
        if candidate.method == "direct" and peak and gflops > IMPOSSIBLE_MARGIN * peak:
            return (f"impossible: {gflops:.4g} GFLOP/s is {gflops / peak:.0f}x the {base['dtype']} matmul ceiling "
                    f"this run measured ({peak:.4g} GFLOP/s; more than {IMPOSSIBLE_MARGIN:g}x cannot be the kernel's)")
        bw = self.bandwidth.get(base["device"])
        if bw and gbs > IMPOSSIBLE_MARGIN * bw:
            return (f"impossible: {gbs:.4g} GB/s moved at least is {gbs / bw:.0f}x the fastest copy this run "
                    f"measured ({bw:.4g} GB/s; more than {IMPOSSIBLE_MARGIN:g}x cannot be the kernel's)")
        return ""


def row(base: dict, candidate: Candidate, out_pre, status: str, reason: str = "", **extra) -> dict:
    """The result row of `candidate` at the point described by `base` (op, dtype, device, sizes)."""
    return {**base, "impl": candidate.label, "kind": candidate.kind, "backend": candidate.backend,
            "variant": candidate.variant, "family": candidate.family, "method": candidate.method,
            "default": candidate.default, "note": candidate.note, "out_preallocated": out_pre,
            "status": status, "reason": reason, **extra}


def check_and_time(base: dict, candidate: Candidate, session, check: PointCheck, preset: Preset,
                   budget: float, ceilings: Ceilings | None = None) -> dict:
    """Check the warm-up call, call once on the timed inputs (checked too), time, check the timed calls.

    A call on the timed inputs slower than `max_call` (it follows the warm-up, so JIT compilation is
    past) is timed once instead of for the budget, and the row says so (`over_max_call`).
    """
    out_pre = None
    try:
        if check.check_args is not None:
            verdict = check.check(session.call(check.check_args, check.kwargs)[0], candidate.method)
            written = check.written_input()
            if written:
                verdict = {"ok": False, "detail": f"the kernel wrote its input {written} (restored for the others)"}
            if not verdict["ok"]:
                return row(base, candidate, session.out_preallocated, "wrong", verdict.get("detail", ""),
                           check=verdict)
        first_out, first = session.call(check.args, check.kwargs)  # the warm-up (JIT compilation, first touch)
        out_pre = session.out_preallocated
        written = check.written_input()
        if written:
            return row(base, candidate, out_pre, "wrong", f"the kernel wrote its input {written} (restored for the "
                       "others)")
        if check.check_args is None:
            verdict = check.check(first_out, candidate.method)
            first_out = None
        if not verdict["ok"]:
            return row(base, candidate, out_pre, "wrong", verdict.get("detail", ""), check=verdict)
        got, call_s = session.call(check.timed_args, check.kwargs)
        again = check.check_timed(got, candidate.method, first_out)
        del got
        if not again["ok"]:
            return row(base, candidate, out_pre, "wrong", "the second call, on other inputs, is wrong (the first "
                       f"was right): {again.get('detail', '')}", check=verdict, check_timed=again)
        over = call_s > preset.max_call
        getattr(session, "poison_outputs", lambda: None)()  # the timed calls must write every output again
        # a GPU's datasheet limits bound our kernels' rates (a library may do fewer operations than counted,
        # and an FFT does: the FLOP/s limit holds for direct methods only)
        rates = None if candidate.kind != "kernel" else (
            base["flops"] if candidate.method == "direct" else 0.0, base["min_bytes"], np.dtype(base["dtype"]).itemsize)
        verify = None if out_pre else (lambda got: check.check_timed(got, candidate.method, first_out))
        budget, repeats = (0.0, 1) if over else (budget, preset.min_repeats)
        t = session.time(budget, repeats, verify, rates)
        timed = getattr(session, "timed_outputs", lambda: None)()
        after = check.check_timed(timed, candidate.method, first_out) if timed is not None else None
        del timed
        first_out = None  # the verify closure is done with it
        written = check.written_input()
        if written:
            after = {"ok": False, "detail": f"the kernel wrote its input {written} (restored for the others)"}
    except TimingRejected as e:
        return row(base, candidate, out_pre, e.status, str(e), check=verdict)
    except Exception as e:  # one failing candidate must not stop the sweep
        return row(base, candidate, out_pre, "error", f"{type(e).__name__}: {e}")
    rates = dict(gflops=base["flops"] / t.median / 1e9, gbs=base["min_bytes"] / t.median / 1e9)
    extra = dict(check=verdict, first_call_s=first, call_s=call_s, timing=t.as_dict(), **rates)
    if after is not None:
        extra["check_timed"] = after
    if over:
        extra["over_max_call"] = True
    if after is not None and not after["ok"]:
        return row(base, candidate, out_pre, "wrong", "the outputs of the timed calls are wrong (the checked "
                   f"calls were right: is an answer cached?): {after.get('detail', '')}", **extra)
    why = ceilings.impossible(base, candidate, **rates) if ceilings else ""
    if why:
        return row(base, candidate, out_pre, "impossible", why, **extra)
    reason = f"timed once: a call took {call_s:.2g} s > max_call {preset.max_call} s" if over else ""
    return row(base, candidate, out_pre, "ok", reason, **extra)
