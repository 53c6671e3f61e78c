"""The benchmark plots, drawn from results files (never from live measurements).

For each device, op and dtype of a results file, five figures go to ``<out>/<device slug>/`` as PNG, each
with the CSV of exactly what it shows beside it:

    <op>-<dtype>-time_vs_n    time per call vs n (log-log), a panel per k, with the O(n.k) slope
    <op>-<dtype>-time_vs_k    time vs k at the largest n, direct and FFT methods, the crossover as the
                              interval between the measured k where direct last wins and FFT wins
    <op>-<dtype>-throughput   achieved GFLOP/s and GB/s vs n, for a few k, with the measured ceilings
    <op>-<dtype>-roofline     GFLOP/s vs arithmetic intensity (FLOPs / minimum bytes) at the largest n
    <op>-<dtype>-speedup      speedup of each kernel over the best baseline, a heatmap over (n, k)

and ``summary.md`` (ceilings, k*, speedups at the measured k, fastest implementation per (n, k)).
Colours, line styles and markers come from plots/draw/style.py: the same in every figure. A playground FFT
kernel is drawn as what it runs at each point: solid where it keeps its direct kernel (sums shorter than
kernels.fft_choice.MIN_SUM), dashed where it runs the FFT. When the ceilings moved by more than
analysis.LOAD_MARGIN between the start and the end of the run, every footer says the machine was loaded.
A draw removes the files an earlier draw left in the same folder and it did not write itself.

A layer run (`python -m plots bench --preset layer`) gets instead, per op and dtype,

    <op>-<dtype>-layer_gflops  GFLOP/s by shape and implementation (a row per shape, log axis), with the CSV

and ``layer-summary.md`` (best kernel vs best baseline per shape).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import NullLocator

from kernels.fft_choice import MIN_SUM
from plots.bench import analysis, layer
from plots.bench.results import Run
from plots.draw.style import (
    AUTO_BAND,
    CEILING_STYLE,
    EFFECTIVE,
    GFLOPS_LABEL,
    LINESTYLE,
    MARKERS,
    Palette,
    layered,
    legend,
    log_axes,
    plt,
    save,
    side_legend,
    ticks_at,
    write_csv,
)

KINDS = ("time_vs_n", "time_vs_k", "throughput", "roofline", "speedup")

#: Inches at the bottom of a figure: the footnote (one or two lines), then a row of the legend above it.
FOOT_IN, LEGEND_ROW_IN = 0.34, 0.19


def looks(table: analysis.Table, palette: Palette, rates: bool = False) -> dict[str, dict]:
    """Per implementation, in drawing order (table.impls: kernels, default first, then baselines): colour by
    family, line by method, a marker per member of its kind, sizes layered (style.layered) so that none hides
    another, `auto` as a band under the step it runs; with `rates`, FFT methods labelled effective."""
    out, members = {}, {"kernel": 0, "baseline": 0}
    impls = table.impls
    for rank, impl in enumerate(impls):
        info = table.info[impl]
        kind, method = info["kind"], info["method"]
        f = layered(rank, len(impls))
        marker = MARKERS[kind][members[kind] % len(MARKERS[kind])]
        members[kind] += 1
        switches = any(runs_direct(table, impl, n, k) for i, n, k in table.t if i == impl)
        label = impl + (" *" if info.get("default") else "") + (
            f" (direct below {MIN_SUM}{' taps' if table.op != 'conv1d_weight_grad' else '-term sums'}"
            f"{', effective above' if rates else ''})" if switches
            else EFFECTIVE if rates and method == "fft" else "")
        st = dict(color=palette(impl), ls=LINESTYLE.get(method, "-"), marker=marker, lw=1.2 * f, ms=3.4 * f,
                  mec="white", mew=0.4, label=label, zorder=2 + rank / len(impls))
        if method == "auto":
            st.update(AUTO_BAND, ms=5.0 * f)
        out[impl] = st
    return out


#: Where a kernel of method "fft" runs its direct kernel (one definition, in the analysis): (table, impl, n, k).
runs_direct = analysis.Table.runs_direct


def series(ax, table, impl, points, xs, ys, st, err=None):
    """One implementation's line through `points` ((n, k) pairs, at xs, ys; err: (low, high) offsets or None).
    A playground FFT kernel is drawn solid where it runs its direct kernel and dashed where it runs the FFT."""
    direct = [runs_direct(table, impl, n, k) for n, k in points]
    if not any(direct) or all(direct):
        parts = [(range(len(points)), {})]
        if all(direct):
            st = {**st, "ls": LINESTYLE["direct"]}
    else:
        cut = direct.index(False)  # direct below the switch, FFT from it on (the switch point in both)
        parts = [(range(cut + 1), {"ls": LINESTYLE["direct"]}), (range(cut, len(points)), {"label": "_"})]
    for idx, change in parts:
        idx = list(idx)
        kw = {**st, **change}
        px, py = [xs[i] for i in idx], [ys[i] for i in idx]
        if err is None:
            ax.plot(px, py, **kw)
        else:
            lo, hi = [err[0][i] for i in idx], [err[1][i] for i in idx]
            ax.errorbar(px, py, yerr=[lo, hi], capsize=0, elinewidth=0.8, **kw)


def timed(table, impl, points):
    """(points, medians, (median - p20, p80 - median)) of the measured ones among `points`."""
    pts = [(n, k) for n, k in points if table.time(impl, n, k) is not None]
    rs = [table.row(impl, n, k)["timing"] for n, k in pts]
    med = [r["median"] for r in rs]
    return pts, med, (np.subtract(med, [r["p20"] for r in rs]), np.subtract([r["p80"] for r in rs], med))


def title(table: analysis.Table, what: str) -> str:
    return f"{table.op}, {table.dtype}: {what}\n{table.run.device_name(table.device)}"


def footer_text(run: Run, device: str, what: str) -> tuple[str, str | None]:
    """(the footnote: how it was measured, the results file and commit; the load note or None)."""
    meta = run.meta
    return (f"{what}. {run.path.name}, git {(meta.get('git') or {}).get('commit', '')[:10]}",
            analysis.load_note(run.ceilings, device))


def footnote(fig, table: analysis.Table):
    """The run's footnote at the bottom left, and below it, in red, the load note when the machine was loaded."""
    meta = table.run.meta
    out = ("kernels called with out= preallocated" if meta.get("out_preallocated")
           else "kernels allocate outputs")
    clock = "CUDA events, L2 flushed" if table.device == "gpu" else "perf_counter"
    put_footer(fig, *footer_text(table.run, table.device, f"median of repeated calls ({clock}); {out}, baselines "
                                                          "allocate; * = default variant"))


