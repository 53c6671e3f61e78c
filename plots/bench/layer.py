"""The layer preset: `conv1d_layer` and `conv1d_layer_backward` timed on a few named shapes.

The 1-D runner sweeps (n, k); a layer point is a whole shape (N, C_in, C_out, L, K, padding), given
as the make_args keywords of a grid's `shapes`. Everything else is the runner's: discovery and
selection (`runner.plan`), the metadata, ceilings and results file (`runner.start`, `runner.finish`),
sessions (torch CPU in the isolated child process), `plots.bench.timing` through them, and the counts
(`OPS[op].flops`, from `kernels.layer_counts`). Each implementation is checked once against the
float64 reference (`compare.reference`, one per point, shared) before it is timed. A point whose
warm-up call (and then a second call, past any JIT compilation) took longer than the preset's
`max_call` is recorded as skipped, not timed.

Rows carry the shape (`shape`: "N8 C64>128 L4096 K3 p1", and its numbers), with n = L and k = K.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from kernels import compare
from kernels.spec import OPS
from plots.bench import results, runner
from plots.bench.sweeps import Preset


def shape_label(s: dict) -> str:
    extra = "".join(f" {a}{s[k]}" for k, a in (("stride", "s"), ("dilation", "d"), ("groups", "g")) if s.get(k, 1) != 1)
    return f"N{s['N']} C{s['C_in']}>{s['C_out']} L{s['L']} K{s['K']} p{s.get('padding', 0)}" + extra


def run(preset: Preset, *, directory: Path = results.RESULTS_DIR, use_out: bool = True, seed: int = 0,
        progress: bool = True, spin: bool = False, log=sys.stderr) -> Path:
    """Run the layer preset; returns the path of the results file written."""
    started = time.perf_counter()
    omp = runner.quiet_spinning(spin)
    blocks, left_out = runner.plan(preset)
    tasks = sum(len(impls) * len(grid.shapes) for _, grid, _, impls in blocks)
    print(f"bench: preset {preset.name!r}, {tasks} timings over {len(blocks)} (grid, op) blocks", file=log)
    writer, meta, sessions = runner.start(preset, blocks, left_out, directory, use_out, seed, omp, log)
    rng = np.random.default_rng(seed)
    counts = {"ok": 0, "skipped": 0, "wrong": 0, "error": 0}
    try:
        for _, grid, op, impls in blocks:
            for shape in grid.shapes:
                args, kwargs = OPS[op].make_args(rng, np.dtype(grid.dtype), **shape)
                p, _ = OPS[op].parse(*args, **kwargs)
                base = {"type": "result", "op": op, "dtype": grid.dtype, "device": grid.device,
                        "shape": shape_label(shape), "layer": dict(shape), "n": p.L, "k": p.K, "m": p.L_out,
                        "flops": int(OPS[op].flops(p)), "min_bytes": int(OPS[op].min_bytes(p))}
                ref = []  # computed on first use, shared by the implementations
                for impl in impls:
                    row = _measure(base, impl, sessions.get(impl), args, kwargs, ref, preset,
                                   grid.budget or preset.budget)
                    counts[row["status"]] += 1
                    if progress or row["status"] in ("wrong", "error"):
                        extra = f"{row['gflops']:.1f} GFLOP/s" if row["status"] == "ok" else row["reason"]
                        print(f"  {row['status']}: {op} {impl.label} {base['shape']}: {extra}", file=log)
                    writer.write(row)
    except BaseException:
        sessions.close()
        writer.abandon()
        print(f"bench: interrupted; partial results left in {writer.tmp}", file=log)
        raise
    path = runner.finish(preset, meta, writer, sessions)
    print(f"bench: {counts} in {time.perf_counter() - started:.0f} s -> {path}", file=log)
    return path


def _measure(base, impl, session, args, kwargs, ref: list, preset: Preset, budget: float) -> dict:
    try:
        got, first = session.call(args, kwargs)  # the warm-up call (JIT compilation, first touch)
        if not ref:
            ref.append(compare.Reference(base["op"], args, kwargs))
        verdict = ref[0].check(got)
        del got
        check = verdict.as_dict()
        if not check["ok"]:
            return runner._row(base, impl, session.out_preallocated, "wrong", verdict.detail, check=check)
        call_s = session.call(args, kwargs)[1] if first > preset.max_call else first  # past JIT compilation?
        if call_s > preset.max_call:
            return runner._row(base, impl, session.out_preallocated, "skipped",
                               f"a call took {call_s:.2g} s > max_call {preset.max_call} s", check=check,
                               first_call_s=first)
        t = session.time(budget, preset.min_repeats)
    except Exception as e:  # one failing implementation must not stop the sweep
        return runner._row(base, impl, None, "error", f"{type(e).__name__}: {e}")
    return runner._row(base, impl, session.out_preallocated, "ok", check=check, first_call_s=first,
                       timing=t.as_dict(), gflops=base["flops"] / t.median / 1e9,
                       gbs=base["min_bytes"] / t.median / 1e9)


def is_layer_run(run: results.Run) -> bool:
    return any("shape" in r for r in run.rows)


def ratios(run: results.Run, device: str = "cpu") -> list[dict]:
    """Per (op, shape): the best playground kernel, the best baseline, and time(baseline) / time(kernel)
    (> 1: the kernel is faster)."""
    out, seen = [], {}
    for r in run.rows:
        if r["device"] == device and r["status"] == "ok":
            seen.setdefault((r["op"], r["shape"]), []).append(r)
    for (op, shape), rows in seen.items():
        best = {}
        for kind in ("kernel", "baseline"):
            cands = [r for r in rows if r["kind"] == kind]
            best[kind] = min(cands, key=lambda r: r["timing"]["median"]) if cands else None
        k, b = best["kernel"], best["baseline"]
        out.append({"op": op, "shape": shape, "kernel": k and k["impl"], "kernel_s": k and k["timing"]["median"],
                    "kernel_gflops": k and k["gflops"], "baseline": b and b["impl"],
                    "baseline_s": b and b["timing"]["median"], "baseline_gflops": b and b["gflops"],
                    "speedup": b["timing"]["median"] / k["timing"]["median"] if k and b else None})
    return out


def summary(run: results.Run, device: str = "cpu") -> list[str]:
    lines = [f"## {run.device_name(device)}: conv1d layer, best kernel vs best baseline",
             "", "| op | shape | best kernel | GFLOP/s | baseline | GFLOP/s | kernel speed / baseline |",
             "|---|---|---|---|---|---|---|"]
    for r in ratios(run, device):
        def f(v, fmt):
            return "-" if v is None else format(v, fmt)
        lines.append(f"| {r['op']} | {r['shape']} | {r['kernel'] or '-'} | {f(r['kernel_gflops'], '.1f')} | "
                     f"{r['baseline'] or '-'} | {f(r['baseline_gflops'], '.1f')} | {f(r['speedup'], '.2f')} |")
    return lines
