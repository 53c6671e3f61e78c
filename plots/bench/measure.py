"""One candidate at one point: check its result against the float64 reference, then time it.

`PointCheck` holds the reference of a point, computed once and shared by every candidate;
`check_and_time` makes the warm-up call, checks it, and times the candidate through a session
(`plots.bench.sessions`); `row` is the result row every outcome is written as (ok, wrong, skipped,
error). A wrong result is recorded and not timed; a call slower than the preset's `max_call` is
recorded as skipped; an exception is recorded as an error, so one failing candidate does not stop
the run.
"""

from __future__ import annotations

import numpy as np

from kernels import compare
from kernels.spec import OPS
from plots.bench.plan import Candidate
from plots.bench.sweeps import Preset

#: Largest n * k whose float64 reference is computed on the timed inputs (a few seconds of NumPy).
CHECK_MAX_WORK = 1.1e9


class PointCheck:
    """The float64 reference of one point, computed on first use and shared by every candidate.

    The reference costs O(n k) NumPy work; for a 1-D point with n * k > CHECK_MAX_WORK it is computed
    for a smaller problem with the same k and fresh inputs (`check_args`), which each candidate then
    also runs; otherwise (`check_args` None) the timed inputs themselves are checked.
    """

    def __init__(self, op: str, args: tuple, kwargs: dict, rng: np.random.Generator):
        self.op, self.args, self.kwargs, self.check_args = op, args, kwargs, None
        p, _ = OPS[op].parse(*args, **kwargs)
        n, k = getattr(p, "n", None), getattr(p, "k", None)
        if n is not None and k is not None and n * k > CHECK_MAX_WORK:
            self.check_args, _ = OPS[op].make_args(rng, p.dtype, n=max(k, int(CHECK_MAX_WORK // k)), k=k)
        self._ref = compare.Reference(op, self.check_args or args, kwargs)  # computed on first check

    def check(self, got, method: str) -> dict:
        return self._ref.check(got, method).as_dict()


def row(base: dict, candidate: Candidate, out_pre, status: str, reason: str = "", **extra) -> dict:
    """The result row of `candidate` at the point described by `base` (op, dtype, device, sizes)."""
    return {**base, "impl": candidate.label, "kind": candidate.kind, "backend": candidate.backend,
            "variant": candidate.variant, "family": candidate.family, "method": candidate.method,
            "default": candidate.default, "note": candidate.note, "out_preallocated": out_pre,
            "status": status, "reason": reason, **extra}


def check_and_time(base: dict, candidate: Candidate, session, check: PointCheck, preset: Preset,
                   budget: float) -> dict:
    """Check (on the timed inputs, or on smaller ones when the reference would be slow), then time.

    The warm-up call is the checked one (on the timed inputs). A warm-up slower than `max_call` is
    repeated (the first call may include JIT compilation); if that call is slower too, the point is
    recorded as skipped (with `call_s`, for the estimates of larger points) instead of being timed.
    """
    try:
        if check.check_args is not None:
            verdict = check.check(session.call(check.check_args, check.kwargs)[0], candidate.method)
        got, first = session.call(check.args, check.kwargs)  # the warm-up call (JIT compilation, first touch)
        if check.check_args is None:
            verdict = check.check(got, candidate.method)
        del got
        if not verdict["ok"]:
            return row(base, candidate, session.out_preallocated, "wrong", verdict.get("detail", ""), check=verdict)
        call_s = session.call(check.args, check.kwargs)[1] if first > preset.max_call else first
        if call_s > preset.max_call:
            return row(base, candidate, session.out_preallocated, "skipped",
                       f"a call took {call_s:.2g} s > max_call {preset.max_call} s", check=verdict,
                       first_call_s=first, call_s=call_s)
        recheck = None if check.check_args is not None else (lambda got: check.check(got, candidate.method))
        rates = (base["flops"], base["min_bytes"], np.dtype(base["dtype"]).itemsize)
        t = session.time(budget, preset.min_repeats, verify=recheck, rates=rates)
    except Exception as e:  # one failing candidate must not stop the sweep
        return row(base, candidate, None, "error", f"{type(e).__name__}: {e}")
    return row(base, candidate, session.out_preallocated, "ok", check=verdict, first_call_s=first,
               timing=t.as_dict(), gflops=base["flops"] / t.median / 1e9,
               gbs=base["min_bytes"] / t.median / 1e9)