def put_footer(fig, text: str, note: str | None):
    fig.text(0.005, 0.005 + (0.16 / fig.get_figheight() if note else 0), text, fontsize=7, color="0.35",
             ha="left", va="bottom")
    if note:
        fig.text(0.005, 0.005, note, fontsize=7, color="#b2182b", ha="left", va="bottom", weight="bold")


def finish(fig, axes, ncol=5, top=1.0):
    """The legend below the panels, the layout above it."""
    rows = legend(fig, axes, ncol=ncol, y=FOOT_IN / fig.get_figheight())
    bottom = (FOOT_IN + LEGEND_ROW_IN * rows + 0.1) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, top))


TIME_HEADER = ["op", "dtype", "device", "impl", "kind", "method", "n", "k", "median_s", "p20_s", "p80_s",
               "gflops", "gbs", "flops", "min_bytes"]


def time_rows(table: analysis.Table, points):
    rows = []
    for impl, n, k in points:
        r = table.row(impl, n, k)
        if r:
            t = r["timing"]
            method = "direct" if runs_direct(table, impl, n, k) else r["method"]
            rows.append([table.op, table.dtype, table.device, impl, r["kind"], method, n, k,
                         t["median"], t["p20"], t["p80"], r["flops"] / t["median"] / 1e9,
                         r["min_bytes"] / t["median"] / 1e9, r["flops"], r["min_bytes"]])
    return rows


