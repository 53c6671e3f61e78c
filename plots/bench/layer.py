"""The layer preset's results: best kernel against best baseline per (op, shape), as a table.

A layer point is a whole shape (N, C_in, C_out, L, K, padding), measured by the runner like any other
point (`plots.bench.plan.Point`); its rows carry the shape (`shape`: "N8 C64>128 L4096 K3 p1", and
its numbers in `layer`), with n = L and k = K. This module only reads results.
"""

from __future__ import annotations

from plots.bench import results
from plots.bench.analysis import load_note


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
    note = load_note(run.ceilings, device)
    if note:
        lines[1:1] = ["", f"**{note[0].upper()}{note[1:]}.**"]
    for r in ratios(run, device):
        def f(v, fmt):
            return "-" if v is None else format(v, fmt)
        lines.append(f"| {r['op']} | {r['shape']} | {r['kernel'] or '-'} | {f(r['kernel_gflops'], '.1f')} | "
                     f"{r['baseline'] or '-'} | {f(r['baseline_gflops'], '.1f')} | {f(r['speedup'], '.2f')} |")
    return lines
