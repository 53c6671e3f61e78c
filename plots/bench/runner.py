"""The benchmark runner: discover implementations, check each point, time it, write the results.

A point is either (op, n, k) of a sweep or (op, shape) of a layer grid (`Point`); both go through the
same loop, check and timing. For every grid of a preset and every point of it: make one set of
inputs with the op's own generator, then for each implementation (the registry's backends and
variants, and the baselines):

1. skip it when its estimated time per call (scaled from the same implementation at the previous n
   or k; (n, k) points only) is over the preset's `max_call`;
2. call it once (the warm-up: JIT compilation, first touch) and check the result with the contract's
   checker (`kernels.compare.Reference`, by the method the implementation declares) against the
   float64 reference, computed once per point and shared (for n * k > CHECK_MAX_WORK, on a smaller
   problem with the same k); a wrong result is recorded and not timed; a call slower than `max_call`
   (after a second try, past JIT compilation) is recorded as skipped;
3. time it with `plots.bench.timing` (CPU: perf_counter until the budget; GPU: CUDA events, L2 flushed).

The playground's kernels are called through the public API (`kernels.get`) with preallocated outputs
(`out=`); baselines allocate theirs. FLOPs and minimum bytes come from the op (`OPS[op].flops`,
`OPS[op].min_bytes`), so GFLOP/s and GB/s use the same counts as everything else. Only flip=False is
measured. Ceilings are measured at the start and at the end of the run.

On a GPU, inputs are converted and outputs preallocated before the timed calls, and the warm-up call
fills the libraries' memory pools (CuPy, torch), so timed calls allocate from a pool; numba.cuda's
deallocations are deferred while a numba_cuda kernel is timed; the pools are released between grids
(`release_gpu_pools`). Workspaces a backend allocates inside its own calls are its own business.

Threads: the run sets OMP_WAIT_POLICY=PASSIVE (unless `spin` or the user set it), see
`quiet_spinning`, and times torch's CPU baselines in a child process (`plots.bench.isolated`), so
that no OpenMP pool spins on a core another one needs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import kernels
from kernels import compare, registry
from kernels.spec import OPS
from plots.bench import baselines as bl
from plots.bench import ceilings, machine, results, timing
from plots.bench.sweeps import Grid, Preset, shape_label

#: Backend states benchmarked on each device; simulated and emulated backends are never timed.
STATES = {"cpu": ("available",), "gpu": ("real GPU",)}
#: Largest n * k whose float64 reference is computed on the timed inputs (a few seconds of NumPy).
CHECK_MAX_WORK = 1.1e9


@dataclass(frozen=True)
class Impl:
    """One implementation of one op: a playground backend variant, or a baseline."""

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


def discover(op: str, device: str, dtype: str | None = None) -> tuple[list[Impl], list[dict]]:
    """(implementations of `op` that run on `device` here, [{label, reason}] of those left out);
    with `dtype`, only the baselines that apply to it."""
    found, left_out = [], []
    for name, st in kernels.backends().items():
        if st.state not in STATES[device]:
            continue
        backend = registry.backend(name)
        default = backend.defaults.get(op)
        for variant, note in kernels.variants(op, name).items():
            found.append(Impl(f"{name}:{variant}", "kernel", op, device, backend.method(op, variant), name,
                              note, backend=name, variant=variant, default=variant == default))
    for b in bl.for_op(op, device, dtype):
        ok, reason = b.available()
        if ok:
            found.append(Impl(b.name, "baseline", op, device, b.method, b.family, b.doc, baseline=b))
        else:
            left_out.append({"label": b.name, "reason": reason})
    return found, left_out


def select(impls: list[Impl], grid: Grid) -> list[Impl]:
    """The implementations matching one of the grid's include patterns and none of its excludes; a
    pattern equal to a label matches it, brackets and all ("scipy.correlate[fft]")."""
    def match(label, patterns):
        return any(label == p or fnmatch.fnmatchcase(label, p) for p in patterns)
    return [i for i in impls if match(i.label, grid.include) and not match(i.label, grid.exclude)]


# --- points and their check --------------------------------------------------------------------------

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


class PointCheck:
    """The float64 reference of one point, computed on first use and shared by every implementation.

    The reference costs O(n k) NumPy work; for a 1-D point with n * k > CHECK_MAX_WORK it is computed
    for a smaller problem with the same k and fresh inputs (`check_args`), which each implementation
    then also runs; otherwise (`check_args` None) the timed inputs themselves are checked.
    """

    def __init__(self, op: str, args: tuple, kwargs: dict, rng: np.random.Generator):
        self.op, self.args, self.kwargs, self.check_args = op, args, kwargs, None
        p, _ = OPS[op].parse(*args, **kwargs)
        n, k = getattr(p, "n", None), getattr(p, "k", None)
        if n is not None and k is not None and n * k > CHECK_MAX_WORK:
            self.check_args, _ = OPS[op].make_args(rng, p.dtype, n=max(k, int(CHECK_MAX_WORK // k)), k=k)
        self._ref = compare.Reference(op, self.check_args or args, kwargs)  # computed on first check

    def check(self, got, method: str) -> dict:
        return self._ref.check(got, method).as_dict()


# --- the run -------------------------------------------------------------------------------------------

@dataclass
class Estimates:
    """Seconds per call measured so far, to predict the next point of the same implementation."""

    seen: dict = field(default_factory=dict)  # (grid index, op, impl, n, k) -> seconds

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
            import cupy

            free = cupy.cuda.runtime.memGetInfo()[0]
        except Exception:
            from numba import cuda

            free = cuda.current_context().get_memory_info().free
    else:
        free = machine.cpu_info()["memory_bytes"] or 8 << 30
    return int(free // (24 * itemsize))


def plan(preset: Preset):
    """([(grid index, grid, op, impls)] for every grid and op that has implementations here,
    [{label, reason}] of the baselines left out). Discovery only: nothing is measured."""
    out, left_out = [], {}
    for gi, grid in enumerate(preset.grids):
        if grid.device == "gpu" and not bl.gpu_present():
            continue
        for op in grid.ops:
            impls, skipped = discover(op, grid.device, grid.dtype)
            for s in skipped:
                left_out[s["label"]] = s["reason"]
            impls = select(impls, grid)
            if impls:
                out.append((gi, grid, op, impls))
    return out, [{"label": k, "reason": v} for k, v in left_out.items()]


def tasks(blocks) -> int:
    """Timings a plan makes: implementations x points, over its blocks."""
    return sum(len(impls) * len(points(grid, op)) for _, grid, op, impls in blocks)


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
        labels = sorted({i.label for g in runnable for op in g.ops for i in discover(op, g.device, g.dtype)[0]})
        return ("no implementation matches --include/--exclude in any grid; implementations here: "
                + ", ".join(labels))
    if not tasks(blocks):
        g = blocks[0][1]
        return (f"no point with k <= n (n {', '.join(map(str, sorted(g.ns)))}; "
                f"k {', '.join(map(str, sorted(g.ks)))})")
    return None


def release_gpu_pools() -> list[str]:
    """Free the device memory cached by the GPU libraries this process has imported: numba.cuda's
    pending deallocations, CuPy's device and pinned pools, torch's caching allocator. Called between
    grids so that one grid's arrays do not crowd the next; libraries not imported (or, for torch and
    numba.cuda, not initialised) are left alone, and a failure to release only costs memory. Returns
    the libraries released."""
    if not bl.gpu_present():
        return []
    done = []
    cupy, torch = sys.modules.get("cupy"), sys.modules.get("torch")
    if cupy is not None:
        with _ignored_failure():
            cupy.cuda.Device().synchronize()
            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
            done.append("cupy")
    if torch is not None and torch.cuda.is_initialized():
        with _ignored_failure():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            done.append("torch")
    if "numba.cuda" in sys.modules:
        with _ignored_failure():
            from numba.cuda.cudadrv import driver

            if driver.driver.is_initialized and driver.driver.initialization_error is None:
                from numba import cuda

                ctx = cuda.current_context()
                ctx.synchronize()
                for pending in (ctx.deallocations, getattr(ctx.memory_manager, "deallocations", None)):
                    if pending is not None:
                        pending.clear()
                done.append("numba.cuda")
    return done


@contextlib.contextmanager
def _ignored_failure():
    try:
        yield
    except Exception as e:
        print(f"bench: releasing GPU memory failed ({type(e).__name__}: {e}); continuing", file=sys.stderr)


def backend_states() -> dict:
    """Every backend with its state here and whether benchmarks time it."""
    timed = {s for states in STATES.values() for s in states}
    return {name: {"state": st.state, "reason": st.reason, "timed": st.state in timed}
            for name, st in kernels.backends().items()}


def stem(preset: Preset, meta: dict) -> str:
    date = meta["date"][:19].replace(":", "").replace("T", "-")
    device = (meta["gpu"] or meta["cpu"])["slug"]
    return f"{date}-{device}-{preset.name}"


def quiet_spinning(spin: bool = False) -> dict:
    """Make idle OpenMP threads sleep instead of spin (OMP_WAIT_POLICY=PASSIVE) unless `spin` or the
    user set the policy. Must run before the first parallel numba call loads libgomp.

    Measured on the 2-core machine with one other busy process: with spinning (the default), every
    numba prange call at n=1e3..1e5 took one scheduler time slice, 8 ms, because the thread done
    first spins on the core its partner needs; with PASSIVE the same calls took 0.06-2.5 ms.
    """
    loaded = any("libgomp" in line or "libiomp" in line for line in _maps())
    if not spin:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "runtime default (spin, then sleep)"),
            "openmp_loaded_before_setting": loaded}


def _maps():
    try:
        return Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []


def run(preset: Preset, *, directory: Path = results.RESULTS_DIR, use_out: bool = True, seed: int = 0,
        progress: bool = True, spin: bool = False, log=sys.stderr) -> Path:
    """Run `preset` (grids of (n, k) points or of layer shapes); returns the path of the results file.
    Raises ValueError, before measuring anything, when the preset would measure nothing."""
    from tqdm import tqdm

    started = time.perf_counter()
    omp = quiet_spinning(spin)
    blocks, left_out = plan(preset)
    why = nothing_to_measure(preset, blocks)
    if why:
        raise ValueError(f"nothing to measure: {why}")
    total = tasks(blocks)
    print(f"bench: preset {preset.name!r}, {total} timings over {len(blocks)} (grid, op) blocks", file=log)
    writer, meta, sessions = start(preset, blocks, left_out, directory, use_out, seed, omp, log)

    rng = np.random.default_rng(seed)
    est = Estimates()
    bar = tqdm(total=total, unit="timing", disable=not progress, dynamic_ncols=True, file=log)
    counts = {"ok": 0, "skipped": 0, "wrong": 0, "error": 0}
    last_grid = None
    try:
        for gi, grid, op, impls in blocks:
            if last_grid is not None and gi != last_grid:
                release_gpu_pools()
            last_grid = gi
            ns, ks = sorted(grid.ns), sorted(grid.ks)
            limit = max_n(grid.device, grid.dtype)
            for point in points(grid, op):
                base = {"type": "result", "op": op, "dtype": grid.dtype, "device": grid.device}
                if point.shape is None and point.n > limit:
                    base.update(point.fields())
                    for impl in impls:
                        writer.write(_row(base, impl, None, "skipped", f"n > {limit} does not fit in memory"))
                    bar.update(len(impls))
                    counts["skipped"] += len(impls)
                    continue
                args, kwargs = point.make_args(rng, grid.dtype)
                p, _ = OPS[op].parse(*args, **kwargs)
                base.update(point.fields(p), flops=int(OPS[op].flops(p)), min_bytes=int(OPS[op].min_bytes(p)))
                check = PointCheck(op, args, kwargs, rng)
                for impl in impls:
                    bar.set_postfix_str(f"{op} {grid.dtype} {point.label()} {impl.label}", refresh=False)
                    key = (gi, op, impl.label)
                    guess = None if point.shape else est.predict(key, point.n, point.k, ns, ks, impl.method)
                    if guess is not None and guess > preset.max_call:
                        row = _row(base, impl, None, "skipped",
                                   f"estimated {guess:.2g} s per call > max_call {preset.max_call} s")
                    else:
                        row = _measure(base, impl, sessions.get(impl), check, preset, grid.budget or preset.budget)
                        guess = row["timing"]["median"] if row["status"] == "ok" else row.get("call_s")
                    if guess is not None and point.shape is None:
                        est.add(key, point.n, point.k, guess)  # skipped ones too: larger points are skipped
                    counts[row["status"]] += 1
                    if row["status"] in ("wrong", "error"):
                        tqdm.write(f"  {row['status']}: {op} {impl.label} {grid.dtype} {point.label()}: "
                                   f"{row['reason']}", file=log)
                    writer.write(row)
                    bar.update(1)
    except BaseException:
        bar.close()
        sessions.close()
        writer.abandon()
        print(f"bench: interrupted; partial results left in {writer.tmp}", file=log)
        raise
    bar.close()
    release_gpu_pools()
    path = finish(preset, meta, writer, sessions)
    print(f"bench: {counts} in {time.perf_counter() - started:.0f} s -> {path}", file=log)
    return path


def start(preset: Preset, blocks, left_out, directory, use_out, seed, omp, log):
    """Report what is not timed, measure the ceilings, write the metadata: (writer, meta, sessions).
    `omp` is what `quiet_spinning` returned, called before anything loaded OpenMP."""
    states = backend_states()
    for name, st in states.items():
        if not st["timed"]:
            print(f"  not timed: backend {name} ({st['state']}{': ' + st['reason'] if st['reason'] else ''})",
                  file=log)
    for s in left_out:
        print(f"  not timed: baseline {s['label']} ({s['reason']})", file=log)

    print("bench: measuring ceilings (again at the end; the plots use the better of the two)", file=log)
    ceils = ceilings.cpu(preset.ceilings)
    meta = machine.metadata()  # after a numba parallel kernel ran (threading layer)
    meta["threads"].update(omp)
    sessions = Sessions(use_out)
    if any(i.kind == "baseline" and i.baseline.isolated for *_, impls in blocks for i in impls):
        meta["threads"].update(isolated_worker=sessions.start_worker().info)
    if meta["gpu"] and any(g.device == "gpu" for g in preset.grids):
        ceils += ceilings.gpu(preset.ceilings, meta["gpu"]["l2_bytes"])
    for c in ceils:
        print(f"  {c['device']} {c['kind']} {c.get('dtype') or c.get('level')}: {c['value']:.1f} {c['unit']} "
              f"({c['method']})", file=log)

    meta.update(type="meta", preset=preset.name, preset_doc=preset.doc,
                grids=[vars(g) for g in preset.grids], budget_s=preset.budget, max_call_s=preset.max_call,
                min_repeats=preset.min_repeats, out_preallocated=use_out, seed=seed, backends=states,
                baselines_left_out=left_out,
                timer={"cpu": "time.perf_counter per call after one warm-up/check call, repeated until the "
                              "budget; median, 20th and 80th percentiles",
                       "gpu": "CUDA events per call after warm-up, L2 flushed before each call"},
                note="playground kernels are called through kernels.get(...) with out= preallocated "
                     "(unless out_preallocated is false) and include argument validation; baselines "
                     "allocate their outputs")
    writer = results.Writer(directory, stem(preset, meta))
    writer.write(meta)
    for c in ceils:
        writer.write({**c, "when": "start"})
    return writer, meta, sessions


def finish(preset: Preset, meta, writer, sessions) -> Path:
    """Close the worker, measure the ceilings again and publish the results file."""
    sessions.close()
    end = ceilings.cpu(preset.ceilings)
    if meta["gpu"] and any(g.device == "gpu" for g in preset.grids):
        end += ceilings.gpu(preset.ceilings, meta["gpu"]["l2_bytes"])
    for c in end:
        writer.write({**c, "when": "end"})
    return writer.close()


class Sessions:
    """A session per implementation; isolated baselines share one child process, started on first use."""

    def __init__(self, use_out: bool):
        self.use_out, self.worker = use_out, None

    def start_worker(self):
        if self.worker is None:
            from plots.bench.isolated import Worker

            self.worker = Worker()
        return self.worker

    def get(self, impl: Impl):
        if impl.kind == "baseline" and impl.baseline.isolated:
            return IsolatedSession(impl, self.start_worker())
        return Session(impl, self.use_out)

    def close(self):
        if self.worker is not None:
            self.worker.close()


def _row(base, impl: Impl, out_pre, status, reason="", **extra) -> dict:
    return {**base, "impl": impl.label, "kind": impl.kind, "backend": impl.backend, "variant": impl.variant,
            "family": impl.family, "method": impl.method, "default": impl.default, "note": impl.note,
            "out_preallocated": out_pre,
            "status": status, "reason": reason, **extra}


class Session:
    """Calls of one implementation in this process: call(args) -> (NumPy result, seconds), then time()."""

    def __init__(self, impl: Impl, use_out: bool):
        self.impl, self.use_out, self.out_preallocated = impl, use_out, None
        self._call = None

    def call(self, args, kwargs=None):
        self._call = None  # free the previous inputs first
        self._call, fetch, self.out_preallocated = self.impl.prepare(args, self.use_out, kwargs)
        t0 = time.perf_counter()
        got = fetch(self._call())
        return got, time.perf_counter() - t0

    def time(self, budget: float, min_repeats: int) -> timing.Timing:
        if self.impl.device == "gpu":
            if self.impl.family == "numba_cuda":  # no synchronising cuMemFree inside the timed calls
                from numba import cuda

                with cuda.defer_cleanup():
                    return timing.time_gpu(self._call, budget=budget, min_repeats=max(5, min_repeats))
            return timing.time_gpu(self._call, budget=budget, min_repeats=max(5, min_repeats))
        return timing.time_cpu(self._call, budget=budget, min_repeats=min_repeats, warmup=False)


class IsolatedSession:
    """The same, in the child process of `plots.bench.isolated` (torch on the CPU)."""

    out_preallocated = False

    def __init__(self, impl: Impl, worker):
        self.impl, self.worker = impl, worker

    def call(self, args, kwargs=None):
        return self.worker.call(self.impl.label, self.impl.op, (*args, *(kwargs or {}).values()))

    def time(self, budget: float, min_repeats: int) -> timing.Timing:
        return timing.Timing(**self.worker.time(budget, min_repeats))


def _measure(base, impl: Impl, session, check: PointCheck, preset: Preset, budget: float) -> dict:
    """Check (on the timed inputs, or on smaller ones when the reference would be slow), then time.

    The warm-up call is the checked one (on the timed inputs). A warm-up slower than `max_call` is
    repeated (the first call may include JIT compilation); if that call is slower too, the point is
    recorded as skipped (with `call_s`, for the estimates of larger points) instead of being timed.
    """
    try:
        if check.check_args is not None:
            verdict = check.check(session.call(check.check_args, check.kwargs)[0], impl.method)
        got, first = session.call(check.args, check.kwargs)  # the warm-up call (JIT compilation, first touch)
        if check.check_args is None:
            verdict = check.check(got, impl.method)
        del got
        if not verdict["ok"]:
            return _row(base, impl, session.out_preallocated, "wrong", verdict.get("detail", ""), check=verdict)
        call_s = session.call(check.args, check.kwargs)[1] if first > preset.max_call else first
        if call_s > preset.max_call:
            return _row(base, impl, session.out_preallocated, "skipped",
                        f"a call took {call_s:.2g} s > max_call {preset.max_call} s", check=verdict,
                        first_call_s=first, call_s=call_s)
        t = session.time(budget, preset.min_repeats)
    except Exception as e:  # one failing implementation must not stop the sweep
        return _row(base, impl, None, "error", f"{type(e).__name__}: {e}")
    return _row(base, impl, session.out_preallocated, "ok", check=verdict, first_call_s=first,
                timing=t.as_dict(), gflops=base["flops"] / t.median / 1e9,
                gbs=base["min_bytes"] / t.median / 1e9)