def _grid(count, ncols_max):
    ncols = min(ncols_max, count)
    return math.ceil(count / ncols), ncols


def _sci(v) -> str:
    """1000 -> '1e3', 1000000 -> '1e6'; other values as they are."""
    e = round(math.log10(v)) if v > 0 else 0
    return f"1e{e}" if v == 10**e else f"{v:g}"


# --- 1. time vs n -------------------------------------------------------------------------------------

def time_vs_n(table: analysis.Table, out: Path, palette: Palette) -> Path:
    ks = table.ks
    nrows, ncols = _grid(len(ks), 5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows + 1.8), squeeze=False)
    # O(n.k) reference: FLOPs at the median rate reached by direct methods at the largest n
    nmax = table.ns[-1]
    rates = [table.gflops(i, nmax, k) for i in table.methods("direct") for k in ks if table.time(i, nmax, k)]
    rate = float(np.median(rates)) if rates else None
    st = looks(table, palette)
    points = []
    for ax, k in zip(axes.flat, ks, strict=False):
        for impl in table.impls:
            pts, med, err = timed(table, impl, [(n, k) for n in table.ns])
            if pts:
                series(ax, table, impl, pts, [n for n, _ in pts], med, st[impl], err)
                points += [(impl, n, k) for n, _ in pts]
        flops = {r["n"]: r["flops"] for r in table.rows if r["k"] == k}  # from OPS[op].flops
        if rate and flops:
            ns = sorted(flops)
            ax.plot(ns, [flops[n] / (rate * 1e9) for n in ns], color="0.6", lw=4, alpha=0.35, zorder=0,
                    label=f"O(n·k): 2k(n-k+1) FLOPs at {rate:.1f} GFLOP/s")
        log_axes(ax, title=f"k = {k}", xlabel="n (signal length)")
        ticks_at(ax.xaxis, [n for n in table.ns if n >= k], _sci)
        if ax in axes[:, 0]:
            ax.set_ylabel("time per call (s)")
    for ax in list(axes.flat)[len(ks):]:
        ax.set_visible(False)
    fig.suptitle(title(table, "time per call vs n, one panel per filter length k"))
    footnote(fig, table)
    finish(fig, axes.flat, ncol=5)
    write_csv(out.with_suffix(".csv"), TIME_HEADER, time_rows(table, points))
    return save(fig, out.with_suffix(".png"))


# --- 2. time vs k, crossover --------------------------------------------------------------------------

