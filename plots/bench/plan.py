"""What a run measures, decided before anything is measured: candidates, points, blocks, estimates.

A `Candidate` is one implementation of one op that can be timed here: a registered backend variant
(`kernels.get`) or a baseline (`plots.bench.baselines`). `discover` lists them and `select` applies a
grid's include and exclude patterns. A `Point` is one problem of a grid. `for_preset` makes the plan
of a preset, its blocks: (grid index, grid, op, candidates) for every grid and op with candidates
here; `tasks` counts a plan's timings and `nothing_to_measure` says why a preset would time nothing.
`Estimates` predicts a candidate's time per call at the next (n, k) point from the points already
measured, and `max_n` bounds n by the memory free on the device.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import kernels
from cpu import machine as cpu_machine
from kernels import compare, registry
from kernels.spec import OPS
from plots.bench import baselines as bl
from plots.bench.sweeps import Grid, Preset, shape_label

#: Backend states benchmarked on each device; simulated and emulated backends are never timed.
STATES = {"cpu": ("available",), "gpu": ("real GPU",)}


@dataclass(frozen=True)
class Candidate:
    """One implementation of one op that a run can time: a playground backend variant, or a baseline."""

    label: str  # "numba_cpu:parallel", "scipy.correlate[fft]"
    kind: str  # "kernel" or "baseline"
    op: str
    device: str  # "cpu" or "gpu"
    method: str  # "direct", "fft" or "auto"
    family: str  # backend name, or the baseline's library
    note: str
    backend: str | None = None
    variant: str | None = None
    baseline: bl.Baseline | None = None
    default: bool = False  # the backend's default variant for this op

    def prepare(self, args: tuple, use_out: bool, kwargs: dict | None = None) -> tuple[Callable, Callable, bool]:
        """(call, fetch, out_preallocated): call() computes on inputs already in place; fetch(result)
        returns NumPy arrays. `kwargs` (the layer's stride, padding, ...) go to kernels by name and to
        baselines as trailing positional arguments, in their order."""
        kwargs = kwargs or {}
        is_array = [isinstance(a, np.ndarray) for a in args]
        if self.kind == "baseline":
            kind = bl.ARRAY_KINDS[self.baseline.arrays]
            dev = tuple(kind.to_kind(a) if arr else a for a, arr in zip(args, is_array, strict=False))
            fn, extra = self.baseline.fn, tuple(kwargs.values())
            return (lambda: fn(*dev, *extra)), kind.to_host, False
        op = OPS[self.op]
        fn = kernels.get(self.op, self.backend, self.variant)
        arrays = registry.backend(self.backend).arrays
        dev = tuple(arrays.prepare(a) if arr else a for a, arr in zip(args, is_array, strict=False))

        def fetch(r):
            return compare.to_host(r) if op.single else tuple(compare.to_host(o) for o in r)

        if not use_out:
            return (lambda: fn(*dev, **kwargs)), fetch, False
        p, _ = op.parse(*args, **kwargs)
        outs = tuple(arrays.empty(s, p.dtype) for s in op.out_shapes(p))
        out = outs[0] if op.single else outs
        return (lambda: fn(*dev, **kwargs, out=out)), fetch, True


def discover(op: str, device: str, dtype: str | None = None) -> tuple[list[Candidate], list[dict]]:
    """(candidates of `op` that run on `device` here, [{label, reason}] of the baselines left out);
    with `dtype`, only the baselines that apply to it."""
    found, left_out = [], []
    for name, st in kernels.backends().items():
        if st.state not in STATES[device]:
            continue
        backend = registry.backend(name)
        default = backend.defaults.get(op)
        for variant, note in kernels.variants(op, name).items():
            found.append(Candidate(f"{name}:{variant}", "kernel", op, device, backend.method(op, variant), name,
                                   note, backend=name, variant=variant, default=variant == default))
    for b in bl.for_op(op, device, dtype):
        ok, reason = b.available()
        if ok:
            found.append(Candidate(b.name, "baseline", op, device, b.method, b.family, b.doc, baseline=b))
        else:
            left_out.append({"label": b.name, "reason": reason})
    return found, left_out


def select(candidates: list[Candidate], grid: Grid) -> list[Candidate]:
    """The candidates matching one of the grid's include patterns and none of its excludes; a pattern
    equal to a label matches it, brackets and all ("scipy.correlate[fft]")."""
    def match(label, patterns):
        return any(label == p or fnmatch.fnmatchcase(label, p) for p in patterns)
    return [c for c in candidates if match(c.label, grid.include) and not match(c.label, grid.exclude)]


@dataclass(frozen=True)
class Point:
    """One measured problem of a grid: (op, n, k) of a sweep, or (op, shape) of a layer grid, where the
    shape is the op's make_args keywords (N, C_in, C_out, L, K, padding)."""

    op: str
    n: int | None = None
    k: int | None = None
    shape: dict | None = None

    def make_args(self, rng, dtype) -> tuple[tuple, dict]:
        size = self.shape if self.shape is not None else {"n": self.n, "k": self.k}
        return OPS[self.op].make_args(rng, np.dtype(dtype), **size)

    def fields(self, p=None) -> dict:
        """The result row's size fields: n, k (and m, given the parsed problem `p`); a layer point also
        its shape (n = L, k = K, m = L_out)."""
        if self.shape is not None:
            return {"shape": shape_label(self.shape), "layer": self.shape, "n": p.L, "k": p.K, "m": p.L_out}
        return {"n": self.n, "k": self.k} | ({"m": p.m} if p is not None else {})

    def label(self) -> str:
        return shape_label(self.shape) if self.shape is not None else f"n={self.n:.0e} k={self.k}"


def points(grid: Grid, op: str) -> list[Point]:
    """The points of `op` in `grid`, in run order (for (n, k): n ascending, then k, for the estimates)."""
    if grid.shapes:
        return [Point(op, shape=dict(s)) for s in grid.shapes]
    return [Point(op, n, k) for o, n, k in grid.points() if o == op]


@dataclass
class Estimates:
    """Seconds per call measured so far, to predict the next point of the same candidate."""

    seen: dict = field(default_factory=dict)  # (grid index, op, label, n, k) -> seconds

    def add(self, key, n, k, seconds):
        self.seen[(*key, n, k)] = seconds

    def predict(self, key, n, k, ns, ks, method="direct") -> float | None:
        """The larger of: the time at the previous n (same k) scaled by n, and the time at the previous
        k (same n) scaled by k (direct methods; FFTs hardly depend on k). None before any data."""
        guesses = []
        for prev_n in [x for x in ns if x < n][-1:]:
            t = self.seen.get((*key, prev_n, k))
            if t is not None:
                guesses.append(t * n / prev_n)
        for prev_k in [x for x in ks if x < k][-1:]:
            t = self.seen.get((*key, n, prev_k))
            if t is not None:
                guesses.append(t * (1.0 if method == "fft" else k / prev_k))
        return max(guesses) if guesses else None


def max_n(device: str, dtype) -> int:
    """The largest n whose inputs, outputs and FFT workspaces fit in memory (~24 arrays of n)."""
    itemsize = np.dtype(dtype).itemsize
    if device == "gpu":
        try:
            import cupy  # optional: only on a GPU

            free = cupy.cuda.runtime.memGetInfo()[0]
        except Exception:
            from numba import cuda  # heavy: initialises the CUDA driver

            free = cuda.current_context().get_memory_info().free
    else:
        free = cpu_machine.cpu_info()["memory_bytes"] or 8 << 30
    return int(free // (24 * itemsize))


def for_preset(preset: Preset) -> tuple[list[tuple], list[dict]]:
    """([(grid index, grid, op, candidates)] for every grid and op that has candidates here,
    [{label, reason}] of the baselines left out). Discovery only: nothing is measured."""
    out, left_out = [], {}
    for gi, grid in enumerate(preset.grids):
        if grid.device == "gpu" and not bl.gpu_present():
            continue
        for op in grid.ops:
            found, skipped = discover(op, grid.device, grid.dtype)
            for s in skipped:
                left_out[s["label"]] = s["reason"]
            chosen = select(found, grid)
            if chosen:
                out.append((gi, grid, op, chosen))
    return out, [{"label": k, "reason": v} for k, v in left_out.items()]


def tasks(blocks) -> int:
    """Timings a plan makes: candidates x points, over its blocks."""
    return sum(len(candidates) * len(points(grid, op)) for _, grid, op, candidates in blocks)


def nothing_to_measure(preset: Preset, blocks) -> str | None:
    """Why `preset` (planned as `blocks`) would measure nothing, or None when it measures something."""
    if not preset.grids:
        return f"preset {preset.name!r} has no grid left for this --device/--dtype"
    runnable = [g for g in preset.grids if g.device != "gpu" or bl.gpu_present()]
    if not runnable:
        return "every grid left is a GPU grid, and there is no CUDA device here"
    wrong_kind = [(op, g) for g in runnable for op in g.ops if not g.accepts(op)]
    if wrong_kind:
        op, g = wrong_kind[0]
        return (f"op {op!r} does not run on the {'layer' if g.shapes else '(n, k)'} grids of preset "
                f"{preset.name!r}; they take {', '.join(o for o in OPS if g.accepts(o))}")
    if not blocks:
        labels = sorted({c.label for g in runnable for op in g.ops for c in discover(op, g.device, g.dtype)[0]})
        return ("no implementation matches --include/--exclude in any grid; implementations here: "
                + ", ".join(labels))
    if not tasks(blocks):
        g = blocks[0][1]
        return (f"no point with k <= n (n {', '.join(map(str, sorted(g.ns)))}; "
                f"k {', '.join(map(str, sorted(g.ks)))})")
    return None
