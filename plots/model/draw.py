"""Draw the static performance model (plots.model.oned) of every GPU variant: predicted GB/s and GFLOP/s.

    python -m plots.model [--device h100-sxm h200] [--measured RESULTS.jsonl] [--out plots/]

For each device of plots.model.devices and each op (conv1d, conv1d_weight_grad), float32: GB/s and GFLOP/s
against n (at k = 3, 31, 511) and against k (at n = 1e8), one line per variant (and per backend's `auto`:
the side its crossover table picks, the FFT's time by plots.model.crossover's model), titled "model, no
GPU measured", into plots/<device>-model/ (PNG + CSV), and targets.md: the best step per backend, op and
dtype at n = 1e8 against the ladder's targets (`TARGETS`). With a measured GPU run (a results file of
`python -m plots bench` on that GPU), the measured points are drawn beside the predicted ones, with
the measured/predicted ratio in a third panel, and the title says so.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

PLOTS_DIR = Path(__file__).parent
NS = tuple(int(10**e) for e in (3, 4, 5, 6, 7, 8, 9))
KS = (1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095)
KS_AT = (3, 31, 511)
N_AT = 10**8
LABEL = "model, no GPU measured"


def _measured(run, device_slug: str) -> dict:
    """{(backend, variant, op, n, k): row} of the ok float32 GPU rows of a results run on this device."""
    if run is None:
        return {}
    info = run.meta.get("gpu") or {}
    if device_slug not in (info.get("slug"), info.get("model_slug")) and not str(info.get("name", "")).lower() \
            .replace(" ", "-").startswith(device_slug.split("-")[0]):
        return {}
    return {(r["backend"], r["variant"], r["op"], r["n"], r["k"]): r for r in run.rows
            if r.get("device") == "gpu" and r.get("status") == "ok" and r.get("dtype") == "float32"
            and "k" in r}


def draw_model(out_dir=PLOTS_DIR, measured_run=None, devices=("h100-sxm", "h200"), predictions=None) -> list[Path]:
    """Draw the model plots into out_dir/<device>-model/; returns the files written.

    `measured_run`: a `plots.bench.results.Run` (or a path to one) measured on a GPU; its rows are drawn
    beside the model for the device they were measured on. `predictions`: plots.model.oned.model rows (computed
    here when None)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from plots.model import oned

    if measured_run is not None and not hasattr(measured_run, "rows"):
        from plots.bench import results

        measured_run = results.load(measured_run)
    layer_predictions = []
    if predictions is None:
        from plots.model import layer as layer_model

        layer_predictions = layer_model.model(shapes={LAYER_SHAPE: layer_model.SHAPES[LAYER_SHAPE]},
                                                dtypes=("float32", "float64"), devices=devices)
        grid_n = oned.model(NS, KS_AT, devices=devices)
        grid_k = oned.model((N_AT,), KS, devices=devices)
        goals = oned.model((N_AT,), TARGET_KS, dtypes=("float32", "float64"), devices=devices)
        unique = {(p["device"], p["backend"], p["variant"], p["op"], p["dtype"], p["n"], p["k"]): p
                  for p in grid_n + grid_k + goals}
        predictions = list(unique.values())
        predictions += auto_predictions(predictions)
    written = []
    for slug in devices:
        folder = Path(out_dir) / f"{slug}-model"
        folder.mkdir(parents=True, exist_ok=True)
        measured = _measured(measured_run, slug)
        preds = [p for p in predictions if p["device"] == slug and p["dtype"] == "float32"]
        written.append(write_targets(predictions, slug, folder, layer_predictions))
        for op in oned.MODEL_OPS:
            rows = [p for p in preds if p["op"] == op]
            variants = sorted({(p["backend"], p["variant"]) for p in rows})
            for axis in ("n", "k"):
                written += _figure(plt, folder, slug, op, axis, rows, variants, measured)
    return written