def time_vs_k(table: analysis.Table, out: Path, palette: Palette) -> Path:
    ns = [n for n in table.ns if sum(1 for k in table.ks if k <= n) >= 2][-2:] or table.ns[-1:]
    fig, axes = plt.subplots(1, len(ns), figsize=(7.2 * len(ns), 6.6), squeeze=False)
    st = looks(table, palette)
    rows = []
    for ax, n in zip(axes[0], ns, strict=False):
        for impl in table.impls:
            pts, med, err = timed(table, impl, [(n, k) for k in table.ks])
            if pts:
                series(ax, table, impl, pts, [k for _, k in pts], med, st[impl], err)
                rows += time_rows(table, [(impl, n, k) for _, k in pts])
        log_axes(ax, xlabel="k (filter length)", ylabel="time per call (s)", title=f"n = {_sci(n)}")
        ticks_at(ax.xaxis, [k for k in table.ks if k <= n])
        crossings = analysis.crossovers(table, n)
        for j, c in enumerate(crossings):
            colour = "black" if c.family == "all" else palette(next(
                (i for i in table.methods("fft", c.family)), "black"))
            if c.first_k is not None:  # the interval between the measured k where direct and FFT win
                lo = c.last_direct if c.last_direct is not None else c.first_k / 1.25
                ax.axvspan(lo, c.first_k, color=colour, alpha=0.12 if c.family == "all" else 0.08, lw=0, zorder=0)
                ax.axvline(c.first_k, color=colour, lw=1.5 if c.family == "all" else 1.0, ls="-.", alpha=0.8)
            ax.text(0.02, 0.98 - 0.055 * j, f"{c.family}: {c.describe()}", transform=ax.transAxes,
                    fontsize=8, va="top", color=colour, zorder=10,
                    bbox=dict(facecolor="white", alpha=0.8, lw=0, pad=1))
            rows.append([table.op, table.dtype, table.device, f"crossover:{c.family}", "",
                         f"{c.direct} vs {c.fft}", n,
                         "" if c.first_k is None else f"({c.last_direct or 0}, {c.first_k}]",
                         "", "", "", "", "", "", ""])
    fig.suptitle(title(table, "time vs filter length; direct (solid) vs FFT (dashed); shaded: between the "
                              "measured k where direct last wins and FFT wins from (dash-dot)"))
    footnote(fig, table)
    finish(fig, axes.flat, ncol=4)
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
    fig, axes = plt.subplots(2, len(ks), figsize=(5.0 * len(ks), 9.0), squeeze=False, sharex="col")
    st = looks(table, palette, rates=True)
    points = []
    for col, k in enumerate(ks):
        top, bottom = axes[0, col], axes[1, col]
        for impl in table.impls:
            pts = [(n, k) for n in table.ns if table.time(impl, n, k) is not None]
            if not pts:
                continue
            xs = [n for n, _ in pts]
            series(top, table, impl, pts, xs, [table.gflops(impl, n, k) for n, _ in pts], st[impl])
            series(bottom, table, impl, pts, xs, [table.gbs(impl, n, k) for n, _ in pts], st[impl])
            points += [(impl, n, k) for n in xs]
        if ("flops", table.dtype) in ceil:
            top.axhline(ceil[("flops", table.dtype)], **CEILING_STYLE["flops"],
                        label=f"peak {table.dtype} (matmul)")
        for level in ("dram", "cache"):
            if ("bandwidth", level) in ceil:
                bottom.axhline(ceil[("bandwidth", level)], **CEILING_STYLE[level],
                               label=f"copy bandwidth ({level})")
        log_axes(top, title=f"k = {k}", ylabel=GFLOPS_LABEL if col == 0 else None)
        log_axes(bottom, xlabel="n (signal length)",
                 ylabel="achieved GB/s (minimum bytes / time)" if col == 0 else None)
        ticks_at(bottom.xaxis, [n for n in table.ns if n >= k], _sci)
    fig.suptitle(title(table, "throughput vs n: FLOPs = 2k(n-k+1), minimum bytes = inputs read + "
                              "output written once"))
    footnote(fig, table)
    finish(fig, axes.flat, ncol=4)
    write_csv(out.with_suffix(".csv"), TIME_HEADER, time_rows(table, points))
    return save(fig, out.with_suffix(".png"))


# --- 4. roofline ---------------------------------------------------------------------------------------

