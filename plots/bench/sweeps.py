"""Sweeps declared as data: which ops, implementations, dtypes, n and k a benchmark run covers.

A `Preset` is a list of `Grid`s plus the timing policy. A grid is the product ops x n x k on one
device and dtype, over the implementations whose label matches its include patterns and none of its
exclude patterns (fnmatch over labels such as ``numba_cpu:parallel``, ``scipy.correlate[fft]``).
Implementations are discovered from the registry and the baselines module at run time, so new
backends and variants join the sweep without editing this file. Points with k > n are left out.

    quick  CPU float32 over n = 1e3..1e6 and ten k (plus a few float64 points): a few minutes on 2
           cores. On a machine with a CUDA device it also covers the real-GPU backends up to n = 1e8.
    full   CPU n = 1e3..1e7 in half decades, k up to 4095, both dtypes; GPU up to n = 1e9 (capped
           by free memory).
    gpu    the GPU grids of `full` only.
    layer  the conv1d layer (forward and backward, float32) on a few realistic shapes instead of an
           (n, k) grid: N=8, C_in=64, C_out=128, L=4096, K = 3, 7, 31 ("same" padding K//2), one
           long sequence, channel-heavy, strided, dilated and depthwise shapes; numba_cpu against torch
           CPU (cuDNN and the GPU backends when a GPU is there). The runner measures a shape as one
           point; `plots.bench.layer` summarises the results.
    layer-ladder  `layer` with every numba_cpu layer variant (im2col, gemm, gemm_numpy too).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kernels.spec import OPS

#: Filter lengths: 2^j - 1, so that k straddles every power-of-two block size once.
KS = (1, 3, 7, 15, 31, 63, 127, 255, 511, 1023)
KS_LONG = KS + (2047, 4095)
#: The ops every preset covers: the forward pass and the weight gradient.
BENCH_OPS = ("conv1d", "conv1d_weight_grad")
#: `numpy:reference` is the float64 oracle, not a contender.
DEFAULT_EXCLUDE = ("numpy:*",)


def decades(lo: int, hi: int, per_decade: int = 1) -> tuple[int, ...]:
    """Log-spaced round sizes from 10^lo to 10^hi: 1e3, 1e4 (per_decade=2: 1e3, 3e3, 1e4, ...)."""
    steps = {1: (1,), 2: (1, 3), 3: (1, 2, 5)}[per_decade]
    return tuple(s * 10**e for e in range(lo, hi + 1) for s in steps if s * 10**e <= 10**hi)


@dataclass(frozen=True)
class Grid:
    """One block of a sweep: every (op, n, k) with k <= n, on one device and dtype."""

    device: str  # "cpu": "available" backends + CPU baselines; "gpu": "real GPU" backends + GPU baselines
    dtype: str
    ns: tuple[int, ...]
    ks: tuple[int, ...] = KS
    ops: tuple[str, ...] = BENCH_OPS
    include: tuple[str, ...] = ("*",)  # fnmatch patterns over implementation labels
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    budget: float | None = None  # seconds of timed calls per point (None: the preset's)
    shapes: tuple = ()  # layer grids: make_args keyword dicts (N, C_in, C_out, L, K, padding); no n, k

    def accepts(self, op: str) -> bool:
        """Whether `op` runs on this grid: layer ops on a grid of shapes, the others on (n, k)."""
        return (OPS[op].family == "layer") == bool(self.shapes)

    def points(self):
        """(op, n, k) in run order: n ascending, then k ascending (for the time estimates)."""
        return [(op, n, k) for op in self.ops for n in sorted(self.ns) for k in sorted(self.ks) if k <= n]


@dataclass(frozen=True)
class CeilingSizes:
    """Problem sizes of the ceiling measurements (peak FLOP/s and memory bandwidth)."""

    matmul_n: int = 2048  # square BLAS matmul on the CPU
    copy_bytes: int = 1 << 28  # bytes per array of the large copy (read + write are counted)
    cache_copy_bytes: int = 8 << 20  # working set (source + destination) of the cache-sized copy
    gpu_matmul_n: int = 8192  # square cuBLAS matmul
    gpu_copy_bytes: int = 1 << 30
    budget: float = 0.3  # seconds of timed calls per ceiling


@dataclass(frozen=True)
class Preset:
    name: str
    doc: str
    grids: tuple[Grid, ...]
    budget: float = 0.1  # seconds of timed calls per point (CPU: after one warm-up/check call)
    min_repeats: int = 3
    max_call: float = 1.0  # skip a point whose estimated time per call exceeds this (seconds)
    ceilings: CeilingSizes = field(default_factory=CeilingSizes)

    def with_grids(self, **changes) -> Preset:
        """The same preset with `changes` applied to every grid (None values ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return replace(self, grids=tuple(replace(g, **changes) for g in self.grids))


#: scipy's direct correlation of two 1-D arrays is numpy.correlate (its 1-D fast path): quick draws it once.
QUICK_EXCLUDE = DEFAULT_EXCLUDE + ("scipy.correlate[direct]",)

PRESETS = {
    "quick": Preset(
        "quick", "CPU float32 n=1e3..1e6 x 10 k, a few float64 points; GPU n up to 1e8 when present",
        grids=(
            Grid("cpu", "float32", decades(3, 6), exclude=QUICK_EXCLUDE),
            Grid("cpu", "float64", (10**5, 10**6), (3, 31, 511), exclude=QUICK_EXCLUDE),
            Grid("gpu", "float32", decades(3, 8), budget=0.05),
            Grid("gpu", "float64", (10**6, 10**8), (3, 31, 511), budget=0.05),
        ),
        budget=0.03,  # ~800 CPU points: make plots, setup and both presets, within 6 minutes on 2 cores
    ),
    "full": Preset(
        "full", "CPU n=1e3..1e7 in half decades, k up to 4095, both dtypes; GPU up to n=1e9",
        grids=(
            Grid("cpu", "float32", decades(3, 7, 2), KS_LONG),
            Grid("cpu", "float64", decades(3, 7, 2), KS_LONG),
            Grid("gpu", "float32", decades(3, 9, 2), KS_LONG, budget=0.1),
            Grid("gpu", "float64", decades(3, 9), KS_LONG, budget=0.1),
        ),
        budget=0.2, max_call=5.0,
    ),
}
def shape_label(s: dict) -> str:
    """A layer shape's name in results and plots: "N8 C64>128 L4096 K3 p1" (plus s2 d2 g512 when not 1)."""
    extra = "".join(f" {a}{s[k]}" for k, a in (("stride", "s"), ("dilation", "d"), ("groups", "g")) if s.get(k, 1) != 1)
    return f"N{s['N']} C{s['C_in']}>{s['C_out']} L{s['L']} K{s['K']} p{s.get('padding', 0)}" + extra


#: The layer preset's shapes: make_args keywords of `conv1d_layer` and `conv1d_layer_backward`.
LAYER_SHAPES = tuple(dict(N=8, C_in=64, C_out=128, L=4096, K=k, padding=k // 2) for k in (3, 7, 31)) + (
    dict(N=1, C_in=16, C_out=16, L=262144, K=31, padding=15),) + (
    dict(N=8, C_in=256, C_out=256, L=1024, K=5, padding=2),  # channel-heavy
    dict(N=8, C_in=128, C_out=128, L=4096, K=7, padding=3, stride=2),  # strided
    dict(N=4, C_in=512, C_out=512, L=2048, K=4, padding=3, groups=512),  # causal depthwise (crop the tail)
    dict(N=8, C_in=128, C_out=128, L=2048, K=3, padding=2, dilation=2),  # dilated
    dict(N=8, C_in=64, C_out=64, L=4096, K=3, padding=2, dilation=2),  # dilated, fewer channels
    dict(N=8, C_in=96, C_out=192, L=4096, K=9, padding=4, stride=2),  # strided, a longer filter
)
LAYER_OPS = ("conv1d_layer", "conv1d_layer_backward")
#: numba_cpu:naive (serial, a bounds test per tap) takes tens of seconds per call on these shapes. The
#: `layer` preset (make plots) times the layer ladder's first rung (direct), the rungs auto picks from and
#: auto itself; `layer-ladder` adds im2col, gemm and gemm_numpy, the steps between them (about 1.5x longer).
LADDER_ONLY = ("numba_cpu:im2col", "numba_cpu:gemm", "numba_cpu:gemm_numpy")
PRESETS["layer-ladder"] = Preset(
    "layer-ladder", "conv1d layer fwd+bwd float32: N=8 C_in=64 C_out=128 L=4096 K=3,7,31, N=1 C=16 L=262144 K=31, "
    "C=256 K5, strided (K7, K9), causal depthwise and dilated (128 and 64 channels) shapes; every layer variant",
    grids=(Grid("cpu", "float32", (), ops=LAYER_OPS, shapes=LAYER_SHAPES,
                exclude=DEFAULT_EXCLUDE + ("numba_cpu:naive",)),
           Grid("gpu", "float32", (), ops=LAYER_OPS, shapes=LAYER_SHAPES, budget=0.05,
                exclude=DEFAULT_EXCLUDE + ("*:naive",))),
    budget=0.1, max_call=1.0,  # a slower call is skipped, and marked so in the figure
)
PRESETS["layer"] = replace(
    PRESETS["layer-ladder"], name="layer",
    doc=PRESETS["layer-ladder"].doc.replace("every layer variant", "without the CPU ladder's middle rungs "
                                             + ", ".join(LADDER_ONLY)),
    grids=tuple(replace(g, exclude=g.exclude + LADDER_ONLY) if g.device == "cpu" else g
                for g in PRESETS["layer-ladder"].grids))
PRESETS["gpu"] = replace(PRESETS["full"], name="gpu", doc="the GPU grids of `full`",
                         grids=tuple(g for g in PRESETS["full"].grids if g.device == "gpu"))
#: One GPU run in a few minutes (make gpu-report): float32 n = 1e6 and 1e8, five k, both ops, and the
#: layer shapes.
PRESETS["gpu-short"] = Preset(
    "gpu-short", "GPU float32 n=1e6,1e8 x k=3,7,31,127,511 (conv1d, weight grad) and the layer shapes",
    grids=(Grid("gpu", "float32", (10**6, 10**8), (3, 7, 31, 127, 511), budget=0.05),
           Grid("gpu", "float32", (), ops=LAYER_OPS, shapes=LAYER_SHAPES, budget=0.05,
                exclude=DEFAULT_EXCLUDE + ("*:naive",))),
    budget=0.05, max_call=1.0,
)
