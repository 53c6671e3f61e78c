"""What every figure shares: colours by family and ladder, line style by method, marker by kind, axes,
legends placed outside the axes, and how figures and their CSVs are written.

    colour     a hue per backend or baseline library (HUES), shaded by the member's place in its family: the
               ladder's order for a backend's variants (results record it), so a new step needs no edit
    line       by method: direct solid, FFT dashed, auto dotted
    marker     by kind: a playground kernel a circle, a baseline a square
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
from matplotlib.ticker import LogLocator  # noqa: E402

#: FLOPs are the direct method's 2k(n-k+1) for every implementation, so FFT methods show an effective rate.
GFLOPS_LABEL = "GFLOP/s = 2k(n-k+1) / time"

#: The hue of each backend and baseline library (a matplotlib colormap): an implementation's colour is a shade
#: of its family's, by its place in the family (the ladder's order for a backend), so no table names variants.
HUES = {"numba_cpu": "Blues", "numba_cuda": "Greens", "cupy": "Oranges", "numpy": "Greys", "scipy": "YlOrBr",
        "torch": "RdPu", "cupyx": "Purples"}
OTHER_HUE = "Greys"
#: The shades used, light to dark: light enough to tell apart, never white.
SHADES = (0.35, 0.95)
LINESTYLE = {"direct": "-", "fft": "--", "auto": ":"}
MARKER = {"kernel": "o", "baseline": "s"}
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


def legend(fig, handles_from, ncol=6):
    handles, labels = [], []
    for ax in handles_from:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(ncol, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 0.025), frameon=False)


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


