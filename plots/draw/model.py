"""The static model's figures, from a predictions file (plots/model/predict.py), with the measured GPU rows of a
results file beside them when there is one:

    plots/<device>-model/<op>-float32-model-vs-n.png   predicted GB/s and GFLOP/s against n, at k = 3, 31, 511
    plots/<device>-model/<op>-float32-model-vs-k.png   the same against k at n = 1e8
    plots/<device>-model/targets.md                    the ladder's targets: the default step's share, met or not

one line per modelled step (auto drawn wide under the step it runs; an FFT's effective rate circled), each
with its CSV; the legend below the panels; titled "model, no GPU measured", or with a third panel of
measured / model when measured rows of that device are given.
"""

from __future__ import annotations

import csv
from pathlib import Path

from plots.draw.style import AUTO_BAND, MARKERS, Palette, layered, plt, ticks_at
from plots.model import predict
from plots.model.devices import DEVICES

LABEL = "model, no GPU measured"
KS_AT, N_AT, KS = predict.KS_AT, predict.N_AT, predict.KS


def draw(path, out_dir, measured_run=None) -> list[Path]:
    """Every model figure and targets.md of the predictions file `path`, under out_dir/<device>-model/."""
    meta, predictions, target_rows = predict.read(path)
    written = []
    for slug in meta["devices"]:
        folder = Path(out_dir) / f"{slug}-model"
        folder.mkdir(parents=True, exist_ok=True)
        measured = _measured(measured_run, slug)
        preds = [p for p in predictions if p["device"] == slug and p["dtype"] == "float32" and not p.get("layer")]
        written.append(write_targets([r for r in target_rows if r["device"] == slug], slug, folder))
        for op in dict.fromkeys(p["op"] for p in preds):
            rows = [p for p in preds if p["op"] == op]
            variants = sorted({(p["backend"], p["variant"]) for p in rows})
            for axis in ("n", "k"):
                written += _figure(plt, folder, slug, op, axis, rows, variants, measured)
    return written


def measured_on(gpu: dict, device_slug: str) -> bool:
    """True when a results file's GPU (its metadata "gpu") is the model's device `device_slug`: its slug, or
    the device family ("h100", "h200") anywhere in its name, as in "NVIDIA H100 80GB HBM3"."""
    name = str(gpu.get("name", "")).lower().replace(" ", "-")
    return device_slug in (gpu.get("slug"), gpu.get("model_slug")) or (bool(name) and device_slug.split("-")[0] in name)


def _measured(run, device_slug: str) -> dict:
    """{(backend, variant, op, n, k): row} of the ok float32 GPU rows of a results run on this device."""
    if run is None:
        return {}
    if not measured_on(run.meta.get("gpu") or {}, device_slug):
        return {}
    return {(r["backend"], r["variant"], r["op"], r["n"], r["k"]): r for r in run.rows
            if r.get("device") == "gpu" and r.get("status") == "ok" and r.get("dtype") == "float32"
            and "k" in r}


