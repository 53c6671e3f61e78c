"""The benchmark run: plan, then check and time every candidate at every point, and write the results.

A point is either (op, n, k) of a sweep or (op, shape) of a layer grid; both go through the same loop.
`run` plans the preset (`plots.bench.plan`: the candidates, i.e. the registry's backend variants and
the baselines, and the points of every grid and op) and refuses one that would measure nothing;
`start` reports what is not timed, measures the ceilings (`plots.bench.ceilings`) and writes the
machine's metadata (`plots.bench.machine`) to a new results file (`plots.bench.results`). Then, for
each point, one set of inputs is made with the op's own generator and each candidate is

1. skipped when its estimated time per call (`plan.Estimates`, scaled from the same candidate at the
   previous n or k; (n, k) points only) is over the preset's `max_call`;
2. called once through its session (`plots.bench.sessions`), the warm-up, and its result checked
   against the point's float64 reference (`plots.bench.measure`); a wrong result is recorded and not
   timed; then called on other inputs (checked too), and timed on those: once where that call took
   longer than `max_call`;
3. timed with `plots.bench.timing` (CPU: perf_counter until the budget; GPU: CUDA events, L2 flushed);
   what the timed calls wrote is checked, and a rate above the run's ceilings marks the row
   impossible; written as one row.

`finish` measures the ceilings again and publishes the file; when a ceiling moved by more than
`analysis.LOAD_MARGIN` between the start and the end, the run says that the machine was loaded (so do the
summaries and the figures' footers). An interrupted run leaves its partial results in the writer's
temporary file.

The playground's kernels are called through the public API (`kernels.get`) with preallocated outputs
(`out=`); baselines allocate theirs. FLOPs and minimum bytes come from the op (`OPS[op].flops`,
`OPS[op].min_bytes`), so GFLOP/s and GB/s use the same counts as everything else. Only flip=False is
measured. GPU memory pools are released between grids (`sessions.release_gpu_pools`).

Threads: the run sets OMP_WAIT_POLICY=PASSIVE (unless `spin` or the user set it; see
`sessions.quiet_spinning`) and times torch's CPU baselines in a child process (`plots.bench.isolated`),
so that no OpenMP pool spins on a core another one needs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import kernels
from kernels.spec import OPS
from plots.bench import analysis, ceilings, machine, measure, plan, results
from plots.bench.sessions import Sessions, quiet_spinning, release_gpu_pools
from plots.bench.sweeps import Preset


def run(preset: Preset, *, directory: Path = results.RESULTS_DIR, use_out: bool = True, seed: int = 0,
        progress: bool = True, spin: bool = False, log=sys.stderr) -> Path:
    """Run `preset` (grids of (n, k) points or of layer shapes); returns the path of the results file.
    Raises ValueError, before measuring anything, when the preset would measure nothing."""
    from tqdm import tqdm  # heavy: only a run draws a progress bar

    started = time.perf_counter()
    omp = quiet_spinning(spin)
    blocks, left_out = plan.for_preset(preset)
    why = plan.nothing_to_measure(preset, blocks)
    if why:
        raise ValueError(f"nothing to measure: {why}")
    total = plan.tasks(blocks)
    print(f"bench: preset {preset.name!r}, {total} timings over {len(blocks)} (grid, op) blocks", file=log)
    writer, meta, sessions, ceils = start(preset, blocks, left_out, directory, use_out, seed, omp, log)
    limits = measure.Ceilings.of(ceils)

    rng = np.random.default_rng(seed)
    est = plan.Estimates()
    bar = tqdm(total=total, unit="timing", disable=not progress, dynamic_ncols=True, file=log)
    counts = {"ok": 0, "skipped": 0, "wrong": 0, "impossible": 0, "error": 0}
    last_grid = None
    try:
        for gi, grid, op, candidates in blocks:
            if last_grid is not None and gi != last_grid:
                release_gpu_pools()
            last_grid = gi
            ns, ks = sorted(grid.ns), sorted(grid.ks)
            limit = plan.max_n(grid.device, grid.dtype)
            for point in plan.points(grid, op):
                base = {"type": "result", "op": op, "dtype": grid.dtype, "device": grid.device}
                if point.shape is None and point.n > limit:
                    base.update(point.fields())
                    for candidate in candidates:
                        writer.write(measure.row(base, candidate, None, "skipped",
                                                 f"n > {limit} does not fit in memory"))
                    bar.update(len(candidates))
                    counts["skipped"] += len(candidates)
                    continue
                args, kwargs = point.make_args(rng, grid.dtype)
                p, _ = OPS[op].parse(*args, **kwargs)
                base.update(point.fields(p), flops=int(OPS[op].flops(p)), min_bytes=int(OPS[op].min_bytes(p)))
                check = measure.PointCheck(op, args, kwargs, rng)
                for candidate in candidates:
                    bar.set_postfix_str(f"{op} {grid.dtype} {point.label()} {candidate.label}", refresh=False)
                    key = (gi, op, candidate.label)
                    guess = None if point.shape else est.predict(key, point.n, point.k, ns, ks, candidate.method)
                    if guess is not None and guess > preset.max_call:
                        row = measure.row(base, candidate, None, "skipped",
                                          f"estimated {guess:.2g} s per call > max_call {preset.max_call} s")
                    else:
                        row = measure.check_and_time(base, candidate, sessions.get(candidate), check, preset,
                                                     grid.budget or preset.budget, limits)
                        guess = row["timing"]["median"] if "timing" in row else row.get("call_s")
                    if guess is not None and point.shape is None:
                        est.add(key, point.n, point.k, guess)  # skipped ones too: larger points are skipped
                    counts[row["status"]] += 1
                    if row["status"] in ("wrong", "impossible", "error"):
                        tqdm.write(f"  {row['status']}: {op} {candidate.label} {grid.dtype} {point.label()}: "
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
    for note in filter(None, (analysis.load_note(results.load(path).ceilings, d) for d in ("cpu", "gpu"))):
        print(f"bench: {note}", file=log)
    return path


def start(preset: Preset, blocks, left_out, directory, use_out, seed, omp, log):
    """Report what is not timed, measure the ceilings, write the metadata: (writer, meta, sessions, ceilings).
    `omp` is what `quiet_spinning` returned, called before anything loaded OpenMP."""
    states = backend_states()
    for name, st in states.items():
        if not st["timed"]:
            print(f"  not timed: backend {name} ({st['state']}{': ' + st['reason'] if st['reason'] else ''})",
                  file=log)
    for s in left_out:
        print(f"  not timed: baseline {s['label']} ({s['reason']})", file=log)

    print(f"bench: measuring ceilings (again at the end; the plots use the better of the two, and a change over "
          f"{analysis.LOAD_MARGIN}x is reported as load)", file=log)
    ceils = ceilings.cpu(preset.ceilings)
    meta = machine.metadata()  # after a numba parallel kernel ran (threading layer)
    meta["threads"].update(omp)
    meta["ladders"] = ladders()
    sessions = Sessions(use_out)
    if any(c.kind == "baseline" and c.baseline.isolated for *_, candidates in blocks for c in candidates):
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
    return writer, meta, sessions, ceils


def finish(preset: Preset, meta, writer, sessions) -> Path:
    """Close the worker, measure the ceilings again and publish the results file."""
    sessions.close()
    end = ceilings.cpu(preset.ceilings)
    if meta["gpu"] and any(g.device == "gpu" for g in preset.grids):
        end += ceilings.gpu(preset.ceilings, meta["gpu"]["l2_bytes"])
    for c in end:
        writer.write({**c, "when": "end"})
    return writer.close()


def ladders() -> dict[str, list[str]]:
    """Backend -> its variants in the order they are registered (the ladder's order: the plots shade by it)."""
    out = {}
    for name in kernels.backends():
        seen = {}
        for op in kernels.ops():
            seen.update(dict.fromkeys(kernels.variants(op, name)))
        out[name] = list(seen)
    return out


def backend_states() -> dict:
    """Every backend with its state here and whether benchmarks time it."""
    timed = {s for states in plan.STATES.values() for s in states}
    return {name: {"state": st.state, "reason": st.reason, "timed": st.state in timed}
            for name, st in kernels.backends().items()}


def stem(preset: Preset, meta: dict) -> str:
    """The results file's name: date and time, the CPU's or GPU's slug, the preset."""
    date = meta["date"][:19].replace(":", "").replace("T", "-")
    device = (meta["gpu"] or meta["cpu"])["slug"]
    return f"{date}-{device}-{preset.name}"
