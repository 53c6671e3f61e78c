"""The benchmark plots, drawn from results files (never from live measurements).

For each device, op and dtype of a results file, five figures go to ``plots/<device>/`` as PNG, each
with the CSV of exactly what it shows beside it:

    <op>-<dtype>-time_vs_n    time per call vs n (log-log), a panel per k, with the O(n.k) slope
    <op>-<dtype>-time_vs_k    time vs k at the largest n, direct and FFT methods, crossover k* marked
    <op>-<dtype>-throughput   achieved GFLOP/s and GB/s vs n, for a few k, with the measured ceilings
    <op>-<dtype>-roofline     GFLOP/s vs arithmetic intensity (FLOPs / minimum bytes) at the largest n
    <op>-<dtype>-speedup      speedup of each kernel over the best baseline, a heatmap over (n, k)

and ``summary.md`` (ceilings, k*, speedups at the measured k, fastest implementation per (n, k)).
Colours, line styles and markers come from plots/draw/style.py: the same in every figure.
A draw removes the files an earlier draw left in the same folder and it did not write itself.

A layer run (`python -m plots bench --preset layer`) gets instead, per op and dtype,

    <op>-<dtype>-layer_gflops  GFLOP/s by shape and implementation (grouped bars), with the CSV

and ``layer-summary.md`` (best kernel vs best baseline per shape).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import NullLocator

from plots.bench import analysis, layer
from plots.bench.results import Run
from plots.draw.style import (
    CEILING_STYLE,
    GFLOPS_LABEL,
    LINESTYLE,
    MARKER,
    Palette,
    legend,
    log_axes,
    plt,
    save,
    write_csv,
)

KINDS = ("time_vs_n", "time_vs_k", "throughput", "roofline", "speedup")


def style(table: analysis.Table, impl: str, palette: Palette) -> dict:
    info = table.info[impl]
    kernel = info["kind"] == "kernel"
    return dict(color=palette(impl), ls=LINESTYLE.get(info["method"], "-"), marker=MARKER[info["kind"]],
                lw=2.0 if kernel else 1.3, ms=5 if kernel else 4,
                label=impl + (" *" if info.get("default") else ""))


def title(table: analysis.Table, what: str) -> str:
    return f"{table.op}, {table.dtype}: {what}\n{table.run.device_name(table.device)}"


def footnote(fig, table: analysis.Table):
    meta = table.run.meta
    out = ("kernels called with out= preallocated" if meta.get("out_preallocated")
           else "kernels allocate outputs")
    clock = "CUDA events, L2 flushed" if table.device == "gpu" else "perf_counter"
    fig.text(0.005, 0.005, f"median of repeated calls ({clock}); {out}, baselines allocate; * = default "
             f"variant. {table.run.path.name}, git {(meta.get('git') or {}).get('commit', '')[:10]}",
             fontsize=7, color="0.35", ha="left", va="bottom")


TIME_HEADER = ["op", "dtype", "device", "impl", "kind", "method", "n", "k", "median_s", "p20_s", "p80_s",
               "gflops", "gbs", "flops", "min_bytes"]


def time_rows(table: analysis.Table, points):
    rows = []
    for impl, n, k in points:
        r = table.row(impl, n, k)
        if r:
            t = r["timing"]
            rows.append([table.op, table.dtype, table.device, impl, r["kind"], r["method"], n, k,
                         t["median"], t["p20"], t["p80"], r["flops"] / t["median"] / 1e9,
                         r["min_bytes"] / t["median"] / 1e9, r["flops"], r["min_bytes"]])
    return rows


def _grid(count, ncols_max):
    ncols = min(ncols_max, count)
    return math.ceil(count / ncols), ncols


def _errorbar(ax, xs, med, lo, hi, st):
    ax.errorbar(xs, med, yerr=[np.subtract(med, lo), np.subtract(hi, med)], capsize=0, elinewidth=0.8, **st)


# --- 1. time vs n -------------------------------------------------------------------------------------

def time_vs_n(table: analysis.Table, out: Path, palette: Palette) -> Path:
    ks = table.ks
    nrows, ncols = _grid(len(ks), 5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows + 1.4), squeeze=False)
    # O(n.k) reference: FLOPs at the median rate reached by direct methods at the largest n
    nmax = table.ns[-1]
    rates = [table.gflops(i, nmax, k) for i in table.methods("direct") for k in ks if table.time(i, nmax, k)]
    rate = float(np.median(rates)) if rates else None
    points = []
    for ax, k in zip(axes.flat, ks, strict=False):
        for impl in table.impls:
            ns = [n for n in table.ns if table.time(impl, n, k) is not None]
            if not ns:
                continue
            rs = [table.row(impl, n, k)["timing"] for n in ns]
            _errorbar(ax, ns, [r["median"] for r in rs], [r["p20"] for r in rs], [r["p80"] for r in rs],
                      style(table, impl, palette))
            points += [(impl, n, k) for n in ns]
        flops = {r["n"]: r["flops"] for r in table.rows if r["k"] == k}  # from OPS[op].flops
        if rate and flops:
            ns = sorted(flops)
            ax.plot(ns, [flops[n] / (rate * 1e9) for n in ns], color="0.6", lw=4, alpha=0.35, zorder=0,
                    label=f"O(n·k): 2k(n-k+1) FLOPs at {rate:.1f} GFLOP/s")
        log_axes(ax, title=f"k = {k}", xlabel="n (signal length)")
        if ax in axes[:, 0]:
            ax.set_ylabel("time per call (s)")
    for ax in list(axes.flat)[len(ks):]:
        ax.set_visible(False)
    fig.suptitle(title(table, "time per call vs n, one panel per filter length k"))
    legend(fig, axes.flat)
    footnote(fig, table)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    write_csv(out.with_suffix(".csv"), TIME_HEADER, time_rows(table, points))
    return save(fig, out.with_suffix(".png"))


# --- 2. time vs k, crossover --------------------------------------------------------------------------

def time_vs_k(table: analysis.Table, out: Path, palette: Palette) -> Path:
    ns = [n for n in table.ns if sum(1 for k in table.ks if k <= n) >= 2][-2:] or table.ns[-1:]
    fig, axes = plt.subplots(1, len(ns), figsize=(7.2 * len(ns), 5.6), squeeze=False)
    rows = []
    for ax, n in zip(axes[0], ns, strict=False):
        for impl in table.impls:
            ks = [k for k in table.ks if table.time(impl, n, k) is not None]
            if not ks:
                continue
            rs = [table.row(impl, n, k)["timing"] for k in ks]
            _errorbar(ax, ks, [r["median"] for r in rs], [r["p20"] for r in rs], [r["p80"] for r in rs],
                      style(table, impl, palette))
            rows += time_rows(table, [(impl, n, k) for k in ks])
        log_axes(ax, xlabel="k (filter length)", ylabel="time per call (s)", title=f"n = {n:.0e}")
        crossings = analysis.crossovers(table, n)
        for j, c in enumerate(crossings):
            colour = "black" if c.family == "all" else palette(next(
                (i for i in table.methods("fft", c.family)), "black"))
            if c.k_star is not None:
                ax.axvline(c.k_star, color=colour, lw=1.5 if c.family == "all" else 1.0, ls="-.", alpha=0.8)
            ax.text(0.02, 0.98 - 0.055 * j, f"{c.family}: {c.describe()}", transform=ax.transAxes,
                    fontsize=8, va="top", color=colour,
                    bbox=dict(facecolor="white", alpha=0.7, lw=0, pad=1))
            rows.append([table.op, table.dtype, table.device, f"crossover:{c.family}", "",
                         f"{c.direct} vs {c.fft}", n, "" if c.k_star is None else c.k_star,
                         "", "", "", "", "", "", ""])
    fig.suptitle(title(table, "time vs filter length; direct (solid) vs FFT (dashed); "
                              "k* = where FFT starts to win (dash-dot)"))
    legend(fig, axes.flat, ncol=5)
    footnote(fig, table)
    fig.tight_layout(rect=(0, 0.12, 1, 0.97))
    write_csv(out.with_suffix(".csv"), TIME_HEADER, rows)
    return save(fig, out.with_suffix(".png"))


# --- 3. throughput vs n -------------------------------------------------------------------------------

#: Filter lengths the throughput figure shows when they were measured (else `count` spread over the ks).
THROUGHPUT_KS = (3, 31, 511)


def _chosen_ks(table, want=THROUGHPUT_KS, count=3):
    ks = [k for k in want if k in table.ks]
    if len(ks) < min(count, len(table.ks)):
        idx = np.unique(np.linspace(0, len(table.ks) - 1, min(count, len(table.ks))).round().astype(int))
        ks = [table.ks[i] for i in idx]
    return ks


def throughput(table: analysis.Table, out: Path, palette: Palette) -> Path:
    ks = _chosen_ks(table)
    ceil = analysis.ceiling_values(table.run, table.device)
    fig, axes = plt.subplots(2, len(ks), figsize=(5.0 * len(ks), 7.6), squeeze=False, sharex="col")
    points = []
    for col, k in enumerate(ks):
        top, bottom = axes[0, col], axes[1, col]
        for impl in table.impls:
            ns = [n for n in table.ns if table.time(impl, n, k) is not None]
            if not ns:
                continue
            st = style(table, impl, palette)
            top.plot(ns, [table.gflops(impl, n, k) for n in ns], **st)
            bottom.plot(ns, [table.gbs(impl, n, k) for n in ns], **st)
            points += [(impl, n, k) for n in ns]
        if ("flops", table.dtype) in ceil:
            top.axhline(ceil[("flops", table.dtype)], **CEILING_STYLE["flops"],
                        label=f"peak {table.dtype} (matmul)")
        for level in ("dram", "cache"):
            if ("bandwidth", level) in ceil:
                bottom.axhline(ceil[("bandwidth", level)], **CEILING_STYLE[level],
                               label=f"copy bandwidth ({level})")
        log_axes(top, title=f"k = {k}", ylabel=GFLOPS_LABEL)
        log_axes(bottom, xlabel="n (signal length)", ylabel="achieved GB/s (minimum bytes / time)")
    fig.suptitle(title(table, "throughput vs n: FLOPs = 2k(n-k+1), minimum bytes = inputs read + "
                              "output written once"))
    legend(fig, axes.flat, ncol=5)
    footnote(fig, table)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    write_csv(out.with_suffix(".csv"), TIME_HEADER, time_rows(table, points))
    return save(fig, out.with_suffix(".png"))


# --- 4. roofline ---------------------------------------------------------------------------------------

def roofline(table: analysis.Table, out: Path, palette: Palette) -> Path:
    n = table.ns[-1]
    ceil = analysis.ceiling_values(table.run, table.device)
    fig, ax = plt.subplots(figsize=(12, 6.8))
    log_axes(ax)  # before the secondary axis, which copies the scale
    intensity = {}
    points = []
    for impl in table.impls:
        ks = [k for k in table.ks if table.time(impl, n, k) is not None]
        if not ks:
            continue
        for k in ks:
            r = table.row(impl, n, k)
            intensity[k] = r["flops"] / r["min_bytes"]
        ax.plot([intensity[k] for k in ks], [table.gflops(impl, n, k) for k in ks],
                **style(table, impl, palette))
        points += [(impl, n, k) for k in ks]
    if intensity:
        lo, hi = min(intensity.values()) / 2, max(intensity.values()) * 2
        xs = np.geomspace(lo, hi, 200)
        peak = ceil.get(("flops", table.dtype))
        if peak:
            ax.axhline(peak, **CEILING_STYLE["flops"], label=f"peak {table.dtype} matmul: {peak:.0f} GFLOP/s")
        for level in ("dram", "cache"):
            bw = ceil.get(("bandwidth", level))
            if bw:
                roof = bw * xs if not peak else np.minimum(bw * xs, peak)
                ax.plot(xs, roof, **CEILING_STYLE[level], label=f"copy bandwidth ({level}): {bw:.0f} GB/s")
        ax.set_xlim(lo, hi)
        top = ax.secondary_xaxis("top")
        ticks = sorted(intensity)
        top.set_xticks([intensity[k] for k in ticks], labels=[str(k) for k in ticks], fontsize=7)
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xlabel("k (filter length) at this intensity", fontsize=8)
    ax.set(xlabel="arithmetic intensity (FLOPs / minimum bytes)", ylabel=GFLOPS_LABEL)
    ax.set_title(title(table, f"roofline at n = {n:.0e}, one point per (k, implementation); FFT methods "
                              "do fewer FLOPs, their rate is effective"), fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    footnote(fig, table)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    rows = time_rows(table, points)
    rows += [[table.op, table.dtype, table.device, f"ceiling:{kind}:{key}", "", "", "", "", "", "", "",
              value if kind == "flops" else "", value if kind == "bandwidth" else "", "", ""]
             for (kind, key), value in ceil.items()]
    write_csv(out.with_suffix(".csv"), TIME_HEADER, rows)
    return save(fig, out.with_suffix(".png"))


# --- 5. speedup heatmap ----------------------------------------------------------------------------------

def speedup(table: analysis.Table, out: Path, palette: Palette) -> Path | None:
    impls, ns, ks = table.kernels(), table.ns, table.ks
    if not impls or not table.baselines():
        return None
    nrows, ncols = _grid(len(impls), 3)
    width, height = max(4.2, 0.6 * len(ks) + 1.6), max(3.0, 0.5 * len(ns) + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols + 1.6, height * nrows + 1.3), squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    rows = []
    grids = []
    for impl in impls:
        s = np.full((len(ns), len(ks)), np.nan)
        for a, n in enumerate(ns):
            for b, k in enumerate(ks):
                v = table.speedup(impl, n, k)
                if v is not None:
                    s[a, b] = v
                    base, tb = table.best_baseline(n, k)
                    rows.append([table.op, table.dtype, table.device, impl, n, k, table.time(impl, n, k),
                                 base, tb, v])
        grids.append(s)
    finite = np.concatenate([np.log2(g[np.isfinite(g)]) for g in grids])
    span = float(np.clip(np.max(np.abs(finite)) if finite.size else 1.0, 1.0, 8.0))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")
    for ax, impl, s in zip(axes.flat, impls, grids, strict=False):
        im = ax.imshow(np.log2(s), cmap=cmap, norm=norm, aspect="auto", origin="lower")
        for a in range(len(ns)):
            for b in range(len(ks)):
                if np.isfinite(s[a, b]):
                    v = s[a, b]
                    ax.text(b, a, f"{v:.2g}" if v < 10 else f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(math.log2(v)) > 0.6 * span else "black")
        ax.set_xticks(range(len(ks)), [str(k) for k in ks], fontsize=8)
        ax.set_yticks(range(len(ns)), [f"{n:.0e}" for n in ns], fontsize=8)
        ax.set(xlabel="k (filter length)", ylabel="n (signal length)",
               title=impl + (" (default)" if table.info[impl].get("default") else ""))
        for spine in ax.spines.values():
            spine.set_edgecolor(palette(impl))
            spine.set_linewidth(3)
    for ax in list(axes.flat)[len(impls):]:
        ax.set_visible(False)
    cbar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9)
    step = 1 if span <= 4 else 2
    ticks = [t for t in range(-int(span), int(span) + 1) if t % step == 0]
    cbar.set_ticks(ticks, labels=[f"{2**t}x" if t >= 0 else f"1/{2**-t}x" for t in ticks])
    cbar.set_label("speedup = time of best baseline / time (>1: kernel faster)")
    fig.suptitle(title(table, "speedup over the best baseline at each (n, k); grey: not measured"),
                 fontsize=10)
    footnote(fig, table)
    write_csv(out.with_suffix(".csv"), ["op", "dtype", "device", "impl", "n", "k", "median_s",
                                        "best_baseline", "best_baseline_median_s", "speedup"], rows)
    return save(fig, out.with_suffix(".png"))


DRAW = {"time_vs_n": time_vs_n, "time_vs_k": time_vs_k, "throughput": throughput, "roofline": roofline,
        "speedup": speedup}


# --- the layer preset: GFLOP/s by shape and implementation ------------------------------------------

LAYER_HEADER = ["op", "dtype", "device", "shape", "impl", "kind", "median_s", "p20_s", "p80_s", "gflops",
                "flops", "status", "reason"]


def layer_bars(run: Run, device: str, op: str, dtype: str, out: Path, palette: Palette) -> Path:
    """Grouped bars: one group per shape, one bar per implementation; skipped or failed: no bar."""
    rows = [r for r in run.rows if r["device"] == device and r["op"] == op and r["dtype"] == dtype]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    kinds = {r["impl"]: r["kind"] for r in rows}
    impls = sorted(kinds, key=lambda i: (kinds[i] != "kernel", i))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(shapes) * max(1, len(impls)) * 0.45 + 3), 5.2))
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        xs, ys, lo, hi = [], [], [], []
        for i, shape in enumerate(shapes):
            r = next((r for r in rows if r["impl"] == impl and r["shape"] == shape and r["status"] == "ok"), None)
            if r:
                t = r["timing"]
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["flops"] / t["median"] / 1e9)
                lo.append(ys[-1] - r["flops"] / t["p80"] / 1e9)
                hi.append(r["flops"] / t["p20"] / 1e9 - ys[-1])
        ax.bar(xs, ys, width, yerr=[lo, hi], color=palette(impl), label=impl,
               hatch="" if kinds[impl] == "kernel" else "//", edgecolor="white", error_kw=dict(lw=0.8))
    ax.set_xticks(range(len(shapes)), [s.replace(" L", "\nL") for s in shapes], fontsize=8)
    ax.set(ylabel="GFLOP/s (2 per MAC, kernels.layer_counts)", xlabel="shape (N, C_in>C_out, L, K, padding)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(4, len(impls)) or 1)
    ax.set_title(f"{op}, {dtype}: GFLOP/s by shape and backend (hatched: baseline)\n"
                 f"{run.device_name(device)}", fontsize=10)
    fig.text(0.005, 0.005, f"median of repeated calls, bars p20-p80; {run.path.name}, git "
             f"{(run.meta.get('git') or {}).get('commit', '')[:10]}", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    write_csv(out.with_suffix(".csv"), LAYER_HEADER, [
        [r["op"], r["dtype"], r["device"], r["shape"], r["impl"], r["kind"],
         *((r["timing"]["median"], r["timing"]["p20"], r["timing"]["p80"], r["gflops"])
           if r["status"] == "ok" else ("", "", "", "")), r["flops"], r["status"], r.get("reason", "")]
        for r in rows])
    return save(fig, out.with_suffix(".png"))


#: The files a draw owns in a device folder, by kind of run: what an earlier draw of the same kind left
#: there and this one did not write is removed.
OWNED = {"sweep": [f"*-{kind}.{ext}" for kind in KINDS for ext in ("png", "csv")] + ["summary.md"],
         "layer": ["*-layer_gflops.png", "*-layer_gflops.csv", "layer-summary.md"]}


def remove_stale(folder: Path, written: list[Path], kind: str) -> list[Path]:
    """Delete the files of `kind` ("sweep" or "layer") in `folder` that this draw did not write (each
    figure in `written` has its CSV beside it)."""
    keep = {q.resolve() for p in map(Path, written) for q in (p, p.with_suffix(".csv"))}
    stale = sorted({p for pattern in OWNED[kind] for p in folder.glob(pattern)
                    if p.is_file() and p.resolve() not in keep})
    for p in stale:
        p.unlink()
    return stale


def draw_layer_run(run: Run, device: str, d: Path, palette: Palette) -> list[Path]:
    written = [layer_bars(run, device, op, dtype, d / f"{op}-{dtype}-layer_gflops", palette)
               for op, dtype in dict.fromkeys((r["op"], r["dtype"]) for r in run.rows if r["device"] == device)]
    summary = d / "layer-summary.md"
    summary.write_text("\n".join(layer.summary(run, device)) + "\n")
    return [*written, summary]


def draw_run(run: Run, device: str, out_dir: Path, palette: Palette | None = None) -> list[Path]:
    """Every figure of one device of one run, plus summary.md, under out_dir/<device slug>/; files of an
    earlier draw of the same kind there that this one did not write are removed (`remove_stale`)."""
    d = Path(out_dir) / run.device_slug(device)
    d.mkdir(parents=True, exist_ok=True)
    palette = palette or Palette({r["impl"] for r in run.rows})
    if any("shape" in r for r in run.rows):
        written = draw_layer_run(run, device, d, palette)
        remove_stale(d, written, "layer")
        return written
    written = []
    for table in analysis.tables(run, device):
        for kind in KINDS:
            path = DRAW[kind](table, d / f"{table.op}-{table.dtype}-{kind}", palette)
            if path:
                written.append(path)
    summary = d / "summary.md"
    summary.write_text("\n".join(analysis.summary(run, device)) + "\n")
    written.append(summary)
    remove_stale(d, written, "sweep")
    return written