def _figure(plt, folder, slug, op, axis, rows, variants, measured) -> list[Path]:
    device = DEVICES[slug]
    fixed = KS_AT if axis == "n" else (N_AT,)
    with_measured = any((b, v, op, p["n"], p["k"]) in measured for p in rows for b, v in variants)
    panels = 3 if with_measured else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 6.4), squeeze=False)
    axes = axes[0]
    ladders = {}
    for b, v in variants:
        ladders.setdefault(b, []).append(v)
    palette = Palette([f"{b}:{v}" for b, v in variants], ladders)  # a hue per backend, a shade per ladder step
    styles = ("-", "--", ":")
    table = []
    for vi, (backend, variant) in enumerate(variants):
        color = palette(f"{backend}:{variant}")
        f = layered(vi, len(variants))  # drawn earlier, wider: a line under a later one still shows
        look = dict(lw=1.3 * f, marker=MARKERS["kernel"][vi % len(MARKERS["kernel"])], ms=3.0 * f, mec="white",
                    mew=0.4, zorder=2 + vi / len(variants))
        if variant == "auto":
            look.update(AUTO_BAND)  # under the step it runs
        for fi, value in enumerate(fixed):
            pts = sorted((p for p in rows if (p["backend"], p["variant"]) == (backend, variant)
                          and (p["k"] if axis == "n" else p["n"]) == value), key=lambda p: p[axis])
            if axis == "k":
                pts = [p for p in pts if p["k"] in KS]
            if not pts:
                continue
            xs = [p[axis] for p in pts]
            name = f"{backend}:{variant}"
            for ax, key in zip(axes[:2], ("gbs", "gflops")):
                ax.plot(xs, [p[key] for p in pts], styles[fi % 3], color=color, label=name if fi == 0 else "_",
                        **look)
                if variant == "auto":  # the default's band, up to the optimistic bound (all bands hid the lines)
                    ax.fill_between(xs, [p[key] for p in pts], [p.get("optimistic", p)[key] for p in pts],
                                    color=color, alpha=0.15, lw=0, zorder=1)
                fft = [p for p in pts if p["bound"] == "fft"]  # an FFT's rate counts the direct FLOPs: effective
                ax.plot([p[axis] for p in fft], [p[key] for p in fft], "o", mfc="none", mec="black", ms=8,
                        mew=1.0, zorder=5, label="FFT: effective rate (direct FLOPs / FFT time)" if fft else "_")
            got = [(p, measured.get((backend, variant, op, p["n"], p["k"]))) for p in pts]
            got = [(p, m) for p, m in got if m]
            if got:
                for ax, key in zip(axes[:2], ("gbs", "gflops")):
                    ax.plot([p[axis] for p, _ in got], [m[key] for _, m in got], "o", color=color, ms=4)
                axes[2].plot([p[axis] for p, _ in got], [m["gflops"] / p["gflops"] for p, m in got],
                             "o" + styles[fi % 3], color=color, label=name if fi == 0 else "_")
            for p in pts:
                m = measured.get((backend, variant, op, p["n"], p["k"]))
                table.append({"variant": f"{backend}:{variant}", "n": p["n"], "k": p["k"], "bound": p["bound"],
                              "model_gbs": p["gbs"], "model_gflops": p["gflops"],
                              "optimistic_gflops": p.get("optimistic", p)["gflops"],
                              "measured_gflops": m["gflops"] if m else "",
                              "ratio": m["gflops"] / p["gflops"] if m else ""})
    peak = device.fp32_gflops
    axes[0].axhline(device.copy_gbs, color="grey", lw=0.8)
    axes[0].text(0.02, 0.97, f"HBM: copy {device.copy_gbs:.0f} GB/s (datasheet {device.hbm_gbs:.0f})",
                 transform=axes[0].transAxes, va="top", fontsize=8)
    axes[1].axhline(peak, color="grey", lw=0.8)
    axes[1].text(0.02, 0.97, f"FP32 peak {peak / 1e3:.1f} TFLOP/s", transform=axes[1].transAxes, va="top",
                 fontsize=8)
    for ax, ylabel in zip(axes, ("GB/s (min bytes / time)", "GFLOP/s (2 k m / time; FFT: effective)",
                                 "measured / model")):
        ax.set_xscale("log", base=10 if axis == "n" else 2)
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if axis == "k":
            ticks_at(ax.xaxis, KS)  # the modelled k (2^j - 1), not the powers of two
            ax.tick_params(axis="x", labelsize=7)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if axis == "n":  # the line style says which k
        handles += [plt.Line2D([], [], color="0.3", ls=styles[i % 3]) for i in range(len(fixed))]
        labels += [f"k = {k}" for k in fixed]
    ncol = 5
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    where = f"k in {KS_AT}" if axis == "n" else f"n = {N_AT:.0e}"
    label = "model (lines) and measured (dots)" if with_measured else LABEL
    fig.suptitle(f"{device.name}: {op} float32 vs {axis} ({where}): {label}\n"
                 "lines: latency-aware estimate; "
                 "shaded: the default's band up to the optimistic bound (latency hidden)",
                 fontsize=10)
    fig.tight_layout(rect=(0, (0.2 * -(-len(labels) // ncol) + 0.15) / fig.get_figheight(), 1, 1))
    stem = folder / f"{op}-float32-model-vs-{axis}"
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    plt.close(fig)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["variant"])
        writer.writeheader()
        writer.writerows(table)
    return [stem.with_suffix(".png"), stem.with_suffix(".csv")]


def errors(path, measured_run) -> list[str]:
    """Per kernel measured on a model's device: measured GFLOP/s against the band, measured / model."""
    meta, predictions, _ = predict.read(path)
    lines = []
    for slug in meta["devices"]:
        measured = _measured(measured_run, slug)
        for p in predictions:
            m = measured.get((p["backend"], p["variant"], p["op"], p["n"], p["k"]))
            if m and p["device"] == slug and p["dtype"] == "float32" and not p.get("layer"):
                high = p.get("optimistic", p)["gflops"]
                lines.append(f"{slug} {p['backend']}:{p['variant']} {p['op']} n={p['n']:.0e} k={p['k']}: measured "
                             f"{m['gflops']:.0f} GFLOP/s, model {p['gflops']:.0f} ({p['bound']}) to {high:.0f}, "
                             f"measured / model {m['gflops'] / p['gflops']:.2f}")
    return lines


#: The columns of targets.md.
TARGET_COLUMNS = ["backend", "op", "dtype", "k", "default", "bound", "share", "band", "target", "met", "fastest",
                  "vs CUDA C"]


def write_targets(target_rows, slug: str, folder: Path) -> Path:
    """targets.md: the 1-D and the layer targets of one device, labelled as the model."""
    def table(rows):
        return ["| " + " | ".join(TARGET_COLUMNS) + " |", "|" + "---|" * len(TARGET_COLUMNS),
                *("| " + " | ".join(str(r.get(c, "")) for c in TARGET_COLUMNS) + " |" for r in rows)]

    device = DEVICES[slug]
    lines = [f"# Ladder targets on {device.name}: MODEL, not measured", "",
             f"1-D ops at n = {N_AT:.0e} (plots.model.oned). `share` and `bound`: the latency-aware estimate (bytes "
             f"in flight against DRAM {device.dram_latency_ns:.0f} ns and L2 {device.l2_latency_cycles} cycles, "
             f"each chunk's round trips and whole life from the SASS, waves and their tail), which decides `met`; "
             f"`band`: from it up to the optimistic bound (latency hidden, hot loop only) and what decides that. "
             f"HBM shares are of the measured copy ceiling, {device.copy_gbs / 1e3:.1f} TB/s (datasheet "
             f"{device.hbm_gbs / 1e3:.2f}); FMA peaks at {device.clock_ghz} GHz.", "",
             *table([r for r in target_rows if r["table"] == "1-D"])]
    layer = [r for r in target_rows if r["table"] == "layer"]
    if layer:
        lines += ["", f"The layer at {predict.LAYER_SHAPE}, padding 1 (plots.model.layer):", "", *table(layer)]
    path = folder / "targets.md"
    path.write_text("\n".join(lines) + "\n")
    return path