def _figure(plt, folder, slug, op, axis, rows, variants, measured) -> list[Path]:
    from plots.model.devices import DEVICES

    device = DEVICES[slug]
    fixed = KS_AT if axis == "n" else (N_AT,)
    with_measured = any((b, v, op, p["n"], p["k"]) in measured for p in rows for b, v in variants)
    panels = 3 if with_measured else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.6), squeeze=False)
    axes = axes[0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ("-", "--", ":")
    table = []
    for vi, (backend, variant) in enumerate(variants):
        color = colors[vi % len(colors)]
        for fi, value in enumerate(fixed):
            pts = sorted((p for p in rows if (p["backend"], p["variant"]) == (backend, variant)
                          and (p["k"] if axis == "n" else p["n"]) == value), key=lambda p: p[axis])
            if axis == "k":
                pts = [p for p in pts if p["k"] in KS]
            if not pts:
                continue
            xs = [p[axis] for p in pts]
            name = f"{backend}:{variant}" + (f" k={value}" if axis == "n" else "")
            wide = {"lw": 4, "alpha": 0.35, "zorder": 1} if variant == "auto" else {}  # under the step it runs
            for ax, key in zip(axes[:2], ("gbs", "gflops")):
                ax.plot(xs, [p[key] for p in pts], styles[fi % 3], color=color, label=name, **wide)
            got = [(p, measured.get((backend, variant, op, p["n"], p["k"]))) for p in pts]
            got = [(p, m) for p, m in got if m]
            if got:
                for ax, key in zip(axes[:2], ("gbs", "gflops")):
                    ax.plot([p[axis] for p, _ in got], [m[key] for _, m in got], "o", color=color, ms=4)
                axes[2].plot([p[axis] for p, _ in got], [m["gflops"] / p["gflops"] for p, m in got],
                             "o" + styles[fi % 3], color=color, label=name)
            for p in pts:
                m = measured.get((backend, variant, op, p["n"], p["k"]))
                table.append({"variant": f"{backend}:{variant}", "n": p["n"], "k": p["k"], "bound": p["bound"],
                              "model_gbs": p["gbs"], "model_gflops": p["gflops"],
                              "measured_gflops": m["gflops"] if m else "",
                              "ratio": m["gflops"] / p["gflops"] if m else ""})
    peak = device.fp32_gflops
    axes[0].axhline(device.hbm_gbs, color="grey", lw=0.8)
    axes[0].text(0.02, 0.97, f"HBM {device.hbm_gbs:.0f} GB/s", transform=axes[0].transAxes, va="top", fontsize=8)
    axes[1].axhline(peak, color="grey", lw=0.8)
    axes[1].text(0.02, 0.97, f"FP32 peak {peak / 1e3:.1f} TFLOP/s", transform=axes[1].transAxes, va="top",
                 fontsize=8)
    for ax, ylabel in zip(axes, ("GB/s (min bytes / time)", "GFLOP/s (2 k m / time)", "measured / model")):
        ax.set_xscale("log", base=10 if axis == "n" else 2)
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    where = f"k in {KS_AT}" if axis == "n" else f"n = {N_AT:.0e}"
    label = "model (lines) and measured (dots)" if with_measured else LABEL
    fig.suptitle(f"{device.name}: {op} float32 vs {axis} ({where}): {label}")
    fig.tight_layout()
    stem = folder / f"{op}-float32-model-vs-{axis}"
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    plt.close(fig)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["variant"])
        writer.writeheader()
        writer.writerows(table)
    return [stem.with_suffix(".png"), stem.with_suffix(".csv")]


def auto_predictions(predictions) -> list[dict]:
    """Rows for each backend's `auto`: the model time of the side its crossover table picks at (n, k), the
    direct step's (plots.model.crossover.DIRECT) or the FFT's (plots.model.crossover.fft_time), bound "fft" then."""
    from gpu import auto
    from plots.model import crossover
    from plots.model.devices import DEVICES

    rows = []
    for p in predictions:
        if p["variant"] != crossover.wrapped(p["backend"]).get(p["op"]):
            continue
        row = {**p, "variant": "auto"}
        if auto.use_fft(auto.load(p["backend"]), p["op"], p["n"], p["k"], p["dtype"]):
            t = crossover.fft_time(p["n"], p["k"], 4 if p["dtype"] == "float32" else 8, DEVICES[p["device"]])
            scale = p["time_s"] / t
            row.update(time_s=t, bound="fft", gbs=p["gbs"] * scale, gflops=p["gflops"] * scale,
                       hbm_fraction=p["hbm_fraction"] * scale, peak_fraction=p["peak_fraction"] * scale)
        rows.append(row)
    return rows


#: The ladder's targets by the model at n = 1e8: (op, small k?) -> (what, least share); the input gradient
#: runs the forward's engine (gpu/steps.py), so its row is the forward's.
TARGETS = {("conv1d", True): ("hbm_fraction", 0.80), ("conv1d", False): ("peak_fraction", 0.60),
           ("conv1d_weight_grad", True): ("hbm_fraction", 0.60), ("conv1d_weight_grad", False): ("peak_fraction", 0.60)}
TARGET_KS = (3, 7, 127, 511)
#: numba.cuda's best step within this factor of CUDA C's.
BACKEND_RATIO = 1.5


