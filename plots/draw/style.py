"""What every figure shares: colours by family and ladder, line style by method, marker by kind, axes,
legends placed outside the axes, and how figures and their CSVs are written.

    colour     a hue per backend or baseline library (HUES), shaded by the member's place in its family: the
               ladder's order for a backend's variants (results record it), so a new step needs no edit
    line       by method: direct solid, FFT dashed; `auto` a wide translucent band under the step it runs
    marker     by kind and member: playground kernels circles, triangles, ...; baselines squares, diamonds, ...
    layering   lines and markers drawn first are wider and larger, so one that coincides with a later one
               still shows around it: no line is fully hidden
    legends    outside the axes (below the panels, or to the right of a single one)
    rates      an FFT method's GFLOP/s counts the direct method's 2k(n-k+1) FLOPs: an effective rate, so
               labelled
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
from matplotlib.ticker import FixedFormatter, FixedLocator, LogLocator, NullLocator  # noqa: E402

#: FLOPs are the direct method's 2k(n-k+1) for every implementation, so FFT methods show an effective rate.
GFLOPS_LABEL = "GFLOP/s = 2k(n-k+1) / time\n(FFT methods: effective rate)"
#: What an FFT method's label carries in a figure of rates.
EFFECTIVE = " (effective)"

#: The hue of each backend and baseline library (a matplotlib colormap): an implementation's colour is a shade
#: of its family's, by its place in the family (the ladder's order for a backend), so no table names variants.
HUES = {"numba_cpu": "Blues", "numba_cuda": "Greens", "cupy": "Oranges", "numpy": "Greys", "scipy": "YlOrBr",
        "torch": "RdPu", "cupyx": "Purples"}
OTHER_HUE = "Greys"
#: The shades used, light to dark: light enough to tell apart, never white.
SHADES = (0.35, 0.95)
LINESTYLE = {"direct": "-", "fft": "--", "auto": "-"}
#: Markers by kind, one per member in drawing order (cycled): coinciding points of two members stay apart.
MARKERS = {"kernel": ("o", "^", "v", "D", "p", "h", "<", ">"), "baseline": ("s", "D", "P", "X", "*", "d")}
#: The wide band an `auto` variant is drawn as, under the step it runs.
AUTO_BAND = dict(lw=7.0, alpha=0.35, zorder=1.5)
CEILING_STYLE = {"flops": dict(color="black", lw=1.2), "dram": dict(color="black", lw=1.2, ls="--"),
                 "cache": dict(color="0.45", lw=1.0, ls=":")}


def family(label: str) -> str:
    """The family of an implementation label: its backend ("cupy:vec") or baseline library ("torch.conv1d")."""
    return label.split(":")[0] if ":" in label else label.split(".")[0].split("[")[0]


class Palette:
    """Implementation label -> colour, the same in every figure drawn from one set of results: a hue per family
    (HUES), a shade per member, members ordered by `ladders` (backend -> variants in ladder order, as the
    results' metadata records them), the rest by name after them."""

    def __init__(self, labels, ladders=None):
        ladders = ladders or {}
        members = {}
        for label in sorted(set(labels)):
            members.setdefault(family(label), []).append(label)
        self.colours = {}
        for fam, names in members.items():
            order = ladders.get(fam, [])
            rank = {f"{fam}:{v}": i for i, v in enumerate(order)}
            names.sort(key=lambda n: (rank.get(n, len(order)), n))
            cmap = matplotlib.colormaps[HUES.get(fam, OTHER_HUE)]
            lo, hi = SHADES
            for i, name in enumerate(names):
                shade = lo + (hi - lo) * (i / (len(names) - 1) if len(names) > 1 else 1.0)
                self.colours[name] = matplotlib.colors.to_hex(cmap(shade))

    def __call__(self, label):
        return self.colours.get(label, "black")


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def layered(rank: int, count: int) -> float:
    """Size factor of the `rank`-th of `count` members drawn (1.8 for the first, 1.0 for the last): a member
    drawn earlier is wider, so a later one lying on it leaves it visible at both sides."""
    return 1.0 + 0.8 * (count - 1 - rank) / max(1, count - 1)


def legend(fig, handles_from, ncol=6, y=0.03) -> int:
    """One legend for the figure, below its panels (outside every axes), its bottom at figure fraction `y`;
    returns its number of rows, for the caller's layout."""
    handles, labels = [], []
    for ax in handles_from:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = max(1, min(ncol, len(labels)))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, bbox_to_anchor=(0.5, y),
               frameon=False)
    return -(-len(labels) // ncol)


def side_legend(ax, **kwargs):
    """The legend of one axes, to its right (outside it)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kwargs)


def ticks_at(axis, values, fmt=str):
    """Major ticks exactly at `values` (the measured k or n), no minor ticks."""
    axis.set_major_locator(FixedLocator(list(values)))
    axis.set_major_formatter(FixedFormatter([fmt(v) for v in values]))
    axis.set_minor_locator(NullLocator())


def log_axes(ax, x=True, y=True, **labels):
    """Log scales with minor ticks at 2 and 5 only (placing ticks is most of matplotlib's layout time)."""
    if x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    if y:
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.set(**labels)
    ax.grid(True, which="major", alpha=0.3)