def roofline(table: analysis.Table, out: Path, palette: Palette) -> Path:
    n = table.ns[-1]
    ceil = analysis.ceiling_values(table.run, table.device)
    fig, ax = plt.subplots(figsize=(12, 6.8))
    log_axes(ax)  # before the secondary axis, which copies the scale
    st = looks(table, palette, rates=True)
    intensity = {}
    points = []
    for impl in table.impls:
        pts = [(n, k) for k in table.ks if table.time(impl, n, k) is not None]
        if not pts:
            continue
        for _, k in pts:
            r = table.row(impl, n, k)
            intensity[k] = r["flops"] / r["min_bytes"]
        series(ax, table, impl, pts, [intensity[k] for _, k in pts], [table.gflops(impl, n, k) for _, k in pts],
               st[impl])
        points += [(impl, n, k) for _, k in pts]
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
    ax.set_title(title(table, f"roofline at n = {_sci(n)}, one point per (k, implementation); FFT methods "
                              "do fewer FLOPs, their rate is effective"), fontsize=10)
    side_legend(ax)
    footnote(fig, table)
    fig.tight_layout(rect=(0, FOOT_IN / fig.get_figheight(), 1, 1))
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
    fig.get_layout_engine().set(rect=(0, FOOT_IN / fig.get_figheight(), 1, 0.96))
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
    """GFLOP/s by shape (a row each) and implementation (a marker each, offset within the row, p20-p80 as a
    bar) on a log axis; a point skipped or failed is a cross at the left edge, its reason in the CSV."""
    rows = [r for r in run.rows if r["device"] == device and r["op"] == op and r["dtype"] == dtype]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    kinds = {r["impl"]: r["kind"] for r in rows}
    impls = sorted(kinds, key=lambda i: (kinds[i] != "kernel", i))
    fig, ax = plt.subplots(figsize=(11.0, 0.75 * len(shapes) + 2.2))
    ok = [r for r in rows if r["status"] == "ok"]
    gflops = [r["flops"] / r["timing"]["median"] / 1e9 for r in ok]
    left = min(gflops, default=1.0) / 3
    step = 0.8 / max(1, len(impls))
    missing, members = [], {"kernel": 0, "baseline": 0}
    for j, impl in enumerate(impls):
        kind = kinds[impl]
        marker = MARKERS[kind][members[kind] % len(MARKERS[kind])]
        members[kind] += 1
        xs, ys, lo, hi = [], [], [], []
        for i, shape in enumerate(shapes):
            r = next((r for r in rows if r["impl"] == impl and r["shape"] == shape), None)
            y = i + (j - (len(impls) - 1) / 2) * step
            if r is not None and r["status"] == "ok":
                t = r["timing"]
                xs.append(r["flops"] / t["median"] / 1e9)
                ys.append(y)
                lo.append(xs[-1] - r["flops"] / t["p80"] / 1e9)
                hi.append(r["flops"] / t["p20"] / 1e9 - xs[-1])
            elif r is not None:
                missing.append((y, impl))
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt=marker, color=palette(impl), ms=6.5 if kind == "kernel" else 6,
                    mec="black" if kind == "baseline" else "white", mew=0.6, elinewidth=1.0, capsize=0,
                    label=impl + (" (baseline)" if kind == "baseline" else ""))
    for y, impl in missing:
        ax.plot([left * 1.25], [y], "x", color=palette(impl), ms=6, mew=1.5)
    if missing:
        ax.plot([], [], "x", color="0.3", ms=6, mew=1.5, label="skipped or failed (at the left edge; "
                                                                 "reason in the CSV)")
    for i in range(0, len(shapes), 2):
        ax.axhspan(i - 0.5, i + 0.5, color="0.94", zorder=0, lw=0)
    ax.set_xscale("log")
    ax.set_xlim(left, max(gflops, default=10.0) * 1.6)
    ax.set_ylim(len(shapes) - 0.5, -0.5)
    ax.set_yticks(range(len(shapes)), shapes, fontsize=8)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set(xlabel="GFLOP/s (2 per MAC, kernels.layer_counts; log scale)", ylabel="shape (N, C_in>C_out, L, K, padding)")
    side_legend(ax)
    ax.set_title(f"{op}, {dtype}: GFLOP/s by shape and implementation\n{run.device_name(device)}", fontsize=10)
    put_footer(fig, *footer_text(run, device, "median of repeated calls, bars p20-p80"))
    fig.tight_layout(rect=(0, FOOT_IN / fig.get_figheight(), 1, 1))
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