def targets(predictions, slug: str) -> list[dict]:
    """Per backend, op, dtype and k of TARGET_KS at N_AT: the default's direct step (what `auto` runs there,
    plots.model.crossover.DIRECT), its share of HBM bandwidth (k <= 7) or of the dtype's FMA peak (k >= 127), the
    target and whether it is met, the fastest variant by the model when another, and numba.cuda's default
    against CUDA C's (within BACKEND_RATIO)."""
    from plots.model.crossover import wrapped

    at, best = {}, {}
    for p in predictions:
        if p["device"] != slug or p["n"] != N_AT or p["k"] not in TARGET_KS or p["variant"] == "auto":
            continue
        key = (p["backend"], p["op"], p["dtype"], p["k"])
        if p["variant"] == wrapped(p["backend"]).get(p["op"]):
            at[key] = p
        if key not in best or p["time_s"] < best[key]["time_s"]:
            best[key] = p
    rows = []
    for (backend, op, dtype, k), p in sorted(at.items()):
        what, least = TARGETS[(op, k <= 7)]
        fastest = best[(backend, op, dtype, k)]
        row = {"backend": backend, "op": op + (" (and conv1d_input_grad)" if op == "conv1d" else ""),
               "dtype": dtype, "k": k, "default": f"auto: {p['variant']}", "bound": p["bound"],
               "share": f"{p[what]:.1%} of {'HBM' if what == 'hbm_fraction' else 'FMA peak'}",
               "target": f">= {least:.0%}", "met": "yes" if p[what] >= least else f"no ({p[what] / least:.2f}x)",
               "fastest": "" if fastest is p else f"{fastest['variant']} ({fastest[what]:.1%})"}
        cuda_c = at.get(("cupy", op, dtype, k))
        if backend == "numba_cuda" and cuda_c:
            ratio = p["time_s"] / cuda_c["time_s"]
            row["vs CUDA C"] = f"{ratio:.2f}x the time ({'within' if ratio <= BACKEND_RATIO else 'beyond'} 1.5x)"
        rows.append(row)
    return rows


#: The layer's targets by the model (plots.model.layer) at its target shape: op -> least share of the FMA peak.
LAYER_SHAPE = "N8 C64->128 L4096 K3"
LAYER_TARGETS = {"conv1d_layer": 0.50, "conv1d_layer_backward": 0.35}


def layer_targets(layer_predictions, slug: str) -> list[dict]:
    """Per backend, layer op and dtype at LAYER_SHAPE: the variant the default `auto` picks there
    (gpu.auto.layer_uses_gemm), its share of the FMA peak, the target, the fastest variant when another,
    and numba.cuda against CUDA C."""
    from gpu import auto
    from plots.model import layer as layer_model

    p0 = layer_model._problem(layer_model.SHAPES[LAYER_SHAPE], "float32")
    chosen = "gemm" if auto.layer_uses_gemm(p0) else "direct"
    at, best = {}, {}
    for p in layer_predictions:
        if p["device"] == slug and p["shape"] == LAYER_SHAPE:
            key = (p["backend"], p["op"], p["dtype"])
            if p["variant"] == chosen:
                at[key] = p
            if key not in best or p["time_s"] < best[key]["time_s"]:
                best[key] = p
    rows = []
    for (backend, op, dtype), p in sorted(at.items()):
        least = LAYER_TARGETS[op]
        fastest = best[(backend, op, dtype)]
        row = {"backend": backend, "op": op, "dtype": dtype, "k": 3, "default": f"auto: {p['variant']}",
               "share": f"{p['peak_fraction']:.1%} of FMA peak", "target": f">= {least:.0%}",
               "met": "yes" if p["peak_fraction"] >= least else f"no ({p['peak_fraction'] / least:.2f}x)",
               "fastest": "" if fastest is p else f"{fastest['variant']} ({fastest['peak_fraction']:.1%})"}
        cuda_c = at.get(("cupy", op, dtype))
        if backend == "numba_cuda" and cuda_c:
            ratio = p["time_s"] / cuda_c["time_s"]
            row["vs CUDA C"] = f"{ratio:.2f}x the time ({'within' if ratio <= BACKEND_RATIO else 'beyond'} 1.5x)"
        rows.append(row)
    return rows


def write_targets(predictions, slug: str, folder: Path, layer_predictions=()) -> Path:
    """targets.md: the tables of `targets` and `layer_targets`, labelled as the model."""
    from plots.model.devices import DEVICES

    cols = ["backend", "op", "dtype", "k", "default", "bound", "share", "target", "met", "fastest", "vs CUDA C"]

    def table(rows):
        return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
                *("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows)]

    lines = [f"# Ladder targets on {DEVICES[slug].name}: MODEL, not measured", "",
             f"1-D ops at n = {N_AT:.0e} (plots.model.oned):", "", *table(targets(predictions, slug))]
    layer = layer_targets(layer_predictions, slug)
    if layer:
        lines += ["", f"The layer at {LAYER_SHAPE}, padding 1 (plots.model.layer):", "", *table(layer)]
    path = folder / "targets.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    from plots.model.devices import DEVICES

    ap = argparse.ArgumentParser(prog="python -m plots.model", description=__doc__.splitlines()[0])
    ap.add_argument("--device", nargs="+", default=["h100-sxm", "h200"], choices=sorted(DEVICES))
    ap.add_argument("--measured", help="a results file measured on a GPU (plots/results/*.jsonl)")
    ap.add_argument("--out", default=str(PLOTS_DIR))
    args = ap.parse_args(argv)
    for path in draw_model(args.out, args.measured, devices=tuple(args.device)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
